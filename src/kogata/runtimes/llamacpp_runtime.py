"""The ``llamacpp`` runtime: llama-cpp-python over a ``gguf`` artifact's model file.

Options: ``n_ctx`` (default 2048, or the model's training context if smaller; it is also the longest scored
input, like the torch runtime's ``max_length``), ``n_batch`` (512), ``kv_type`` (KV-cache precision:
``f16`` — llama.cpp's default — ``f32`` or ``q8_0``).
Threads come from :func:`kogata.core.settings.get_threads` (``n_threads`` and ``n_threads_batch``).

Scoring tokenizes exactly like the torch runtime (see :mod:`kogata.runtimes.scoring`) with llama.cpp's own
tokenizer (``add_bos`` = the tokenizer's special tokens, ``special=True`` to parse special-token text, as HF
does). Log-probabilities are computed only for the positions that predict a scored token: the batch marks
just those positions for output and the logits are read back in slices, so no ``n_ctx x n_vocab`` array is
ever allocated. Consecutive sequences that share a prefix (multiple-choice answers after one question) reuse
the KV cache for that prefix.

Generation — ``stream``, ``generate``, ``chat`` — is one loop over llama-cpp-python's own sampler chain
(``Llama.generate``): temperature 0 (the default, what evaluation uses) is greedy and gives the same tokens
as ``create_completion(temperature=0)``; temperature > 0 applies ``top_k`` → ``top_p`` → temperature and a
draw seeded with ``seed``; ``json_schema`` becomes a grammar (``LlamaGrammar.from_json_schema``) that constrains
every step. Text is decoded from the tokens' bytes (incomplete multi-byte characters are held back) and stop
strings are handled by :mod:`kogata.runtimes.streaming`. ``logprobs`` are log-softmax of the raw logits of the
chosen token. The ``cancel`` event is checked between tokens. Unlike ``create_completion``, ``max_tokens`` is a
hard limit: when it ends inside a multi-byte character, the incomplete bytes are dropped (as in the torch
runtime) instead of generating past the limit. Chat renders the GGUF's chat template as
``create_chat_completion`` does, or — if the GGUF has none — the plain ``User:/Assistant:`` transcript the
torch runtime uses. Serving a GGUF imports neither torch nor transformers.

Concurrency: a ``llama_cpp.Llama`` holds one KV cache, so an instance runs one call at a time; scoring and
generation share that cache. The runtime does not lock itself: callers that share an instance across threads
hold ``runtime.lock`` (a ``threading.Lock``) around each call, including while they consume a ``stream()``
iterator. For parallel requests open one instance per worker (each maps the GGUF and has its own cache) or use
the batched serving engine.
"""

from __future__ import annotations

import json
import random
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from kogata.core.errors import KogataError
from kogata.core.settings import get_threads
from kogata.runtimes.base import GenerateRequest, StreamPiece, TimedGeneration
from kogata.runtimes.registry import register_runtime
from kogata.runtimes.scoring import (
    DEFAULT_MAX_LENGTH,
    KV_TYPES,
    PLAIN_CHAT_STOP,
    ScoringRuntime,
    TokenPair,
    log_softmax,
    render_plain_chat,
    reusable_prefix,
    score_logit_rows,
)
from kogata.runtimes.streaming import StreamAssembler, check_request, is_cancelled


