"""The ``rag_qa`` task type: answer scoring by hand (containment, F1/EM after citation markers, citation accuracy,
no-answer), the task in a suite with a reader whose answers are known, the tiny llama end to end, the prompts the
probe times, bad configurations, and the by-name plugin hook (a fresh process loads retrieval/rag_qa suites
without importing kogata.search itself)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading

import pytest

from kogata.core.errors import KogataError
from kogata.search.answer import NOT_FOUND, Answer
from kogata.search.chunk import Chunk
from kogata.search.rag_task import RagQATask, contains
from kogata.search.retrieve import Hit
from tests.fixtures.search_corpus import write_docs


def _hit(text: str, n: int) -> Hit:
    return Hit(Chunk(f"d{n}#0", f"d{n}", f"d{n}.md", f"doc {n}", 0, 0, len(text), text), 1.0 / n, bm25=1.0 / n, rank=n)


def test_contains_respects_word_edges_and_normalises():
    assert contains("返品は到着後30日以内です。", "30日以内") and contains("It costs ¥24,800 incl. tax", "¥24,800")
    assert contains("The power is 45 W [1].", "45 w") and not contains("The power is 145 W.", "45 W")
    assert not contains("within 300 days", "30 days") and not contains("anything", "") and not contains("", "x")


def test_scores_of_one_question_by_hand():
    hits = [_hit("The kettle holds 1.0 L.", 1), _hit("Descale it every three months.", 2)]
    right = Answer("q", "en", "Every three months [2].", "answered", [{"n": 2}])
    s = RagQATask._score(right, hits, ["every three months"])
    assert s == {"f1": 1.0, "exact_match": 1.0, "answer_contains": 1.0, "context_recall": 1.0, "citation_accuracy": 1.0}
    wrong_cite = Answer("q", "en", "Descale it every three months [1].", "answered", [{"n": 1}])
    s = RagQATask._score(wrong_cite, hits, ["nope", "every three months"])  # best over gold answers
    assert s["citation_accuracy"] == 0.0 and s["exact_match"] == 0.0 and s["answer_contains"] == 1.0
    assert s["f1"] == pytest.approx(2 * (3 / 5) * 1 / (3 / 5 + 1))  # 3 of the 5 answer words, all 3 gold words
    refused = Answer("q", "en", NOT_FOUND["en"], "not_found")
    assert RagQATask._score(refused, hits, ["every three months"]) == {"f1": 0.0, "exact_match": 0.0, "answer_contains": 0.0,
                                                                     "context_recall": 1.0}  # fmt: skip
    assert RagQATask._score(refused, hits, []) == {"no_answer_acc": 1.0}
    assert RagQATask._score(right, hits, []) == {"no_answer_acc": 0.0}


class Reader:
    """A generator whose answers are scripted per question from the passages it is shown (what a perfect or a
    flawed reader would say), so the task's numbers can be checked exactly; everything else is the real pipeline."""

    name, kind = "reader", "lm"

    def __init__(self, script: dict[str, tuple[str, str]]):
        self.script, self.lock, self.prompts = script, threading.Lock(), []

    def _reply(self, text: str) -> str:
        self.prompts.append(text)
        question = text.rsplit("Question:", 1)[-1].rsplit("質問:", 1)[-1].strip().split("\n")[0]
        how, answer = self.script[question]
        passages = {int(n): body for n, body in re.findall(r"^\[(\d+)\] \([^\n]*\)\n(.*?)(?=\n\n\[\d+\] |\n\n(?:Question|質問):)", text,
                                                            re.S | re.M)}  # fmt: skip
        right = [n for n, body in passages.items() if contains(body, answer)]
        other = [n for n in passages if n not in right]
        if how == "refuse":
            return "資料に記載がありません。" if re.search("[ぁ-ん]", question) else "This is not in the documents."
        if how == "cite_wrong":
            return f"{answer} [{other[0]}]"
        return f"{answer} [{right[0] if right else 1}] [9]"  # [9]: no such passage, removed and counted

    def chat(self, messages, max_tokens=256, stop=None):
        return self._reply("\n\n".join(m["content"] for m in messages))

    def generate(self, requests):
        return [self._reply(r.prompt) for r in requests]


