"""``BodyLimits`` on a path with its own limit: a multipart upload streams through (any bytes, no UTF-8 check) and
is cut off with 413 past the limit; other paths keep the buffered limit and the UTF-8 check."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from kogata.serve.gateway.limits import BodyLimits


def _client() -> TestClient:
    app = FastAPI()

    @app.post("/up")
    async def up(request: Request) -> dict:
        form = await request.form()
        return {"size": len(await form["f"].read())}

    @app.post("/api")
    async def api(request: Request) -> dict:
        return {"size": len(await request.body())}

    return TestClient(BodyLimits(app, max_body_bytes=2_000, path_limits={"/up": 50_000}))


def test_upload_path_streams_binary_bytes_and_cuts_off_past_its_limit():
    c = _client()
    r = c.post("/up", files={"f": ("a.bin", b"\xff\xfe" * 10_000)})  # 20 kB, not UTF-8: over the API's 2 kB limit
    assert r.status_code == 200 and r.json() == {"size": 20_000}
    r = c.post("/up", files={"f": ("a.bin", b"x" * 60_000)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_other_paths_keep_the_buffered_limit_and_utf8_check():
    c = _client()
    assert c.post("/api", content=b"x" * 3_000).status_code == 413
    assert c.post("/api", content=b"\xff").status_code == 400
    assert c.post("/api", content=b"ok").json() == {"size": 2}
    assert c.post("/up", content=b"x" * 3_000).status_code == 413  # not multipart: the normal limit
