"""`kogata optimize` on a tiny model: search order and pruning, decision, report, resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kogata.artifacts.store import Store
from kogata.optimize.candidates import Candidate, skip_reason
from kogata.optimize.decide import cheapest, decide, pareto_front
from tests.cli_helpers import run_cli
from tests.tiny_project import make_project


def _err(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_search_skips_bigger_candidates_once_one_passes_and_writes_report(kogata_home, tmp_path, capsys, monkeypatch):
    # the float baseline (0.36 MiB) misses the disk gate, Q4_0 (0.07 MiB) meets it: a deterministic decision
    project = make_project(tmp_path / "p", kpis="kpis: {max: {peak_rss_mb: 100000, disk_mb: 0.2}}")
    code, out, err = run_cli(capsys, monkeypatch, "optimize", str(project))
    assert code == 0, err
    folder = tmp_path / "p" / "kogata-report"
    res = json.loads((folder / "results.json").read_text())
    cands = {c["label"]: c for c in res["optimize"]["candidates"]}
    assert cands["baseline (float)"]["status"] == "done"
    assert cands["Q4_0"]["status"] == "done"  # most aggressive first
    assert cands["Q8_0"]["status"] == "skipped" and "already passes" in cands["Q8_0"]["reason"]
    assert cands["Q8_0"]["reason_key"] == "reason_smaller_passes" and cands["Q8_0"]["reason_params"] == {"label": "Q4_0"}
    dec = res["optimize"]["decision"]
    rec = next(e for e in res["entries"] if e["key"] == dec["recommended"])
    assert rec["verdict"] == "PASS" and rec["candidate"]["label"] == "Q4_0"
    assert res["entries"][0]["verdict"] == "FAIL" and res["entries"][0]["kpi"]["failed"] == ["disk_mb"]
    assert rec["artifact"]["bytes"] < res["entries"][0]["artifact"]["bytes"]  # a smaller artifact is recommended
    html = (folder / "report.html").read_text()
    assert "Executive summary" in html and "Pareto" in html and "<script src=" not in html
    assert (folder / "summary.md").read_text().startswith("# kogata optimize")
    assert "report:" in out
    assert f"serve it: kogata serve --from {folder}" in out and rec["artifact"]["name"] in out  # the one command that serves it


def test_nothing_passes_names_the_closest_miss(kogata_home, tmp_path, capsys, monkeypatch):
    project = make_project(tmp_path / "p", kpis="kpis: {min: {intent.acc: 0.99}, max: {peak_rss_mb: 1}}", quantize="[Q8_0]")
    code, out, err = run_cli(capsys, monkeypatch, "optimize", str(project))
    assert code == 0, err
    res = json.loads((tmp_path / "p" / "kogata-report" / "results.json").read_text())
    dec = res["optimize"]["decision"]
    assert dec["recommended"] is None and dec["closest_miss"]["metric"] in ("intent.acc", "peak_rss_mb")
    assert dec["next_steps"]
    assert "no candidate meets every KPI" in out and "nothing to serve" in out


def test_kill_and_rerun_resumes_without_redoing(kogata_home, tmp_path):
    # No polling race: the CLI prints one line per event when stderr is not a terminal, written right after
    # the state row is committed; we block on that line (bounded) and kill -9 the moment it appears.
    import threading

    project = make_project(tmp_path / "p", quantize="[Q4_0, Q8_0]", kpis="kpis: {min: {intent.acc: 0.99}}")
    env = {**os.environ, "KOGATA_HOME": str(kogata_home)}
    cmd = [sys.executable, "-m", "kogata", "optimize", str(project)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    baseline_done = threading.Event()

    def watch() -> None:
        for line in proc.stderr:
            if line.startswith("✓ baseline (float)"):
                proc.kill()  # kill -9 right after the baseline finished
                baseline_done.set()
                return

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    finished = baseline_done.wait(timeout=300)
    if not finished:
        proc.kill()
    proc.wait(timeout=60)
    assert finished, "the baseline never finished"
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from kogata.optimize.state import CandidateRow

    with Session(Store().engine) as s:
        before = {r.key: r.duration_s for r in s.execute(select(CandidateRow)).scalars() if r.status == "done"}
    assert before, "the baseline row was not committed before its event"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming" in out.stderr
    with Session(Store().engine) as s:
        rows = {r.key: r for r in s.execute(select(CandidateRow)).scalars()}
    for key, duration in before.items():
        assert rows[key].duration_s == duration  # finished candidates were not redone
    assert all(r.status in ("done", "skipped") for r in rows.values())


def test_screening_then_confirming_finalists_on_all_items(kogata_home, tmp_path, capsys, monkeypatch):
    # screen on 2 items per task, confirm on all 3: the baseline and the pick are confirmed, the decision
    # carries the non-inferiority verdicts, and the paired test pairs the screened items with the confirmed ones
    project = make_project(tmp_path / "p", quantize="[Q8_0]", extra="screen_items: 2\nquality_margins: {intent: 0.5, faq: 0.5, docs: 0.5}\n")
    code, out, err = run_cli(capsys, monkeypatch, "optimize", str(project))
    assert code == 0, err
    res = json.loads((tmp_path / "p" / "kogata-report" / "results.json").read_text())
    assert res["settings"]["screen_items"] == 2 and res["settings"]["limit"] == 3
    assert res["machine"]["contention"]["threads_used"] >= 1
    base, q8 = res["entries"]
    assert base["confirmed"] is True and base["quality"]["faq"]["n"] == base["quality"]["intent"]["n"] == 3
    assert base["screen_quality"]["faq"]["n"] == base["screen_quality"]["intent"]["n"] == 2
    dec = res["optimize"]["decision"]
    gate = dec["quality_gates"][q8["key"]]
    assert {t["task"] for t in gate["tasks"]} == {"faq", "intent", "docs"}
    assert all(t["margin"] == 0.5 and t["method"] == "paired" for t in gate["tasks"])
    if dec["recommended"] == q8["key"]:
        assert q8["confirmed"] is True and gate["verdict"] == "kept"
    else:  # not picked: it missed a gate, or the timings of this (shared) machine made the baseline cheaper
        assert gate["verdict"] != "kept" or q8["verdict"] != "PASS" or (dec["recommended"] == base["key"] and cheapest([base, q8]) is base)


def test_store_edited_by_hand_is_reported(kogata_home, tmp_path, capsys, monkeypatch):
    project = make_project(tmp_path / "p", quantize="[Q4_0]")
    assert run_cli(capsys, monkeypatch, "optimize", str(project))[0] == 0
    res = json.loads((tmp_path / "p" / "kogata-report" / "results.json").read_text())
    Store().remove(res["entries"][1]["artifact"]["id"])
    code, out, err = run_cli(capsys, monkeypatch, "optimize", str(project))
    assert code == 2 and "changed by hand" in _err(err) and "--restart" in _err(err)
    code, out, err = run_cli(capsys, monkeypatch, "optimize", str(project), "--restart")
    assert code == 0, err


@pytest.mark.parametrize(
    "extra,kpis,needles",
    [
        ("budget_minuts: 3\n", None, ["budget_minuts", "did you mean 'budget_minutes'"]),
        ("", "kpis: {min: {faq.f2: 0.1}}", ["faq.f2", "available"]),
    ],
)
def test_bad_project(kogata_home, tmp_path, capsys, monkeypatch, extra, kpis, needles):
    kw = {"extra": extra} | ({"kpis": kpis} if kpis else {})
    project = make_project(tmp_path / "p", **kw)
    code, out, err = run_cli(capsys, monkeypatch, "optimize", str(project))
    assert code == 2
    for n in needles:
        assert n in _err(err)


def test_unknown_method_in_search_space(kogata_home, tmp_path, capsys, monkeypatch):
    project = make_project(tmp_path / "p")
    project.write_text(project.read_text().replace("  trim_vocab: {enabled: false}\n", "  distil: {enabled: true}\n"))
    code, _, err = run_cli(capsys, monkeypatch, "optimize", str(project))
    assert code == 2 and "distil" in _err(err) and "search" in _err(err)


def test_impossible_parameters(kogata_home, tmp_path, capsys, monkeypatch):
    project = make_project(tmp_path / "p", quantize="[Q9_Z]")
    code, _, err = run_cli(capsys, monkeypatch, "optimize", str(project))
    assert code == 2 and "Q9_Z" in _err(err)


def test_budget_too_small_for_the_baseline(kogata_home, tmp_path, capsys, monkeypatch):
    project = make_project(tmp_path / "p", budget=0.0001)  # 6 ms: no baseline (subprocess probe included) is that fast
    code, _, err = run_cli(capsys, monkeypatch, "optimize", str(project))
    assert code == 2 and "baseline alone took" in _err(err)


def test_init_writes_a_loadable_bilingual_project(tmp_path, capsys, monkeypatch):
    path = tmp_path / "kogata.yaml"
    code, out, err = run_cli(capsys, monkeypatch, "init", str(path), "--language", "ja")
    assert code == 0, err
    text = path.read_text()
    assert "language: ja" in text and "出発点のモデル" in text and "The model to start from" in text
    code, _, err = run_cli(capsys, monkeypatch, "init", str(path))
    assert code == 2 and "--force" in _err(err)


# ---- pure pieces ----------------------------------------------------------------------------------
def _cand(label, family, quant, keep=1.0, steps=None):
    return Candidate(label, family, steps or [{"method": "quantize", "params": {"type": quant}}], quant, keep_ratio=keep)


def test_skip_rules():
    q4 = _cand("Q4_0", "quantize", "Q4_0")
    q8 = _cand("Q8_0", "quantize", "Q8_0")
    passed = [{"candidate": q4.to_dict(), "label": "Q4_0", "bytes": 100, "verdict": "PASS", "failed": []}]
    smaller = skip_reason(q8, passed, base_bytes=700, remaining_s=1e6, eval_s=1, quality_gates=set())
    assert "already passes" in smaller.text and (smaller.key, smaller.params) == ("reason_smaller_passes", {"label": "Q4_0"})
    failed = [{"candidate": q8.to_dict(), "label": "Q8_0", "bytes": 200, "verdict": "FAIL", "failed": ["faq.f1"]}]
    harder = skip_reason(q4, failed, base_bytes=700, remaining_s=1e6, eval_s=1, quality_gates={"faq.f1"})
    assert harder.text == "Q8_0 already misses faq.f1; Q4_0 quantizes harder" and harder.key == "reason_quantizes_harder"
    assert skip_reason(q4, [], base_bytes=700, remaining_s=1e6, eval_s=1, quality_gates=set()) is None
    budget = skip_reason(q4, [], base_bytes=700, remaining_s=10, eval_s=60, quality_gates=set())
    need = (q4.build_estimate_s() + 60) / 60
    assert budget.text == f"not enough budget left (needs ~{need:.1f} min, 0.2 min left)" and budget.key == "reason_no_budget"
    assert budget.params == {"need_min": need, "left_min": 10 / 60}


def test_pareto_front():
    pts = {
        "a": {"quality_kept": 1.0, "latency_p95_ms": 100, "peak_rss_mb": 500, "compute_cost_per_month": 10},
        "b": {"quality_kept": 0.9, "latency_p95_ms": 50, "peak_rss_mb": 200, "compute_cost_per_month": 5},
        "c": {"quality_kept": 0.8, "latency_p95_ms": 60, "peak_rss_mb": 300, "compute_cost_per_month": 6},  # dominated by b
    }
    assert sorted(pareto_front(pts)) == ["a", "b"]


def test_decide_prefers_cheapest_passing():
    def entry(key, cost, compute, nbytes, verdict="PASS"):
        return {"key": key, "status": "ok", "verdict": verdict, "artifact": {"bytes": nbytes}, "quality": {},
                "metrics": {"latency_p95_ms": 10, "peak_rss_mb": 10}, "cost": {"cost_per_month": cost, "compute_cost_per_month": compute},
                "kpi": {"gates": [], "failed": []}}

    entries = [entry("base", 20, 10, 1000), entry("q8", 10, 5, 500), entry("q4", 10, 5.1, 300), entry("q2", 10, 1, 100, "FAIL")]
    assert decide(entries, "base")["recommended"] == "q4"  # same month cost, compute within noise: smaller wins


def test_ray_executor_on_a_local_ray_instance(kogata_home, tmp_path, capsys, monkeypatch):
    ray = pytest.importorskip("ray")
    project = make_project(tmp_path / "p", quantize="[Q4_0, Q8_0]", kpis="kpis: {min: {intent.acc: 0.99}}")
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        code, out, err = run_cli(capsys, monkeypatch, "optimize", str(project), "--executor", "ray")
    finally:
        ray.shutdown()
    assert code == 0, err
    res = json.loads((tmp_path / "p" / "kogata-report" / "results.json").read_text())
    statuses = {c["label"]: c["status"] for c in res["optimize"]["candidates"]}
    assert statuses == {"baseline (float)": "done", "Q4_0": "done", "Q8_0": "done"}  # nothing passes: all tried
    assert all(e["status"] == "ok" for e in res["entries"])
