"""The ``rag_qa`` baseline without retrieval (``retrieval: none``): the prompt holds the rules and the question but
no passages, the same answer metrics are computed against the same gold answers, the passage metrics are not
applicable (and a KPI cannot name them), and ``chat: auto`` sends a model without a chat template one plain prompt."""

from __future__ import annotations

import json
import re

import pytest

from kogata.core.errors import KogataError
from kogata.search.closed_book import closed_book_messages, closed_book_prompt, has_chat_template
from tests.unit.test_search_rag_task import QUERIES, TASK, _suite

BASELINE = {**TASK, "name": "closed", "retrieval": "none"}
KPI = {"min": {"closed.f1": 0.1}}
ANSWERS = {"未使用の商品は何日以内なら返品できますか？": "30日以内です [1]。", "How often should the kettle be descaled?": "Every three months.",
           "AP-210 の保証期間は何年ですか？": "1年です。", "国内出張の日当はいくらですか？": "資料に記載がありません。",
           "株主総会の開催日は？": "資料に記載がありません。", "What is the warranty of the KT-110 kettle?": "Two years."}  # fmt: skip


class Closed:
    """Answers from a script keyed by the question; records every prompt it is shown."""

    name, kind = "closed", "lm"

    def __init__(self, template: bool | None = None):
        self.prompts: list[str] = []
        self.modes: list[str] = []
        if template is not None:
            self._chat_template = "{{ messages }}" if template else None

    def _reply(self, text: str) -> str:
        self.prompts.append(text)
        question = text.rsplit("Question:", 1)[-1].rsplit("質問:", 1)[-1].strip().split("\n")[0]
        return ANSWERS[question]

    def chat(self, messages, max_tokens=256, stop=None):
        self.modes.append("chat")
        return self._reply("\n\n".join(m["content"] for m in messages))

    def generate(self, requests):
        self.modes += ["plain"] * len(requests)
        return [self._reply(r.prompt) for r in requests]


def test_baseline_prompt_has_the_rules_and_question_but_no_passages():
    for lang, q in (("ja", "返品の期限は？"), ("en", "What is the return window?")):
        text = "\n".join(m["content"] for m in closed_book_messages(q, lang)) + closed_book_prompt(q, lang)
        assert q in text and "[1]" not in text and "資料:" not in text and "Passages:" not in text
    assert "資料に記載がありません。" in closed_book_prompt("返品の期限は？", "ja")
    assert closed_book_prompt("Why?", "en").endswith("Question: Why?\nAnswer:")


def test_baseline_scores_the_answers_without_passages(tmp_path, kogata_home):
    suite = _suite(tmp_path, [TASK, BASELINE], kpis={"min": {"closed.f1": 0.1}})
    assert "closed.f1" in suite.metric_names() and "closed.citation_accuracy" not in suite.metric_names()
    model = Closed()
    res = suite.tasks[1].run(model)
    assert res["type"] == "rag_qa" and res["n"] == 6 and len(model.prompts) == 6  # the model is always asked
    for prompt in model.prompts:
        assert "[1]" not in prompt and "資料:" not in prompt and "Passages:" not in prompt and "policies/" not in prompt
    m = res["metrics"]
    assert res["per_item"]["id"] == ["q1", "q2", "q3", "q4"] and res["per_item_no_answer"]["id"] == ["q5", "q6"]
    assert res["per_item"]["exact_match"] == [0.0, 1.0, 0.0, 0.0] and res["per_item"]["answer_contains"] == [1.0, 1.0, 0.0, 0.0]
    assert m["exact_match"]["value"] == 0.25 and m["no_answer_acc"]["value"] == 0.5 and 0.5 < m["f1"]["value"] < 0.75
    for name in ("context_recall", "citation_accuracy", "grounded_rate"):
        assert m[name]["value"] is None and "retrieval: none" in m[name]["reason"]
    assert set(m) == set(suite.tasks[1].metrics)
    assert res["answers"] == {"answered": 4, "not_found": 2, "invalid_citations": 1}  # q1's [1] points to no passage
    assert res["samples"][0]["prediction"] == "30日以内です。" and res["samples"][0]["cited"] == []
    assert res["retrieval"]["retrieval"] == "none" and res["retrieval"]["embedder"] is None
    json.dumps(res)
    with_passages = suite.tasks[0].run(Closed())
    assert with_passages["metrics"]["context_recall"]["value"] == 1.0  # the twin task still retrieves


def test_a_kpi_cannot_name_a_passage_metric_of_the_baseline(tmp_path, kogata_home):
    with pytest.raises(KogataError, match="citation_accuracy"):
        _suite(tmp_path, [BASELINE], kpis={"min": {"closed.citation_accuracy": 0.5}})
    with pytest.raises(KogataError, match=re.escape("retrieval must be search or none")):
        _suite(tmp_path, [{**BASELINE, "retrieval": "bm25"}], kpis=KPI)


def test_chat_auto_sends_a_model_without_template_one_plain_prompt(tmp_path, kogata_home):
    assert has_chat_template(Closed(True)) and not has_chat_template(Closed(False)) and has_chat_template(Closed())
    suite = _suite(tmp_path, [BASELINE, {**TASK, "name": "grounded", "chat": "auto"}], kpis=KPI)
    for task in suite.tasks:
        base, chat = Closed(False), Closed(True)
        r_base, r_chat = task.run(base, limit=2), task.run(chat, limit=2)
        assert base.modes == ["plain"] * 2 and chat.modes == ["chat"] * 2
        assert r_base["retrieval"]["prompt"] == "plain" and r_chat["retrieval"]["prompt"] == "chat"
        assert base.prompts[1].endswith("Answer:")


def test_baseline_probe_prompts_hold_no_passages(tmp_path, kogata_home):
    suite = _suite(tmp_path, [{**BASELINE, "chat": False, "max_tokens": 5}], kpis=KPI)
    (req,) = suite.tasks[0].prompts(1)
    assert req.prompt.endswith(f"質問: {QUERIES[0]['query']}\n回答:") and req.max_tokens == 5 and "[1]" not in req.prompt
