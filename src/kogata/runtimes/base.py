"""The runtime protocol: what every task, the efficiency probe and the server may ask of a way to run an artifact.

Runtimes are registered by name (see :mod:`kogata.runtimes.registry`); the same task code drives all of them.
Two kinds: ``"lm"`` runtimes (:class:`Runtime`: score, generate, stream, chat) and ``"embedder"`` runtimes
(:class:`EmbeddingRuntime`: embed). ``docs/runtimes.md`` has the concurrency contract and how to add one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class LoglikelihoodRequest:
    """Score ``continuation`` given ``context`` (lm-eval semantics: context may be empty)."""

    context: str
    continuation: str


@dataclass
class LoglikelihoodResult:
    logprob: float  # sum of log-probabilities of the continuation tokens (natural log)
    is_greedy: bool  # every continuation token was the argmax
    n_tokens: int


@dataclass
class RollingResult:
    logprob: float  # sum over every token of the text (natural log), first token conditioned on BOS
    n_tokens: int


@dataclass
class GenerateRequest:
    """Plain-text prompt, or chat ``messages`` ([{role, content}]) rendered with the model's chat template.

    Sampling: ``temperature == 0`` (the default) is greedy decoding — what every evaluation task uses; with
    ``temperature > 0`` tokens are sampled after ``top_k`` / ``top_p`` filtering from a generator seeded by
    ``seed`` (same seed + same request → same text on the same runtime and threads). ``logprobs`` asks for the
    chosen token's log-probability on every :class:`StreamPiece`.
    """

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens: int = 64
    stop: list[str] = field(default_factory=list)
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k filtering
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0  # with logprobs: also the N most likely tokens at each step (gguf engine only)
    json_schema: dict[str, Any] | None = None  # constrain the output to this JSON schema where the runtime can
    ignore_eos: bool = False


@dataclass
class StreamPiece:
    """One step of a streamed generation: the new text (may be "" while a multi-byte character or a possible
    stop sequence is held back), the token ids it came from, and — on the last piece — why it finished.

    Runtimes yield one piece per generated token, then (unless the token itself ended the generation at a stop
    string) one closing piece without token ids that carries any held-back text. Exactly the last piece has
    ``finish_reason`` and ``usage``; the pieces' texts concatenate to what ``generate()`` returns."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprob: float | None = None  # sum of the natural-log probabilities of ``token_ids`` (when asked)
    top_logprobs: list[tuple[str, float]] | None = None  # (token text, logprob) of the most likely tokens at the last step
    finish_reason: str | None = None  # "stop" (EOS or a stop string), "length" (max_tokens), "cancelled"
    usage: Usage | None = None  # exact token counts, on the last piece (EOS is not counted)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Cancelled(Exception):
    """For callers that turn a stream ending with finish_reason 'cancelled' into an exception (the runtimes
    themselves do not raise it: their streams end normally with that finish reason)."""


@dataclass
class TimedGeneration:
    """One timed greedy generation for the efficiency probe."""

    prompt_tokens: int
    new_tokens: int
    ttft_s: float  # time to first generated token (includes prefill)
    total_s: float  # end-to-end


@runtime_checkable
class Runtime(Protocol):
    """A loaded artifact that can score and generate text.

    Concurrency contract: one instance serves one call at a time. Runtimes do not lock themselves; callers that
    share an instance across threads hold ``self.lock`` (a ``threading.Lock``) around each call — for
    ``stream`` until the iterator is exhausted or closed. For parallel requests open one instance per worker,
    or use the batched serving engine. ``stream`` validates the request when called (a
    :class:`~kogata.core.errors.KogataError` for bad sampling settings or an unsupported ``json_schema``),
    checks ``cancel`` (a ``threading.Event``) between tokens and then finishes with
    ``finish_reason='cancelled'``. ``generate`` runs the same loop as ``stream``.
    """

    name: str
    kind: str  # "lm" (scores and generates) or "embedder" (embeds only)
    lock: Any  # threading.Lock that callers sharing the instance hold

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResult]: ...

    def loglikelihood_rolling(self, texts: list[str]) -> list[RollingResult]: ...

    def generate(self, requests: list[GenerateRequest]) -> list[str]: ...

    def stream(self, request: GenerateRequest, cancel: Any = None) -> Iterator[StreamPiece]: ...

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 256, stop: list[str] | None = None) -> str: ...

    def tokenize(self, text: str) -> list[int]: ...

    def timed_generate(self, prompt: str, max_new_tokens: int, *, ignore_eos: bool = True) -> TimedGeneration: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@runtime_checkable
class EmbeddingRuntime(Protocol):
    """A loaded sentence embedder: ``embed(texts)`` → one L2-normalised vector per text (float32 rows).
    Same concurrency contract as :class:`Runtime` (hold ``lock`` when sharing an instance)."""

    name: str
    kind: str  # "embedder"
    lock: Any

    def embed(self, texts: list[str]) -> Any: ...  # numpy array (len(texts), dim)

    def tokenize(self, text: str) -> list[int]: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
