"""Evaluation: tasks and suites (quality), metrics with confidence intervals, efficiency, cost, KPI verdicts.

Entry points: :func:`kogata.eval.suite.load_suite`, :func:`kogata.eval.quality.evaluate_quality`,
:func:`kogata.eval.run.run_eval` / :func:`kogata.eval.run.run_entry`, :func:`kogata.eval.results.score_entry`.
Registries: task types (:data:`kogata.eval.tasks.TASK_TYPES`), metrics (:data:`kogata.eval.metrics.METRICS`),
price profiles (:func:`kogata.eval.cost.price_profiles`).
"""
