"""One generation request through the serving path: lease the model, check the input, submit to the engine,
stream the pieces through the output check, count usage, record the audit row, build OpenAI's response shapes.

:class:`Generation` is used by both ``/v1/chat/completions`` and ``/v1/completions``; the routes only parse the
body and pick the response builder. Nothing here logs prompt or output text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from kogata.core.errors import KogataError
from kogata.runtimes.base import GenerateRequest, StreamPiece
from kogata.serve.errors import APIError, bad_request, rate_limited
from kogata.serve.gateway.auth import Principal
from kogata.serve.metrics import labels_for
from kogata.serve.models import Lease
from kogata.serve.pipeline import Decision, RequestContext

log = logging.getLogger("kogata.serve")

THREADPOOL_SUBMIT_CHARS = 32_768  # longer prompts are tokenized off the event loop


@dataclass
class Outcome:
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pieces: list[tuple[str, float | None, Any]] = field(default_factory=list)  # (text, logprob, top) when logprobs were asked


def map_engine_error(exc: BaseException, *, param: str) -> APIError:
    from kogata.runtimes.engine import ContextOverflow, EngineBusy

    closed = _engine_closed_type()
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, TimeoutError):
        return APIError(504, "the request ran past the server's request timeout and was cancelled", code="timeout")
    if isinstance(exc, ContextOverflow):
        return APIError(400, str(exc), code="context_length_exceeded", param=param)
    if isinstance(exc, EngineBusy):
        return rate_limited(str(exc), getattr(exc, "retry_after_s", 1.0), code="engine_busy")
    if closed is not None and isinstance(exc, closed):
        return APIError(503, "the model is restarting or shutting down; retry shortly", code="engine_closed",
                        headers={"Retry-After": "1"})
    if isinstance(exc, KogataError):
        return bad_request(str(exc))
    log.exception("generation failed")
    return APIError(500, "internal error while generating (see the server log)", code="internal_error", type="api_error")


def _engine_closed_type() -> type | None:
    try:
        from kogata.runtimes.engine import EngineClosed
    except ImportError:
        return None
    return EngineClosed


class Generation:
    """One request's generation, from submission to accounting. Created by :meth:`start` (errors before the
    first token surface there, so the route can still answer with a proper status code)."""

    def __init__(self, state: Any, lease: Lease, who: Principal, ctx: RequestContext, gen: GenerateRequest,
                 *, param: str, default_max: bool = False):
        self.state = state
        self.lease = lease
        self.who = who
        self.ctx = ctx
        self.gen = gen
        self.param = param
        self.default_max = default_max  # max_tokens was not in the request: may shrink to fit the context
        self.engine = lease.model.backend
        self.client_logprobs = bool(gen.logprobs)  # what the client asked; the checks may need them anyway
        if state.pipeline.needs_logprobs:
            gen.logprobs = True
        self.labels = labels_for(lease.alias, lease.model.id, who.name)
        self.t0 = time.perf_counter()
        self.deadline = time.monotonic() + state.config.request_timeout_s
        self.stream: Any = None
        self.outcome = Outcome()
        self.guard = state.pipeline.output_guard(ctx)
        self.output_decision = Decision()
        self.input_decision = Decision()
        self._first: StreamPiece | None = None
        self._iter: AsyncIterator[StreamPiece] | None = None
        self._ttft: float | None = None
        self._last_tok: float | None = None
        self._gaps: list[float] = []
        self._finished = False
        self._closed = False
        self.canned: str | None = None  # the input check blocked: answer with this text, no engine call
        self.canned_finish = "content_filter"  # finish_reason of a canned answer ("stop" for "not in the documents")
        self.before_submit: Any = None  # called (in a worker thread) after the input checks: grounding rewrites the request
        self._collected = False  # collect() ran: texts() replays the collected answer

    # ---- submission --------------------------------------------------------------------------------
    async def start(self) -> Generation:
        try:
            self._check_input()
            if self.canned is None and self.before_submit is not None:
                await run_in_threadpool(self.before_submit, self)
            if self.canned is not None:
                return self
            self.state.quotas.admit(self.who)
            self.stream = await self._submit()
            self._iter = self.stream.__aiter__()
            self._first = await self._next()  # queue timeouts and engine failures before any output become statuses
        except BaseException as exc:
            self.close()
            if isinstance(exc, (asyncio.CancelledError, APIError)):
                raise
            if isinstance(exc, Exception):
                raise map_engine_error(exc, param=self.param) from None
            raise
        return self

    def _check_input(self) -> None:
        pipe = self.state.pipeline
        if self.gen.messages is not None:
            for m in self.gen.messages:
                if m["role"] != "user":
                    continue
                d = pipe.check_input(self.ctx, m["content"])
                self._apply_input(d, m)
                if self.canned is not None:
                    return
        else:
            d = pipe.check_input(self.ctx, self.gen.prompt or "")
            self._apply_input(d, None)

    def _apply_input(self, d: Decision, message: dict[str, str] | None) -> None:
        if d.action != "allow" or d.detail is not None:
            self.input_decision = d
        if d.action == "block":
            self.canned, self.canned_finish = d.text or "", "content_filter"
        elif d.action == "redact" and d.text is not None:
            if message is not None:
                message["content"] = d.text
            else:
                self.gen.prompt = d.text

    async def _submit(self) -> Any:
        from kogata.runtimes.engine import ContextOverflow

        timeout = self.state.config.queue_timeout_s
        size = len(self.gen.prompt or "") + sum(len(m["content"]) for m in self.gen.messages or [])

        async def once() -> Any:
            if size > THREADPOOL_SUBMIT_CHARS:
                return await run_in_threadpool(self.engine.submit, self.gen, queue_timeout_s=timeout)
            return self.engine.submit(self.gen, queue_timeout_s=timeout)

        if not self.default_max:
            return await once()
        try:
            return await once()
        except ContextOverflow as exc:  # max_tokens was our default: shrink it to what the context leaves
            room = exc.n_ctx - exc.prompt_tokens
            if room < 1:
                raise
            self.gen.max_tokens = room
            return await once()

    async def _next(self) -> StreamPiece | None:
        assert self._iter is not None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            piece = await asyncio.wait_for(self._iter.__anext__(), timeout=remaining)
        except StopAsyncIteration:
            return None
        now = time.perf_counter()
        if piece.token_ids:
            if self._ttft is None:
                self._ttft = now - self.t0
            elif self._last_tok is not None:
                self._gaps.append(now - self._last_tok)
            self._last_tok = now
        return piece

    # ---- reading -----------------------------------------------------------------------------------
    async def texts(self) -> AsyncIterator[tuple[str, float | None, Any]]:
        """(text safe to send, logprob of that piece, its top alternatives) until the end; then :attr:`outcome`
        is complete."""
        if self._collected:  # replay what collect() gathered (a stream the policy could have held)
            for item in self._replay():
                yield item
            return
        if self.canned is not None:
            self.outcome.text = self.canned
            self.outcome.finish_reason = self.canned_finish
            yield self.canned, None, None
            return
        piece = self._first
        self._first = None
        while piece is not None:
            if piece.logprob is not None and piece.token_ids:
                per_token = piece.logprob / len(piece.token_ids)
                self.ctx.logprobs.extend([per_token] * len(piece.token_ids))
            if piece.text:
                out = self.guard.feed(piece.text)
                self.outcome.text += out
                if self.client_logprobs:
                    self.outcome.pieces.append((out, piece.logprob, piece.top_logprobs))
                if out:
                    yield out, piece.logprob, piece.top_logprobs
            if piece.finish_reason is not None:
                self.outcome.finish_reason = piece.finish_reason
                if piece.usage is not None:
                    self.outcome.prompt_tokens = piece.usage.prompt_tokens
                    self.outcome.completion_tokens = piece.usage.completion_tokens
                break
            piece = await self._next()
        tail, verdict = self.guard.finish()
        decision = _as_decision(verdict)
        self.output_decision = decision
        if decision.action == "block":
            self.outcome.finish_reason = "content_filter"
        if tail:
            self.outcome.text += tail
            yield tail, None, None

    async def collect(self) -> Outcome:
        async for _ in self.texts():
            pass
        if self.output_decision.action in ("block", "redact") and self.output_decision.text is not None:
            if self.output_decision.text != self.outcome.text:
                self.outcome.pieces = []  # the whole answer is replaced: per-piece log-probabilities no longer apply
            self.outcome.text = self.output_decision.text  # non-streaming: the whole answer can still be replaced
        self._collected = True
        return self.outcome

    def _replay(self) -> list[tuple[str, float | None, Any]]:
        if self.client_logprobs and self.outcome.pieces:
            return list(self.outcome.pieces)
        return [(self.outcome.text, None, None)] if self.outcome.text else []

    @property
    def may_hold(self) -> bool:
        """Whether the answer could be held for a reviewer (then nothing streams until it is decided)."""
        return self.input_decision.action == "hold" or bool(getattr(self.guard, "hold_all", False))

    @property
    def held(self) -> bool:
        """The answer waits for a reviewer (known once the answer is complete)."""
        return "hold" in (self.input_decision.action, self.output_decision.action)

    # ---- the end -----------------------------------------------------------------------------------
    def finish(self, status: str = "ok") -> None:
        """Count usage, observe metrics, write the audit row (once)."""
        if self._finished:
            return
        self._finished = True
        o = self.outcome
        if self.stream is not None and not o.prompt_tokens:
            o.prompt_tokens = self.stream.prompt_tokens
        st = self.state
        st.usage.count(self.who, requests=1, tokens_in=o.prompt_tokens, tokens_out=o.completion_tokens)
        st.quotas.add_tokens(self.who, o.prompt_tokens + o.completion_tokens)
        e2e = time.perf_counter() - self.t0
        if self.stream is not None:
            st.metrics.observe_generation(self.labels, prompt_tokens=o.prompt_tokens, completion_tokens=o.completion_tokens,
                                          finish_reason=o.finish_reason if status == "ok" else status,
                                          ttft_s=self._ttft, token_gaps=self._gaps, e2e_s=e2e,
                                          queue_s=getattr(self.stream, "queue_time_s", None))
        for d in (self.input_decision, self.output_decision):
            st.metrics.observe_guard(self.lease.alias, d.detail)
        if status == "ok" and self.held:
            status = "held"
        if st.pipeline.records:
            st.pipeline.record(self.ctx, {
                "request_id": self.ctx.request_id, "endpoint": self.ctx.endpoint, "key_name": self.who.name,
                "model_alias": self.lease.alias, "artifact_id": self.lease.model.id, "status": status,
                "input": self.gen.messages if self.gen.messages is not None else self.gen.prompt,
                "output": o.text, "finish_reason": o.finish_reason,
                "verdicts": {"input": self.input_decision.detail, "output": self.output_decision.detail},
                "usage": {"prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens},
                "latency_s": e2e, "ttft_s": self._ttft,
            })

    def close(self) -> None:
        """Cancel the engine request if it still runs and return the model lease (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.stream is not None and not self.stream.done:
            self.stream.cancel()
        self.lease.release()

    def usage(self) -> dict[str, int]:
        o = self.outcome
        return {"prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens,
                "total_tokens": o.prompt_tokens + o.completion_tokens}


def _as_decision(verdict: Any) -> Decision:
    from kogata.serve.pipeline import as_decision

    return as_decision(verdict)


async def watch_disconnect(receive: Any, on_disconnect: Any) -> None:
    """Wait for the client to go away (non-streaming requests) and call ``on_disconnect``."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            on_disconnect()
            return


def sse(data: dict[str, Any] | str) -> bytes:
    if isinstance(data, str):
        return f"data: {data}\n\n".encode()
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