QUERIES = [
    {"id": "q1", "query": "未使用の商品は何日以内なら返品できますか？", "answer": "30日以内", "group": "ja"},
    {"id": "q2", "query": "How often should the kettle be descaled?", "answer": ["every three months", "quarterly"], "group": "en"},
    {"id": "q3", "query": "AP-210 の保証期間は何年ですか？", "answer": "2年", "group": "ja"},
    {"id": "q4", "query": "国内出張の日当はいくらですか？", "answer": "2,000円", "group": "ja"},
    {"id": "q5", "query": "株主総会の開催日は？", "answer": "", "group": "none"},
    {"id": "q6", "query": "What is the warranty of the KT-110 kettle?", "answer": "", "group": "none"},
]
SCRIPT = {"未使用の商品は何日以内なら返品できますか？": ("cite_right", "30日以内"),
          "How often should the kettle be descaled?": ("cite_right", "every three months"),
          "AP-210 の保証期間は何年ですか？": ("cite_wrong", "2年"), "国内出張の日当はいくらですか？": ("refuse", "2,000円"),
          "株主総会の開催日は？": ("refuse", ""), "What is the warranty of the KT-110 kettle?": ("cite_right", "6 pm")}  # fmt: skip
TASK = {"name": "rag", "type": "rag_qa", "docs": "docs", "data": "q.jsonl", "mode": "bm25", "tokenizer": "bigram", "k": 3}


