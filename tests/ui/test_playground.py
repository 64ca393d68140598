"""The playground (in process): the comparison's two streams end with their token counts, the grounded answer
retrieves from the document index as /v1/search does and asks the served model through the API's own path
(audit row with the numbered passages), "not in the documents" without a model call, and clear errors."""

from __future__ import annotations

import json
import re

import pytest

from tests.ui.test_i18n import _visible_text
from tests.ui.test_runs import csrf_of


def _post(client, path, body, token):
    return client.post(path, content=json.dumps(body, ensure_ascii=False),
                       headers={"Content-Type": "application/json", "X-CSRF-Token": token})


def _last_audit_row(home):
    from kogata.ops.audit import AuditLog

    log = AuditLog.open(home)
    rows = list(log.iter_rows())
    log.close()
    return rows[-1].record, len(rows)


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_playground_offers_the_comparison_and_the_document_search(gaps_client, lang):
    html = gaps_client.get("/ui/playground", params={"lang": lang}).text
    assert re.search(r'<select id="compare-a".*?<option value="candidate" selected>', html, re.S)
    assert re.search(r'<select id="compare-b".*?<option value="prod" selected>', html, re.S)
    assert 'id="chat-search"' in html and '<option value="handbook">' in html
    assert ("社内文書を検索" if lang == "ja" else "Search company documents") in html
    assert not re.search(r"\[[a-z]+_[a-z_]+\]", _visible_text(html)), "a catalog key is missing"


def test_one_served_model_and_no_index_offer_neither(client):
    html = client.get("/ui/playground", params={"lang": "ja"}).text
    assert 'id="compare-form"' not in html and "比べるには公開中のモデルが 2 つ必要です" in html
    assert 'id="chat-search"' not in html


@pytest.mark.parametrize("alias", ["prod", "candidate"])
def test_each_side_of_a_comparison_streams_and_ends_with_its_usage(gaps_client, alias):
    token = csrf_of(gaps_client.get("/ui/playground").text)
    r = _post(gaps_client, "/ui/playground/chat", {"model": alias, "messages": [{"role": "user", "content": "返品できますか"}],
                                                   "usage": True, "max_tokens": 8}, token)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]
    usage = [e["usage"] for e in events if e.get("usage")]
    assert len(usage) == 1 and usage[0]["prompt_tokens"] > 0 and 0 <= usage[0]["completion_tokens"] <= 8  # the random model may stop at once
    assert usage[0]["total_tokens"] == usage[0]["prompt_tokens"] + usage[0]["completion_tokens"]
    assert all(e["model"] == alias for e in events)
    record, _ = _last_audit_row(gaps_client.app.state.kogata.store.home)
    assert record.model_alias == alias and record.key_name == "ui:local"


def test_grounded_answer_retrieves_and_goes_through_the_served_path(gaps_client, gaps_home):
    token = csrf_of(gaps_client.get("/ui/playground").text)
    r = _post(gaps_client, "/ui/playground/grounded", {"model": "prod", "index": "handbook", "question": "返品は何日以内ですか？",
                                                       "max_tokens": 8}, token)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["mode"] == "bm25" and out["language"] == "ja" and out["status"] in ("answered", "not_found")
    assert out["passages"][0]["source"].endswith("returns.md") and out["passages"][0]["n"] == 1
    assert out["usage"]["prompt_tokens"] > 0 and out["latency_ms"] >= out["search_ms"] >= 0
    assert all(1 <= c["n"] <= len(out["passages"]) for c in out["citations"])
    record, _ = _last_audit_row(gaps_home)  # the model saw the numbered passages, under the served API's audit
    assert record.endpoint == "chat.completions" and record.model_alias == "prod"
    prompt = json.dumps(record.input, ensure_ascii=False)
    assert "[1]" in prompt and "30日以内であれば返品できます" in prompt


def test_nothing_relevant_is_not_in_the_documents_without_a_model_call(gaps_client, gaps_home):
    token = csrf_of(gaps_client.get("/ui/playground").text)
    _, before = _last_audit_row(gaps_home)
    r = _post(gaps_client, "/ui/playground/grounded", {"model": "prod", "index": "handbook", "question": "xyzzy plugh"}, token)
    assert r.status_code == 200 and r.json()["status"] == "not_found"
    assert r.json()["answer"] == "This is not in the documents." and r.json()["citations"] == []
    assert _last_audit_row(gaps_home)[1] == before


