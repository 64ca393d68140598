"""Grounded answers: language detection, prompts in ja/en with numbered passages, citations mapped to sources (every
[n] left points to a retrieved chunk), and "not in the documents" when retrieval is empty or weak — the model is
then never called."""

from __future__ import annotations

from kogata.search.answer import NOT_FOUND, answer_language, answer_question, build_messages, parse_citations
from kogata.search.chunk import Chunk
from kogata.search.retrieve import Hit


def _hits(sim: float = 0.9) -> list[Hit]:
    texts = [("policies/returns.md", "返品ポリシー", "未使用品は到着後30日以内に返品できます。"),
             ("policies/shipping.md", "配送", "5,000円以上で送料無料です。")]  # fmt: skip
    return [Hit(Chunk(f"{s}#0", s, s, t, 0, 0, len(x), x), 0.9 - i / 10, 1.0, sim - i / 100, i + 1) for i, (s, t, x) in enumerate(texts)]


class ScriptedModel:
    """Answers with a fixed text and records what it was asked (the runtime's chat() interface)."""

    def __init__(self, reply: str):
        self.reply = reply
        self.calls: list = []

    def chat(self, messages, max_tokens=256, stop=None):
        self.calls.append(messages)
        return self.reply


def test_language_and_prompts():
    assert answer_language("返品の期限は？") == "ja" and answer_language("What is the return window?") == "en"
    assert answer_language("AP-210の価格は?") == "ja" and answer_language("") == "en"
    ja = build_messages("返品の期限は？", _hits(), "ja")
    assert "資料に記載がありません" in ja[0]["content"] and "[1] (policies/returns.md — 返品ポリシー)" in ja[1]["content"]
    assert "質問: 返品の期限は？" in ja[1]["content"]
    en = build_messages("Return window?", _hits(), "en")
    assert "This is not in the documents." in en[0]["content"] and "Question: Return window?" in en[1]["content"]


def test_citations_are_parsed_and_invalid_ones_removed():
    text, cited, invalid = parse_citations("30日以内です [1]。送料は無料［２］です[1, 7][9]。", 2)
    assert cited == [1, 2] and invalid == [7, 9]
    assert text == "30日以内です [1]。送料は無料[2]です[1]。"  # markers normalised, the rest untouched
    assert parse_citations("no markers", 3) == ("no markers", [], [])


def test_answer_maps_citations_to_sources():
    model = ScriptedModel("未使用品は30日以内に返品できます[1]。誤った番号[5]。")
    ans = answer_question(model, "返品の期限は？", _hits())
    assert ans.status == "answered" and ans.language == "ja"
    assert ans.citations == [{"n": 1, "chunk_id": "policies/returns.md#0", "source": "policies/returns.md", "title": "返品ポリシー"}]
    assert ans.invalid_citations == [5] and "[5]" not in ans.text
    assert len(model.calls) == 1 and model.calls[0][0]["role"] == "system"
    assert [p["n"] for p in ans.passages] == [1, 2] and ans.to_dict()["answer"] == ans.text


def test_weak_or_empty_retrieval_answers_not_found_without_the_model():
    model = ScriptedModel("invented")
    assert answer_question(model, "返品の期限は？", []).text == NOT_FOUND["ja"]
    weak = answer_question(model, "What is the canteen's opening time?", _hits(sim=0.5), min_similarity=0.8)
    assert weak.status == "not_found" and weak.text == NOT_FOUND["en"] and model.calls == []
    said_so = answer_question(ScriptedModel("資料に記載がありません。"), "社員食堂は？", _hits())
    assert said_so.status == "not_found" and said_so.citations == []
