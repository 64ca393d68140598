"""``kogata serve --ray --replicas 2``: the engine as two Ray Serve replicas on a local Ray instance (this machine),
behind the same gateway — concurrent requests answered by both replicas, streaming, and the engine's errors
keep their 4xx statuses."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("ray.serve")  # a dev dependency (ray[serve]); its absence would be an install problem


@pytest.fixture(scope="module")
def ray_client(tmp_path_factory, tiny_llama_gguf):
    from fastapi.testclient import TestClient

    from kogata.artifacts.importer import import_path
    from kogata.artifacts.store import Store
    from kogata.serve.app import create_app
    from kogata.serve.config import build_config

    home = tmp_path_factory.mktemp("ray-home")
    store = Store(home)
    import_path(store, str(tiny_llama_gguf), name="tiny", log=lambda m: None)
    cfg = build_config(artifacts=["tiny"], aliases=["prod"],
                       overrides={"ray": True, "replicas": 2, "ctx": 256, "parallel": 2, "threads": 1, "audit": False})
    with TestClient(create_app(cfg, store=store)) as client:
        deadline = time.monotonic() + 240
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the Ray replicas did not come up in 240 s"
            time.sleep(0.2)
        yield client


def test_two_replicas_answer_concurrent_requests(ray_client):
    engine = ray_client.app.state.kogata.models.routes()["prod"].backend
    assert type(engine).__name__ == "RayReplicaEngine" and engine.replicas == 2
    results: list[int] = []

    def one(i: int) -> None:
        for _ in range(3):  # bounded
            r = ray_client.post("/v1/completions", json={"model": "prod", "prompt": f"Hello {i}", "max_tokens": 6, "seed": i})
            results.append(r.status_code)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert results == [200] * 24, results
    assert len(engine.served_by) == 2 and sum(engine.served_by.values()) == 24, engine.served_by


def test_streaming_and_errors_through_the_replicas(ray_client):
    with ray_client.stream("POST", "/v1/chat/completions", json={
            "model": "prod", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True}) as r:
        body = "".join(r.iter_text())
    assert r.status_code == 200 and body.rstrip().endswith("data: [DONE]")
    r = ray_client.post("/v1/completions", json={"model": "prod", "prompt": "word " * 400, "max_tokens": 10})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text
