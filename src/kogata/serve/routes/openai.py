"""``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` — OpenAI's API, thin."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from kogata.serve import openai_io as io
from kogata.serve.errors import APIError, bad_request
from kogata.serve.gateway.auth import Principal
from kogata.serve.generation import Generation, map_engine_error, new_id, sse, watch_disconnect
from kogata.serve.pipeline import RequestContext
from kogata.serve.schemas import (
    ERROR_RESPONSES,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ModelList,
)
from kogata.serve.state import ServeState, authenticate, check_model_allowed, get_state
from kogata.serve.traffic import after_response

router = APIRouter(prefix="/v1", tags=["openai"])
MAX_EMBED_INPUTS = 256
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# "stream": true answers with server-sent events instead of the JSON body
_SSE_EVENT = {"type": "object", "required": ["data"],
              "properties": {"data": {"type": "string", "description": "a JSON chunk, or [DONE] at the end"},
                             "event": {"type": "string"}}}
STREAMING = {**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {"schema": _SSE_EVENT}},
                                      "description": "the completion (JSON), or SSE chunks ending with `data: [DONE]`"}}


class EngineSSE(StreamingResponse):
    """A streaming response that always finishes its generation's bookkeeping, even when the client is gone
    before the first byte (then the body iterator never starts and its ``finally`` would never run)."""

    def __init__(self, content: Any, generation: Generation, kind: str | None = None):
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self.generation = generation
        self.kind = kind  # canary / control / None (serve.traffic)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            g = self.generation
            g.close()
            status = "ok" if g.outcome.finish_reason else "cancelled"
            g.finish(status)
            after_response(g.state, g, self.kind, status)


@router.get("/models", response_model=ModelList, responses=ERROR_RESPONSES)
def list_models(state: ServeState = Depends(get_state), who: Principal = Depends(authenticate)) -> dict[str, Any]:
    data = []
    for alias, m in state.models.routes().items():
        if who.may_use(alias, m.artifact.name, m.artifact.id):
            data.append({"id": alias, "object": "model", "created": int(m.loaded_at), "owned_by": "kogata",
                         "artifact_id": m.id, "artifact_name": m.artifact.name, "kind": m.kind})
    return {"object": "list", "data": data}


def _lm_lease(state: ServeState, who: Principal, name: str, client: str = "") -> tuple[Any, str | None]:
    """A lease on the model that answers ``name`` — the canary's model for the share of clients it takes — and
    "canary" / "control" / None."""
    kind = None
    split = state.traffic
    if split is not None and split.canary:
        requested, _ = state.models.resolve(name)
        target, kind = split.route(requested, client)
        try:
            lease = state.models.acquire(target)
        except APIError:  # the canary's model is not loaded: production answers, nothing is recorded
            lease, kind = state.models.acquire(name), None
        lease.alias = requested  # the client asked for this alias; x-kogata-artifact says who answered
    else:
        lease = state.models.acquire(name)
    try:
        check_model_allowed(who, lease.alias, lease.model)
        if lease.model.kind != "lm":
            raise bad_request(f"model {name!r} is an embedder; use /v1/embeddings", param="model")
    except BaseException:
        lease.release()
        raise
    return lease, kind


async def _run(request: Request, state: ServeState, who: Principal, body: Any, endpoint: str,
               passages: list[str] | None = None) -> Any:  # fmt: skip
    client = f"{who.name}\x00{getattr(body, 'user', None) or (request.client.host if request.client else '')}"
    lease, kind = _lm_lease(state, who, body.model, client)
    try:
        n_ctx = lease.model.backend.n_ctx
        build = io.chat_request if endpoint == "chat.completions" else io.completion_request
        gen, default_max = build(body, n_ctx=n_ctx, default_max=state.config.max_tokens_default)
    except BaseException:
        lease.release()
        raise
    request.state.artifact_id = lease.model.id
    rid = new_id("chatcmpl" if endpoint == "chat.completions" else "cmpl")
    ctx = RequestContext(request_id=rid, endpoint=endpoint, key_name=who.name, model_alias=lease.alias,
                         artifact_id=lease.model.id, messages=gen.messages, prompt=gen.prompt, json_schema=gen.json_schema)
    g = Generation(state, lease, who, ctx, gen, param="messages" if gen.messages is not None else "prompt",
                   default_max=default_max)
    if passages:  # the web UI's grounded answer (server-side only, see chat_with_passages)
        ctx.extra["passages"] = list(passages)  # the output checks (grounding) see what the model saw
    grounding = None
    if getattr(body, "retrieval", None) is not None:
        from kogata.serve.grounded import Grounding
        from kogata.serve.routes.search import indexes_of

        r = body.retrieval
        grounding = Grounding(indexes_of(request, state), r.index, r.k, r.mode)
        g.before_submit = grounding.prepare
    await g.start()  # raises APIError (400/429/503/504) and releases the lease on failure
    include_usage = bool(body.stream and body.stream_options and body.stream_options.include_usage)

    def events() -> EngineSSE:
        content = _chat_events(g, rid, include_usage, grounding) if endpoint == "chat.completions" else _text_events(g, rid, include_usage)
        return EngineSSE(content, g, kind)

    if body.stream and not g.may_hold:
        return events()
    watcher = asyncio.ensure_future(watch_disconnect(request.receive, g.close))
    try:
        out = await g.collect()
    except Exception as exc:
        g.finish("timeout" if isinstance(exc, TimeoutError) else "error")
        raise map_engine_error(exc, param=g.param) from None
    finally:
        watcher.cancel()
        g.close()
    g.finish()  # the audit row is committed before anything is sent
    if not body.stream:
        after_response(state, g, kind, "ok")
    if g.held:
        return JSONResponse(io.held_response(rid, lease.alias, lease.model.id, endpoint, g.ctx.extra.get("review_item"), g.usage()),
                            status_code=202, headers={"Location": f"/v1/held/{rid}", "Retry-After": "5"})
    if body.stream:  # the policy could have held the answer, so it was gathered first: now it streams
        return events()
    pieces = out.pieces if g.client_logprobs else None
    if endpoint == "chat.completions":
        doc = io.chat_completion(rid, lease.alias, lease.model.id, out.text, out.finish_reason, g.usage(), pieces)
        return JSONResponse({**doc, **grounding.response_fields(out.text)} if grounding is not None else doc)
    echo = gen.prompt if getattr(body, "echo", False) else ""
    return JSONResponse(io.text_completion(rid, lease.alias, lease.model.id, out.text, out.finish_reason, g.usage(), pieces,
                                           echo or ""))


async def _chat_events(g: Generation, rid: str, include_usage: bool, grounding: Any = None):
    created, alias, art = int(time.time()), g.lease.alias, g.lease.model.id
    yield sse(io.chat_chunk(rid, created, alias, art, {"role": "assistant", "content": ""}))
    try:
        async for text, lp, top in g.texts():
            yield sse(io.chat_chunk(rid, created, alias, art, {"content": text}, logprob=(text, lp, top) if g.client_logprobs else None))
    except Exception as exc:  # headers are sent: the error goes into the stream, as OpenAI does
        g.finish("timeout" if isinstance(exc, TimeoutError) else "error")
        yield sse(map_engine_error(exc, param=g.param).body())
        return
    g.finish()
    last = io.chat_chunk(rid, created, alias, art, {}, finish=g.outcome.finish_reason)
    yield sse({**last, **grounding.response_fields(g.outcome.text)} if grounding is not None else last)
    if include_usage:
        yield sse(io.usage_chunk(rid, created, alias, art, "chat.completion.chunk", g.usage()))
    yield sse("[DONE]")


async def _text_events(g: Generation, rid: str, include_usage: bool):
    created, alias, art = int(time.time()), g.lease.alias, g.lease.model.id
    try:
        async for text, lp, top in g.texts():
            yield sse(io.text_chunk(rid, created, alias, art, text, logprob=(text, lp, top) if g.client_logprobs else None))
    except Exception as exc:  # headers are sent: the error goes into the stream, as OpenAI does
        g.finish("timeout" if isinstance(exc, TimeoutError) else "error")
        yield sse(map_engine_error(exc, param=g.param).body())
        return
    g.finish()
    yield sse(io.text_chunk(rid, created, alias, art, "", finish=g.outcome.finish_reason))
    if include_usage:
        yield sse(io.usage_chunk(rid, created, alias, art, "text_completion", g.usage()))
    yield sse("[DONE]")


@router.post("/chat/completions", response_model=ChatCompletion, responses=STREAMING)
async def chat_completions(body: ChatCompletionRequest, request: Request, state: ServeState = Depends(get_state),
                           who: Principal = Depends(authenticate)) -> Any:
    return await _run(request, state, who, body, "chat.completions")


async def chat_with_passages(body: ChatCompletionRequest, request: Request, state: ServeState, who: Principal,
                             passages: list[str]) -> Any:  # fmt: skip
    """A chat completion whose output checks (the guard's grounding check) see ``passages`` — what the web UI's
    grounded answer put in the prompt. Not a route: passages never come from a client."""
    return await _run(request, state, who, body, "chat.completions", passages=passages)


@router.post("/completions", response_model=Completion, responses=STREAMING)
async def completions(body: CompletionRequest, request: Request, state: ServeState = Depends(get_state),
                      who: Principal = Depends(authenticate)) -> Any:
    return await _run(request, state, who, body, "completions")


@router.post("/embeddings", response_model=EmbeddingList, responses=ERROR_RESPONSES)
async def embeddings(body: EmbeddingRequest, request: Request, state: ServeState = Depends(get_state),
                     who: Principal = Depends(authenticate)) -> Any:
    import numpy as np

    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if len(texts) > MAX_EMBED_INPUTS:
        raise bad_request(f"{len(texts)} inputs in one request; at most {MAX_EMBED_INPUTS}", param="input")
    lease = state.models.acquire(body.model)
    try:
        check_model_allowed(who, lease.alias, lease.model)
        if lease.model.kind != "embedder":
            raise bad_request(f"model {body.model!r} is a language model, not an embedder", param="model")
        request.state.artifact_id = lease.model.id
        state.quotas.admit(who)
        vectors, tokens = await run_in_threadpool(lease.model.backend.embed, texts)
    finally:
        lease.release()
    vectors = np.asarray(vectors, dtype=np.float32)
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise bad_request(f"this embedder gives {vectors.shape[1]} dimensions; dimensions={body.dimensions} is not available",
                          param="dimensions")
    state.usage.count(who, requests=1, tokens_in=tokens)
    state.quotas.add_tokens(who, tokens)
    if body.encoding_format == "base64":
        data = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        data = [v.tolist() for v in vectors]
    return JSONResponse({"object": "list", "model": lease.alias,
                         "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
