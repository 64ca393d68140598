"""Shadow, canary, "@alias" models that follow the store, and `kogata models alias promote` — in the real serve
app (TestClient, two tiny GGUFs on the batched llama.cpp engine)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kogata.core.errors import KogataError
from tests.cli_helpers import run_cli


@pytest.fixture()
def home(tmp_path, tiny_llama_gguf, tiny_gemma3_gguf, monkeypatch) -> Path:
    from kogata.artifacts.importer import import_path
    from kogata.artifacts.store import Store
    from kogata.ops.aliases import record_alias

    home = tmp_path / "home"
    store = Store(home)
    a = import_path(store, str(tiny_llama_gguf), name="tiny", log=lambda m: None)
    b = import_path(store, str(tiny_gemma3_gguf), name="tiny-b", log=lambda m: None)
    record_alias(store.engine, "production", a.id, by="test", reason="first")
    record_alias(store.engine, "candidate", b.id, by="test", reason="from improve")
    monkeypatch.setenv("KOGATA_HOME", str(home))
    return home


def _client(home: Path, **overrides):
    from fastapi.testclient import TestClient

    from kogata.artifacts.store import Store
    from kogata.serve.app import create_app
    from kogata.serve.config import ServeConfig

    cfg = ServeConfig.model_validate({"models": [{"artifact": "@production"}, {"artifact": "@candidate"}], "ctx": 256,
                                      "parallel": 2, **overrides})
    return TestClient(create_app(cfg, store=Store(home)))


def _wait(client) -> None:
    deadline = time.monotonic() + 60
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "models did not load in 60 s"
        time.sleep(0.05)


def _chat(client, user: str, text: str = "Hello, where is my parcel?"):
    return client.post("/v1/chat/completions", json={"model": "production", "messages": [{"role": "user", "content": text}],
                                                     "max_tokens": 6, "seed": 1, "user": user})


def _rows(home: Path) -> list:
    from sqlalchemy import select

    from kogata.artifacts.store import Store
    from kogata.ops.traffic import T

    with Store(home).engine.connect() as conn:
        return list(conn.execute(select(T).order_by(T.c.id)))


def test_canary_is_sticky_per_user_and_recorded(home):
    from kogata.artifacts.store import Store

    store = Store(home)
    a, b = store.get("tiny").id, store.get("tiny-b").id
    with _client(home, canary={"production": {"candidate": 30}}) as client:
        _wait(client)
        seen: dict[str, set[str]] = {}
        for i in range(24):
            user = f"user-{i % 12}"
            r = _chat(client, user)
            assert r.status_code == 200, r.text
            assert r.json()["model"] == "production"
            seen.setdefault(user, set()).add(r.headers["x-kogata-artifact"])
    assert all(len(v) == 1 for v in seen.values()), seen  # sticky: a user always meets the same model
    served = {next(iter(v)) for v in seen.values()}
    assert served == {a, b}  # 12 users at 30%: both models answered someone
    rows = _rows(home)
    assert len(rows) == 24 and {r.kind for r in rows} == {"canary", "control"}
    assert all((r.artifact_id == b) == (r.kind == "canary") for r in rows)
    assert all(r.status == "ok" and r.latency_ms > 0 for r in rows)


def test_shadow_mirrors_answers_and_promote_checks_its_gates(home, capsys, monkeypatch):
    from kogata.artifacts.store import Store
    from kogata.ops.aliases import current_aliases

    store = Store(home)
    a, b = store.get("tiny").id, store.get("tiny-b").id
    with _client(home, shadow={"production": "candidate"}) as client:
        _wait(client)
        for i in range(6):
            r = _chat(client, f"u{i}", f"Question number {i}: when does the shop open?")
            assert r.status_code == 200 and r.headers["x-kogata-artifact"] == a  # the client only sees production
            deadline = time.monotonic() + 30  # one shadow at a time: let it finish before the next request
            while len([x for x in _rows(home) if x.kind == "shadow"]) < i + 1:
                assert time.monotonic() < deadline, "the shadow request did not finish in 30 s"
                time.sleep(0.05)
    rows = [x for x in _rows(home) if x.kind == "shadow"]
    assert len(rows) == 6 and all(x.artifact_id == b and x.primary_artifact_id == a for x in rows)
    assert all(x.status == "ok" and 0.0 <= x.agreement <= 1.0 and x.latency_ms > 0 for x in rows)

    # 6 shadow requests are not enough evidence for the default 50
    code, out, _ = run_cli(capsys, monkeypatch, "models", "alias", "promote", "candidate")
    assert code == 1 and "not promoted" in out and current_aliases(store.engine)["production"]["artifact_id"] == a
    code, out, err = run_cli(capsys, monkeypatch, "models", "alias", "promote", "candidate", "--min-requests", "5",
                             "--force")  # agreement of two unrelated random models may fail its gate: --force
    assert code == 0, err
    now = current_aliases(store.engine)
    assert now["production"]["artifact_id"] == b and now["previous"]["artifact_id"] == a
    code, _, err = run_cli(capsys, monkeypatch, "models", "alias", "rollback", "production")
    assert code == 0 and current_aliases(store.engine)["production"]["artifact_id"] == a


def test_an_alias_model_follows_the_store_under_concurrent_streams(home):
    import threading

    from kogata.artifacts.store import Store
    from kogata.ops.aliases import record_alias

    store = Store(home)
    a, b = store.get("tiny").id, store.get("tiny-b").id
    with _client(home, follow_aliases_s=0.2) as client:
        _wait(client)
        failures: list[str] = []
        served: set[str] = set()
        stop = threading.Event()

        def stream_requests() -> None:
            for _ in range(40):  # bounded
                if stop.is_set():
                    return
                with client.stream("POST", "/v1/chat/completions", json={
                        "model": "production", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                        "stream": True}) as r:
                    body = "".join(r.iter_text())
                    if r.status_code != 200 or "[DONE]" not in body:
                        failures.append(f"{r.status_code}: {body[:200]}")
                    served.add(r.headers.get("x-kogata-artifact", ""))

        workers = [threading.Thread(target=stream_requests) for _ in range(16)]
        for w in workers:
            w.start()
        time.sleep(0.5)
        record_alias(store.engine, "production", b, by="test", reason="promote")  # as `alias set|promote` does elsewhere
        deadline = time.monotonic() + 30
        while client.get("/v1/models").json()["data"][0]["artifact_id"] != b:
            assert time.monotonic() < deadline, "the server did not follow the store alias in 30 s"
            time.sleep(0.1)
        time.sleep(0.5)
        record_alias(store.engine, "production", a, by="test", reason="rollback")
        deadline = time.monotonic() + 30
        while client.get("/v1/models").json()["data"][0]["artifact_id"] != a:
            assert time.monotonic() < deadline, "the server did not follow the rollback in 30 s"
            time.sleep(0.1)
        stop.set()
        for w in workers:
            w.join(timeout=60)
    assert not failures, failures[:3]
    assert {a, b} <= served


def test_a_split_naming_an_alias_that_is_not_served_is_refused(home):
    with pytest.raises(KogataError, match="shadow names alias 'nope'"):
        _client(home, shadow={"production": "nope"})
    with pytest.raises(KogataError, match="no alias 'missing'"):
        from kogata.artifacts.store import Store
        from kogata.serve.app import create_app
        from kogata.serve.config import ServeConfig

        create_app(ServeConfig.model_validate({"models": [{"artifact": "@missing"}]}), store=Store(home))
