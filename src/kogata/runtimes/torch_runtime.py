"""The ``torch`` runtime: transformers on CPU, the reference every other runtime is compared with.

Options: ``dtype`` (``float32`` default, or ``bfloat16``), ``int8`` (dynamic int8 quantisation of every
``nn.Linear`` with ``torch.ao.quantization.quantize_dynamic``; float32 only), ``batch_size`` for scoring (8),
``max_length`` (the longest scored input; default the model's context capped at 2048).

Scoring never materialises full-vocabulary logits for a whole sequence: the decoder's hidden states are
computed once, and logits are produced from the output embedding for at most ``LOGIT_SLICE`` positions at a
time (Gemma-3's vocabulary has 262,144 entries), applying ``final_logit_softcapping`` when the config has it.
Batches are right-padded without an attention mask, as in lm-eval: with causal attention, padding after a
sequence cannot influence it. Requests with the same context (the choices of one multiple-choice item) run the
context once and score their continuations on copies of its KV cache, which lm-eval's HF backend does not do.

Generation is one explicit loop over the KV cache (``logits_to_keep=1``), shared by ``stream``, ``generate``,
``chat`` and ``timed_generate``: temperature 0 (the default, and what every evaluation task uses) takes the
argmax; temperature > 0 filters by ``top_k`` then ``top_p`` and draws from a ``torch.Generator`` seeded with
``seed`` (same seed, request and threads → same text). ``logprobs`` are the model's own log-softmax of the
chosen token (before temperature). The loop stops at EOS (unless ``ignore_eos``), at ``max_tokens``, at the
first stop string (cut from the output) or when the ``cancel`` event is set (checked before every forward
pass). Chat renders the tokenizer's chat template; a tokenizer without one gets a plain ``User: …\\nAssistant:``
transcript (with ``\\nUser:`` as an extra stop string). ``json_schema`` is refused (no constrained decoding here:
use the llamacpp runtime).

Concurrency: an instance runs one call at a time. The runtime does not lock itself; callers that share an
instance across threads hold ``runtime.lock`` (a ``threading.Lock``) around each call, including while they
consume a ``stream()`` iterator. For parallel requests open one instance per worker (each loads its own
weights) or use the batched serving engine.
"""

from __future__ import annotations

import gc
import inspect
import random
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import Any

import torch

from kogata.core.errors import KogataError
from kogata.core.settings import get_threads
from kogata.runtimes.base import GenerateRequest, StreamPiece, TimedGeneration
from kogata.runtimes.registry import register_runtime
from kogata.runtimes.scoring import DEFAULT_MAX_LENGTH, PLAIN_CHAT_STOP, ScoringRuntime, TokenPair, render_plain_chat
from kogata.runtimes.streaming import StreamAssembler, check_request, is_cancelled

LOGIT_SLICE = 128
SHARE_MIN_CONTEXT = 4  # shorter shared contexts are cheaper to recompute than to cache and copy
DTYPES = ("float32", "bfloat16")


