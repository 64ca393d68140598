"""What a guard check finds and what the policy decides: hits with spans, per-check results, the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("allow", "flag", "redact", "hold", "block")  # in rising severity: the verdict takes the most severe
SEVERITY = {a: i for i, a in enumerate(ACTIONS)}
WHERE = ("input", "output")


@dataclass(frozen=True, slots=True)
class Hit:
    """One finding: ``text[start:end]`` (offsets into the text as given, not the normalised form)."""

    start: int
    end: int
    type: str
    score: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "type": self.type, "score": round(self.score, 4)}


@dataclass(slots=True)
class GuardContext:
    """What a check may need beyond the text itself.

    ``response_format`` is the OpenAI-style request field (``{"type": "json_object"}`` or
    ``{"type": "json_schema", "json_schema": {"schema": {...}}}``); ``json_schema`` may be given directly.
    ``logprobs`` are the chosen tokens' log-probabilities. ``lang`` forces the safe reply's language.
    """

    question: str | None = None
    passages: list[str] = field(default_factory=list)
    response_format: dict[str, Any] | None = None
    json_schema: dict[str, Any] | None = None
    logprobs: list[float] | None = None
    lang: str | None = None


@dataclass(slots=True)
class CheckResult:
    """One check's outcome: ``fired`` means its action applies; ``score`` is check-specific (None if none)."""

    check: str
    action: str
    fired: bool
    hits: list[Hit]
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "action": self.action if self.fired else "allow", "fired": self.fired,
                "score": None if self.score is None else round(self.score, 4), "hits": [h.to_dict() for h in self.hits]}


@dataclass(slots=True)
class Verdict:
    """The policy's decision for one text: the final ``action``, the ``text`` to send (redacted, or the safe reply
    when blocked) and every check's result."""

    where: str
    action: str
    text: str
    results: list[CheckResult]
    lang: str = "en"

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def held(self) -> bool:
        return self.action == "hold"

    @property
    def flagged(self) -> bool:
        return self.action == "flag" or any(r.fired and r.action == "flag" for r in self.results)

    @property
    def redacted(self) -> bool:
        return any(r.fired and r.action == "redact" for r in self.results)

    def fired(self) -> list[CheckResult]:
        return [r for r in self.results if r.fired]

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "action": self.action, "text": self.text, "lang": self.lang,
                "checks": [r.to_dict() for r in self.results]}


def most_severe(actions) -> str:
    return max(actions, key=SEVERITY.__getitem__, default="allow")
