"""The decision: Pareto front over quality, latency, memory and cost; the cheapest candidate that passes
every KPI, with its margins and quality deltas; or, when nothing passes, the closest miss and what to try."""

from __future__ import annotations

import math
from typing import Any

PRIMARY = {"generate": ("f1", "rouge_l", "accuracy", "exact_match"), "multiple_choice": ("acc", "acc_norm"),
           "perplexity": ("bits_per_byte",)}
LOWER_IS_BETTER = {"bits_per_byte", "token_perplexity", "word_perplexity"}
OBJECTIVES = (("quality_kept", +1), ("latency_p95_ms", -1), ("peak_rss_mb", -1), ("compute_cost_per_month", -1))


def primary_metric(task: dict[str, Any]) -> str | None:
    metrics = task.get("metrics") or {}
    return next((m for m in PRIMARY.get(task.get("type", ""), ()) if m in metrics), next(iter(metrics), None))


def _value(task: dict[str, Any], metric: str) -> float | None:
    v = (task.get("metrics") or {}).get(metric)
    return v.get("value") if isinstance(v, dict) else v


def quality_kept(entry: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Per task: the candidate's primary metric relative to the baseline's (1.0 = all kept; inverted for perplexity)."""
    out = {}
    for name, task in (entry.get("quality") or {}).items():
        base_task = (baseline.get("quality") or {}).get(name)
        metric = primary_metric(task)
        if base_task is None or metric is None:
            continue
        v, b = _value(task, metric), _value(base_task, metric)
        if v is None or b is None or not math.isfinite(v) or not math.isfinite(b):
            continue
        if metric in LOWER_IS_BETTER:
            out[name] = b / v if v > 0 else 0.0
        else:
            out[name] = v / b if b > 0 else (1.0 if v >= b else 0.0)
    return out


def quality_deltas(entry: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Every task metric: candidate − baseline with a 95% interval (independent-samples approximation)."""
    rows = []
    for name, task in (entry.get("quality") or {}).items():
        base_task = (baseline.get("quality") or {}).get(name) or {}
        for metric, val in (task.get("metrics") or {}).items():
            bval = (base_task.get("metrics") or {}).get(metric)
            if not isinstance(val, dict) or not isinstance(bval, dict) or val.get("value") is None or bval.get("value") is None:
                continue
            se = math.sqrt((val.get("stderr") or 0.0) ** 2 + (bval.get("stderr") or 0.0) ** 2)
            delta = val["value"] - bval["value"]
            rows.append({"task": name, "metric": metric, "baseline": bval["value"], "value": val["value"], "delta": delta,
                         "ci_low": delta - 1.96 * se, "ci_high": delta + 1.96 * se,
                         "better": (delta < 0) if metric in LOWER_IS_BETTER else (delta > 0)})
    return rows


def objectives(entry: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    kept = quality_kept(entry, baseline)
    m = entry.get("metrics") or {}
    return {
        "quality_kept": (sum(kept.values()) / len(kept)) if kept else None,
        "latency_p95_ms": m.get("latency_p95_ms"),
        "peak_rss_mb": m.get("peak_rss_mb"),
        "compute_cost_per_month": (entry.get("cost") or {}).get("compute_cost_per_month"),
    }


def pareto_front(points: dict[str, dict[str, float | None]]) -> list[str]:
    """Keys not dominated on every objective (missing values make a point unrankable: it is left out)."""
    usable = {k: p for k, p in points.items() if all(p.get(o) is not None for o, _ in OBJECTIVES)}

    def dominates(a: dict[str, float], b: dict[str, float]) -> bool:
        ge = all(sign * a[o] >= sign * b[o] for o, sign in OBJECTIVES)
        gt = any(sign * a[o] > sign * b[o] for o, sign in OBJECTIVES)
        return ge and gt

    return [k for k, p in usable.items() if not any(dominates(q, p) for j, q in usable.items() if j != k)]


def _cost_key(e: dict[str, Any]) -> tuple:
    c = e.get("cost") or {}
    m = e.get("metrics") or {}
    inf = float("inf")
    return (c.get("cost_per_month", inf), c.get("compute_cost_per_month", inf), m.get("latency_p95_ms") or inf,
            e["artifact"].get("bytes") or inf)


def cheapest(passing: list[dict[str, Any]], tie: float = 0.05) -> dict[str, Any]:
    """Lowest monthly cost; among those, compute costs within ``tie`` (measurement noise) count as equal and
    the smaller artifact wins."""
    first = min(passing, key=_cost_key)
    month = (first.get("cost") or {}).get("cost_per_month")
    same = [e for e in passing if (e.get("cost") or {}).get("cost_per_month") == month]
    compute = (first.get("cost") or {}).get("compute_cost_per_month")
    if compute is None:
        return first
    close = [e for e in same if ((e.get("cost") or {}).get("compute_cost_per_month") or float("inf")) <= compute * (1 + tie)]
    return min(close, key=lambda e: (e["artifact"].get("bytes") or float("inf"), _cost_key(e)))


def decide(entries: list[dict[str, Any]], baseline_key: str) -> dict[str, Any]:
    by_key = {e["key"]: e for e in entries}
    baseline = by_key[baseline_key]
    points = {k: objectives(e, baseline) for k, e in by_key.items() if e.get("status") == "ok"}
    front = pareto_front(points)
    passing = [e for e in entries if e.get("verdict") == "PASS"]
    decision: dict[str, Any] = {"baseline": baseline_key, "pareto": front, "objectives": points, "recommended": None}
    if passing:
        best = cheapest(passing)
        decision["recommended"] = best["key"]
        decision["margins"] = best["kpi"]["gates"]
        decision["quality_deltas"] = quality_deltas(best, baseline)
        decision["quality_kept"] = quality_kept(best, baseline)
        kept = decision["quality_kept"]
        decision["risks"] = sorted(({"task": t, "kept": v} for t, v in kept.items() if v < 0.98), key=lambda r: r["kept"])
        return decision
    misses = []
    for e in entries:
        for g in (e.get("kpi") or {}).get("gates", []):
            if not g["pass"] and g.get("margin_pct") is not None:
                misses.append({"entry": e["key"], "metric": g["metric"], "op": g["op"], "threshold": g["threshold"],
                               "value": g["value"], "short_pct": -g["margin_pct"]})
    closest = min(misses, key=lambda m: m["short_pct"]) if misses else None
    decision["closest_miss"] = closest
    decision["next_steps"] = next_steps(closest)
    return decision


def next_steps(miss: dict[str, Any] | None) -> list[str]:
    if miss is None:
        return ["no candidate was measured: check the errors in the candidate table"]
    metric = miss["metric"]
    if "." in metric:  # a quality gate
        return ["try a gentler quantization (Q8_0) or keep more layers",
                "add LoRA fine-tuning on your own examples (search.lora) or distillation time",
                f"or check whether the KPI {metric} {miss['op']} {miss['threshold']} is realistic for this model size"]
    return ["try harder compression (Q4_K_M / Q4_0, trim-vocab on your data, prune_depth)",
            "measure with more threads, or relax the KPI if the business allows"]
