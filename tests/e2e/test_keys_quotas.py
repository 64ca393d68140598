"""API keys and quotas against a real server started with ``--require-keys``: missing / wrong / revoked keys
(401), models a key may not use (403), requests/min and tokens/min (429 + Retry-After), usage counted and
flushed to ``key_usage``, admin-only routes; and the refusal to serve off loopback without keys."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import ServerProcess

BODY = {"model": "prod", "prompt": "Hello", "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def keys(store):
    from kogata.serve.gateway.auth import KeyStore

    ks = KeyStore(store.engine)
    made = {}
    for name, opts in {"alice": {}, "limited": {"rpm": 2}, "thrifty": {"tpm": 5}, "other-only": {"models": ["other"]},
                       "doomed": {}, "counted": {}}.items():
        made[name] = ks.create(f"e2e-{name}", **opts)[1]
    return ks, made


@pytest.fixture(scope="module")
def locked(serve_home, keys):
    cfg = serve_home / "serve-keys.yaml"
    cfg.write_text("artifact: tiny\nalias: [prod]\nctx: 256\nparallel: 2\nrequire_keys: true\nusage_flush_s: 0.3\n",
                   encoding="utf-8")
    srv = ServerProcess(serve_home, ["--config", str(cfg)], log_name="keys").start()
    yield srv
    srv.stop()


def _post(srv, token=None, body=BODY, path="/v1/completions"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(srv.url + path, json=body, headers=headers, timeout=30)


def _error(r, status, code):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and set(err) == {"message", "type", "param", "code"}
    return err


def test_missing_and_wrong_keys_are_401(locked, keys):
    _error(_post(locked), 401, "missing_api_key")
    _error(_post(locked, "kg-not-a-real-key"), 401, "invalid_api_key")
    _error(_post(locked, keys[1]["alice"] + "x"), 401, "invalid_api_key")
    r = httpx.get(locked.url + "/v1/models", timeout=10)
    _error(r, 401, "missing_api_key")
    assert httpx.get(locked.url + "/health", timeout=10).status_code == 200  # probes need no key


def test_a_valid_key_works_and_the_openai_client_sends_it(locked, keys):
    openai = pytest.importorskip("openai")
    c = openai.OpenAI(base_url=locked.url + "/v1", api_key=keys[1]["alice"], max_retries=0)
    assert c.completions.create(**BODY).usage.completion_tokens >= 1
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=locked.url + "/v1", api_key="kg-wrong", max_retries=0).completions.create(**BODY)


def test_revoked_key_stops_working(locked, keys):
    ks, tokens = keys
    assert _post(locked, tokens["doomed"]).status_code == 200
    ks.revoke("e2e-doomed")
    deadline = time.monotonic() + 10  # the server re-reads active keys every 2 s
    while time.monotonic() < deadline:
        r = _post(locked, tokens["doomed"])
        if r.status_code == 401:
            break
        time.sleep(0.3)
    _error(r, 401, "invalid_api_key")


def test_model_allow_list_is_403(locked, keys):
    _error(_post(locked, keys[1]["other-only"]), 403, "model_not_allowed")
    r = httpx.get(locked.url + "/v1/models", headers={"Authorization": f"Bearer {keys[1]['other-only']}"}, timeout=10)
    assert r.status_code == 200 and r.json()["data"] == []


def test_requests_per_minute_is_429_with_retry_after(locked, keys):
    token = keys[1]["limited"]
    assert [_post(locked, token).status_code for _ in range(2)] == [200, 200]
    r = _post(locked, token)
    _error(r, 429, "rate_limit_requests")
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_tokens_per_minute_is_429(locked, keys):
    token = keys[1]["thrifty"]
    assert _post(locked, token).status_code == 200  # 2 prompt + 4 generated tokens > 5
    _error(_post(locked, token), 429, "rate_limit_tokens")


def test_usage_is_counted_per_key(locked, keys):
    ks, tokens = keys
    total_in = total_out = 0
    for prompt in ("Hello", "冷蔵庫の保証期間は一年間です。", "Where is my parcel?"):
        u = _post(locked, tokens["counted"], {**BODY, "prompt": prompt}).json()["usage"]
        total_in, total_out = total_in + u["prompt_tokens"], total_out + u["completion_tokens"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = ks.usage("e2e-counted")[0]
        if row["requests"] >= 3:
            break
        time.sleep(0.2)
    assert (row["requests"], row["tokens_in"], row["tokens_out"]) == (3, total_in, total_out)
    m = httpx.get(locked.url + "/metrics", timeout=10).text
    assert 'key_name="e2e-counted"' in m


def test_admin_routes_need_an_admin_key(locked, keys):
    r = httpx.post(locked.url + "/admin/models/prod", json={"artifact": "tiny-b"},
                   headers={"Authorization": f"Bearer {keys[1]['alice']}"}, timeout=30)
    _error(r, 403, "admin_required")
    _error(httpx.post(locked.url + "/admin/models/prod", json={"artifact": "tiny-b"}, timeout=30), 401, "missing_api_key")


def test_off_loopback_without_keys_refuses_to_start(tmp_path, store):
    """Checked in process (create_app raises before anything binds): no key in the store → a one-line error."""
    from kogata.artifacts.store import Store
    from kogata.core.errors import KogataError
    from kogata.serve.app import create_app
    from kogata.serve.config import build_config

    empty = Store(tmp_path / "empty-home")
    empty_art = store.get("tiny")
    from kogata.artifacts.importer import import_path

    import_path(empty, str(empty_art.gguf_path), name="tiny", log=lambda m: None)
    cfg = build_config(artifacts=["tiny"], overrides={"host": "0.0.0.0"})
    assert cfg.keys_required
    with pytest.raises(KogataError, match="needs API keys"):
        create_app(cfg, store=empty)
    from kogata.serve.gateway.auth import KeyStore

    KeyStore(empty.engine).create("ops")
    create_app(cfg, store=empty)  # with a key it would start (not started here: nothing binds off loopback in tests)
