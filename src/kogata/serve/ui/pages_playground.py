"""The playground: chat with a served model (streamed), the same question to two served models side by side
(the browser sends both through ``/ui/playground/chat`` at once and times them), and, when a document index
exists, a grounded answer with citations (``/ui/playground/grounded``).

Every answer goes through the served API's own path (:func:`kogata.serve.routes.openai.chat_completions`: guard
checks, audit row, metrics) as ``ui:<user>``. The grounded answer retrieves with the server's open indexes (the
:class:`~kogata.serve.routes.search.SearchIndexes` that ``/v1/search`` uses) and answers with
:func:`kogata.search.answer.answer_question`, whose model call is that same served path.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from kogata.core.errors import KogataError
from kogata.serve.ui.security import UIContext, check_csrf, viewer
from kogata.serve.ui.web import render, serve_state

router = APIRouter(prefix="/ui")
MAX_CHAT_MESSAGES = 40
MAX_CHAT_CHARS = 8000
MAX_QUESTION_CHARS = 2000
GROUNDED_K = 3  # passages given to the model: a small model's context holds few


def served_lms(request: Request) -> list[dict[str, Any]]:
    from kogata.serve.ui.pages_main import served_models

    return [m for m in served_models(request) if m["kind"] == "lm"]


def document_indexes(request: Request) -> list[dict[str, Any]]:
    """The store's document indexes (``kogata index list``), newest version of each; none when it cannot be read."""
    from kogata.search.index import list_indexes

    store = serve_state(request).store
    try:
        return list_indexes(store) if store is not None else []
    except KogataError:
        return []


@router.get("/playground")
def playground(request: Request, ctx: UIContext = Depends(viewer)) -> Response:
    return render(ctx, "playground.html.j2", title=ctx.t("playground_title"), models=served_lms(request),
                  indexes=document_indexes(request))


def _body_error(ctx: UIContext, exc: ValidationError) -> JSONResponse:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    return JSONResponse({"error": ctx.t("err_chat_body", field=where, problem=err.get("msg", ""))}, status_code=400)


def _who(ctx: UIContext) -> Any:
    from kogata.serve.gateway.auth import Principal

    return Principal(key_id=None, name=f"ui:{ctx.user.name}" if ctx.user else "ui")


# ---- chat (and each side of a comparison) --------------------------------------------------------------
class ChatTurn(BaseModel):
    role: str = Field(pattern="^(user|assistant)$")
    content: str = Field(max_length=MAX_CHAT_CHARS)


class ChatBody(BaseModel):
    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatTurn] = Field(min_length=1, max_length=MAX_CHAT_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=2048)  # None: the server's default, fitted to the context
    usage: bool = False  # end the stream with the token counts (the comparison shows them)


@router.post("/playground/chat")
async def chat(request: Request, ctx: UIContext = Depends(viewer), _csrf: UIContext = Depends(check_csrf)) -> Response:
    """The chat goes through the served API's own path (guard checks, audit row, metrics), as ``ui:<user>``."""
    from kogata.serve.routes.openai import chat_completions
    from kogata.serve.schemas import ChatCompletionRequest

    try:
        body = ChatBody.model_validate_json(await request.body())
    except ValidationError as exc:
        return _body_error(ctx, exc)
    extra: dict[str, Any] = {"max_tokens": body.max_tokens} if body.max_tokens is not None else {}
    if body.usage:
        extra["stream_options"] = {"include_usage": True}
    req = ChatCompletionRequest(model=body.model, messages=[m.model_dump() for m in body.messages], stream=True, **extra)
    try:
        return await chat_completions(req, request, state=serve_state(request), who=_who(ctx))
    except KogataError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)


# ---- grounded answer from a document index -------------------------------------------------------------
class GroundedBody(BaseModel):
    model: str = Field(min_length=1, max_length=256)
    index: str = Field(min_length=1, max_length=64)
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int = Field(default=GROUNDED_K, ge=1, le=10)
    max_tokens: int | None = Field(default=None, ge=1, le=2048)


class HeldForReview(Exception):
    """The guard policy held the answer for a reviewer (the API answered 202)."""


class ServedChat:
    """A runtime-shaped ``chat(messages, max_tokens, stop)`` for :func:`answer_question`, run in a worker thread:
    each call is one non-streamed ``chat_completions`` on the server's event loop (guard, audit, metrics)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: Request, who: Any, model: str, max_tokens: int | None):
        self.loop, self.request, self.who, self.model, self.max_tokens = loop, request, who, model, max_tokens
        self.usage: dict[str, Any] = {}

    def chat(self, messages: list[dict[str, str]], max_tokens: int | None = None, stop: Any = None) -> str:
        from kogata.serve.routes.openai import chat_completions
        from kogata.serve.schemas import ChatCompletionRequest

        state = serve_state(self.request)
        wanted = self.max_tokens or max_tokens
        req = ChatCompletionRequest(model=self.model, messages=messages, stream=False, **({"max_tokens": wanted} if wanted else {}))
        future = asyncio.run_coroutine_threadsafe(chat_completions(req, self.request, state=state, who=self.who), self.loop)
        response = future.result(timeout=state.config.request_timeout_s + 5)
        body = json.loads(response.body)
        if response.status_code == 202:
            raise HeldForReview()
        self.usage = body.get("usage") or {}
        return body["choices"][0]["message"]["content"] or ""


def _retrieve(request: Request, body: GroundedBody) -> tuple[list[Any], str]:
    """The index's best ``k`` passages for the question, as ``/v1/search`` ranks them (hybrid, BM25 without an embedder)."""
    from kogata.serve.routes.search import indexes_of

    index = indexes_of(request, serve_state(request)).get(body.index)
    mode = "hybrid" if index.embedder_info else "bm25"
    return index.retriever(need_dense=mode != "bm25").search(body.question, body.k, mode), mode


@router.post("/playground/grounded")
async def grounded(request: Request, ctx: UIContext = Depends(viewer), _csrf: UIContext = Depends(check_csrf)) -> Response:
    """Search the documents, then answer from the passages found with numbered citations (or "not in the documents")."""
    from kogata.search.answer import answer_question
    from kogata.serve.errors import APIError

    try:
        body = GroundedBody.model_validate_json(await request.body())
    except ValidationError as exc:
        return _body_error(ctx, exc)
    if body.index not in {i["name"] for i in document_indexes(request)}:
        return JSONResponse({"error": ctx.t("err_no_index", index=body.index[:64])}, status_code=404)
    started = time.perf_counter()
    model = ServedChat(asyncio.get_running_loop(), request, _who(ctx), body.model, body.max_tokens)
    try:
        hits, mode = await run_in_threadpool(_retrieve, request, body)
        searched = time.perf_counter()
        answer = await run_in_threadpool(answer_question, model, body.question, hits)
    except HeldForReview:
        return JSONResponse({"error": ctx.t("chat_held")}, status_code=202)
    except APIError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    except KogataError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    done = time.perf_counter()
    out = answer.to_dict()
    out.update({"mode": mode, "usage": model.usage, "search_ms": round((searched - started) * 1000, 1),
                "latency_ms": round((done - started) * 1000, 1)})
    return JSONResponse(out)
