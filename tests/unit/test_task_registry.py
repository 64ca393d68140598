"""Task types and metrics are registries: every consumer (KPI validation, the optimize decision, reports)
reads what a type declares instead of switching on type names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import kogata.eval.metrics as M
import kogata.eval.tasks as tasks_pkg
from kogata.core.errors import KogataError
from kogata.eval.kpi import available_metric_names, validate_kpis
from kogata.eval.tasks import TASK_TYPES, Task, primary_metric, produced_metrics, register_task_type, task_type, task_type_names
from kogata.eval.tasks.perplexity import PerplexityTask
from kogata.optimize.decide import quality_kept
from kogata.report import format as report_format

RUNTIME_KINDS = {"generate": "lm", "multiple_choice": "lm", "perplexity": "lm", "retrieval": "embedder", "rag_qa": "lm"}


@pytest.mark.parametrize("name", sorted(RUNTIME_KINDS))
def test_every_type_declares_registered_metrics_and_a_primary(name):
    cls = task_type(name)  # retrieval / rag_qa: imported by name from kogata.search on first use
    assert cls is not None and TASK_TYPES[name] is cls and name in task_type_names()
    assert cls.type_name == name and cls.metrics and cls.primary
    for m in cls.metrics:
        assert M.METRICS[m].group == "quality"
    assert set(cls.primary) <= set(cls.metrics) and cls.runtime_kind == RUNTIME_KINDS[name]


def test_plugin_types_resolve_by_name_and_a_broken_plugin_is_one_clear_error(monkeypatch):
    assert primary_metric("rag_qa", ["citation_accuracy", "f1"]) == "f1"
    assert primary_metric("retrieval", ["ndcg_at_10", "mrr_at_10"]) == "mrr_at_10"
    assert produced_metrics(SimpleNamespace(name="x", type="retrieval"))[:2] == ["recall_at_1", "recall_at_5"]
    suite = SimpleNamespace(tasks=[SimpleNamespace(name="find", type="retrieval"), SimpleNamespace(name="ask", type="rag_qa")])
    validate_kpis({"min": {"find.recall_at_5": 0.9, "ask.citation_accuracy": 0.8, "ask.no_answer_acc": 0.5}},
                  available_metric_names(suite))  # fmt: skip
    monkeypatch.setitem(tasks_pkg.PLUGIN_TASK_TYPES, "vision_qa", "kogata.no_such_plugin")
    assert "vision_qa" in task_type_names()
    with pytest.raises(KogataError, match="task type 'vision_qa' lives in kogata.no_such_plugin, which cannot be imported"):
        task_type("vision_qa")


def test_metric_registry_directions_units_and_groups():
    assert M.lower_is_better("docs.bits_per_byte") and M.lower_is_better("latency_p95_ms") and M.lower_is_better("cost_per_month")
    assert not M.lower_is_better("faq.f1") and not M.lower_is_better("decode_tok_s")
    assert M.metric_spec("intent.acc_ci_low").name == "acc"
    assert M.METRICS["decode_tok_s"].direction == "higher" and M.METRICS["ttft_p95_ms"].unit == "ms"
    assert M.METRICS["bits_per_byte"].format(1.23456) == "1.2346" and M.METRICS["f1"].format(None) == "–"
    assert "peak_rss_mb" in M.metric_names("efficiency") and "cost_per_month" in M.metric_names("cost")
    assert M.METRICS["f1"].per_item and not M.METRICS["token_perplexity"].per_item
    # the report's arrows come from the same table
    for name in ("docs.bits_per_byte", "docs.word_perplexity", "faq.f1", "latency_p95_ms", "decode_tok_s"):
        assert report_format.lower_is_better(name) == M.lower_is_better(name)


def test_primary_metric_reads_the_registry():
    assert primary_metric("generate", ["exact_match", "rouge_l"]) == "rouge_l"
    assert primary_metric("perplexity", ["token_perplexity", "word_perplexity", "bits_per_byte"]) == "bits_per_byte"
    assert primary_metric("unknown-type", ["x", "y"]) == "x" and primary_metric("generate", []) is None


def test_a_new_task_type_is_one_class(monkeypatch):
    monkeypatch.setitem(M.METRICS, "hit_rate", M.MetricSpec("hit_rate", per_item=True, summary="test metric"))
    monkeypatch.setattr("kogata.eval.tasks.TASK_TYPES", dict(TASK_TYPES))

    @register_task_type("lookup")
    class LookupTask(Task):
        metrics = ("hit_rate",)
        primary = ("hit_rate",)

    from kogata.eval import tasks

    assert "lookup" in tasks.task_type_names()
    suite = SimpleNamespace(tasks=[SimpleNamespace(name="find", type="lookup")])
    assert "find.hit_rate" in available_metric_names(suite)  # KPI validation knows it without any edit
    validate_kpis({"min": {"find.hit_rate": 0.5}}, available_metric_names(suite))
    base = {"quality": {"find": {"type": "lookup", "metrics": {"hit_rate": {"value": 0.8}}}}}
    cand = {"quality": {"find": {"type": "lookup", "metrics": {"hit_rate": {"value": 0.4}}}}}
    assert quality_kept(cand, base) == {"find": pytest.approx(0.5)}  # higher is better, from its MetricSpec


def test_registering_a_type_with_unknown_metrics_fails():
    with pytest.raises(ValueError, match="not registered"):
        @register_task_type("broken")
        class Broken(Task):
            metrics = ("bleu",)
    assert "broken" not in task_type_names()


def test_produced_metrics_of_declared_tasks_and_records():
    assert produced_metrics(SimpleNamespace(name="x", type="multiple_choice")) == ["acc", "acc_norm"]
    assert produced_metrics(SimpleNamespace(name="x", type="generate", metrics=["f1"])) == ["f1"]
    assert produced_metrics(SimpleNamespace(name="x", type="nope")) == []
    assert "word_perplexity" in PerplexityTask.metrics


def test_unknown_task_type_lists_the_registry(tmp_path):
    from kogata.eval.suite import load_suite
    from tests.unit._tiny import SUITE_YAML, write_tiny_suite

    path = write_tiny_suite(tmp_path / "s", SUITE_YAML.replace("type: perplexity", "type: no_such_type"))
    with pytest.raises(KogataError, match="valid types: " + ", ".join(task_type_names())):
        load_suite(path)
