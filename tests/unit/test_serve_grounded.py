"""Chat completions grounded in a document index (``"retrieval": {...}`` in the body) inside the real serve app:
the passages reach the model and the output checks, citations map to chunks, weak retrieval answers "not in the
documents" without the model, streaming carries the citations in its last chunk, and bad options are 4xx."""

from __future__ import annotations

import json
import time

import pytest

from tests.fixtures.search_corpus import store_with_e5, write_docs


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_long_gguf):
    from fastapi.testclient import TestClient

    from kogata.artifacts.importer import import_path
    from kogata.search.index import build_index
    from kogata.serve.app import create_app
    from kogata.serve.config import build_config

    root = tmp_path_factory.mktemp("grounded-serve")
    store = store_with_e5(root / "home")
    import_path(store, str(tiny_long_gguf), name="tiny", log=lambda m: None)
    docs = write_docs(root / "docs")
    build_index(store, [docs], "kb")
    build_index(store, [docs], "lex", embedder="none")
    cfg = build_config(artifacts=["tiny"], aliases=["support"], overrides={"ctx": 4096, "parallel": 1, "threads": 1})
    with TestClient(create_app(cfg, store=store)) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load in 60 s"
            time.sleep(0.05)
        yield client, store


def _chat(client, question: str, **retrieval):
    return client.post("/v1/chat/completions", json={
        "model": "support", "messages": [{"role": "user", "content": question}], "max_tokens": 12, "seed": 1,
        "retrieval": {"index": "kb", **retrieval}})


def test_the_model_reads_the_retrieved_passages_and_the_response_names_them(served):
    from kogata.ops.audit import AuditLog

    client, store = served
    r = _chat(client, "未使用品はいつまで返品できる？", k=3)
    assert r.status_code == 200, r.text
    body = r.json()
    ret = body["retrieval"]
    assert ret["index"] == "kb" and ret["mode"] == "hybrid" and not ret["weak"] and ret["language"] == "ja"
    assert [p["n"] for p in ret["passages"]] == [1, 2, 3] and ret["passages"][0]["source"] == "policies/returns.md"
    assert isinstance(body["citations"], list)  # the random tiny model rarely writes [n]; every one it does is mapped
    for c in body["citations"]:
        assert ret["passages"][c["n"] - 1]["chunk_id"] == c["chunk_id"]
    entry = list(AuditLog.open(store.home).iter_rows())[-1]  # what the model saw: the grounded prompt with the passages
    seen = json.dumps(entry.record.input, ensure_ascii=False)
    assert "[1] (policies/returns.md" in seen and "未使用品はいつまで返品できる？" in seen


def test_weak_retrieval_says_not_in_the_documents_without_the_model(served):
    client, _ = served
    r = client.post("/v1/chat/completions", json={
        "model": "support", "messages": [{"role": "user", "content": "Quantum chromodynamics lattice gauge?"}],
        "max_tokens": 12, "retrieval": {"index": "lex", "k": 2}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["retrieval"]["weak"] and body["citations"] == []
    assert body["choices"][0]["message"]["content"] == "This is not in the documents."
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] == 0


def test_streaming_carries_the_citations_in_the_last_chunk(served):
    client, _ = served
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "support", "messages": [{"role": "user", "content": "How often should the KT-110 be descaled?"}],
            "max_tokens": 8, "stream": True, "retrieval": {"index": "kb", "k": 2}}) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert r.status_code == 200 and events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["choices"][0]["finish_reason"] is not None and last["retrieval"]["passages"][0]["source"] == "manuals/kt-110.md"


@pytest.mark.parametrize(("retrieval", "status", "code"), [
    ({"index": "nope"}, 404, "index_not_found"),
    ({"index": "lex", "mode": "dense"}, 400, "invalid_mode"),
    ({"index": "kb", "k": 0}, 400, "invalid_value"),
    ({"index": "kb", "extra": 1}, 400, "unknown_parameter"),
])
def test_bad_retrieval_options_are_openai_shaped_4xx(served, retrieval, status, code):
    client, _ = served
    r = client.post("/v1/chat/completions", json={"model": "support", "messages": [{"role": "user", "content": "x"}],
                                                  "retrieval": retrieval})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
