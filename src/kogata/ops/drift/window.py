"""The exchanges a drift check compares: served traffic read from the audit log, or reference texts.

An :class:`Exchange` keeps only what the signals need (the question, its language and length, the answer's
confidence and guard verdicts, latency) — never more text than the audit row already holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kogata.data.filters import detect_language
from kogata.ops.audit import AuditEntry, AuditLog

SERVED_ENDPOINTS = ("chat.completions", "completions")


@dataclass
class Exchange:
    question: str
    time_us: int = 0
    answer: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    mean_logprob: float | None = None
    latency_ms: float | None = None
    action: str | None = None
    finish_reason: str | None = None
    fired: set[str] = field(default_factory=set)  # guard checks that fired (input or output)
    response_id: str | None = None

    @property
    def lang(self) -> str:
        lang = detect_language(self.question)
        return lang if lang in ("ja", "en") else "other"

    @property
    def chars(self) -> int:
        return len(self.question)


def question_of(value: Any) -> str:
    """The last user turn of a chat request (or the completion prompt)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        users = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return str(users[-1])
    return ""


def _fired(verdicts: Any) -> set[str]:
    out: set[str] = set()
    for v in (verdicts or {}).values() if isinstance(verdicts, dict) else []:
        for c in (v or {}).get("checks", []) if isinstance(v, dict) else []:
            if c.get("fired"):
                out.add(str(c.get("check")))
    return out


def from_entry(e: AuditEntry) -> Exchange:
    r = e.record
    meta = r.meta or {}
    return Exchange(question=question_of(r.input), time_us=e.time_us, answer=r.output if isinstance(r.output, str) else None,
                    tokens_in=r.tokens_in, tokens_out=r.tokens_out, mean_logprob=meta.get("mean_logprob"),
                    latency_ms=r.latency_ms, action=r.action, finish_reason=meta.get("finish_reason"),
                    fired=_fired(r.verdicts), response_id=r.response_id)


def served(log: AuditLog, *, since_us: int | None = None, until_us: int | None = None,
           alias: str | None = None) -> list[Exchange]:
    """The answered requests in ``[since, until)`` (review actions and errors left out), oldest first."""
    out = []
    for e in log.iter_rows(since_us=since_us, until_us=until_us):
        r = e.record
        if r.endpoint not in SERVED_ENDPOINTS or r.status not in ("ok", "held"):
            continue
        if alias is not None and r.model_alias != alias:
            continue
        out.append(from_entry(e))
    return out


def from_texts(texts: Iterable[str]) -> list[Exchange]:
    """Reference exchanges from texts (a suite's questions, the data an artifact was trained or trimmed on)."""
    return [Exchange(question=t) for t in texts if t and t.strip()]
