"""The decision: Pareto front over quality, latency, memory and cost; the cheapest candidate that passes
every KPI *and* keeps the baseline's quality (a non-inferiority test on the paired difference, see
:mod:`kogata.eval.noninferiority`), with its margins and quality deltas; or, when nothing passes, the
closest miss and what to try. Anything a reader must know (thin evidence, unconfirmed finalists) goes into
``notes`` as ``{"key", "params"}`` that the report renders through its en/ja catalog."""

from __future__ import annotations

import math
from typing import Any

from kogata.eval.metrics import lower_is_better
from kogata.eval.noninferiority import metric_value, primary_metric, quality_gate

OBJECTIVES = (("quality_kept", +1), ("latency_p95_ms", -1), ("peak_rss_mb", -1), ("compute_cost_per_month", -1))


def quality_kept(entry: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float]:
    """Per task: the candidate's primary metric relative to the baseline's (1.0 = all kept; inverted for perplexity)."""
    out = {}
    for name, task in (entry.get("quality") or {}).items():
        base_task = (baseline.get("quality") or {}).get(name)
        metric = primary_metric(task)
        if base_task is None or metric is None:
            continue
        v, b = metric_value(task, metric), metric_value(base_task, metric)
        if v is None or b is None:
            continue
        if lower_is_better(metric):
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
                         "better": (delta < 0) if lower_is_better(metric) else (delta > 0)})
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


def label(e: dict[str, Any]) -> str:
    return (e.get("candidate") or {}).get("label") or e["artifact"].get("name") or e["key"]


def _evidence_notes(entries: list[dict[str, Any]], gates: dict[str, dict[str, Any]], best: dict[str, Any] | None,
                    baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Notes for KPI-passing candidates the quality test could not settle (or found worse), cheaper than the pick."""
    notes = []
    other = label(best) if best is not None else label(baseline)
    for e in entries:
        if e is best or e["key"] == baseline["key"] or e.get("verdict") != "PASS" or e["key"] not in gates:
            continue
        if best is not None and _cost_key(e) > _cost_key(best) and (e["artifact"].get("bytes") or 0) >= (best["artifact"].get("bytes") or 0):
            continue  # dearer and no smaller than the pick: nothing to regret
        for t in gates[e["key"]]["tasks"]:
            p = {"candidate": label(e), "other": other, "task": t["task"], "metric": t["metric"], "n": t["n"],
                 "low": round(t["ci_low"], 4), "high": round(t["ci_high"], 4), "margin": t["margin"], "relative": t["relative"]}
            if t["verdict"] == "unclear" and t.get("items_needed"):
                notes.append({"key": "note_needs_items", "params": {**p, "needed": t["items_needed"], "more": t["items_needed"] - t["n"]}})
            elif t["verdict"] == "unclear":
                notes.append({"key": "note_cannot_show_kept", "params": p})
            elif t["verdict"] == "worse":
                notes.append({"key": "note_quality_lost", "params": p})
    return notes


def decide(entries: list[dict[str, Any]], baseline_key: str, margins: dict[str, float] | None = None) -> dict[str, Any]:
    by_key = {e["key"]: e for e in entries}
    baseline = by_key[baseline_key]
    ok = {k: e for k, e in by_key.items() if e.get("status") == "ok"}
    points = {k: objectives(e, baseline) for k, e in ok.items()}
    gates = {k: quality_gate(e, baseline, margins) for k, e in ok.items()}
    front = pareto_front(points)
    passing = [e for e in entries if e.get("verdict") == "PASS" and gates.get(e["key"], {}).get("verdict") == "kept"]
    decision: dict[str, Any] = {"baseline": baseline_key, "pareto": front, "objectives": points, "recommended": None,
                                "quality_gates": gates, "margins_used": margins or {}, "notes": []}
    best = cheapest(passing) if passing else None
    decision["notes"] = _evidence_notes(entries, gates, best, baseline)
    if best is not None:
        decision["recommended"] = best["key"]
        decision["margins"] = best["kpi"]["gates"]
        decision["quality_deltas"] = quality_deltas(best, baseline)
        decision["quality_kept"] = quality_kept(best, baseline)
        kept = decision["quality_kept"]
        decision["risks"] = sorted(({"task": t, "kept": v} for t, v in kept.items() if v < 0.98), key=lambda r: r["kept"])
        if best.get("confirmed") is False:
            n = max((t.get("n") or 0 for t in (best.get("quality") or {}).values()), default=0)
            decision["notes"].append({"key": "note_not_confirmed", "params": {"candidate": label(best), "n": n}})
        return decision
    misses = []
    for e in entries:
        for g in (e.get("kpi") or {}).get("gates", []):
            if not g["pass"] and g.get("margin_pct") is not None:
                misses.append({"entry": e["key"], "label": label(e), "metric": g["metric"], "op": g["op"],
                               "threshold": g["threshold"], "value": g["value"], "short_pct": -g["margin_pct"]})
    closest = min(misses, key=lambda m: m["short_pct"]) if misses else None
    decision["closest_miss"] = closest
    decision["next_steps"] = next_steps(closest, any(n["key"] == "note_needs_items" for n in decision["notes"]))
    return decision


def next_steps(miss: dict[str, Any] | None, thin_evidence: bool = False) -> list[dict[str, Any]]:
    """What to try next, as catalog keys with parameters (the report words them in the project's language)."""
    steps: list[dict[str, Any]] = []
    if thin_evidence:
        steps.append({"key": "next_more_items", "params": {}})
    if miss is None:
        return steps or [{"key": "next_check_errors", "params": {}}]
    if "." in miss["metric"]:  # a quality gate
        return steps + [{"key": "next_gentler", "params": {}}, {"key": "next_finetune", "params": {}},
                        {"key": "next_check_kpi", "params": {"metric": miss["metric"], "op": miss["op"], "threshold": miss["threshold"]}}]
    return steps + [{"key": "next_harder", "params": {}}, {"key": "next_threads", "params": {}}]
