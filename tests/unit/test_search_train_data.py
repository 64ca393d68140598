"""Grounded-answer training data (kogata.search.train_data, ``kogata index training-data``): each question in the
form the answer step prompts it, with "answer [n]" pointing at the first retrieved passage that holds the answer,
and "not in the documents" when none does or the question has no answer."""

from __future__ import annotations

import json

import pytest

from kogata.search.answer import NOT_FOUND, plain_prompt
from kogata.search.backend import EmbeddedBackend
from kogata.search.chunk import Chunk
from kogata.search.retrieve import Hit, Retriever
from kogata.search.train_data import grounded_examples, target
from tests.cli_helpers import run_cli
from tests.fixtures.search_corpus import store_with_e5, write_docs


def _hit(text: str, n: int) -> Hit:
    return Hit(Chunk(f"d{n}#0", f"d{n}", f"d{n}.md", f"Doc {n}", 0, 0, len(text), text), 1.0 / n, rank=n)


def test_target_cites_the_first_passage_holding_the_answer():
    hits = [_hit("Shipping takes 3 days.", 1), _hit("返品は到着後３０日以内です。", 2), _hit("30日以内なら交換も可", 3)]
    assert target("30日以内", hits, "ja") == ("30日以内 [2]", 2)  # NFKC: full-width ３０ matches
    assert target("3 days", hits, "en") == ("3 days [1]", 1)
    assert target("5 days", hits, "en") == (NOT_FOUND["en"], None)  # an answer no passage holds: not guessed
    assert target("", hits, "ja") == (NOT_FOUND["ja"], None)


def test_grounded_examples_use_the_answer_prompt_and_count_each_kind():
    texts = ["returns are accepted within 30 days", "shipping is free above 5000 yen", "the canteen opens at noon"]
    chunks = [Chunk(f"d{i}#0", f"d{i}", f"d{i}.md", f"Doc {i}", 0, 0, len(t), t) for i, t in enumerate(texts)]
    backend = EmbeddedBackend(0)
    backend.upsert(chunks, [t.split() for t in texts], None)
    r = Retriever(backend, "bigram")
    records = [{"id": "a", "query": "returns within how many days", "answer": "30 days"},
               {"id": "b", "query": "shipping free above", "answer": "4000 yen"},
               {"id": "c", "query": "canteen opens", "answer": ""}]  # fmt: skip
    rows, stats = grounded_examples(r, records, k=2, mode="bm25")
    assert stats.to_dict() == {"examples": 3, "cited": 1, "not_retrieved": 1, "no_answer": 1}
    hits = r.search(records[0]["query"], 2, "bm25")
    assert rows[0]["prompt"] == plain_prompt(records[0]["query"], hits, "en")
    assert rows[0]["completion"] == f"30 days [{rows[0]['cited']}]" and rows[0]["source"] == "d0.md"
    assert rows[1]["completion"] == rows[2]["completion"] == NOT_FOUND["en"] and rows[1]["cited"] is None
    with pytest.raises(Exception, match="record 1"):
        grounded_examples(r, [{"answer": "x"}], k=2, mode="bm25")


def test_cli_writes_training_data_from_an_index(tmp_path, capsys, monkeypatch):
    store_with_e5(tmp_path / "home")
    monkeypatch.setenv("KOGATA_HOME", str(tmp_path / "home"))
    docs = write_docs(tmp_path / "docs")
    assert run_cli(capsys, monkeypatch, "index", "build", str(docs), "--name", "kb")[0] == 0
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": 1, "query": "未使用品は何日以内なら返品できますか", "answer": "30日以内"}\n'
                 '{"id": 2, "query": "社員食堂は何時に開きますか", "answer": ""}\n', encoding="utf-8")  # fmt: skip
    out = tmp_path / "train.jsonl"
    code, stdout, err = run_cli(capsys, monkeypatch, "index", "training-data", "kb", "--queries", str(q), "--out", str(out), "-k", "2")
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["completion"].startswith("30日以内 [") and rows[0]["source"] == "policies/returns.md"
    assert rows[0]["prompt"].startswith("あなたは社内資料だけに基づいて答える") and rows[0]["prompt"].endswith("回答:")
    assert rows[1]["completion"] == NOT_FOUND["ja"] and "2 examples" in stdout
    code, _, err = run_cli(capsys, monkeypatch, "index", "training-data", "kb", "--queries", str(tmp_path / "none.jsonl"), "--out", str(out))
    assert code == 2 and "does not exist" in err
