"""KPI gates: the suite's ``kpis: {min: {...}, max: {...}}`` checked against one entry's metrics.

Quality metrics are named ``<task>.<metric>`` (``faq_qa.f1``); efficiency and cost metrics are bare names
(``latency_p95_ms``, ``cost_per_month``). A KPI naming a metric nothing produces is an error raised before
any model is loaded (:func:`validate_kpis`), listing the names that exist.
"""

from __future__ import annotations

from typing import Any

from kogata.core.errors import KogataError
from kogata.eval.metrics import metric_names
from kogata.eval.tasks import produced_metrics

EFFICIENCY_METRICS = metric_names("efficiency")  # measured by the efficiency probe (registered in eval.metrics)
COST_METRICS = metric_names("cost")  # from the price profile and the measured throughput
OPS = {"min": ">=", "max": "<="}


def task_metric_names(task: Any) -> list[str]:
    """The metrics one declared task will produce (from the task type registry; generate: its ``metrics``)."""
    return produced_metrics(task)


def available_metric_names(suite: Any) -> list[str]:
    """Every name a KPI may use for this suite."""
    names = [f"{t.name}.{m}" for t in suite.tasks for m in task_metric_names(t)]
    return names + list(EFFICIENCY_METRICS) + list(COST_METRICS)


def _kpi_items(kpis: dict[str, Any] | None) -> list[tuple[str, str, float]]:
    """``[(kind, metric, threshold)]`` with kind ``min`` or ``max``; validates the shape."""
    if not kpis:
        return []
    if not isinstance(kpis, dict):
        raise KogataError("kpis must be a mapping with `min` and/or `max`", "e.g. kpis: {min: {faq_qa.f1: 0.3}, max: {latency_p95_ms: 4000}}")
    bad = sorted(set(kpis) - set(OPS))
    if bad:
        raise KogataError(f"unknown KPI section(s) {', '.join(bad)}", "KPIs go under `min:` (at least) or `max:` (at most)")
    items = []
    for kind in ("min", "max"):
        for metric, threshold in (kpis.get(kind) or {}).items():
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise KogataError(f"KPI {kind}.{metric} needs a number, got {threshold!r}", "write e.g. `faq_qa.f1: 0.3`")
            items.append((kind, str(metric), float(threshold)))
    return items


def validate_kpis(kpis: dict[str, Any] | None, available: list[str]) -> None:
    """Raise :class:`KogataError` if a KPI names a metric that no task or probe produces."""
    unknown = [m for _, m, _ in _kpi_items(kpis) if m not in available]
    if unknown:
        raise KogataError(
            f"KPI names unknown metric(s): {', '.join(unknown)}",
            f"available: {', '.join(available)}",
        )


def flat_metrics(quality: dict[str, Any] | None, efficiency: dict[str, Any] | None, cost: dict[str, Any] | None) -> dict[str, float | None]:
    """One flat ``name -> value`` dict of an entry's metrics (the names KPIs use)."""
    out: dict[str, float | None] = {}
    for task, res in (quality or {}).items():
        for metric, val in (res.get("metrics") or {}).items():
            out[f"{task}.{metric}"] = val.get("value") if isinstance(val, dict) else val
    for name, val in ((efficiency or {}).get("metrics") or {}).items():
        out[name] = val
    for name in COST_METRICS:
        if cost and cost.get(name) is not None:
            out[name] = cost[name]
    return out


def check_kpis(kpis: dict[str, Any] | None, metrics: dict[str, float | None]) -> dict[str, Any]:
    """The verdict for one entry. A metric that was not measured fails its gate (value None)."""
    gates = []
    for kind, metric, threshold in _kpi_items(kpis):
        value = metrics.get(metric)
        if value is None or value != value:  # missing or NaN
            ok, margin = False, None
        elif kind == "min":
            ok, margin = value >= threshold, value - threshold
        else:
            ok, margin = value <= threshold, threshold - value
        gates.append(
            {
                "metric": metric,
                "op": OPS[kind],
                "threshold": threshold,
                "value": value,
                "pass": bool(ok),
                "margin": margin,  # positive = headroom, negative = how far it misses
                "margin_pct": (100.0 * margin / abs(threshold)) if margin is not None and threshold else None,
            }
        )
    failed = [g["metric"] for g in gates if not g["pass"]]
    return {"verdict": "FAIL" if failed else "PASS", "gates": gates, "failed": failed}
