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
