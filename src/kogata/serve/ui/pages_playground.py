"""The playground: chat with a served model (streamed), the same question to two served models side by side
(the browser sends both through ``/ui/playground/chat`` at once and times them), and, when a document index
exists, a grounded answer with citations (``/ui/playground/grounded``).

Every answer goes through the served API's own path (:func:`kogata.serve.routes.openai.chat_completions`: guard
checks, audit row, metrics) as ``ui:<user>``. The grounded answer takes the steps of grounded chat completions
(:mod:`kogata.serve.grounded`): :func:`~kogata.serve.grounded.find_passages` ranks the server's open indexes as
``/v1/search`` does, weak retrieval is "not in the documents" without a model call, otherwise the grounded prompt
(:meth:`~kogata.serve.grounded.Passages.messages`) goes to that served path and the answer's ``[n]`` are mapped to
their chunks (:meth:`~kogata.serve.grounded.Passages.answer`).
"""

from __future__ import annotations

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


ANSWER_MAX_TOKENS = 200  # without max_tokens in the body (kogata.search.answer.answer_question's default)


class HeldForReview(Exception):
    """The guard policy held the answer for a reviewer (the API answered 202)."""


async def _served_answer(request: Request, who: Any, model: str, messages: list[dict[str, str]],
                         max_tokens: int | None, passages: list[str]) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """(the model's text, usage) for the grounded prompt: one non-streamed chat completion (guard, audit, metrics);
    ``passages`` go to the output checks as with chat-completions retrieval (never client input)."""
    from kogata.serve.routes.openai import chat_with_passages
    from kogata.serve.schemas import ChatCompletionRequest

    req = ChatCompletionRequest(model=model, messages=messages, stream=False, max_tokens=max_tokens or ANSWER_MAX_TOKENS)
    response = await chat_with_passages(req, request, serve_state(request), who, passages)
    if response.status_code == 202:
        raise HeldForReview()
    body = json.loads(response.body)
    return body["choices"][0]["message"]["content"] or "", body.get("usage") or {}


@router.post("/playground/grounded")
async def grounded(request: Request, ctx: UIContext = Depends(viewer), _csrf: UIContext = Depends(check_csrf)) -> Response:
    """Search the documents, then answer from the passages found with numbered citations (or "not in the documents")."""
    from kogata.serve.errors import APIError
    from kogata.serve.grounded import find_passages
    from kogata.serve.routes.search import indexes_of

    try:
        body = GroundedBody.model_validate_json(await request.body())
    except ValidationError as exc:
        return _body_error(ctx, exc)
    if body.index not in {i["name"] for i in document_indexes(request)}:
        return JSONResponse({"error": ctx.t("err_no_index", index=body.index[:64])}, status_code=404)
    started = time.perf_counter()
    text, usage = None, {}
    try:
        found = await run_in_threadpool(find_passages, indexes_of(request, serve_state(request)), body.index, body.question, body.k)
        searched = time.perf_counter()
        if not found.weak:  # weak retrieval: "not in the documents", the model is not asked
            text, usage = await _served_answer(request, _who(ctx), body.model, found.messages(body.question), body.max_tokens,
                                               [h.chunk.text for h in found.hits])
    except HeldForReview:
        return JSONResponse({"error": ctx.t("chat_held")}, status_code=202)
    except APIError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    except KogataError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    done = time.perf_counter()
    out = found.answer(body.question, text).to_dict()
    out.update({"mode": found.mode, "usage": usage, "search_ms": round((searched - started) * 1000, 1),
                "latency_ms": round((done - started) * 1000, 1)})
    return JSONResponse(out)
