"""Log-likelihood scoring shared by every runtime, with lm-evaluation-harness's exact token semantics.

A runtime supplies four things — how it encodes text (:meth:`ScoringRuntime.encode`), its prefix token
(BOS, else EOS), its maximum context (:attr:`max_length`) and a way to score token sequences
(:meth:`ScoringRuntime.score_tokens`) — and gets ``loglikelihood`` and ``loglikelihood_rolling`` that split
text into tokens the same way lm-eval's HF backend does:

* ``loglikelihood(context, continuation)``: trailing whitespace of the context moves to the continuation; the
  whole string and the context are encoded (with the tokenizer's own special tokens) and the continuation
  tokens are the tail of the whole encoding beyond the context's length. An empty context becomes the prefix
  token. The scored input is ``(context + continuation)[-(max_length + 1):][:-1]``.
* ``loglikelihood_rolling(text)``: the text (without special tokens) is cut into disjoint windows of
  ``max_length`` predicted tokens; the first token is conditioned on the prefix token, later windows on as
  much preceding text as fits. Every token is predicted exactly once.
  (lm-eval encodes rolling text *with* special tokens, so a tokenizer that adds BOS itself — e.g. Gemma —
  would get BOS twice there; kogata adds it once. For tokenizers that add no BOS the two are identical.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from kogata.runtimes.base import LoglikelihoodRequest, LoglikelihoodResult, RollingResult

TokenPair = tuple[list[int], list[int]]  # (context tokens, continuation tokens)
KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}  # llama.cpp KV-cache types: ggml type ids (llama_cpp.GGML_TYPE_*)
DEFAULT_MAX_LENGTH = 2048  # default longest scored input (and llama.cpp context), capped by the model's own


PLAIN_CHAT_STOP = "\nUser:"  # where the model's turn ends in the plain transcript below


def render_plain_chat(messages: list[dict[str, str]]) -> str:
    """Fallback chat rendering for models without a chat template: ``System:``/``User:``/``Assistant:`` turns."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    lines = [f"{names.get(m['role'], m['role'].title())}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def rolling_windows(tokens: list[int], prefix_token: int, max_len: int) -> Iterator[TokenPair]:
    """lm-eval's ``get_rolling_token_windows(context_len=1)`` followed by ``make_disjoint_window``."""
    if not tokens:
        return
    first = min(max_len, len(tokens))
    yield [prefix_token], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        n_pred = min(len(tokens) - predicted, max_len)
        end = predicted + n_pred
        window = tokens[end - max_len - 1 : end - 1]
        yield window[: len(window) - (n_pred - 1)], tokens[end - n_pred : end]
        predicted += n_pred


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (numerically stable)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


LOGIT_SLICE = 128  # rows of full-vocabulary logits turned into log-probabilities at a time


def reusable_prefix(cached: Sequence[int], inp: Sequence[int], first_needed: int) -> int:
    """How many leading tokens of ``inp`` a KV cache holding ``cached`` can keep: their common prefix, but no
    further than ``first_needed`` (the first position whose logits must be computed again)."""
    common = 0
    for a, b in zip(cached, inp):
        if a != b:
            break
        common += 1
    return min(common, first_needed)


def score_logit_rows(logits: np.ndarray, targets: Sequence[int]) -> tuple[float, bool]:
    """Sum of the log-probabilities of ``targets`` (one per row of ``logits``) and whether every target was its
    row's argmax; ``LOGIT_SLICE`` rows at a time so no full-vocabulary float64 copy of every row is made."""
    logprob, greedy = 0.0, True
    for s in range(0, len(logits), LOGIT_SLICE):
        rows = log_softmax(logits[s : s + LOGIT_SLICE])
        picked = np.asarray(targets[s : s + len(rows)])
        logprob += float(rows[np.arange(len(rows)), picked].sum())
        greedy = greedy and bool((rows.argmax(axis=1) == picked).all())
    return logprob, greedy


class ScoringRuntime:
    """Mixin: ``loglikelihood`` and ``loglikelihood_rolling`` on top of a few runtime-specific primitives."""

    max_length: int  # the longest input the runtime scores at once

    # -- to implement -----------------------------------------------------------------------------------
    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        raise NotImplementedError

    @property
    def prefix_token_id(self) -> int:
        raise NotImplementedError

    def prefix_token_text(self) -> str | None:
        """The prefix token as text; a string that already starts with it gets no extra special tokens."""
        return None

    def score_tokens(self, pairs: Sequence[TokenPair]) -> list[tuple[float, bool]]:
        """For each (context, continuation) token pair (both non-empty, total <= max_length + 1): the summed
        log-probability of the continuation tokens and whether each was the argmax."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------------
    def tok_encode(self, text: str) -> list[int]:
        """lm-eval's ``tok_encode`` with ``add_special_tokens=None``: the tokenizer's own special tokens,
        except when the text already starts with the prefix token."""
        bos = self.prefix_token_text()
        return self.encode(text, add_special_tokens=not (bos and text.startswith(bos)))

    def tokenize(self, text: str) -> list[int]:
        return self.tok_encode(text)

    def encode_pair(self, context: str, continuation: str) -> TokenPair:
        if context == "":
            cont = self.encode(continuation, add_special_tokens=False)
            if cont and cont[0] == self.prefix_token_id:
                return cont[:1], cont[1:]
            return [self.prefix_token_id], cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        return whole[: len(ctx)], whole[len(ctx) :]

    def _truncate(self, pair: TokenPair) -> TokenPair:
        ctx, cont = pair
        if len(cont) > self.max_length:
            cont = cont[-self.max_length :]
        keep = self.max_length + 1 - len(cont)
        return (ctx[-keep:] if len(ctx) > keep else ctx), cont

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        pairs = [self._truncate(self.encode_pair(r.context, r.continuation)) for r in requests]
        results: list[LoglikelihoodResult] = []
        scored = self.score_tokens(pairs) if pairs else []
        for (_, cont), (logprob, greedy) in zip(pairs, scored, strict=True):
            results.append(LoglikelihoodResult(logprob=logprob, is_greedy=greedy, n_tokens=len(cont)))
        return results

    def loglikelihood_rolling(self, texts: list[str]) -> list[RollingResult]:
        owners: list[int] = []
        pairs: list[TokenPair] = []
        counts = [0] * len(texts)
        for i, text in enumerate(texts):
            tokens = self.encode(text, add_special_tokens=False)
            counts[i] = len(tokens)
            for pair in rolling_windows(tokens, self.prefix_token_id, self.max_length):
                owners.append(i)
                pairs.append(pair)
        sums = [0.0] * len(texts)
        for owner, (logprob, _) in zip(owners, self.score_tokens(pairs) if pairs else [], strict=True):
            sums[owner] += logprob
        return [RollingResult(logprob=s, n_tokens=n) for s, n in zip(sums, counts, strict=True)]