def _right_padded(rows: list[list[int]]) -> torch.Tensor:
    ids = torch.zeros((len(rows), max(len(r) for r in rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids


def model_context_length(config: Any, default: int = DEFAULT_MAX_LENGTH) -> int:
    """The model's context as lm-eval resolves it (``text_config`` first, then the top-level config)."""
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    return default


@register_runtime("torch")
class TorchRuntime(ScoringRuntime):
    name = "torch"
    kind = "lm"
    formats = ("hf", "gguf")  # a GGUF is dequantised to float by transformers
    options = ("dtype", "int8", "batch_size", "max_length")

    def __init__(
        self,
        artifact: Any,
        *,
        dtype: str = "float32",
        int8: bool = False,
        batch_size: int = 8,
        max_length: int | None = None,
    ):
        from kogata.artifacts.load import load_torch
        from kogata.artifacts.markers import QUANT_MARKER

        path = getattr(artifact, "path", None)
        if path is not None and (path / QUANT_MARKER).is_file():  # made by `quantize type=int8-dynamic`
            int8 = True
        if dtype not in DTYPES:
            raise KogataError(f"torch runtime: unknown dtype {dtype!r}", f"use one of: {', '.join(DTYPES)}")
        if int8 and dtype != "float32":
            raise KogataError("torch runtime: int8 needs dtype float32", "drop dtype or set dtype=float32 with int8")
        if batch_size < 1:
            raise KogataError(f"torch runtime: batch_size must be at least 1, got {batch_size}", "pass batch_size=1 or more")
        self.lock = threading.Lock()  # callers hold it: one call at a time per instance (module docstring)
        self.threads = get_threads()
        torch.set_num_threads(self.threads)
        started = time.perf_counter()
        self.model, self.tokenizer = load_torch(artifact, dtype=dtype)
        if int8:
            with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, which is slower on CPU
                warnings.simplefilter("ignore")
                self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.load_s = time.perf_counter() - started
        self.dtype, self.int8, self.batch_size = dtype, bool(int8), int(batch_size)
        self.artifact_id = getattr(artifact, "id", str(artifact))
        self.max_length = int(max_length or min(model_context_length(self.model.config), DEFAULT_MAX_LENGTH))
        self._decoder = self.model.get_decoder()
        self._head = self.model.get_output_embeddings()
        cfg = getattr(self.model.config, "text_config", None) or self.model.config
        self._softcap = getattr(cfg, "final_logit_softcapping", None)
        params = inspect.signature(self.model.forward).parameters
        self._keep_arg = "logits_to_keep" in params
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.2x
        self._decoder_cache_arg = "cache" if "cache" in inspect.signature(self._decoder.forward).parameters else "past_key_values"
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)

    @property
    def prefix_token_id(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def prefix_token_text(self) -> str | None:
        return self.tokenizer.decode([self.prefix_token_id])

    # ------------------------------------------------------------------ scoring
    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self._head(hidden).float()
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    @torch.inference_mode()
    def score_tokens(self, pairs: Sequence[TokenPair]) -> list[tuple[float, bool]]:
        """Requests that share a context (the choices of a multiple-choice item) run the context once and score
        their continuations on copies of its KV cache; the rest run in right-padded batches, longest first."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, _) in enumerate(pairs):
            groups.setdefault(tuple(ctx), []).append(i)
        results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        single: list[int] = []
        for ctx, members in groups.items():
            if len(members) < 2 or len(ctx) < SHARE_MIN_CONTEXT:
                single += members
                continue
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                for i, res in zip(chunk, self._score_shared(list(ctx), [pairs[i][1] for i in chunk]), strict=True):
                    results[i] = res
        order = sorted(single, key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            inputs = [(pairs[i][0] + pairs[i][1])[:-1] for i in chunk]
            hidden = self._decoder(input_ids=_right_padded(inputs), use_cache=False).last_hidden_state
            picked, targets = [], []
            for row, i in enumerate(chunk):
                cont = pairs[i][1]
                n_in = len(inputs[row])
                picked.append(hidden[row, n_in - len(cont) : n_in])
                targets.append(cont)
            for i, res in zip(chunk, self._continuation_scores(picked, targets), strict=True):
                results[i] = res
        return results

    def _score_shared(self, ctx: list[int], conts: list[list[int]]) -> list[tuple[float, bool]]:
        """The context once (its last hidden state predicts every continuation's first token), then all
        continuations but their last token in one batch on a copy of the context's KV cache."""
        out = self._decoder(input_ids=torch.tensor([ctx], dtype=torch.long), use_cache=True)
        last = out.last_hidden_state[0, -1:]
        rest = [c[:-1] for c in conts]
        picked = [last] * len(conts)
        if any(rest):
            cache = out.past_key_values
            cache.batch_repeat_interleave(len(conts))
            hidden = self._decoder(input_ids=_right_padded([r or [0] for r in rest]),
                                   **{self._decoder_cache_arg: cache}, use_cache=True).last_hidden_state
            picked = [torch.cat([last, hidden[row, : len(r)]]) for row, r in enumerate(rest)]
        return self._continuation_scores(picked, conts)

    def _continuation_scores(self, picked: list[torch.Tensor], targets: list[list[int]]) -> list[tuple[float, bool]]:
        """Summed log-probability of each target sequence from the hidden states that predict it, and whether
        every target token was the argmax; logits are built ``LOGIT_SLICE`` positions at a time."""
        hidden = torch.cat(picked)
        target = torch.tensor([t for seq in targets for t in seq], dtype=torch.long)
        token_lp = torch.empty(len(target), dtype=torch.float64)
        token_greedy = torch.empty(len(target), dtype=torch.bool)
        for s in range(0, len(target), LOGIT_SLICE):
            logprobs = torch.log_softmax(self._logits(hidden[s : s + LOGIT_SLICE]), dim=-1)
            tgt = target[s : s + LOGIT_SLICE]
            token_lp[s : s + LOGIT_SLICE] = logprobs.gather(1, tgt[:, None])[:, 0].double()
            token_greedy[s : s + LOGIT_SLICE] = logprobs.argmax(dim=-1) == tgt
        results, offset = [], 0
        for seq in targets:
            n = len(seq)
            results.append((float(token_lp[offset : offset + n].sum()), bool(token_greedy[offset : offset + n].all())))
            offset += n
        return results

    # ------------------------------------------------------------------ generation
    def _prompt_ids(self, req: GenerateRequest) -> tuple[list[int], list[str]]:
        """Token ids of the prompt (chat messages rendered with the chat template) and extra stop strings."""
        if req.messages is None:
            return self.tok_encode(req.prompt or ""), []
        if getattr(self.tokenizer, "chat_template", None):
            rendered = self.tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=False)
            return self.encode(rendered, add_special_tokens=False), []
        return self.tok_encode(render_plain_chat(req.messages)), [PLAIN_CHAT_STOP]

    def _pick(self, logits: torch.Tensor, req: GenerateRequest, gen: torch.Generator | None) -> int:
        """Greedy argmax at temperature 0; else temperature, top-k, top-p (nucleus) and a seeded draw."""
        if req.temperature <= 0:
            return int(logits.argmax())
        scores = logits.float() / req.temperature
        if 0 < req.top_k < scores.numel():
            kth = torch.topk(scores, req.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if req.top_p < 1.0:
            ordered, idx = torch.sort(scores, descending=True)
            probs = torch.softmax(ordered, dim=-1)
            before = torch.cumsum(probs, dim=-1) - probs  # probability mass ranked above each token
            drop = before >= req.top_p
            drop[0] = False
            scores = scores.index_fill(0, idx[drop], float("-inf"))
        return int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=gen))

    @torch.inference_mode()
    def _decode_steps(self, prompt_ids: list[int], req: GenerateRequest, cancel: Any) -> Iterator[tuple[int | None, float | None]]:
        """Yield (token, log-probability or None) per generated token with the KV cache; (None, None) at EOS;
        stops when ``cancel`` is set (checked before every forward pass) or after ``max_tokens``."""
        kwargs = {"logits_to_keep": 1} if self._keep_arg else {}
        gen = None
        if req.temperature > 0:
            gen = torch.Generator().manual_seed(req.seed if req.seed is not None else random.SystemRandom().randrange(2**63))
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        past = None
        for _ in range(req.max_tokens):
            if is_cancelled(cancel):
                return
            out = self.model(input_ids=ids, use_cache=True, **{self._cache_arg: past}, **kwargs)
            past = out.get("cache")
            if past is None:
                past = out.get("past_key_values")
            logits = out.logits[0, -1]
            token = self._pick(logits, req, gen)
            if token in self._eos and not req.ignore_eos:
                yield None, None
                return
            logprob = float(torch.log_softmax(logits.float(), dim=-1)[token]) if req.logprobs else None
            yield token, logprob
            ids = torch.tensor([[token]], dtype=torch.long)

    def _prepare(self, req: GenerateRequest) -> tuple[list[int], StreamAssembler]:
        """Checks (raised at call time, not on first iteration), prompt tokens and the piece assembler."""
        check_request(req)
        if req.json_schema is not None:
            raise KogataError(
                "runtime 'torch' cannot constrain output to a JSON schema",
                "serve a GGUF artifact with the llamacpp runtime (grammar-constrained), or drop json_schema",
            )
        prompt_ids, extra_stop = self._prompt_ids(req)
        return prompt_ids, StreamAssembler(list(req.stop) + extra_stop, prompt_tokens=len(prompt_ids))

    def _pieces(self, prompt_ids: list[int], req: GenerateRequest, asm: StreamAssembler, cancel: Any) -> Iterator[StreamPiece]:
        generated: list[int] = []
        for token, logprob in self._decode_steps(prompt_ids, req, cancel):
            if token is None:
                yield asm.finish("stop")
                return
            generated.append(token)
            stable = self.tokenizer.decode(generated, skip_special_tokens=True).rstrip("\ufffd")
            yield asm.step(token, stable, logprob)
            if asm.finished:
                return
        yield asm.finish("cancelled" if is_cancelled(cancel) and len(generated) < req.max_tokens else "length")

    def stream(self, request: GenerateRequest, cancel: Any = None) -> Iterator[StreamPiece]:
        """Generate ``request`` piece by piece (text rules: :mod:`kogata.runtimes.streaming`)."""
        prompt_ids, asm = self._prepare(request)
        return self._pieces(prompt_ids, request, asm, cancel)

    def generate(self, requests: list[GenerateRequest]) -> list[str]:
        outputs = []
        for req in requests:
            prompt_ids, asm = self._prepare(req)
            for _ in self._pieces(prompt_ids, req, asm, None):
                pass
            outputs.append(asm.text)
        return outputs

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 256, stop: list[str] | None = None) -> str:
        return self.generate([GenerateRequest(messages=messages, max_tokens=max_tokens, stop=stop or [])])[0]

    def timed_generate(self, prompt: str, max_new_tokens: int, *, ignore_eos: bool = True) -> TimedGeneration:
        ids = self.tok_encode(prompt)
        req = GenerateRequest(max_tokens=max_new_tokens, ignore_eos=ignore_eos)
        started = time.perf_counter()
        first = None
        n = 0
        for token, _ in self._decode_steps(ids, req, None):
            if token is None:
                break
            n += 1
            if first is None:
                first = time.perf_counter() - started
        total = time.perf_counter() - started
        return TimedGeneration(prompt_tokens=len(ids), new_tokens=n, ttft_s=first if first is not None else total, total_s=total)

    # ------------------------------------------------------------------ facts
    def info(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "artifact": self.artifact_id,
            "dtype": self.dtype,
            "int8": self.int8,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "load_s": round(self.load_s, 3),
            "torch": torch.__version__,
            "transformers": metadata.version("transformers"),
        }

    def close(self) -> None:
        self.model = self._decoder = self._head = None
        gc.collect()