def _suite(tmp_path, tasks: list[dict], queries: list[dict] = QUERIES, kpis: dict | None = None):
    import yaml

    from kogata.eval.suite import load_suite

    write_docs(tmp_path / "docs")
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries), encoding="utf-8")
    doc = {"name": "tiny-rag", "language": "ja", "tasks": tasks, "kpis": kpis or {"min": {f"{tasks[0]['name']}.citation_accuracy": 0.5}}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_suite(tmp_path / "suite.yaml")


def test_rag_task_scores_a_known_reader(tmp_path, kogata_home):
    suite = _suite(tmp_path, [TASK, {**TASK, "name": "plain", "chat": False, "answer_language": "en"}])
    assert suite.kpis["min"] == {"rag.citation_accuracy": 0.5} and "rag.f1" in suite.metric_names()
    reader = Reader(SCRIPT)
    res = suite.tasks[0].run(reader)
    m = res["metrics"]
    assert res["type"] == "rag_qa" and res["n"] == 6 and res["per_item"]["id"] == ["q1", "q2", "q3", "q4"]
    assert res["per_item_no_answer"]["id"] == ["q5", "q6"] and m["no_answer_acc"]["value"] == 0.5
    assert res["per_item"]["exact_match"] == [1.0, 1.0, 1.0, 0.0]  # q4 refused although its passage holds the answer
    assert res["per_item"]["context_recall"] == [1.0, 1.0, 1.0, 1.0]
    assert res["per_item_cited"] == {"id": ["q1", "q2", "q3"], "citation_accuracy": [1.0, 1.0, 0.0]}  # q3 cites the wrong passage
    assert m["f1"]["value"] == 0.75 and m["citation_accuracy"]["value"] == pytest.approx(2 / 3) and m["citation_accuracy"]["n"] == 3
    # the invented "6 pm" on q6 is in no passage: the guard's grounding test says unsupported
    assert res["per_item_grounded"] == {"id": ["q1", "q2", "q3", "q6"], "grounded_rate": [1.0, 1.0, 1.0, 0.0]}
    for v in m.values():
        assert v["ci_low"] <= v["value"] <= v["ci_high"]
    assert res["answers"] == {"answered": 4, "not_found": 2, "invalid_citations": 3}  # the reader's [9] on q1, q2, q6
    assert res["groups"]["none"]["no_answer_acc"] == 0.5 and res["groups"]["ja"]["n"] == 3
    assert res["retrieval"]["mode"] == "bm25" and res["retrieval"]["k"] == 3 and res["retrieval"]["embedder"] is None
    assert res["samples"][0]["cited"] == ["policies/returns.md"] and res["samples"][0]["prediction"] == "30日以内 [1]"
    assert "資料:" in reader.prompts[0] and "Passages:" in reader.prompts[1]  # the question's language picks the template
    json.dumps(res)
    plain = suite.tasks[1].run(Reader(SCRIPT))  # one plain prompt, English template for every question
    assert plain["metrics"]["f1"]["value"] == 0.75 and plain["retrieval"]["answer_language"] == "en"


def test_weak_retrieval_answers_not_found_without_the_model(tmp_path, kogata_home):
    suite = _suite(tmp_path, [TASK], [{"id": "z", "query": "zzzz qqqq", "answer": ""}])

    class Silent(Reader):
        def _reply(self, text):
            raise AssertionError("the model must not be asked when nothing was retrieved")

    res = suite.tasks[0].run(Silent({}))
    assert res["metrics"]["no_answer_acc"]["value"] == 1.0 and res["answers"]["not_found"] == 1
    assert res["metrics"]["f1"]["value"] is None and "no question has a gold answer" in res["metrics"]["f1"]["reason"]


def test_prompts_for_the_probe_are_the_grounded_requests(tmp_path, kogata_home):
    suite = _suite(tmp_path, [TASK, {**TASK, "name": "plain", "chat": False, "max_tokens": 7}])
    chat, plain = suite.tasks[0].prompts(2), suite.tasks[1].prompts(2)
    assert len(chat) == 2 and chat[0].prompt is None and chat[0].messages[0]["role"] == "system"
    assert "[1] (policies/returns.md" in chat[0].messages[1]["content"] and chat[0].messages[1]["content"].endswith(QUERIES[0]["query"])
    assert plain[1].prompt.startswith("You answer only from") and plain[1].prompt.endswith("Answer:") and plain[1].max_tokens == 7
    assert plain[1].stop == ["\n\n", "\nQuestion:"]


def test_tiny_llama_runs_the_task_end_to_end(tmp_path, kogata_home, tiny_llama_dir):
    from kogata.runtimes import open_runtime
    from tests.unit._tiny import hf_artifact

    suite = _suite(tmp_path, [{**TASK, "max_tokens": 4}])
    rt = open_runtime("torch", hf_artifact(tiny_llama_dir))
    try:
        res = suite.tasks[0].run(rt, limit=3)
    finally:
        rt.close()
    assert res["n"] == 3 and res["answers"]["answered"] + res["answers"]["not_found"] == 3
    assert set(res["metrics"]) == set(RagQATask.metrics)
    for name in ("f1", "exact_match", "answer_contains", "context_recall"):
        assert res["metrics"][name]["n"] == 3 and 0.0 <= res["metrics"][name]["value"] <= 1.0
    assert res["metrics"]["context_recall"]["value"] == 1.0  # BM25 finds every answer's passage; the random model answers nothing
    json.dumps(res)


def test_bad_configurations_fail_at_load_time(tmp_path, kogata_home):
    bad = [({"k": 0}, "k must be an integer >= 1"), ({"answer_language": "fr"}, "answer_language must be one of auto, ja, en"),
           ({"chat": "yes"}, "chat must be true or false"), ({"mode": "hybrid", "embedder": "no-such-embedder"},
           "embedder 'no-such-embedder' is not in the store"), ({"colour": 1}, "unknown key 'colour'"),
           ({"docs": "missing"}, "does not exist"), ({"answer_field": "reply"}, "has no column 'reply'")]  # fmt: skip
    for extra, match in bad:
        with pytest.raises(KogataError, match=re.escape(match)):
            _suite(tmp_path, [{**TASK, **extra}])
    with pytest.raises(KogataError, match="answer must be a string or a list of strings"):
        _suite(tmp_path, [TASK], [{"id": "a", "query": "x", "answer": 3}])


def test_a_fresh_process_loads_plugin_task_types_by_name(tmp_path):
    """eval may not import search (layers), yet a suite naming retrieval / rag_qa loads: the hook imports it by name."""
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "a", "query": "AP-210", "gold": ["manuals/ap-210.md"], "answer": "45 W"}) + "\n",
                                      encoding="utf-8")  # fmt: skip
    write_docs(tmp_path / "docs")
    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""\
        name: plug
        language: en
        tasks:
          - {name: find, type: retrieval, docs: docs, data: q.jsonl, mode: bm25, tokenizer: bigram}
          - {name: ask, type: rag_qa, docs: docs, data: q.jsonl, mode: bm25, tokenizer: bigram}
        kpis: {min: {find.recall_at_5: 0.9, ask.citation_accuracy: 0.5}}
        """), encoding="utf-8")
    code = textwrap.dedent(f"""\
        import sys
        import kogata.eval.tasks as t
        assert "kogata.search" not in sys.modules and "retrieval" not in t.TASK_TYPES
        assert {{"retrieval", "rag_qa"}} <= set(t.task_type_names())
        from kogata.eval.suite import load_suite
        s = load_suite({str(tmp_path / "suite.yaml")!r})
        assert "kogata.search.rag_task" in sys.modules
        print(s.metric_names(), t.primary_metric("retrieval", ["mrr_at_10", "recall_at_5"]), s.tasks[0].run(None)["metrics"]["recall_at_5"]["value"])
        """)
    env = {"KOGATA_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ask.citation_accuracy" in out.stdout and out.stdout.strip().endswith("recall_at_5 1.0")
