"""``kogata index build|update|list``, ``kogata search`` (single and batch) and ``kogata ask`` end to end in process,
and their bad-input errors: one line, exit 2, naming the file or setting."""

from __future__ import annotations

import json

import pytest

from tests.cli_helpers import run_cli
from tests.fixtures.search_corpus import encrypted_pdf, store_with_e5, write_docs


@pytest.fixture()
def home(tmp_path, monkeypatch):
    store_with_e5(tmp_path / "home")
    monkeypatch.setenv("KOGATA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _fails(capsys, monkeypatch, *args: str, match: str) -> str:
    code, out, err = run_cli(capsys, monkeypatch, *args)
    assert code == 2, (out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert match in err, err
    return err


def test_build_search_batch_update_list(home, tmp_path, capsys, monkeypatch):
    docs = write_docs(tmp_path / "docs")
    code, out, err = run_cli(capsys, monkeypatch, "index", "build", str(docs), "--name", "kb", "--chunk-size", "300", "--overlap", "40")
    assert code == 0, err
    assert "built index kb v1" in out
    code, out, _ = run_cli(capsys, monkeypatch, "search", "kb", "AP-210の保証期間", "-k", "2", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["results"][0]["source"] == "manuals/ap-210.md" and len(res["results"]) == 2
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "q1", "query": "返品の期限"}\n{"id": 7, "query": "Where is lost property kept?"}\n', encoding="utf-8")
    ranked = tmp_path / "ranked.jsonl"
    code, out, err = run_cli(capsys, monkeypatch, "search", "kb", "--queries", str(queries), "--out", str(ranked), "-k", "3")
    assert code == 0, err
    lines = [json.loads(x) for x in ranked.read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == ["q1", 7]
    assert set(lines[0]["results"][0]) == {"source", "chunk_id", "score", "text"}
    assert lines[0]["results"][0]["source"] == "policies/returns.md" and lines[1]["results"][0]["source"] == "faq.jsonl"
    (docs / "policies" / "returns.md").unlink()
    code, out, err = run_cli(capsys, monkeypatch, "index", "update", "kb")
    assert code == 0, err
    assert "updated index kb v2" in out and "1 removed" in out
    code, out, _ = run_cli(capsys, monkeypatch, "index", "list", "--json")
    rows = json.loads(out)
    assert rows[0]["name"] == "kb" and rows[0]["version"] == 2 and rows[0]["chunker"] == {"size": 300, "overlap": 40}


def test_bad_inputs_are_one_line_errors(home, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    _fails(capsys, monkeypatch, "index", "build", str(tmp_path / "empty"), "--name", "x", match="no documents found")
    _fails(capsys, monkeypatch, "index", "build", str(tmp_path / "nowhere"), "--name", "x", match="does not exist")
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    encrypted_pdf(pdfs / "locked.pdf")
    _fails(capsys, monkeypatch, "index", "build", str(pdfs), "--name", "x", match="locked.pdf is an encrypted PDF")
    (pdfs / "locked.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    _fails(capsys, monkeypatch, "index", "build", str(pdfs), "--name", "x", match="locked.pdf is not a readable PDF")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_bytes(b"\x81\x7f\xa0\xe0 \xc3\x28\xf0\x28\x8c\x28" * 20)
    _fails(capsys, monkeypatch, "index", "build", str(bad), "--name", "x", match="notes.txt is not in a text encoding")
    _fails(capsys, monkeypatch, "search", "nope", "query", match="no search index named 'nope'")
    _fails(capsys, monkeypatch, "index", "update", "nope", match="no search index named 'nope'")
    docs = write_docs(tmp_path / "docs")
    _fails(capsys, monkeypatch, "index", "build", str(docs), "--name", "x", "--embedder", "no-such-model", match="no embedder artifact named 'no-such-model'")
    _fails(capsys, monkeypatch, "index", "build", str(docs), "--name", "x", "--chunk-size", "10", match="--chunk-size must be at least 50")
    _fails(capsys, monkeypatch, "index", "build", str(docs), "--name", "x", "--tokenizer", "regex", match="unknown tokenizer")
    assert run_cli(capsys, monkeypatch, "index", "build", str(docs), "--name", "lex", "--embedder", "none")[0] == 0
    _fails(capsys, monkeypatch, "search", "lex", "返品", "--embedder", "multilingual-e5-small", match="was built with no embedder")
    _fails(capsys, monkeypatch, "search", "lex", "返品", "--mode", "dense", match="needs an embedder")
    _fails(capsys, monkeypatch, "search", "lex", "返品", "--mode", "fuzzy", match="unknown search mode")
    _fails(capsys, monkeypatch, "search", "lex", match="give a query or --queries")
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": 1, "text": "no query field"}\n', encoding="utf-8")
    _fails(capsys, monkeypatch, "search", "lex", "--queries", str(q), match='q.jsonl:1 has no "query"')
    q.write_text("{broken\n", encoding="utf-8")
    _fails(capsys, monkeypatch, "search", "lex", "--queries", str(q), match="q.jsonl:1 is not valid JSON")
    _fails(capsys, monkeypatch, "ask", "lex", "返品の期限は？", "--model", "nope", match="no artifact named 'nope'")
    _fails(capsys, monkeypatch, "ask", "lex", "返品の期限は？", "--model", "multilingual-e5-small", match="multilingual-e5-small is not a language model")


def test_ask_cites_retrieved_passages_with_a_real_model(home, tmp_path, capsys, monkeypatch, tiny_llama_gguf):
    """The tiny random GGUF writes nonsense, but the command runs end to end: passages in, citations checked out."""
    from kogata.artifacts.importer import import_path
    from kogata.artifacts.store import Store

    import_path(Store(home), str(tiny_llama_gguf), name="tiny", log=lambda m: None)
    docs = write_docs(tmp_path / "docs")
    assert run_cli(capsys, monkeypatch, "index", "build", str(docs), "--name", "kb")[0] == 0
    code, out, err = run_cli(capsys, monkeypatch, "ask", "kb", "未使用の商品は何日以内なら返品できますか？", "--model", "tiny", "--max-tokens", "8", "--json")
    assert code == 0, err
    ans = json.loads(out)
    assert ans["language"] == "ja" and ans["passages"][0]["source"] == "policies/returns.md"
    assert ans["status"] in ("answered", "not_found")
    assert all(1 <= c["n"] <= len(ans["passages"]) for c in ans["citations"])
    code, out, err = run_cli(capsys, monkeypatch, "ask", "kb", "社員食堂の営業時間は？", "--model", "tiny", "--min-similarity", "0.99")
    assert code == 0 and "資料に記載がありません" in out


def test_ask_names_the_passage_that_supports_an_answer_the_model_did_not_cite(home, tmp_path, capsys, monkeypatch):
    """A base model (no chat template) gets the plain prompt, and when it answers without [n] the command names
    the passages that alone support the answer (grounding check), not an invented citation."""
    import kogata.cli.search as cli_search

    class Base:  # stands in for a base model's runtime: no chat template, answers by copying the passage
        has_chat_template = False
        prompts: list = []

        def generate(self, requests):
            self.prompts.extend(r.prompt for r in requests)
            return ["未使用の商品は、到着後30日以内であれば返品できます。"]

        def chat(self, messages, **kw):
            raise AssertionError("a model without a chat template gets the plain prompt")

        def close(self):
            pass

    docs = write_docs(tmp_path / "docs")
    assert run_cli(capsys, monkeypatch, "index", "build", str(docs), "--name", "kb")[0] == 0
    monkeypatch.setattr(cli_search, "_lm_runtime", lambda store, model, runtime: Base())
    code, out, err = run_cli(capsys, monkeypatch, "ask", "kb", "未使用の商品は何日以内なら返品できますか？", "--model", "x", "--json")
    assert code == 0, err
    ans = json.loads(out)
    assert ans["citations"] == [] and Base.prompts and "[1]" in Base.prompts[0]
    supported = ans["grounding"]["supported_by"]
    assert [s["source"] for s in supported] == ["policies/returns.md"]
    code, out, err = run_cli(capsys, monkeypatch, "ask", "kb", "未使用の商品は何日以内なら返品できますか？", "--model", "x")
    assert "supported by [" in out and "policies/returns.md" in out and "the model cited no passage" in err
