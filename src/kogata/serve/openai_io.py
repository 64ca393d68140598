"""OpenAI bodies ↔ kogata's :class:`~kogata.runtimes.base.GenerateRequest` and response dicts.

Sampling defaults follow OpenAI (``temperature`` 1, ``top_p`` 1); ``max_tokens`` defaults to the server's
``max_tokens_default``, shrunk to what the context leaves. ``logprobs`` carry the chosen token's
log-probability per streamed piece and, when asked (chat ``top_logprobs: N``, completions ``logprobs: N``), the
N most likely tokens at that step (gguf artifacts; hf artifacts served by the torch runtime give none).
"""

from __future__ import annotations

import time
from typing import Any

from kogata.runtimes.base import GenerateRequest
from kogata.serve.errors import bad_request
from kogata.serve.schemas import MAX_STOP, MAX_STOP_CHARS, ChatCompletionRequest, CompletionRequest, ResponseFormat


def _stop(body: Any) -> list[str]:
    stop = body.stop_list()
    if len(stop) > MAX_STOP:
        raise bad_request(f"{len(stop)} stop strings given; at most {MAX_STOP} are allowed", param="stop")
    for s in stop:
        if not s:
            raise bad_request("a stop string is empty", param="stop")
        if len(s) > MAX_STOP_CHARS:
            raise bad_request(f"a stop string has {len(s)} characters; at most {MAX_STOP_CHARS} are allowed", param="stop")
    return stop


def _json_schema(rf: ResponseFormat | None) -> dict[str, Any] | None:
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {"type": "object"}
    if rf.json_schema is None:
        raise bad_request("response_format of type json_schema needs a json_schema object", param="response_format.json_schema")
    return rf.json_schema.schema_ or {"type": "object"}


def _max_tokens(requested: int | None, n_ctx: int, default: int, param: str) -> tuple[int, bool]:
    if requested is None:
        return min(default, n_ctx), True
    if requested > n_ctx:
        raise bad_request(f"max_tokens={requested} is more than this model's context of {n_ctx} tokens", param=param)
    return requested, False


def _sampling(body: Any) -> dict[str, Any]:
    return {
        "temperature": 1.0 if body.temperature is None else float(body.temperature),
        "top_p": 1.0 if body.top_p is None else float(body.top_p),
        "seed": body.seed,
        "stop": _stop(body),
    }


def chat_request(body: ChatCompletionRequest, *, n_ctx: int, default_max: int) -> tuple[GenerateRequest, bool]:
    """(request, whether max_tokens is the server default)."""
    param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    mt, is_default = _max_tokens(body.max_completion_tokens or body.max_tokens, n_ctx, default_max, param)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    if body.top_logprobs and not body.logprobs:
        raise bad_request("top_logprobs needs logprobs: true", param="top_logprobs")
    gen = GenerateRequest(messages=messages, max_tokens=mt, logprobs=bool(body.logprobs),
                          top_logprobs=body.top_logprobs or 0 if body.logprobs else 0,
                          json_schema=_json_schema(body.response_format), **_sampling(body))
    return gen, is_default


def completion_request(body: CompletionRequest, *, n_ctx: int, default_max: int) -> tuple[GenerateRequest, bool]:
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise bad_request(f"{len(prompt)} prompts in one request; send one prompt per request", param="prompt")
        prompt = prompt[0]
    if body.suffix:
        raise bad_request("suffix (fill-in-the-middle) is not supported", param="suffix")
    mt, is_default = _max_tokens(body.max_tokens, n_ctx, default_max, "max_tokens")
    gen = GenerateRequest(prompt=prompt, max_tokens=mt, logprobs=body.logprobs is not None,
                          top_logprobs=body.logprobs or 0, json_schema=_json_schema(body.response_format), **_sampling(body))
    return gen, is_default


# ---- responses -----------------------------------------------------------------------------------
def fingerprint(artifact_id: str) -> str:
    return f"kogata-{artifact_id}"


Piece = tuple[str, float | None, list[tuple[str, float]] | None]  # (text, logprob, top alternatives)


def _chat_logprobs(pieces: list[Piece]) -> dict[str, Any]:
    return {"content": [{"token": t, "logprob": lp if lp is not None else 0.0, "bytes": list(t.encode("utf-8")),
                         "top_logprobs": [{"token": a, "logprob": alp, "bytes": list(a.encode("utf-8"))} for a, alp in top or []]}
                        for t, lp, top in pieces if t]}


def _text_logprobs(pieces: list[Piece], offset: int = 0) -> dict[str, Any]:
    tokens, lps, offsets, tops = [], [], [], []
    for t, lp, top in pieces:
        if not t:
            continue
        tokens.append(t)
        lps.append(lp)
        offsets.append(offset)
        offset += len(t)
        tops.append(dict(top or []))
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops if any(tops) else None, "text_offset": offsets}


def chat_completion(rid: str, alias: str, artifact_id: str, text: str, finish: str | None, usage: dict[str, int],
                    pieces: list[Piece] | None) -> dict[str, Any]:
    return {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": alias,
        "system_fingerprint": fingerprint(artifact_id),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": _chat_logprobs(pieces) if pieces is not None else None, "finish_reason": finish}],
        "usage": usage,
    }


def chat_chunk(rid: str, created: int, alias: str, artifact_id: str, delta: dict[str, Any], finish: str | None = None,
               logprob: Piece | None = None) -> dict[str, Any]:
    return {
        "id": rid, "object": "chat.completion.chunk", "created": created, "model": alias,
        "system_fingerprint": fingerprint(artifact_id),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                     "logprobs": _chat_logprobs([logprob]) if logprob is not None else None}],
    }


def usage_chunk(rid: str, created: int, alias: str, artifact_id: str, obj: str, usage: dict[str, int]) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": created, "model": alias, "system_fingerprint": fingerprint(artifact_id),
            "choices": [], "usage": usage}


def text_completion(rid: str, alias: str, artifact_id: str, text: str, finish: str | None, usage: dict[str, int],
                    pieces: list[Piece] | None, echo_prefix: str = "") -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": alias,
        "system_fingerprint": fingerprint(artifact_id),
        "choices": [{"index": 0, "text": echo_prefix + text, "finish_reason": finish,
                     "logprobs": _text_logprobs(pieces, len(echo_prefix)) if pieces is not None else None}],
        "usage": usage,
    }


def text_chunk(rid: str, created: int, alias: str, artifact_id: str, text: str, finish: str | None = None,
               logprob: Piece | None = None) -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": created, "model": alias,
        "system_fingerprint": fingerprint(artifact_id),
        "choices": [{"index": 0, "text": text, "finish_reason": finish,
                     "logprobs": _text_logprobs([logprob]) if logprob is not None else None}],
    }


def held_response(rid: str, alias: str, artifact_id: str, endpoint: str, review_item: int | None,
                  usage: dict[str, int]) -> dict[str, Any]:
    """The ``202`` body of an answer the policy held for a reviewer: OpenAI's shape with no choices yet, and a
    ``kogata`` object saying where to poll (``GET /v1/held/{id}`` answers with the reviewed completion)."""
    return {
        "id": rid, "object": "chat.completion" if endpoint == "chat.completions" else "text_completion",
        "created": int(time.time()), "model": alias, "system_fingerprint": fingerprint(artifact_id),
        "choices": [], "usage": usage,
        "kogata": {"status": "pending", "review_item": review_item, "poll": f"/v1/held/{rid}",
                   "message": "the answer is held for a human reviewer; poll the URL until it is released"},
    }
