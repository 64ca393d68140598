"""Is a candidate's quality *kept*? A non-inferiority test on the paired difference to the baseline.

Per task, on its primary metric, we estimate the improvement of the candidate over the baseline,
``(candidate − baseline)`` for higher-is-better scores (absolute) and ``(baseline − candidate) / baseline``
for lower-is-better ones such as bits/byte (relative), with a 95% interval:

* paired (the default): items are matched by id and the same bootstrap resamples are applied to both, so
  the interval reflects how the *difference* varies, not each score on its own (much narrower on the same
  items);
* independent samples (fallback when per-item scores are missing): ``±1.96·√(se_c² + se_b²)``.

Quality is **kept** when the lower bound is above ``−margin``; **worse** when the upper bound is below it;
otherwise the evidence is too thin (**unclear**), and we estimate from the spread how many items would settle
it. Margins: 0.05 absolute for score metrics, 2% relative for bits/byte and perplexities (project key
``quality_margins`` per task).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from kogata.eval.metrics import lower_is_better
from kogata.eval.tasks import primary_metric as primary_of_type

RESAMPLES = 2000
SEED = 20240611
Z = 1.96
DEFAULT_ABS_MARGIN = 0.05  # accuracy-like scores in [0, 1]: lose at most 5 points
DEFAULT_REL_MARGIN = 0.02  # bits/byte, perplexity: at most 2% worse
PERPLEXITY_DENOMINATORS = {"bits_per_byte": "n_bytes", "token_perplexity": "n_tokens", "word_perplexity": "n_words"}


def primary_metric(task: dict[str, Any]) -> str | None:
    """The metric a task result (results.json ``quality[task]``) is compared on: its task type's ``primary``."""
    return primary_of_type(task.get("type", ""), task.get("metrics") or {})


def metric_value(task: dict[str, Any], metric: str) -> float | None:
    v = (task.get("metrics") or {}).get(metric)
    v = v.get("value") if isinstance(v, dict) else v
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def margin_for(task: str, metric: str, margins: dict[str, float] | None) -> tuple[float, bool]:
    """(margin, relative?) for ``task``'s ``metric``: the project's ``quality_margins`` or the default."""
    relative = lower_is_better(metric)
    given = (margins or {}).get(f"{task}.{metric}", (margins or {}).get(task))
    return (float(given) if given is not None else (DEFAULT_REL_MARGIN if relative else DEFAULT_ABS_MARGIN)), relative


# ---- the statistic of one side, per bootstrap resample --------------------------------------------
def _statistic(per_item: dict[str, list], metric: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function from resample index arrays (R × n) to the metric on each resample, or None if unusable."""
    if metric in PERPLEXITY_DENOMINATORS:
        lp, den = per_item.get("logprob"), per_item.get(PERPLEXITY_DENOMINATORS[metric]) or per_item.get(metric)
        if lp is None or den is None:
            return None
        lp_a, den_a = np.asarray(lp, dtype=np.float64), np.asarray(den, dtype=np.float64)
        if metric == "bits_per_byte":
            return lambda idx: -lp_a[idx].sum(axis=-1) / (den_a[idx].sum(axis=-1) * math.log(2))
        return lambda idx: np.exp(-lp_a[idx].sum(axis=-1) / den_a[idx].sum(axis=-1))
    scores = per_item.get(metric)
    if scores is None:
        return None
    arr = np.asarray(scores, dtype=np.float64)
    return lambda idx: arr[idx].mean(axis=-1)


def _aligned(cand: dict[str, list], base: dict[str, list]) -> tuple[list[int], list[int]]:
    """Positions of the items both sides scored, matched by id (in the baseline's order)."""
    where = {str(i): k for k, i in enumerate(cand.get("id") or [])}
    bi, ci = [], []
    for k, i in enumerate(base.get("id") or []):
        if str(i) in where:
            bi.append(k)
            ci.append(where[str(i)])
    return ci, bi


def _subset(per_item: dict[str, list], positions: list[int]) -> dict[str, list]:
    return {k: [v[p] for p in positions] for k, v in per_item.items() if isinstance(v, list) and len(v) > max(positions, default=-1)}


def paired_difference(cand_task: dict[str, Any], base_task: dict[str, Any], metric: str, relative: bool) -> dict[str, Any] | None:
    """Bootstrap over the matched items of the improvement (see module doc); None without usable per-item data."""
    cp, bp = cand_task.get("per_item"), base_task.get("per_item")
    if not cp or not bp:
        return None
    ci, bi = _aligned(cp, bp)
    n = len(ci)
    if n < 2:
        return None
    c_stat, b_stat = _statistic(_subset(cp, ci), metric), _statistic(_subset(bp, bi), metric)
    if c_stat is None or b_stat is None:
        return None
    sign = -1.0 if lower_is_better(metric) else 1.0
    full = np.arange(n)[None, :]
    c0, b0 = float(c_stat(full)[0]), float(b_stat(full)[0])
    idx = np.random.default_rng(SEED).integers(0, n, size=(RESAMPLES, n))
    c_rep, b_rep = c_stat(idx), b_stat(idx)
    if relative:
        if b0 == 0:
            return None
        est, reps = sign * (c0 - b0) / abs(b0), sign * (c_rep - b_rep) / np.abs(b_rep)
    else:
        est, reps = sign * (c0 - b0), sign * (c_rep - b_rep)
    reps = reps[np.isfinite(reps)]
    low, high = (float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))) if reps.size else (est, est)
    se = float(reps.std(ddof=1)) if reps.size > 1 else 0.0
    return {"method": "paired", "n": n, "baseline": b0, "value": c0, "improvement": est, "ci_low": low, "ci_high": high, "se": se}


