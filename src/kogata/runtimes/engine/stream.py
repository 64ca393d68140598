"""``EngineStream``: the consumer's end of one request — pieces pushed by the engine thread, read by a client.

The engine thread calls :meth:`EngineStream.push` (and :meth:`EngineStream.fail`); the consumer reads the
pieces either blocking (``for piece in stream``) or from asyncio (``async for piece in stream``): the first
reader chooses, a stream has one reader. The async reader bridges threads with ``loop.call_soon_threadsafe``
into an :class:`asyncio.Queue`, so the event loop is never blocked by the engine.

``cancel()`` may be called from any thread; the engine frees the sequence's slot before its next decode step
and the stream ends with a piece whose ``finish_reason`` is ``"cancelled"``. A reader that stops early (a
``break``, a closed async generator when an HTTP client disconnects) cancels the request too.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from kogata.runtimes.base import StreamPiece

_ids = itertools.count(1)


class EngineStream:
    """One submitted request: ``id``, ``prompt_tokens`` and the pieces of its generation."""

    def __init__(self, prompt_tokens: int, on_cancel: Callable[[EngineStream], None] | None = None):
        self.id = f"req-{next(_ids)}-{time.monotonic_ns() % 1_000_000_000:09d}"
        self.prompt_tokens = prompt_tokens
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None  # when the engine admitted it into a running slot
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.finish_reason: str | None = None
        self._on_cancel = on_cancel
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._items: deque[Any] = deque()  # StreamPiece | BaseException
        self._async: tuple[asyncio.AbstractEventLoop, asyncio.Queue] | None = None
        self._reader: str | None = None
        self._read_to_end = False  # the reader took the final piece (or the error): leaving then cancels nothing
        self._cancelled = threading.Event()
        self._done = False

    # ------------------------------------------------------------------ engine side
    def push(self, piece: StreamPiece) -> None:
        """Deliver one piece (called from the engine thread); a piece with ``finish_reason`` ends the stream."""
        now = time.monotonic()
        if piece.token_ids and self.first_token_at is None:
            self.first_token_at = now
        if piece.finish_reason is not None:
            self.finished_at = now
            self.finish_reason = piece.finish_reason
        self._deliver(piece, final=piece.finish_reason is not None)

    def fail(self, error: BaseException) -> None:
        """End the stream with an exception that the reader re-raises (queue timeout, engine failure)."""
        self.finished_at = time.monotonic()
        self._deliver(error, final=True)

    def _deliver(self, item: Any, *, final: bool) -> None:
        with self._lock:
            if self._done:
                return
            self._done = final
            if self._async is not None:
                loop, queue = self._async
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                except RuntimeError:  # the reader's event loop is closed: nobody is listening any more
                    self._cancelled.set()
            else:
                self._items.append(item)
                self._ready.notify_all()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def done(self) -> bool:
        return self._done

    @property
    def queue_time_s(self) -> float | None:
        return None if self.started_at is None else self.started_at - self.submitted_at

    # ------------------------------------------------------------------ consumer side
    def cancel(self) -> None:
        """Stop the generation (client gone, timeout): the engine frees the slot before its next step."""
        if self._done or self._cancelled.is_set():
            return
        self._cancelled.set()
        if self._on_cancel is not None:
            self._on_cancel(self)

    def _claim(self, kind: str) -> None:
        with self._lock:
            if self._reader is not None:
                raise RuntimeError(f"EngineStream {self.id} is already being read ({self._reader})")
            self._reader = kind

    def __iter__(self) -> Iterator[StreamPiece]:
        self._claim("blocking")
        return self._iterate()

    def _iterate(self) -> Iterator[StreamPiece]:
        try:
            while not self._read_to_end:
                with self._lock:
                    while not self._items:
                        self._ready.wait()
                    item = self._items.popleft()
                yield self._take(item)
        finally:
            self._reader_gone()

    def __aiter__(self) -> AsyncIterator[StreamPiece]:
        self._claim("async")
        return self._aiterate()

    async def _aiterate(self) -> AsyncIterator[StreamPiece]:
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:  # hand over what arrived before the reader, then switch delivery to the loop
            while self._items:
                queue.put_nowait(self._items.popleft())
            self._async = (asyncio.get_running_loop(), queue)
        try:
            while not self._read_to_end:
                yield self._take(await queue.get())
        finally:
            self._reader_gone()

    # both readers: take one delivered item; a reader that stops before the end cancels the request
    def _take(self, item: StreamPiece | BaseException) -> StreamPiece:
        """The piece to hand out (an error is re-raised); notes when it was the last one."""
        self._read_to_end = isinstance(item, BaseException) or item.finish_reason is not None
        if isinstance(item, BaseException):
            raise item
        return item

    def _reader_gone(self) -> None:
        if not self._read_to_end:
            self.cancel()

    def text(self) -> str:
        """Block until the end and return the whole generated text (convenience for tests and eval)."""
        return "".join(piece.text for piece in self)

    def __repr__(self) -> str:
        return f"EngineStream({self.id}, prompt_tokens={self.prompt_tokens}, finish_reason={self.finish_reason})"
