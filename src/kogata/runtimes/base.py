"""The runtime protocol: what every task and the efficiency probe may ask of a way to run an artifact.

Runtimes are registered by name (see :mod:`kogata.runtimes`); the same task code drives all of them.
"""

from __future__ import annotations

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
    """Plain-text prompt, or chat ``messages`` ([{role, content}]) rendered with the model's chat template."""

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens: int = 64
    stop: list[str] = field(default_factory=list)


@dataclass
class TimedGeneration:
    """One timed greedy generation for the efficiency probe."""

    prompt_tokens: int
    new_tokens: int
    ttft_s: float  # time to first generated token (includes prefill)
    total_s: float  # end-to-end


@runtime_checkable
class Runtime(Protocol):
    name: str

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[LoglikelihoodResult]: ...

    def loglikelihood_rolling(self, texts: list[str]) -> list[RollingResult]: ...

    def generate(self, requests: list[GenerateRequest]) -> list[str]: ...

    def chat(self, messages: list[dict[str, str]], max_tokens: int = 256, stop: list[str] | None = None) -> str: ...

    def tokenize(self, text: str) -> list[int]: ...

    def timed_generate(self, prompt: str, max_new_tokens: int, *, ignore_eos: bool = True) -> TimedGeneration: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
