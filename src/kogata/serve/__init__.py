"""``kogata serve``: the measured artifact behind an OpenAI-compatible API.

One FastAPI app (:func:`kogata.serve.app.create_app`) holds the served-model set (aliases → engines, hot
swap), the gateway (keys, quotas, request limits), the request pipeline seam (input check → engine → output
check → audit row), Prometheus metrics and thin route modules. The batching engine itself lives in
:mod:`kogata.runtimes.engine`.
"""
