"""The serial engine: the serving-engine contract over any LM runtime's ``stream()``, one request at a time.

Used for ``hf`` artifacts (the torch runtime): transformers has no cheap way to batch sequences of different
lengths that join at different times on CPU, so requests wait in the bounded queue and run one after another
on one background thread. Same interface, same errors, same stream objects as the batched llama.cpp engine.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kogata.core.errors import KogataError
from kogata.runtimes.base import GenerateRequest, StreamPiece, Usage
from kogata.runtimes.engine.errors import ContextOverflow, EngineBusy, EngineClosed
from kogata.runtimes.engine.stream import EngineStream
from kogata.runtimes.scoring import render_plain_chat
from kogata.runtimes.streaming import check_request


class SerialEngine:
    """``open_engine`` for an hf artifact: a runtime (built by ``runtime_factory`` in :meth:`start`) behind a queue."""

    parallel = 1

    def __init__(self, artifact: Any, runtime_factory: Callable[[], Any], *, ctx: int = 4096, max_waiting: int = 64):
        self.artifact = artifact
        self._factory = runtime_factory
        self.n_ctx = ctx
        self.max_waiting = max_waiting
        self.runtime: Any = None
        self._cond = threading.Condition(threading.RLock())
        self._waiting: collections.deque[tuple[EngineStream, Iterator[StreamPiece], float | None]] = collections.deque()
        self._current: EngineStream | None = None
        self._thread: threading.Thread | None = None
        self._ready = False
        self._closing = False
        self.load_s = 0.0

    def start(self) -> None:
        if self._ready:
            return
        started = time.perf_counter()
        self.runtime = self._factory()
        self.n_ctx = min(self.n_ctx, int(getattr(self.runtime, "max_length", self.n_ctx)))
        self._thread = threading.Thread(target=self._loop, name="kogata-serial-engine", daemon=True)
        self._thread.start()
        self.load_s = time.perf_counter() - started
        self._ready = True

    def ready(self) -> bool:
        return self._ready and not self._closing

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        self._require_started()
        if add_special:
            return self.runtime.tok_encode(text)
        return self.runtime.encode(text, add_special_tokens=False)

    def _has_template(self) -> bool:
        return bool(getattr(getattr(self.runtime, "tokenizer", None), "chat_template", None))

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The runtime's chat rendering (the tokenizer's template, else the plain transcript)."""
        self._require_started()
        if self._has_template():
            return self.runtime.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return render_plain_chat(messages)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"running": int(self._current is not None), "waiting": len(self._waiting), "parallel": 1}

    def _prompt_tokens(self, request: GenerateRequest) -> int:
        """Prompt length as the runtime will tokenize it (a templated chat adds no BOS of its own)."""
        if request.messages is None:
            return len(self.tokenize(request.prompt or ""))
        return len(self.tokenize(self.render_chat(request.messages), add_special=not self._has_template()))

    def submit(self, request: GenerateRequest, *, queue_timeout_s: float | None = None) -> EngineStream:
        self._require_started()
        check_request(request)
        n_prompt = self._prompt_tokens(request)
        if n_prompt + request.max_tokens > self.n_ctx:
            raise ContextOverflow(n_prompt, request.max_tokens, self.n_ctx)
        stream = EngineStream(n_prompt, on_cancel=self._wake)
        pieces = self.runtime.stream(request, cancel=stream._cancelled)  # checks the request now, runs when iterated
        deadline = None if queue_timeout_s is None else stream.submitted_at + queue_timeout_s
        with self._cond:
            if self._closing:
                raise EngineClosed("the engine is shutting down", "retry on another replica or after restart")
            queued = int(self._current is not None) + len(self._waiting) - 1  # beyond the one that runs next
            if queued >= self.max_waiting:
                raise EngineBusy(f"the engine is busy: {len(self._waiting)} requests waiting (limit {self.max_waiting})",
                                 "retry after a short wait")
            self._waiting.append((stream, pieces, deadline))
            self._cond.notify_all()
        return stream

    def close(self, drain: bool = True) -> None:
        with self._cond:
            self._closing = True
            if not drain:
                for stream, _, _ in self._waiting:
                    stream._cancelled.set()
                if self._current is not None:
                    self._current._cancelled.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._ready = False
        if self.runtime is not None:
            self.runtime.close()
            self.runtime = None

    def _require_started(self) -> None:
        if self.runtime is None:
            raise EngineClosed("the engine is not started", "call start() first")

    def _wake(self, _stream: EngineStream) -> None:
        with self._cond:
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                if not self._waiting:
                    return
                stream, pieces, deadline = self._waiting.popleft()
                if stream.cancelled:
                    stream.push(StreamPiece(text="", finish_reason="cancelled", usage=Usage(stream.prompt_tokens, 0)))
                    continue
                if deadline is not None and time.monotonic() > deadline:
                    stream.fail(EngineBusy("the request waited too long in the queue without starting", "retry after a short wait"))
                    continue
                self._current = stream
            stream.started_at = time.monotonic()
            try:
                for piece in pieces:
                    stream.push(piece)
                    if piece.finish_reason is not None:
                        break
                if not stream.done:  # a runtime that ended without a final piece
                    stream.push(StreamPiece(text="", finish_reason="cancelled" if stream.cancelled else "length",
                                            usage=Usage(stream.prompt_tokens, 0)))
            except KogataError as exc:
                stream.fail(exc)
            except Exception as exc:  # a runtime failure ends this request, not the engine
                stream.fail(RuntimeError(f"generation failed: {exc}"))
            finally:
                with self._cond:
                    self._current = None

    def info(self) -> dict[str, Any]:
        info = dict(self.runtime.info()) if self.runtime is not None else {}
        info.update(engine="serial", parallel=1, n_ctx=self.n_ctx, load_s=round(self.load_s, 3))
        return info