def independent_difference(cand_task: dict[str, Any], base_task: dict[str, Any], metric: str, relative: bool) -> dict[str, Any] | None:
    c, b = (cand_task.get("metrics") or {}).get(metric), (base_task.get("metrics") or {}).get(metric)
    cv, bv = metric_value(cand_task, metric), metric_value(base_task, metric)
    if cv is None or bv is None or not isinstance(c, dict) or not isinstance(b, dict):
        return None
    sign = -1.0 if lower_is_better(metric) else 1.0
    se = math.sqrt((c.get("stderr") or 0.0) ** 2 + (b.get("stderr") or 0.0) ** 2)
    est = sign * (cv - bv)
    if relative:
        if bv == 0:
            return None
        est, se = est / abs(bv), se / abs(bv)
    n = min(int(c.get("n") or 0), int(b.get("n") or 0))
    return {"method": "independent", "n": n, "baseline": bv, "value": cv, "improvement": est,
            "ci_low": est - Z * se, "ci_high": est + Z * se, "se": se}


def items_needed(d: dict[str, Any], margin: float) -> int | None:
    """Items for the lower bound to clear ``−margin`` if the estimate and per-item spread stay as they are
    (None when the estimate itself is not above ``−margin``: more items would not show it is kept)."""
    gap = d["improvement"] + margin
    if gap <= 0 or d["n"] < 1:
        return None
    if d["se"] <= 0:
        return d["n"]
    sd = d["se"] * math.sqrt(d["n"])  # per-item standard deviation of the difference
    return max(d["n"], math.ceil((Z * sd / gap) ** 2))


def task_verdict(name: str, cand_task: dict[str, Any], base_task: dict[str, Any], margins: dict[str, float] | None) -> dict[str, Any] | None:
    metric = primary_metric(base_task)
    if metric is None or metric not in (cand_task.get("metrics") or {}):
        return None
    margin, relative = margin_for(name, metric, margins)
    d = paired_difference(cand_task, base_task, metric, relative) or independent_difference(cand_task, base_task, metric, relative)
    if d is None:
        return None
    if d["ci_low"] > -margin:
        verdict = "kept"
    elif d["ci_high"] < -margin:
        verdict = "worse"
    else:
        verdict = "unclear"
    out = {"task": name, "metric": metric, "margin": margin, "relative": relative, "verdict": verdict, **d}
    if verdict == "unclear":
        out["items_needed"] = items_needed(d, margin)
    return out


def quality_gate(entry: dict[str, Any], baseline: dict[str, Any], margins: dict[str, float] | None = None) -> dict[str, Any]:
    """Every task's non-inferiority verdict, and the candidate's: kept (all kept), worse (any worse), unclear."""
    tasks = []
    for name, base_task in (baseline.get("quality") or {}).items():
        cand_task = (entry.get("quality") or {}).get(name)
        if cand_task is None:
            continue
        v = task_verdict(name, cand_task, base_task, margins)
        if v is not None:
            tasks.append(v)
    verdicts = {t["verdict"] for t in tasks}
    overall = "worse" if "worse" in verdicts else "unclear" if "unclear" in verdicts else "kept"
    return {"verdict": overall, "tasks": tasks}
