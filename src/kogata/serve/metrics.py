"""Prometheus metrics for one app (its own ``CollectorRegistry``), named as vLLM names them where the meaning is
the same (``kogata:`` instead of ``vllm:``), so existing Grafana boards work after a prefix rename.

Labels: ``model_name`` (the alias the client asked for), ``artifact_id`` (what actually served it) and
``key_name`` (the API key's name, ``-`` without keys). The running/waiting gauges are read from the engines at
scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

LABELS = ("model_name", "artifact_id", "key_name")
_LATENCY = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_ITL = (0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_E2E = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0)
_TOKENS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _EngineGauges:
    """Collector: ``kogata:num_requests_running`` / ``waiting`` per served model, read at scrape time."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, dict[str, int]]]]):
        self._read = read

    def collect(self):
        running = GaugeMetricFamily("kogata:num_requests_running", "Requests being decoded now.", labels=["model_name", "artifact_id"])
        waiting = GaugeMetricFamily("kogata:num_requests_waiting", "Requests queued for a decode slot.", labels=["model_name", "artifact_id"])
        for alias, art_id, stats in self._read():
            running.add_metric([alias, art_id], stats.get("running", 0))
            waiting.add_metric([alias, art_id], stats.get("waiting", 0))
        yield running
        yield waiting


class ServeMetrics:
    def __init__(self, engine_stats: Callable[[], Iterable[tuple[str, str, dict[str, int]]]] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ttft = Histogram("kogata:time_to_first_token_seconds", "Time from request to first generated token.", LABELS, buckets=_LATENCY, registry=r)
        self.itl = Histogram("kogata:inter_token_latency_seconds", "Time between generated tokens of one request.", LABELS, buckets=_ITL, registry=r)
        self.e2e = Histogram("kogata:e2e_request_latency_seconds", "Request latency, first byte in to last byte out.", LABELS, buckets=_E2E, registry=r)
        self.queue = Histogram("kogata:request_queue_time_seconds", "Time a request waited for a decode slot.", LABELS, buckets=_LATENCY, registry=r)
        self.prompt_hist = Histogram("kogata:request_prompt_tokens", "Prompt tokens per request.", LABELS, buckets=_TOKENS, registry=r)
        self.gen_hist = Histogram("kogata:request_generation_tokens", "Generated tokens per request.", LABELS, buckets=_TOKENS, registry=r)
        self.prompt_tokens = Counter("kogata:prompt_tokens", "Prefill tokens processed.", LABELS, registry=r)
        self.generation_tokens = Counter("kogata:generation_tokens", "Tokens generated.", LABELS, registry=r)
        self.success = Counter("kogata:request_success", "Finished generation requests by finish reason.", LABELS + ("finished_reason",), registry=r)
        self.requests = Counter("kogata:http_requests", "HTTP requests by route and status code.", ("route", "status", "key_name"), registry=r)
        self.guard = Counter("kogata:guard_hits", "Guard checks that fired, by where they ran and their action.",
                             ("model_name", "check", "where", "action"), registry=r)
        self.drift_effect = Gauge("kogata:drift_effect", "Each drift signal's effect size on the last monitored window.",
                                  ("signal",), registry=r)
        self.drift_threshold = Gauge("kogata:drift_threshold", "The effect size at which the signal alerts.", ("signal",), registry=r)
        self.drift_p_value = Gauge("kogata:drift_p_value", "The signal's test p-value on the last window.", ("signal",), registry=r)
        self.drift_alert = Gauge("kogata:drift_alert", "1 while the signal alerts.", ("signal",), registry=r)
        self.drift_window = Gauge("kogata:drift_window_requests", "Requests in the last monitored window.", registry=r)
        if engine_stats is not None:
            r.register(_EngineGauges(engine_stats))

    def observe_generation(self, labels: dict[str, str], *, prompt_tokens: int, completion_tokens: int,
                           finish_reason: str | None, ttft_s: float | None, token_gaps: list[float], e2e_s: float,
                           queue_s: float | None) -> None:
        lv = (labels["model_name"], labels["artifact_id"], labels["key_name"])
        self.prompt_tokens.labels(*lv).inc(prompt_tokens)
        self.generation_tokens.labels(*lv).inc(completion_tokens)
        self.prompt_hist.labels(*lv).observe(prompt_tokens)
        self.gen_hist.labels(*lv).observe(completion_tokens)
        self.success.labels(*lv, finish_reason or "unknown").inc()
        if ttft_s is not None:
            self.ttft.labels(*lv).observe(ttft_s)
        if token_gaps:
            h = self.itl.labels(*lv)
            for gap in token_gaps:
                h.observe(gap)
        self.e2e.labels(*lv).observe(e2e_s)
        if queue_s is not None:
            self.queue.labels(*lv).observe(queue_s)

    def observe_guard(self, alias: str, verdict: Any) -> None:
        """Count the fired checks of a guard verdict (anything with ``where`` and ``fired()``)."""
        fired = getattr(verdict, "fired", None)
        if not callable(fired):
            return
        for r in fired():
            self.guard.labels(alias, r.check, getattr(verdict, "where", "-"), r.action).inc()

    def set_drift(self, report: Any) -> None:
        """Publish a :class:`kogata.ops.drift.DriftReport`'s signals as gauges."""
        self.drift_window.set(report.n)
        for s in report.signals:
            self.drift_alert.labels(s.name).set(1.0 if s.alert else 0.0)
            for gauge, v in ((self.drift_effect, s.effect), (self.drift_threshold, s.threshold), (self.drift_p_value, s.p_value)):
                if v is not None:
                    gauge.labels(s.name).set(v)

    def observe_http(self, route: str, status: int, key_name: str) -> None:
        self.requests.labels(route, str(status), key_name).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def labels_for(alias: str, artifact_id: str, key_name: str | None) -> dict[str, Any]:
    return {"model_name": alias, "artifact_id": artifact_id, "key_name": key_name or "-"}
