"""Turning generated tokens into :class:`~kogata.runtimes.base.StreamPiece` objects — shared by every LM runtime.

A runtime's decode loop hands :class:`StreamAssembler` one token at a time together with the *stable* text of
the whole completion so far: the decoded text without a trailing, not yet complete multi-byte character (the
torch runtime strips the trailing U+FFFD its tokenizer produces; llama.cpp decodes bytes with
``errors="ignore"``, which drops an incomplete tail). The assembler then

* finds stop strings in that text (the earliest occurrence of any of them ends the completion, cut before it);
* hands out only text that cannot be the start of a stop string: a suffix that is a proper prefix of some stop
  string is held back until the next token decides it, so no piece ever carries part of a stop string;
* keeps the authoritative completion text (:attr:`StreamAssembler.text`), which is what ``generate()``
  returns — the same text the runtimes produced before streaming existed.

For tokenizers whose decoding is prefix-stable (byte-level BPE, SentencePiece; everything kogata tests), the
pieces concatenate to exactly :attr:`text`. A tokenizer whose decode rewrites earlier text as more tokens
arrive (``clean_up_tokenization_spaces``) can make the pieces differ from :attr:`text` in such rewritten spots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kogata.core.errors import KogataError
from kogata.runtimes.base import GenerateRequest, StreamPiece, Usage


def check_request(req: GenerateRequest) -> None:
    """Refuse sampling settings no runtime can honour (a user error, not a runtime failure)."""
    if req.max_tokens < 0:
        raise KogataError(f"max_tokens must be 0 or more, got {req.max_tokens}", "pass max_tokens >= 0")
    if not (math.isfinite(req.temperature) and req.temperature >= 0):
        raise KogataError(f"temperature must be 0 or more, got {req.temperature}", "use 0 for greedy decoding, e.g. 0.7 to sample")
    if not (0 < req.top_p <= 1):
        raise KogataError(f"top_p must be in (0, 1], got {req.top_p}", "use top_p=1 to turn nucleus filtering off")
    if req.top_k < 0:
        raise KogataError(f"top_k must be 0 or more, got {req.top_k}", "use top_k=0 to turn top-k filtering off")
    if req.prompt is not None and req.messages is not None:
        raise KogataError("a generation request has both prompt and messages", "send either a plain prompt or chat messages")


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of one of ``stops``."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class StreamAssembler:
    """Pieces from (token, stable text so far) steps; see the module docstring for the rules."""

    def __init__(self, stop: Sequence[str], prompt_tokens: int):
        self.stops = [s for s in stop if s]
        self.usage = Usage(prompt_tokens=prompt_tokens)
        self.text = ""  # the completion as generate() returns it
        self.emitted = 0  # characters of ``text`` already handed out
        self.finish_reason: str | None = None

    def step(self, token: int, stable: str, logprob: float | None = None) -> StreamPiece:
        """One generated token; the returned piece has ``finish_reason='stop'`` when a stop string appeared."""
        self.usage.completion_tokens += 1
        cut = min((p for p in (stable.find(s) for s in self.stops) if p >= 0), default=-1)
        if cut >= 0:
            self.text = stable[:cut]
            return self._finish("stop", [token], logprob)
        self.text = stable
        safe = len(stable) - _held_back(stable, self.stops)
        new = stable[self.emitted : safe] if safe > self.emitted else ""
        self.emitted = max(self.emitted, safe)
        return StreamPiece(text=new, token_ids=[token], logprob=logprob)

    def finish(self, reason: str) -> StreamPiece:
        """End without a new token (EOS, max_tokens reached, cancelled): flush whatever was held back."""
        return self._finish(reason, [], None)

    def _finish(self, reason: str, token_ids: list[int], logprob: float | None) -> StreamPiece:
        self.finish_reason = reason
        rest = self.text[self.emitted :]
        self.emitted = len(self.text)
        return StreamPiece(text=rest, token_ids=token_ids, logprob=logprob, finish_reason=reason,
                           usage=Usage(self.usage.prompt_tokens, self.usage.completion_tokens))

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


def is_cancelled(cancel: object) -> bool:
    """``cancel`` is a ``threading.Event`` (or anything with ``is_set()``), or None."""
    return cancel is not None and bool(cancel.is_set())  # type: ignore[attr-defined]
