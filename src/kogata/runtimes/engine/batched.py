"""The batched llama.cpp engine: many sequences advanced by one ``llama_decode`` call per step, in process.

One background thread owns the ``llama_context`` (``n_seq_max = parallel``). Each step it

1. ends cancelled sequences (their KV cells are dropped with ``llama_memory_seq_rm`` at once) and expires
   requests that waited past their queue timeout;
2. admits waiting requests into free sequence slots — continuous batching: a request joins between two decode
   steps, it does not wait for the others to finish. With the prompt cache (``prompt_cache=True``, the
   default with per-sequence KV; :mod:`~kogata.runtimes.engine.prompt_cache`) a request takes the free slot
   whose kept KV cells share the longest prefix with its prompt, and computes only the rest;
3. fills one ``llama_batch``: for every slot in id order, either its one new token (a sequence that is
   generating) or the next chunk of its prompt (a sequence still reading its prompt; prompt chunks share
   what is left of ``n_batch`` after the generating sequences' tokens), asking for logits only where a token
   will be sampled;
4. calls ``llama_decode`` once, then samples every sequence that produced logits
   (:class:`~kogata.runtimes.engine.sampling.SequenceSampler`), turns token bytes into text
   (:class:`~kogata.runtimes.streaming.StreamAssembler`: UTF-8 safe, stop strings held back) and pushes a
   :class:`~kogata.runtimes.base.StreamPiece` to the request's :class:`EngineStream`.

A sequence ends on an end-of-generation token (``finish_reason="stop"``, the token is not counted), a stop
string (``"stop"``), ``max_tokens`` (``"length"``) or cancellation (``"cancelled"``); the last piece carries
exact :class:`~kogata.runtimes.base.Usage`. ``submit`` is thread-safe and never blocks: it checks the request
(:class:`ContextOverflow` when prompt + ``max_tokens`` exceed ``n_ctx`` tokens, the per-sequence context) and
raises :class:`EngineBusy` when ``max_waiting`` requests are already waiting. With ``queue_timeout_s`` a
request that is not admitted in time ends by raising :class:`EngineBusy` from its stream (before any piece).

KV cache layout: by default each sequence has its own ``n_ctx`` cells (``kv_unified=False``, as ``llama-server
-np N``); llama.cpp then splits a batch into one ubatch per run of *consecutive* sequence ids, so slots are
handed out lowest id first (unless the prompt cache finds one sharing a prefix) to keep running sequences contiguous (a gap left by a finished request costs an
extra ubatch until a new request fills it). ``kv_unified=True`` shares one pool of ``parallel * n_ctx`` cells:
always one ubatch, but every token attends over all cells in use. On the tiny test model (attention-bound)
the unified layout decoded faster; which wins on a real model is for ``benchmarks/engine_batching.py
--kv-unified`` to show.

Other work that needs the context (the ``llamacpp-engine`` runtime's scoring) runs on the same thread through
:meth:`BatchedLlamaEngine.call`, between decode steps, on its own sequence id (``parallel``), reserved when the
engine is built with ``scoring=True``.
"""

from __future__ import annotations

import codecs
import collections
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError
from kogata.core.settings import get_threads
from kogata.runtimes.base import GenerateRequest, StreamPiece, Usage
from kogata.runtimes.engine.errors import ContextOverflow, EngineBusy, EngineClosed
from kogata.runtimes.engine.llama_model import LlamaModel
from kogata.runtimes.engine.prompt import PromptBuilder
from kogata.runtimes.engine.prompt_cache import PromptCache
from kogata.runtimes.engine.sampling import SequenceSampler, top_alternatives
from kogata.runtimes.engine.stream import EngineStream
from kogata.runtimes.streaming import StreamAssembler, check_request


@dataclass
class _Sequence:
    stream: EngineStream
    request: GenerateRequest
    prompt: list[int]
    stop: list[str]
    sampler: SequenceSampler
    deadline: float | None = None  # latest admission time (queue timeout)
    slot: int = -1
    fed: int = 0  # prompt tokens already in the KV cache
    last: int = -1  # the token sampled last step, fed this step
    chunk: int = 0  # prompt tokens fed in the current step
    text: StreamAssembler | None = None
    decoder: Any = None
    stable: str = ""
    output_index: int = -1
    history: list[int] = field(default_factory=list)  # the tokens at KV positions 0..fed-1 (prompt, then fed samples)

    @property
    def reading_prompt(self) -> bool:
        return self.fed < len(self.prompt)


