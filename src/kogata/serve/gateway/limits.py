"""Request limits at the ASGI layer, before any route runs: body size (413) and valid UTF-8 (400).

The body is read here once (at most ``max_body_bytes`` + 1 bytes, so a 10 MB upload is refused without being
held in memory) and replayed to the app. Paths in ``path_limits`` (the web UI's file upload) have their own limit
and a ``multipart/form-data`` body there is streamed through unbuffered — counted, cut off with 413 past the
limit, not UTF-8 checked (a file may be in any encoding; the upload handler reads it as ``kogata data`` does).
"""

from __future__ import annotations

import json
from typing import Any

from kogata.serve.errors import error_body

Scope = dict[str, Any]


class BodyLimits:
    def __init__(self, app: Any, *, max_body_bytes: int, path_limits: dict[str, int] | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        multipart = any(n == b"content-type" and v.lower().startswith(b"multipart/form-data") for n, v in scope.get("headers") or ())
        if multipart and scope.get("path", "") in self.path_limits:  # the route names its limit in its own page
            await self._stream(scope, receive, send, self.path_limits[scope["path"]])
            return
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reply(send, 400, "Content-Length is not a number", "invalid_request")
                    return
                if declared > limit:
                    await _reply(send, 413, f"request body of {declared} bytes is over the limit of {limit} bytes",
                                 "request_too_large")
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await _reply(send, 413, f"request body is over the limit of {limit} bytes", "request_too_large")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            await _reply(send, 400, f"request body is not valid UTF-8 (byte {exc.start})", "invalid_encoding")
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _stream(self, scope: Scope, receive: Any, send: Any, limit: int) -> None:
        """Pass the body through as it arrives; past ``limit`` the app sees a disconnect and the client a 413."""
        size, over, started = 0, False, False

        async def counted() -> dict[str, Any]:
            nonlocal size, over
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if over:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _reply(send, 413, f"request body is over the limit of {limit} bytes", "request_too_large")


async def _reply(send: Any, status: int, message: str, code: str) -> None:
    body = json.dumps(error_body(message, "invalid_request_error", None, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
