"""``POST /v1/search`` inside the real serve app (FastAPI's TestClient; the store holds the tiny llama GGUF as the
served model and two indexes built with the real e5 embedder / BM25 only): results, modes, a newer version picked
up, and OpenAI-shaped errors."""

from __future__ import annotations

import pytest

from tests.fixtures.search_corpus import store_with_e5, write_docs


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_llama_gguf):
    from fastapi.testclient import TestClient

    from kogata.artifacts.importer import import_path
    from kogata.search.index import build_index
    from kogata.serve.app import create_app
    from kogata.serve.config import build_config

    root = tmp_path_factory.mktemp("search-serve")
    store = store_with_e5(root / "home")
    import_path(store, str(tiny_llama_gguf), name="tiny", log=lambda m: None)
    docs = write_docs(root / "docs")
    build_index(store, [docs], "kb")
    build_index(store, [docs], "lex", embedder="none")
    cfg = build_config(artifacts=["tiny"], overrides={"ctx": 256, "parallel": 1})
    with TestClient(create_app(cfg, store=store)) as client:
        yield client, store, docs


def test_search_returns_ranked_chunks_with_sources(served):
    client, _, _ = served
    r = client.post("/v1/search", json={"index": "kb", "query": "未使用品はいつまで返品できる？", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "search.results" and body["mode"] == "hybrid" and body["index_version"] == 1
    assert body["data"][0]["source"] == "policies/returns.md" and len(body["data"]) == 3
    assert [h["rank"] for h in body["data"]] == [1, 2, 3]
    # centred cosine (kogata.search.space): well above the index's "not in the documents" bar of 0.20
    assert body["data"][0]["similarity"] > 0.3 and body["weak"] is False
    assert r.headers["x-kogata-artifact"] == body["artifact"]
    r = client.post("/v1/search", json={"index": "kb", "query": "AP-210", "k": 1, "mode": "bm25"})
    assert r.json()["data"][0]["source"] == "manuals/ap-210.md" and r.json()["data"][0]["similarity"] is None
    r = client.post("/v1/search", json={"index": "lex", "query": "出張の日当", "k": 2})
    assert r.status_code == 200 and r.json()["mode"] == "bm25" and r.json()["data"][0]["source"] == "policies/travel.md"


def test_a_newer_index_version_is_picked_up(served, monkeypatch):
    import kogata.serve.routes.search as route
    from kogata.search.index import update_index

    client, store, docs = served
    (docs / "policies" / "parking.md").write_text("# 駐車場\n\n来客用の区画は3番から5番です。\n", encoding="utf-8")
    update_index(store, "lex")
    monkeypatch.setattr(route, "RECHECK_S", 0.0)
    r = client.post("/v1/search", json={"index": "lex", "query": "来客用の区画", "k": 1})
    assert r.json()["index_version"] == 2 and r.json()["data"][0]["source"] == "policies/parking.md"


def test_odd_text_is_searched_not_crashed_on(served):
    client, _, _ = served
    lone_surrogate = '{"index": "kb", "query": "\\ud800 返品", "k": 2}'.encode()  # valid JSON, not valid UTF-8 text
    r = client.post("/v1/search", content=lone_surrogate, headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), r.text
    for query in ("\x00", "😀" * 50, "a" * 2000, "。。。"):
        r = client.post("/v1/search", json={"index": "kb", "query": query, "k": 2})
        assert r.status_code == 200, (query, r.text)


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"index": "nope", "query": "x"}, 404, "index_not_found", "index"),
        ({"index": "bad name!", "query": "x"}, 404, "index_not_found", "index"),
        ({"index": "lex", "query": "x", "mode": "dense"}, 400, "invalid_mode", "mode"),
        ({"index": "kb", "query": "x", "mode": "fuzzy"}, 400, "invalid_value", "mode"),
        ({"index": "kb", "query": "x", "k": 0}, 400, "invalid_value", "k"),
        ({"index": "kb", "query": "x", "k": "5"}, 400, "invalid_value", "k"),
        ({"index": "kb", "query": ""}, 400, "invalid_value", "query"),
        ({"index": "kb"}, 400, "missing_parameter", "query"),
        ({"index": "kb", "query": "x", "top": 3}, 400, "unknown_parameter", "top"),
    ],
)
def test_bad_requests_get_openai_shaped_errors(served, body, status, code, param):
    client, _, _ = served
    r = client.post("/v1/search", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["param"] == param and err["message"]