@register_runtime("llamacpp")
class LlamaCppRuntime(ScoringRuntime):
    name = "llamacpp"
    kind = "lm"
    formats = ("gguf",)
    options = ("n_ctx", "n_batch", "kv_type")

    def __init__(self, artifact: Any, *, n_ctx: int | None = None, n_batch: int = 512, kv_type: str = "f16"):
        try:
            import llama_cpp
        except ImportError:
            raise KogataError("runtime 'llamacpp' needs llama-cpp-python", "pip install llama-cpp-python==0.3.36") from None
        self._llama_cpp = llama_cpp
        path = Path(artifact.gguf_path)
        if not path.is_file():
            raise KogataError(f"GGUF file {path} is missing", "re-import or re-export the artifact")
        if n_ctx is not None and n_ctx < 8:
            raise KogataError(f"llamacpp runtime: n_ctx={n_ctx} is too small", "use n_ctx=512 or more")
        if kv_type not in KV_TYPES:
            raise KogataError(f"llamacpp runtime: unknown kv_type {kv_type!r}", f"use one of: {', '.join(KV_TYPES)}")
        self.threads = get_threads()
        started = time.perf_counter()
        requested = n_ctx or DEFAULT_MAX_LENGTH
        self.llm = self._load(llama_cpp, path, requested, n_batch, kv_type)
        trained = self.llm._model.n_ctx_train()
        if n_ctx is None and 0 < trained < requested:  # a model trained on a shorter context: use that
            self.llm.close()
            requested = trained
            self.llm = self._load(llama_cpp, path, requested, n_batch, kv_type)
        self.load_s = time.perf_counter() - started
        # close the model before interpreter shutdown (Llama.__del__ fails once llama_cpp's globals are gone)
        self._finalizer = weakref.finalize(self, self.llm.close)
        self.artifact_id = getattr(artifact, "id", str(path))
        self.gguf_file = path.name
        self.n_ctx = self.llm.n_ctx()  # llama.cpp may round the context up (to a multiple of 256)
        self.n_batch = self.llm.n_batch
        self.max_length = min(requested, self.n_ctx)
        self.kv_type = kv_type
        self.n_vocab = self.llm.n_vocab()
        self._cached: list[int] = []  # tokens whose KV entries the scorer left in sequence 0
        self._chat_template = self.llm.metadata.get("tokenizer.chat_template")
        self._chat_formatter: Any = None  # built on first chat request (imports jinja2)
        self.lock = threading.Lock()  # callers hold it: one call at a time per instance (module docstring)

    @staticmethod
    def _load(llama_cpp: Any, path: Path, n_ctx: int, n_batch: int, kv_type: str) -> Any:
        threads = get_threads()
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=min(n_batch, n_ctx),
            n_ubatch=min(n_batch, n_ctx),
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,
            type_k=KV_TYPES[kv_type],
            type_v=KV_TYPES[kv_type],
            verbose=False,
        )

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        if not text:
            return self.llm.tokenize(b"", add_bos=add_special_tokens, special=True) if add_special_tokens else []
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)

    @property
    def prefix_token_id(self) -> int:
        bos = self.llm.token_bos()
        return bos if bos is not None and bos >= 0 else self.llm.token_eos()

    def prefix_token_text(self) -> str | None:
        return self.llm.detokenize([self.prefix_token_id], special=True).decode("utf-8", errors="ignore") or None

    # ------------------------------------------------------------------ scoring
    def score_tokens(self, pairs: Sequence[TokenPair]) -> list[tuple[float, bool]]:
        inputs = [(ctx + cont)[:-1] for ctx, cont in pairs]
        order = sorted(range(len(pairs)), key=lambda i: inputs[i])  # neighbours share prefixes
        results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        for i in order:
            results[i] = self._score_one(inputs[i], pairs[i][1])
        self.llm.reset()
        return results

    def _score_one(self, inp: list[int], cont: list[int]) -> tuple[float, bool]:
        first_needed = len(inp) - len(cont)
        start = reusable_prefix(self._cached, inp, first_needed)
        if not self.llm._ctx.kv_cache_seq_rm(-1, start, -1):
            self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            start = 0
        self._cached = inp[:start]
        batch = self.llm._batch.batch
        ctx = self.llm._ctx
        logprob, greedy, target_pos = 0.0, True, 0
        for lo in range(start, len(inp), self.n_batch):
            chunk = inp[lo : lo + self.n_batch]
            batch.n_tokens = len(chunk)
            flagged = 0
            for j, token in enumerate(chunk):
                batch.token[j] = token
                batch.pos[j] = lo + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                want = lo + j >= first_needed
                batch.logits[j] = want
                flagged += want
            rc = self._llama_cpp.llama_decode(ctx.ctx, batch)
            if rc != 0:
                self._cached = []
                raise RuntimeError(f"llama_decode returned {rc}")
            self._cached.extend(chunk)
            if not flagged:
                continue
            logits = np.ctypeslib.as_array(ctx.get_logits(), shape=(flagged, self.n_vocab))
            lp, all_greedy = score_logit_rows(logits, cont[target_pos : target_pos + flagged])
            logprob, greedy, target_pos = logprob + lp, greedy and all_greedy, target_pos + flagged
        return logprob, greedy

    # ------------------------------------------------------------------ generation
    def _prompt_ids(self, req: GenerateRequest) -> tuple[list[int], list[str]]:
        """Prompt tokens and extra stop strings. Chat goes through the GGUF's template exactly as
        llama-cpp-python's ``create_chat_completion`` renders it (``Jinja2ChatFormatter``: no extra BOS, the EOS
        text as a stop string); without a template, the plain transcript the torch runtime uses."""
        if req.messages is None:
            return self.tok_encode(req.prompt or ""), []
        if not self._chat_template:
            return self.tok_encode(render_plain_chat(req.messages)), [PLAIN_CHAT_STOP]
        if self._chat_formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            model, eos, bos = self.llm._model, self.llm.token_eos(), self.llm.token_bos()
            self._chat_formatter = Jinja2ChatFormatter(
                template=self._chat_template,
                eos_token=model.token_get_text(eos) if eos != -1 else "",
                bos_token=model.token_get_text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            )
        result = self._chat_formatter(messages=req.messages)
        ids = self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return ids, stop

    def _prepare(self, req: GenerateRequest) -> tuple[list[int], StreamAssembler, Any]:
        """Checks (raised at call time), prompt tokens, the piece assembler and the JSON-schema grammar."""
        check_request(req)
        grammar = None
        if req.json_schema is not None:
            from llama_cpp.llama_grammar import LlamaGrammar

            try:
                grammar = LlamaGrammar.from_json_schema(json.dumps(req.json_schema), verbose=False)
            except Exception as exc:  # noqa: BLE001 - the schema converter raises several kinds
                raise KogataError(f"cannot turn the JSON schema into a grammar ({type(exc).__name__}: {exc})",
                                  "simplify the schema (objects, arrays, strings, numbers, enums work)") from None
        prompt_ids, extra_stop = self._prompt_ids(req)
        return prompt_ids, StreamAssembler(list(req.stop) + extra_stop, prompt_tokens=len(prompt_ids)), grammar

    def _pieces(self, prompt_ids: list[int], req: GenerateRequest, asm: StreamAssembler, grammar: Any, cancel: Any) -> Iterator[StreamPiece]:
        """Tokens from llama-cpp-python's own sampler chain (``Llama.generate``: greedy at temperature 0,
        else top-k → top-p → temperature → seeded draw; a grammar first when one is given)."""
        llm = self.llm
        self._cached = []  # generation overwrites the KV cache the scorer reuses
        max_new = max(0, min(req.max_tokens, self.n_ctx - len(prompt_ids)))
        if max_new == 0 or is_cancelled(cancel):
            yield asm.finish("cancelled" if is_cancelled(cancel) else "length")
            return
        llm.set_seed(req.seed if req.seed is not None else random.SystemRandom().randrange(2**31))
        sampling = {"temp": 0.0} if req.temperature <= 0 else {"temp": req.temperature, "top_k": req.top_k, "top_p": req.top_p, "min_p": 0.0}
        tokens = llm.generate(prompt_ids, repeat_penalty=1.0, grammar=grammar, **{"top_k": 1, **sampling})
        vocab, bos = llm._model.vocab, llm.token_bos()
        completion: list[int] = []
        raw = b""
        try:
            for token in tokens:
                if self._llama_cpp.llama_vocab_is_eog(vocab, token) and not req.ignore_eos:
                    yield asm.finish("stop")
                    return
                logprob = None
                if req.logprobs:  # the logits that produced this token are still the context's last row
                    row = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(self.n_vocab,))
                    logprob = float(log_softmax(row[None, :])[0, token])
                completion.append(token)
                raw += llm.detokenize([token])
                # as llama-cpp-python's detokenize: a leading BOS drops the space of the text after it
                text = raw[1:] if completion[0] == bos and raw[:1] == b" " else raw
                yield asm.step(token, text.decode("utf-8", errors="ignore"), logprob)
                if asm.finished:
                    return
                if len(completion) >= max_new or is_cancelled(cancel):
                    break
        finally:
            tokens.close()
        yield asm.finish("cancelled" if is_cancelled(cancel) and len(completion) < max_new else "length")

    def stream(self, request: GenerateRequest, cancel: Any = None) -> Iterator[StreamPiece]:
        """Generate ``request`` piece by piece (text rules: :mod:`kogata.runtimes.streaming`)."""
        prompt_ids, asm, grammar = self._prepare(request)
        return self._pieces(prompt_ids, request, asm, grammar, cancel)

    def generate(self, requests: list[GenerateRequest]) -> list[str]:
        outputs = []
        for req in requests:
            prompt_ids, asm, grammar = self._prepare(req)
            for _ in self._pieces(prompt_ids, req, asm, grammar, None):
                pass
            outputs.append(asm.text)
        return outputs

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 256, stop: list[str] | None = None) -> str:
        return self.generate([GenerateRequest(messages=messages, max_tokens=max_tokens, stop=stop or [])])[0]

    def timed_generate(self, prompt: str, max_new_tokens: int, *, ignore_eos: bool = True) -> TimedGeneration:
        ids = self.tok_encode(prompt)
        max_new_tokens = max(0, min(max_new_tokens, self.n_ctx - len(ids)))
        self._cached = []
        self.llm.reset()
        eos = self.llm.token_eos()
        started = time.perf_counter()
        first, n = None, 0
        if max_new_tokens:
            for token in self.llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
                if first is None:
                    first = time.perf_counter() - started
                if token == eos and not ignore_eos:
                    break
                n += 1
                if n >= max_new_tokens:
                    break
        total = time.perf_counter() - started
        self.llm.reset()
        return TimedGeneration(prompt_tokens=len(ids), new_tokens=n, ttft_s=first if first is not None else total, total_s=total)

    # ------------------------------------------------------------------ facts
    def info(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "artifact": self.artifact_id,
            "gguf_file": self.gguf_file,
            "threads": self.threads,
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "kv_type": self.kv_type,
            "max_length": self.max_length,
            "load_s": round(self.load_s, 3),
            "llama_cpp_python": metadata.version("llama-cpp-python"),
        }

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            self._finalizer()
            self.llm = None