def test_grounded_answer_errors_name_the_problem(gaps_client):
    token = csrf_of(gaps_client.get("/ui/playground", params={"lang": "en"}).text)
    r = _post(gaps_client, "/ui/playground/grounded", {"model": "prod", "index": "wiki", "question": "返品"}, token)
    assert r.status_code == 404 and "wiki" in r.json()["error"] and "kogata index build" in r.json()["error"]
    r = _post(gaps_client, "/ui/playground/grounded", {"model": "prod", "index": "handbook", "question": ""}, token)
    assert r.status_code == 400 and "question" in r.json()["error"]
    r = _post(gaps_client, "/ui/playground/grounded", {"model": "nope", "index": "handbook", "question": "返品は？"}, token)
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = gaps_client.post("/ui/playground/grounded", content=json.dumps({"model": "prod", "index": "handbook", "question": "返品"}),
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 403  # no CSRF token


# ---- the model's words fixed, everything else real ---------------------------------------------------------------
def fixed_words(monkeypatch, app, alias: str, text: str) -> list:
    """The served model ``alias`` answers ``text`` (one token, then the end), whatever it is asked: only its words
    are fixed, the request still runs the served path (guard checks, audit row, usage). The requests it got are
    returned (a list filled as they come)."""
    from kogata.runtimes.base import StreamPiece, Usage
    from kogata.runtimes.engine.stream import EngineStream

    lease = app.state.kogata.models.acquire(alias)
    backend = lease.model.backend
    lease.release()
    seen = []

    def submit(request, *, queue_timeout_s=None):
        seen.append(request)
        stream = EngineStream(prompt_tokens=42)
        stream.push(StreamPiece(text=text, token_ids=[1]))
        stream.push(StreamPiece(text="", finish_reason="stop", usage=Usage(prompt_tokens=42, completion_tokens=1)))
        return stream

    monkeypatch.setattr(backend, "submit", submit)
    return seen


RETURNS_Q = "返品は何日以内ですか？"


def test_grounded_answer_maps_the_models_citations_and_drops_invalid_ones(gaps_client, monkeypatch):
    seen = fixed_words(monkeypatch, gaps_client.app, "prod", "商品到着から30日以内であれば返品できます [1] [9]。")
    token = csrf_of(gaps_client.get("/ui/playground").text)
    r = _post(gaps_client, "/ui/playground/grounded", {"model": "prod", "index": "handbook", "question": RETURNS_Q}, token)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "answered" and out["answer"] == "商品到着から30日以内であれば返品できます [1]。"
    assert out["invalid_citations"] == [9] and len(seen) == 1 and seen[0].max_tokens == 200  # the UI's default
    assert out["citations"] == [{"n": 1, "chunk_id": out["passages"][0]["chunk_id"], "source": out["passages"][0]["source"],
                                 "title": out["passages"][0]["title"]}]  # fmt: skip
    assert out["usage"]["completion_tokens"] == 1 and out["question"] == RETURNS_Q and out["language"] == "ja"


def test_a_model_that_says_not_in_the_documents_is_not_found(gaps_client, monkeypatch):
    fixed_words(monkeypatch, gaps_client.app, "prod", "資料には記載がありません。")
    token = csrf_of(gaps_client.get("/ui/playground").text)
    r = _post(gaps_client, "/ui/playground/grounded", {"model": "prod", "index": "handbook", "question": RETURNS_Q}, token)
    out = r.json()
    assert r.status_code == 200 and out["status"] == "not_found" and out["answer"] == "資料に記載がありません。"
    assert out["citations"] == [] and out["passages"]


def test_the_ui_and_grounded_chat_completions_give_the_model_the_same_prompt_and_citations(gaps_client, gaps_home, monkeypatch):
    """One path: the playground's grounded answer and ``/v1/chat/completions`` with ``retrieval`` retrieve, prompt
    and cite alike (kogata.serve.grounded)."""
    seen = fixed_words(monkeypatch, gaps_client.app, "prod", "30日以内です [1]。")
    from kogata.serve.generation import Generation

    checked, collect = [], Generation.collect

    async def recording(self):  # the passages the output checks (the guard's grounding check) get
        checked.append(list(self.ctx.extra.get("passages") or []))
        return await collect(self)

    monkeypatch.setattr(Generation, "collect", recording)
    token = csrf_of(gaps_client.get("/ui/playground").text)
    ui = _post(gaps_client, "/ui/playground/grounded", {"model": "prod", "index": "handbook", "question": RETURNS_Q, "k": 3}, token)
    ui_row, _ = _last_audit_row(gaps_home)
    api = gaps_client.post("/v1/chat/completions", json={"model": "prod", "messages": [{"role": "user", "content": RETURNS_Q}],
                                                         "max_tokens": 200, "retrieval": {"index": "handbook", "k": 3}})  # fmt: skip
    assert ui.status_code == 200 and api.status_code == 200, (ui.text, api.text)
    api_row, _ = _last_audit_row(gaps_home)
    assert len(seen) == 2 and seen[0].messages == seen[1].messages and ui_row.input == api_row.input
    ui_out, api_out = ui.json(), api.json()
    assert len(checked) == 2 and checked[0] == checked[1] == [p["text"] for p in ui_out["passages"]] and checked[0]
    assert ui_out["citations"] == api_out["citations"] and len(ui_out["citations"]) == 1
    assert ui_out["passages"] == api_out["retrieval"]["passages"] and ui_out["mode"] == api_out["retrieval"]["mode"] == "bm25"
    assert ui_out["answer"] == api_out["choices"][0]["message"]["content"] == "30日以内です [1]。"