class BatchedLlamaEngine:
    """The serving-engine contract (see :mod:`kogata.runtimes.engine`) for ``gguf`` artifacts."""

    def __init__(self, artifact: Any, *, parallel: int = 4, ctx: int = 4096, threads: int | None = None,
                 max_waiting: int = 64, n_batch: int = 512, kv_type: str = "f16", kv_unified: bool = False,
                 flash_attn: bool = False, scoring: bool = False, prompt_cache: bool = True):
        if parallel < 1 or parallel > 255:
            raise KogataError(f"parallel={parallel} is out of range", "use 1 to 255 concurrent sequences")
        if ctx < 16:
            raise KogataError(f"ctx={ctx} is too small", "use a context of at least 16 tokens (e.g. 4096)")
        if max_waiting < 0:
            raise KogataError(f"max_waiting={max_waiting} must be 0 or more", "use e.g. 64")
        self.artifact = artifact
        self.path = Path(artifact.gguf_path)
        if not self.path.is_file():
            raise KogataError(f"GGUF file {self.path} is missing", "re-import or re-export the artifact")
        self.parallel = parallel
        self.n_ctx = ctx
        self.threads = threads or get_threads()
        self.max_waiting = max_waiting
        self.n_batch = max(n_batch, parallel + 1)  # room for every generating sequence plus a prompt token
        self.kv_type = kv_type
        self.kv_unified = kv_unified
        self.flash_attn = flash_attn
        self.scoring = scoring
        self._cache = PromptCache(prompt_cache and not kv_unified)  # a shared cell pool needs its cells back at once
        self.model: LlamaModel | None = None
        self.prompts: PromptBuilder | None = None
        self._cond = threading.Condition(threading.RLock())
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._running: dict[int, _Sequence] = {}
        self._jobs: collections.deque[tuple[Callable[[Any], Any], Future]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._ready = False
        self._closing = False
        self._failure: BaseException | None = None
        self.steps = 0  # llama_decode calls made for generation (for tests and stats)
        self.load_s = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._ready:
            return
        started = time.perf_counter()
        n_seq = self.parallel + (1 if self.scoring else 0)
        self.model = LlamaModel(self.path)
        self._finalizer = weakref.finalize(self, self.model.close)
        if 0 < self.model.n_ctx_train < self.n_ctx:  # never serve past the context the model was trained on
            self.n_ctx = self.model.n_ctx_train
        cells = -(-self.n_ctx // 256) * 256  # llama.cpp pads each sequence's KV cache to a multiple of 256
        try:
            self.model.open_context(n_ctx_seq=cells, n_seq=n_seq, n_batch=self.n_batch, threads=self.threads,
                                    kv_type=self.kv_type, kv_unified=self.kv_unified, flash_attn=self.flash_attn)
            self.prompts = PromptBuilder(self.model)
            self._warm_up()
        except BaseException:
            self._finalizer()
            self.model = None
            raise
        self._thread = threading.Thread(target=self._loop, name=f"kogata-engine-{self.path.stem}", daemon=True)
        self._thread.start()
        self.load_s = time.perf_counter() - started
        self._ready = True

    def _warm_up(self) -> None:
        """One decode so the first request does not pay for graph allocation."""
        m = self.model
        m.batch_clear()
        m.batch_add(m.bos if m.bos >= 0 else 0, 0, 0, True)
        m.decode()
        m.seq_rm(0)

    def ready(self) -> bool:
        return self._ready and not self._closing and self._failure is None

    def close(self, drain: bool = True) -> None:
        """Stop accepting; with ``drain`` let running and waiting requests finish, else cancel them; then free
        the model and its KV cache."""
        with self._cond:
            self._closing = True
            if not drain:
                for seq in list(self._waiting) + list(self._running.values()):
                    seq.stream._cancelled.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._ready = False
        if self.model is not None:
            self._finalizer()
            self.model = None

    # ------------------------------------------------------------------ requests (any thread)
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        self._require_started()
        return self.prompts.encode(text) if add_special else self.model.tokenize(text, add_special=False)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        self._require_started()
        return self.prompts.render_chat(messages)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"running": len(self._running), "waiting": len(self._waiting), "parallel": self.parallel}

    def submit(self, request: GenerateRequest, *, queue_timeout_s: float | None = None) -> EngineStream:
        stream, seq = self._prepare(request, queue_timeout_s)
        if seq is not None:
            self._enqueue([seq], bounded=True)
        return stream

    def submit_all(self, requests: list[GenerateRequest]) -> list[EngineStream]:
        """Queue several requests atomically (they are admitted together, in order; no waiting limit) — the
        ``llamacpp-engine`` runtime uses this so that evaluation batches do not depend on thread timing."""
        prepared = [self._prepare(r, None) for r in requests]
        self._enqueue([seq for _, seq in prepared if seq is not None], bounded=False)
        return [stream for stream, _ in prepared]

    def _prepare(self, request: GenerateRequest, queue_timeout_s: float | None) -> tuple[EngineStream, _Sequence | None]:
        self._require_started()
        check_request(request)
        prompt, stop = self.prompts.build(request)
        if not prompt:  # nothing to condition on: start from the prefix token, as scoring does
            prompt = [self.model.bos if self.model.bos >= 0 else self.model.eos]
        if len(prompt) + request.max_tokens > self.n_ctx:
            raise ContextOverflow(len(prompt), request.max_tokens, self.n_ctx)
        stream = EngineStream(len(prompt), on_cancel=self._wake)
        if request.max_tokens == 0:
            stream.started_at = stream.submitted_at
            stream.push(StreamPiece(text="", finish_reason="length", usage=Usage(len(prompt), 0)))
            return stream, None
        sampler = SequenceSampler(self.model.lc, self.model.vocab, request)
        deadline = None if queue_timeout_s is None else stream.submitted_at + queue_timeout_s
        return stream, _Sequence(stream=stream, request=request, prompt=prompt, stop=stop, sampler=sampler, deadline=deadline)

    def _enqueue(self, seqs: list[_Sequence], *, bounded: bool) -> None:
        with self._cond:
            error: KogataError | None = None
            if self._closing or self._failure is not None:
                error = EngineClosed("the engine is shutting down", "retry on another replica or after restart")
            elif bounded and len(self._running) + len(self._waiting) - self.parallel >= self.max_waiting:  # no free slot
                error = EngineBusy(
                    f"the engine is busy: {len(self._running)} requests running and {len(self._waiting)} waiting "
                    f"(limit {self.max_waiting})",
                    "retry after a short wait",
                )
            if error is not None:
                for seq in seqs:
                    seq.sampler.close()
                raise error
            self._waiting.extend(seqs)
            self._cond.notify_all()

    def call(self, fn: Callable[[BatchedLlamaEngine], Any]) -> Any:
        """Run ``fn(engine)`` on the engine thread between decode steps and return its result (the
        ``llamacpp-engine`` runtime scores through this; ``fn`` may use sequence id ``parallel``)."""
        self._require_started()
        if threading.current_thread() is self._thread:
            return fn(self)
        future: Future = Future()
        with self._cond:
            if self._closing:
                raise EngineClosed("the engine is shutting down", "open a new engine")
            self._jobs.append((fn, future))
            self._cond.notify_all()
        return future.result()

    def _require_started(self) -> None:
        if self._failure is not None:
            raise EngineClosed(f"the engine stopped after an internal error: {self._failure}", "restart the server")
        if self.model is None or self.prompts is None:
            raise EngineClosed("the engine is not started", "call start() first")

    def _wake(self, _stream: EngineStream) -> None:
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------ engine thread
    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._drop_cancelled_and_expired()
                    self._admit()
                    job = self._jobs.popleft() if self._jobs else None
                    if job is None and not self._running:
                        if self._closing and not self._waiting:
                            return
                        self._cond.wait(timeout=self._next_deadline())
                        continue
                if job is not None:
                    fn, future = job
                    try:
                        future.set_result(fn(self))
                    except BaseException as exc:  # the caller re-raises it
                        future.set_exception(exc)
                if self._running:
                    self._step()
        except BaseException as exc:
            self._failure = exc
            with self._cond:
                victims = list(self._waiting) + list(self._running.values())
                self._waiting.clear()
                self._running.clear()
                jobs = list(self._jobs)
                self._jobs.clear()
            for seq in victims:
                seq.sampler.close()
                seq.stream.fail(RuntimeError(f"the serving engine failed: {exc}"))
            for _, future in jobs:
                future.set_exception(RuntimeError(f"the serving engine failed: {exc}"))

    def _next_deadline(self) -> float | None:
        deadlines = [s.deadline for s in self._waiting if s.deadline is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _drop_cancelled_and_expired(self) -> None:
        now = time.monotonic()
        for seq in [s for s in self._running.values() if s.stream.cancelled]:
            self._finish(seq, "cancelled")
        keep: collections.deque[_Sequence] = collections.deque()
        for seq in self._waiting:
            if seq.stream.cancelled:
                seq.sampler.close()
                seq.stream.push(StreamPiece(text="", finish_reason="cancelled", usage=Usage(len(seq.prompt), 0)))
            elif seq.deadline is not None and now > seq.deadline:
                seq.sampler.close()
                waited = now - seq.stream.submitted_at
                seq.stream.fail(EngineBusy(f"the request waited {waited:.1f} s in the queue without starting",
                                           "retry after a short wait"))
            else:
                keep.append(seq)
        self._waiting = keep

    def _admit(self) -> None:
        free = [s for s in range(self.parallel) if s not in self._running]
        while self._waiting and free:
            seq = self._waiting.popleft()
            seq.slot, shared = self._cache.pick(free, seq.prompt)
            free.remove(seq.slot)
            seq.fed = self._cache.claim(self.model, seq.slot, shared, len(seq.prompt))
            seq.history = list(seq.prompt)
            seq.text = StreamAssembler(seq.stop, prompt_tokens=len(seq.prompt))
            seq.decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
            seq.stream.started_at = time.monotonic()
            self._running[seq.slot] = seq

    def _step(self) -> None:
        m = self.model
        order = [self._running[s] for s in sorted(self._running)]
        budget = m.n_batch - sum(1 for s in order if not s.reading_prompt)
        for seq in order:
            if seq.reading_prompt:
                seq.chunk = max(0, min(budget, len(seq.prompt) - seq.fed))
                budget -= seq.chunk
        m.batch_clear()
        for seq in order:  # tokens grouped by ascending sequence id: one ubatch for all of them
            seq.output_index = -1
            if not seq.reading_prompt:
                seq.output_index = m.batch_add(seq.last, seq.fed, seq.slot, True)
                seq.history.append(seq.last)
                continue
            for j in range(seq.fed, seq.fed + seq.chunk):
                last = j == len(seq.prompt) - 1
                index = m.batch_add(seq.prompt[j], j, seq.slot, last)
                if last:
                    seq.output_index = index
        if m.batch_size == 0:
            return
        m.decode()
        self.steps += 1
        for seq in order:
            if seq.reading_prompt:
                seq.fed += seq.chunk
            else:
                seq.fed += 1  # the token fed this step is now in the cache (fed counts cache positions)
            if seq.output_index >= 0:
                self._advance(seq)

    def _advance(self, seq: _Sequence) -> None:
        m = self.model
        row = m.logits_row(seq.output_index)
        token, logprob = seq.sampler.pick(m.ctx, seq.output_index, row)
        if m.is_eog(token) and not seq.request.ignore_eos:
            self._finish(seq, "stop")
            return
        seq.stable += seq.decoder.decode(m.piece(token))
        piece = seq.text.step(token, seq.stable, logprob)
        if seq.request.logprobs and seq.request.top_logprobs > 0:
            piece.top_logprobs = [(m.piece(t).decode("utf-8", errors="replace"), lp)
                                  for t, lp in top_alternatives(row, seq.request.top_logprobs)]
        if piece.finish_reason is None and seq.text.usage.completion_tokens >= seq.request.max_tokens:
            rest = self._finish(seq, "length", push=False)
            piece = StreamPiece(text=piece.text + rest.text, token_ids=piece.token_ids, logprob=piece.logprob,
                                top_logprobs=piece.top_logprobs, finish_reason="length", usage=rest.usage)
        if piece.finish_reason is not None:
            self._release(seq)
        else:
            seq.last = token
        seq.stream.push(piece)

    def _finish(self, seq: _Sequence, reason: str, *, push: bool = True) -> StreamPiece:
        seq.stable += seq.decoder.decode(b"", final=True)
        if not seq.text.finished:
            seq.text.text = seq.stable
        piece = seq.text.finish(reason)
        if push:
            self._release(seq)
            seq.stream.push(piece)
        return piece

    def _release(self, seq: _Sequence) -> None:
        if self._running.get(seq.slot) is seq:
            del self._running[seq.slot]
            self._cache.release(self.model, seq.slot, seq.history[:seq.fed])
        seq.sampler.close()

    @property
    def prompt_cache(self) -> bool:
        return self._cache.enabled

    @property
    def reused_tokens(self) -> int:
        """Prompt tokens not recomputed thanks to the prompt cache (for tests and stats)."""
        return self._cache.reused_tokens

    def info(self) -> dict[str, Any]:
        return {
            "engine": "llama.cpp batched",
            "artifact": getattr(self.artifact, "id", str(self.path)),
            "gguf_file": self.path.name,
            "parallel": self.parallel,
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "threads": self.threads,
            "kv_type": self.kv_type,
            "kv_unified": self.kv_unified,
            "flash_attn": self.flash_attn,
            "prompt_cache": self._cache.enabled,
            "load_s": round(self.load_s, 3),
        }

