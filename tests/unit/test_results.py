"""One entry is scored once (cost → flat metrics → KPI gates → verdict), whoever asks; atomic result writing."""

from __future__ import annotations

import json
import math

import pytest

from kogata.core.errors import KogataError
from kogata.core.io import atomic_write_json, publish_folder, staging_folder
from kogata.eval.cost import load_price
from kogata.eval.results import entry_cost, score_entries, score_entry

PROFILE = {"profile": "cloud-2vcpu-usd", "price_per_hour": 0.1, "requests_per_month": 100_000,
           "prompt_tokens_per_request": 300, "output_tokens_per_request": 80, "utilisation": 0.5, "hours_per_month": 730}
KPIS = {"min": {"faq.f1": 0.3}, "max": {"cost_per_1k_requests": 0.5}}


def _entry(key, f1, prefill=100.0, decode=10.0, status="ok"):
    eff = None if prefill is None else {"metrics": {"prefill_tok_s": prefill, "decode_tok_s": decode, "latency_p95_ms": 900.0}}
    return {"key": key, "status": status, "quality": {"faq": {"metrics": {"f1": {"value": f1}}}}, "efficiency": eff}


def test_score_entry_chains_cost_metrics_kpis_and_verdict():
    profile = load_price(PROFILE)
    scored = score_entry(_entry("a", 0.4), KPIS, profile)
    assert scored["cost"]["seconds_per_request"] == pytest.approx(11.0)
    assert scored["metrics"]["faq.f1"] == 0.4 and scored["metrics"]["cost_per_1k_requests"] == pytest.approx(0.1 * 11 * 1000 / 3600)
    assert scored["kpi"]["verdict"] == "PASS" and scored["verdict"] == "PASS"
    low = score_entry(_entry("b", 0.2), KPIS, profile)
    assert low["verdict"] == "FAIL" and low["kpi"]["failed"] == ["faq.f1"]
    unmeasured = score_entry(_entry("c", 0.9, prefill=None), KPIS, profile)
    assert unmeasured["cost"] is None and unmeasured["kpi"]["failed"] == ["cost_per_1k_requests"]  # not measured: gate fails
    assert score_entry(_entry("d", 0.9, status="error"), KPIS, profile)["verdict"] == "ERROR"
    assert entry_cost(_entry("e", 0.5), profile) == scored["cost"]


def test_score_entries_adds_savings_against_the_baseline():
    profile = load_price(PROFILE)
    entries = [_entry("base", 0.5), _entry("fast", 0.5, prefill=200.0, decode=20.0), _entry("broken", 0.5, prefill=None)]
    score_entries(entries, KPIS, profile, "base")
    base, fast, broken = entries
    assert base["cost"]["saving"]["per_1m_tokens"] == 0
    assert fast["cost"]["saving"]["vs"] == "base" and fast["cost"]["saving"]["per_1m_tokens_pct"] == pytest.approx(50.0)
    assert broken["cost"] is None and broken["verdict"] == "FAIL"
    score_entries(entries, KPIS, profile, "broken")  # a baseline without a cost: no savings
    assert base["cost"]["saving"] is None


def test_atomic_write_json_writes_null_for_nan_and_leaves_no_temp(tmp_path):
    path = atomic_write_json({"a": math.nan, "b": [math.inf, 1.5], 3: "東京"}, tmp_path / "r.json")
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": None, "b": [None, 1.5], "3": "東京"}
    assert "東京" in path.read_text(encoding="utf-8") and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_staging_and_publish(tmp_path):
    out = tmp_path / "out"
    staging = staging_folder(out, subdirs=("logs",))
    assert staging.name == f".out.partial-{__import__('os').getpid()}" and (staging / "logs").is_dir()
    (staging / "results.json").write_text("{}")
    publish_folder(staging, out)
    assert (out / "results.json").is_file() and not staging.exists()
    again = staging_folder(out)  # an earlier result may be replaced
    (again / "results.json").write_text('{"v": 2}')
    publish_folder(again, out)
    assert (out / "results.json").read_text() == '{"v": 2}' and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(KogataError, match="not a kogata results folder"):
        staging_folder(keep)
    (tmp_path / "file").write_text("x")
    with pytest.raises(KogataError, match="is a file"):
        staging_folder(tmp_path / "file")
