"""The ``llamacpp-engine`` runtime: ``kogata eval`` through the serving engine, so the served build is the
evaluated build.

Every call goes through one :class:`~kogata.runtimes.engine.batched.BatchedLlamaEngine` (its own instance,
same code and context settings as ``kogata serve``):

* ``generate`` / ``chat`` / ``stream`` / ``timed_generate`` submit requests to the engine. ``generate`` hands
  the engine up to ``parallel`` requests at once (admitted together, so the batches it decodes — and hence the
  results — do not depend on thread timing); ``parallel=1`` decodes one request at a time.
* ``loglikelihood`` / ``loglikelihood_rolling`` use :class:`~kogata.runtimes.scoring.ScoringRuntime`'s token
  semantics, with ``score_tokens`` running on the engine thread (:meth:`BatchedLlamaEngine.call`) on the
  sequence id reserved for scoring. Like the ``llamacpp`` runtime it marks only the positions that predict a
  scored token for output, reads logits in slices, and reuses the KV cache of a shared prefix between
  consecutive inputs — so its scores equal the ``llamacpp`` runtime's on the same GGUF.

Options: ``n_ctx`` (default 2048, capped by the model's training context; also the longest scored input),
``n_batch`` (512), ``kv_type`` (``f16``/``f32``/``q8_0``), ``parallel`` (4). Threads come from
:func:`kogata.core.settings.get_threads`. Concurrency: the engine is thread-safe, but ``lock`` is provided
like every runtime's, and scoring calls from several threads are serialised on the engine thread anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import Any

from kogata.core.errors import KogataError
from kogata.runtimes.base import GenerateRequest, StreamPiece, TimedGeneration
from kogata.runtimes.engine.batched import BatchedLlamaEngine
from kogata.runtimes.registry import register_runtime
from kogata.runtimes.scoring import DEFAULT_MAX_LENGTH, ScoringRuntime, TokenPair, reusable_prefix, score_logit_rows


@register_runtime("llamacpp-engine")
class EngineRuntime(ScoringRuntime):
    name = "llamacpp-engine"
    kind = "lm"
    formats = ("gguf",)
    options = ("n_ctx", "n_batch", "kv_type", "parallel", "flash_attn")

    def __init__(self, artifact: Any, *, n_ctx: int | None = None, n_batch: int = 512, kv_type: str = "f16", parallel: int = 4,
                 flash_attn: bool = False):
        if n_ctx is not None and n_ctx < 16:
            raise KogataError(f"llamacpp-engine runtime: n_ctx={n_ctx} is too small", "use n_ctx=512 or more")
        self.engine = BatchedLlamaEngine(artifact, parallel=parallel, ctx=n_ctx or DEFAULT_MAX_LENGTH, n_batch=n_batch,
                                         kv_type=kv_type, flash_attn=bool(flash_attn), scoring=True)
        self.engine.start()
        self.lock = threading.Lock()
        self.artifact_id = getattr(artifact, "id", str(self.engine.path))
        self.max_length = self.engine.n_ctx
        self.n_batch = n_batch
        self._model = self.engine.model
        self._score_seq = self.engine.parallel  # the sequence id the engine reserves for scoring
        self._cached: list[int] = []  # tokens whose KV entries scoring left in that sequence

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        if not text and not add_special_tokens:
            return []
        return self._model.tokenize(text, add_special=add_special_tokens)

    @property
    def prefix_token_id(self) -> int:
        m = self._model
        return m.bos if m.bos >= 0 else m.eos

    def prefix_token_text(self) -> str | None:
        return self._model.token_text(self.prefix_token_id) or None

    # ------------------------------------------------------------------ scoring (on the engine thread)
    def score_tokens(self, pairs: Sequence[TokenPair]) -> list[tuple[float, bool]]:
        inputs = [(ctx + cont)[:-1] for ctx, cont in pairs]
        order = sorted(range(len(pairs)), key=lambda i: inputs[i])  # neighbours share prefixes
        results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        for i in order:  # one engine job per input: generation requests interleave between them
            results[i] = self.engine.call(lambda _engine, i=i: self._score_one(inputs[i], pairs[i][1]))
        return results

    def _score_one(self, inp: list[int], cont: list[int]) -> tuple[float, bool]:
        m, seq = self._model, self._score_seq
        first_needed = len(inp) - len(cont)
        start = reusable_prefix(self._cached, inp, first_needed)
        if not m.seq_rm(seq, start, -1):  # a partial removal can fail (sliding-window caches): start over
            m.seq_rm(seq)
            start = 0
        self._cached = inp[:start]
        logprob, greedy, target = 0.0, True, 0
        for lo in range(start, len(inp), self.n_batch):
            chunk = inp[lo : lo + self.n_batch]
            m.batch_clear()
            flagged = 0
            for j, token in enumerate(chunk):
                want = lo + j >= first_needed
                m.batch_add(token, lo + j, seq, want)
                flagged += want
            try:
                m.decode()
            except RuntimeError:
                self._cached = []
                m.seq_rm(seq)
                raise
            self._cached.extend(chunk)
            if not flagged:
                continue
            lp, all_greedy = score_logit_rows(m.logits_rows(flagged), cont[target : target + flagged])
            logprob, greedy, target = logprob + lp, greedy and all_greedy, target + flagged
        return logprob, greedy

    # ------------------------------------------------------------------ generation (through the engine)
    def _fit(self, req: GenerateRequest) -> GenerateRequest:
        """Cap ``max_tokens`` at what fits after the prompt (as the ``llamacpp`` runtime does)."""
        prompt, _ = self.engine.prompts.build(req)
        room = max(0, self.engine.n_ctx - max(1, len(prompt)))
        if req.max_tokens <= room:
            return req
        return GenerateRequest(**{**req.__dict__, "max_tokens": room})

    def generate(self, requests: list[GenerateRequest]) -> list[str]:
        outputs: list[str] = []
        step = self.engine.parallel
        for lo in range(0, len(requests), step):
            streams = self.engine.submit_all([self._fit(r) for r in requests[lo : lo + step]])
            outputs.extend(s.text() for s in streams)
        return outputs

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 256, stop: list[str] | None = None) -> str:
        return self.generate([GenerateRequest(messages=messages, max_tokens=max_tokens, stop=list(stop or []))])[0]

    def stream(self, request: GenerateRequest, cancel: Any = None) -> Iterator[StreamPiece]:
        stream = self.engine.submit(self._fit(request))

        def pieces() -> Iterator[StreamPiece]:
            for piece in stream:
                yield piece
                if cancel is not None and cancel.is_set() and piece.finish_reason is None:
                    stream.cancel()

        return pieces()

    def timed_generate(self, prompt: str, max_new_tokens: int, *, ignore_eos: bool = True) -> TimedGeneration:
        req = self._fit(GenerateRequest(prompt=prompt, max_tokens=max_new_tokens, ignore_eos=ignore_eos))
        started = time.perf_counter()
        stream = self.engine.submit(req)
        first, n = None, 0
        for piece in stream:
            if piece.token_ids and first is None:
                first = time.perf_counter() - started
            n += len(piece.token_ids)
        total = time.perf_counter() - started
        return TimedGeneration(prompt_tokens=stream.prompt_tokens, new_tokens=n, ttft_s=first if first is not None else total, total_s=total)

    # ------------------------------------------------------------------ facts
    def info(self) -> dict[str, Any]:
        info = self.engine.info()
        return {
            "runtime": self.name,
            "artifact": self.artifact_id,
            "gguf_file": info["gguf_file"],
            "threads": info["threads"],
            "n_ctx": self.engine.n_ctx,
            "n_batch": self.n_batch,
            "kv_type": info["kv_type"],
            "parallel": self.engine.parallel,
            "max_length": self.max_length,
            "load_s": info["load_s"],
            "llama_cpp_python": metadata.version("llama-cpp-python"),
        }

    def close(self) -> None:
        if getattr(self, "engine", None) is not None:
            self.engine.close(drain=False)
            self.engine = None
