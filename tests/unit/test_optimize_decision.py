"""The optimize decision on synthetic inputs (no model): non-inferiority on paired differences, a candidate
placed exactly at a gate, the items a thin comparison would need, and the busy-machine helpers."""

from __future__ import annotations

import os

import pytest

from kogata.core.machine import Contention, free_threads, measure_contention
from kogata.eval.noninferiority import items_needed, paired_difference, quality_gate, task_verdict
from kogata.optimize.decide import decide

IDS = [f"i{k}" for k in range(20)]


def _acc_task(scores, ids=IDS, stderr=None):
    n = len(scores)
    mean = sum(scores) / n
    sd = (sum((s - mean) ** 2 for s in scores) / (n - 1)) ** 0.5
    return {"type": "multiple_choice", "n": n, "per_item": {"id": list(ids), "acc": list(scores)},
            "metrics": {"acc": {"value": mean, "stderr": stderr if stderr is not None else sd / n ** 0.5, "n": n}}}


def _bpb_task(logprobs, n_bytes):
    import math

    value = -sum(logprobs) / (sum(n_bytes) * math.log(2))
    return {"type": "perplexity", "n": len(logprobs), "per_item": {"id": IDS[: len(logprobs)], "logprob": logprobs, "n_bytes": n_bytes},
            "metrics": {"bits_per_byte": {"value": value, "stderr": 0.05, "n": len(logprobs)}}}


def _entry(key, quality, cost, nbytes, verdict="PASS", label=None):
    return {"key": key, "status": "ok", "verdict": verdict, "artifact": {"bytes": nbytes, "name": key},
            "candidate": {"label": label or key}, "quality": quality,
            "metrics": {"latency_p95_ms": 10, "peak_rss_mb": 10},
            "cost": {"cost_per_month": cost, "compute_cost_per_month": cost / 2}, "kpi": {"gates": [], "failed": []}}


BASE = [1] * 7 + [0] * 13  # baseline acc 0.35 on 20 items


def test_candidate_at_the_gate_is_not_recommended_on_thin_evidence():
    # Q4_0 sits exactly at a 0.25 accuracy gate (its KPI passes) and differs from the baseline on 6 of 20
    # items: 1 better, 3 worse. Its paired interval straddles −0.05, so it must not be recommended; Q8_0
    # (same answers as the baseline) keeps quality and is recommended, and the notes say how many items
    # it would take to tell Q4_0 from Q8_0.
    q4 = [0, 0, 0, 1, 1, 1, 1] + [1] + [0] * 12  # 5 of 20 = 0.25
    q8 = list(BASE)
    entries = [_entry("base", {"intent": _acc_task(BASE)}, 100, 1000, label="baseline (float)"),
               _entry("q8", {"intent": _acc_task(q8)}, 50, 500, label="Q8_0"),
               _entry("q4", {"intent": _acc_task(q4)}, 40, 300, label="Q4_0")]
    dec = decide(entries, "base")
    assert dec["quality_gates"]["q4"]["verdict"] == "unclear" and dec["quality_gates"]["q8"]["verdict"] == "kept"
    assert dec["recommended"] == "q8"
    note = next(n for n in dec["notes"] if n["params"]["candidate"] == "Q4_0")
    assert note["key"] == "note_cannot_show_kept"  # estimate −0.10 is below −0.05: more items would not help
    # the same number of answers right, but two different items (one lost, one gained): estimate 0, wide interval
    q4_swap = [0, 1, 1, 1, 1, 1, 1] + [1] + [0] * 12  # first item lost, eighth gained: same 0.35
    entries[2] = _entry("q4", {"intent": _acc_task(q4_swap)}, 40, 300, label="Q4_0")
    dec = decide(entries, "base")
    note = next(n for n in dec["notes"] if n["params"]["candidate"] == "Q4_0")
    assert note["key"] == "note_needs_items" and note["params"]["other"] == "Q8_0" and note["params"]["more"] > 0
    assert dec["recommended"] == "q8"


