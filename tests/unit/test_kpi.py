"""KPI gates: validation against what the suite produces, verdicts, margins."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kogata.core.errors import KogataError
from kogata.eval.kpi import EFFICIENCY_METRICS, available_metric_names, check_kpis, flat_metrics, validate_kpis


def _suite():
    tasks = [
        SimpleNamespace(name="faq_qa", type="generate", metrics=["exact_match", "f1"]),
        SimpleNamespace(name="intent", type="multiple_choice"),
        SimpleNamespace(name="docs_ppl", type="perplexity"),
    ]
    return SimpleNamespace(tasks=tasks)


def test_available_names_cover_tasks_probe_and_cost():
    names = available_metric_names(_suite())
    assert {"faq_qa.f1", "faq_qa.exact_match", "intent.acc", "intent.acc_norm", "docs_ppl.bits_per_byte"} <= set(names)
    assert "faq_qa.rouge_l" not in names  # not declared by that task
    assert set(EFFICIENCY_METRICS) <= set(names) and "cost_per_month" in names


def test_unknown_metric_is_rejected_with_the_available_names():
    kpis = {"min": {"faq_qa.f2": 0.3}, "max": {"latency_p99_ms": 100}}
    with pytest.raises(KogataError) as err:
        validate_kpis(kpis, available_metric_names(_suite()))
    msg = str(err.value)
    assert "faq_qa.f2" in msg and "latency_p99_ms" in msg and "available:" in msg and "faq_qa.f1" in msg


@pytest.mark.parametrize(
    "kpis, match",
    [({"at_least": {"faq_qa.f1": 0.1}}, "unknown KPI section"), ({"min": {"faq_qa.f1": "high"}}, "needs a number"), ([1], "mapping")],
)
def test_malformed_kpis(kpis, match):
    with pytest.raises(KogataError, match=match):
        validate_kpis(kpis, available_metric_names(_suite()))


def test_verdicts_and_margins():
    kpis = {"min": {"faq_qa.f1": 0.30, "intent.acc": 0.5}, "max": {"latency_p95_ms": 4000, "docs_ppl.bits_per_byte": 1.5}}
    metrics = {"faq_qa.f1": 0.42, "intent.acc": 0.4, "latency_p95_ms": 1000.0}
    res = check_kpis(kpis, metrics)
    assert res["verdict"] == "FAIL"
    assert res["failed"] == ["intent.acc", "docs_ppl.bits_per_byte"]
    gates = {g["metric"]: g for g in res["gates"]}
    assert gates["faq_qa.f1"]["pass"] and gates["faq_qa.f1"]["op"] == ">=" and gates["faq_qa.f1"]["margin"] == pytest.approx(0.12)
    assert gates["intent.acc"]["margin"] == pytest.approx(-0.1)
    assert gates["latency_p95_ms"]["margin"] == pytest.approx(3000) and gates["latency_p95_ms"]["op"] == "<="
    assert gates["docs_ppl.bits_per_byte"]["value"] is None and gates["docs_ppl.bits_per_byte"]["margin"] is None
    ok = check_kpis({"min": {"faq_qa.f1": 0.42}}, metrics)  # the threshold itself passes
    assert ok == {"verdict": "PASS", "gates": ok["gates"], "failed": []}
    assert check_kpis(None, metrics) == {"verdict": "PASS", "gates": [], "failed": []}


def test_flat_metrics_joins_quality_efficiency_and_cost():
    quality = {"faq_qa": {"metrics": {"f1": {"value": 0.5, "stderr": 0.1}}}}
    eff = {"metrics": {"decode_tok_s": 20.0, "peak_rss_mb": 300.0}}
    cost = {"cost_per_month": 73.0, "cost_per_1k_requests": 0.3, "cost_per_1m_tokens": 0.8, "machines": 1}
    flat = flat_metrics(quality, eff, cost)
    assert flat == {"faq_qa.f1": 0.5, "decode_tok_s": 20.0, "peak_rss_mb": 300.0, "cost_per_1m_tokens": 0.8,
                    "cost_per_1k_requests": 0.3, "cost_per_month": 73.0}
    assert flat_metrics(None, None, None) == {}
