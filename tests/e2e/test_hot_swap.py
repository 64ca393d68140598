"""Hot swap under load: concurrent streams run while ``POST /admin/models/prod`` points the alias at another
artifact — every request completes (``[DONE]``, status 200), requests in flight finish on the old engine, new
ones land on the new one, and ``alias_history`` records the change."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.e2e.conftest import ServerProcess

CLIENTS = 6
LOAD_S = 6.0  # bounded: the whole load phase, swap included


@pytest.fixture(scope="module")
def admin_token(store):
    from kogata.serve.gateway.auth import KeyStore

    return KeyStore(store.engine).create("e2e-ops", admin=True)[1]


@pytest.fixture(scope="module")
def swappable(serve_home, admin_token):
    srv = ServerProcess(serve_home, ["tiny", "--alias", "prod", "--parallel", "4", "--ctx", "256", "--require-keys"],
                        log_name="swap").start()
    yield srv
    srv.stop()


def _client_loop(url, token, stop, results):
    headers = {"Authorization": f"Bearer {token}"}
    body = {"model": "prod", "messages": [{"role": "user", "content": "Tell me about shipping. 配送について"}],
            "max_tokens": 24, "temperature": 0, "stream": True}
    with httpx.Client(timeout=60) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                with http.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
                    lines = [ln for ln in r.iter_lines() if ln]
                    results.append({"status": r.status_code, "done": bool(lines) and lines[-1] == "data: [DONE]",
                                    "errors": [ln for ln in lines if '"error"' in ln], "artifact": r.headers.get("x-kogata-artifact"),
                                    "start": started, "end": time.monotonic()})
            except httpx.HTTPError as exc:
                results.append({"status": None, "done": False, "errors": [repr(exc)], "artifact": None,
                                "start": started, "end": time.monotonic()})


def test_swap_under_load_fails_no_request(swappable, admin_token, store):
    old, new = store.get("tiny"), store.get("tiny-b")
    stop = threading.Event()
    results: list[dict] = []
    threads = [threading.Thread(target=_client_loop, args=(swappable.url, admin_token, stop, results), daemon=True)
               for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(LOAD_S / 3)
    swap_at = time.monotonic()
    r = httpx.post(swappable.url + "/admin/models/prod", json={"artifact": "tiny-b", "reason": "e2e swap"},
                   headers={"Authorization": f"Bearer {admin_token}"}, timeout=60)
    swapped_at = time.monotonic()
    assert r.status_code == 200, r.text
    assert r.json() == {"alias": "prod", "artifact_id": new.id, "artifact_name": "tiny-b", "previous_id": old.id,
                             "changed": True}
    time.sleep(LOAD_S / 3)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    failed = [x for x in results if x["status"] != 200 or not x["done"] or x["errors"]]
    assert not failed, failed[:3]
    before = [x for x in results if x["end"] < swap_at]
    after = [x for x in results if x["start"] > swapped_at]
    assert before and after
    assert {x["artifact"] for x in before} == {old.id}
    assert {x["artifact"] for x in after} == {new.id}
    models = httpx.get(swappable.url + "/v1/models", headers={"Authorization": f"Bearer {admin_token}"}, timeout=10).json()
    assert [(m["id"], m["artifact_id"]) for m in models["data"]] == [("prod", new.id)]

    from kogata.ops.aliases import alias_history

    rows = alias_history(store.engine, "prod")
    assert rows[-1]["artifact_id"] == new.id and rows[-1]["previous_id"] == old.id
    assert rows[-1]["by"] == "e2e-ops" and rows[-1]["reason"] == "e2e swap"
    assert any(row["artifact_id"] == old.id for row in rows[:-1])


def test_swap_to_unknown_artifact_is_404_and_keeps_serving(swappable, admin_token):
    auth = {"Authorization": f"Bearer {admin_token}"}
    r = httpx.post(swappable.url + "/admin/models/prod", json={"artifact": "no-such-artifact"}, headers=auth, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["param"] == "artifact"
    ok = httpx.post(swappable.url + "/v1/completions", json={"model": "prod", "prompt": "Hi", "max_tokens": 2},
                    headers=auth, timeout=30)
    assert ok.status_code == 200