def test_items_needed_is_enough_when_the_pattern_repeats():
    base = [1, 0, 1, 1, 0] * 4
    cand = [0, 1, 1, 1, 0] * 4  # one lost, one gained in every five items: no difference on average
    v = task_verdict("t", _acc_task(cand), _acc_task(base), None)
    assert v["verdict"] == "unclear" and v["method"] == "paired"
    need = v["items_needed"]
    assert need > 20
    reps = -(-need // 5)
    ids = [f"i{k}" for k in range(5 * reps)]
    bigger = task_verdict("t", _acc_task(cand[:5] * reps, ids), _acc_task(base[:5] * reps, ids), None)
    assert bigger["verdict"] == "kept", (need, bigger)


def test_paired_interval_is_narrower_than_independent_and_used_when_ids_match():
    base = [1] * 10 + [0] * 10
    cand = [1] * 9 + [0] * 11  # one item lost
    paired = paired_difference(_acc_task(cand), _acc_task(base), "acc", relative=False)
    assert paired["method"] == "paired" and paired["ci_high"] == pytest.approx(0.0) and paired["ci_low"] < -0.04
    no_items = _acc_task(cand)
    del no_items["per_item"]
    independent = task_verdict("t", no_items, _acc_task(base), None)
    assert independent["method"] == "independent"
    assert independent["ci_high"] - independent["ci_low"] > 3 * (paired["ci_high"] - paired["ci_low"])
    # items are paired by id, not by position: shuffled candidate order gives the same answer
    order = list(reversed(range(20)))
    shuffled = _acc_task([cand[i] for i in order], [IDS[i] for i in order])
    again = paired_difference(shuffled, _acc_task(base), "acc", relative=False)
    assert again["improvement"] == pytest.approx(paired["improvement"])


def test_bits_per_byte_uses_a_relative_margin():
    lp = [-100.0 - 3 * k for k in range(20)]
    nb = [120 + 5 * k for k in range(20)]
    base = _bpb_task(lp, nb)
    slightly = _bpb_task([x * 1.01 for x in lp], nb)  # 1% worse on every document
    clearly = _bpb_task([x * 1.05 for x in lp], nb)  # 5% worse
    assert quality_gate({"quality": {"docs": slightly}}, {"quality": {"docs": base}})["verdict"] == "kept"
    assert quality_gate({"quality": {"docs": clearly}}, {"quality": {"docs": base}})["verdict"] == "worse"
    g = quality_gate({"quality": {"docs": clearly}}, {"quality": {"docs": base}}, {"docs": 0.10})  # project margin 10%
    assert g["verdict"] == "kept" and g["tasks"][0]["margin"] == 0.10 and g["tasks"][0]["relative"]


def test_items_needed_none_when_the_estimate_is_beyond_the_margin():
    assert items_needed({"improvement": -0.2, "n": 20, "se": 0.05}, 0.05) is None
    assert items_needed({"improvement": 0.0, "n": 20, "se": 0.05}, 0.05) == 77  # (1.96 · 0.05·√20 / 0.05)²


def test_the_compared_metric_is_the_task_types_own_primary(monkeypatch):
    # the decision asks the task-type registry, so a new task type needs no edit in optimize/
    from kogata.eval.noninferiority import primary_metric
    from kogata.eval.tasks import TASK_TYPES

    class _Fake:
        primary = ("acc_norm", "acc")

    monkeypatch.setitem(TASK_TYPES, "fake_choice", _Fake)
    assert primary_metric({"type": "fake_choice", "metrics": {"acc": {}, "acc_norm": {}}}) == "acc_norm"
    assert primary_metric({"type": "perplexity", "metrics": {"token_perplexity": {}, "word_perplexity": {}, "bits_per_byte": {}}}) == "bits_per_byte"
    assert primary_metric({"type": "generate", "metrics": {"exact_match": {}, "f1": {}}}) == "f1"
    assert primary_metric({"type": "unknown", "metrics": {"x": {}, "y": {}}}) == "x" and primary_metric({"type": "generate"}) is None


def test_nothing_passes_gives_structured_next_steps():
    entries = [_entry("base", {"intent": _acc_task(BASE)}, 100, 1000, verdict="FAIL")]
    entries[0]["kpi"]["gates"] = [{"metric": "intent.acc", "op": ">=", "threshold": 0.5, "value": 0.35, "pass": False, "margin_pct": -30.0}]
    dec = decide(entries, "base")
    assert dec["recommended"] is None and dec["closest_miss"]["metric"] == "intent.acc"
    assert [s["key"] for s in dec["next_steps"]] == ["next_gentler", "next_finetune", "next_check_kpi"]


def test_free_threads_leaves_taken_cores_alone():
    two_taken = Contention(seconds=1, cores=[0, 1, 2, 3], busy=[0.9, 0.95, 0.1, 0.0], taken=[0, 1])
    assert two_taken.contended and two_taken.free_cores == 2 and two_taken.busy_cores == pytest.approx(1.95)
    assert free_threads(4, two_taken) == 2 and free_threads(1, two_taken) == 1
    all_taken = Contention(seconds=1, cores=[0, 1], busy=[1.0, 1.0], taken=[0, 1])
    assert free_threads(2, all_taken) == 1  # never zero
    assert not Contention(seconds=1, cores=[0, 1], busy=[0.1, 0.2]).contended


def test_measure_contention_reports_every_usable_core():
    c = measure_contention(0.2)
    assert c.cores == sorted(os.sched_getaffinity(0))
    assert len(c.busy) == len(c.cores) and all(0.0 <= b <= 1.0 for b in c.busy)
    assert set(c.taken) <= set(c.cores) and c.to_dict()["usable_cores"] == len(c.cores)
