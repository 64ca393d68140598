"""The seam in the request path: input check → engine → output check (streaming-aware) → audit row → response.

:class:`RequestPipeline` is what the routes call; its defaults do nothing (allow everything, record nothing).
Guardrails (:mod:`kogata.guard`) and the audit log (:mod:`kogata.ops.audit`) plug in by passing callables::

    pipeline = RequestPipeline(
        check_input=lambda ctx, text: policy.check_input(text, ctx.guard_ctx()),      # -> Verdict-like
        output_guard=lambda ctx: StreamGuard(policy, ctx.guard_ctx()),                # feed()/finish()
        record=lambda ctx, rec: audit.append(rec),                                     # committed before return
    )
    app = create_app(config, pipeline=pipeline)

:mod:`kogata.serve.guarding` builds the real one from a guard policy, the audit log and the review queue.

A verdict-like object has ``action`` (``allow|redact|block|flag|hold``) and ``text`` (what to use instead,
e.g. the redacted text or the safe reply). ``record`` runs before the response (or the final SSE event) is
sent, so an acknowledged answer always has its audit row. Nothing here logs prompt or output text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class RequestContext:
    """What the checks and the audit row may want to know about one request."""

    request_id: str
    endpoint: str  # "chat.completions" | "completions" | "embeddings"
    key_name: str
    model_alias: str
    artifact_id: str
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    json_schema: dict[str, Any] | None = None
    language: str | None = None
    logprobs: list[float] = field(default_factory=list)  # the answer's token log-probabilities, as they stream
    extra: dict[str, Any] = field(default_factory=dict)

    def guard_ctx(self) -> dict[str, Any]:
        question = self.prompt
        if self.messages:
            users = [m["content"] for m in self.messages if m.get("role") == "user"]
            question = users[-1] if users else None
        return {"question": question, "json_schema": self.json_schema, **self.extra}


@dataclass
class Decision:
    action: str = "allow"  # allow | redact | block | flag | hold
    text: str | None = None  # replacement text (redacted input/output, or the safe reply when blocked)
    detail: Any = None  # the full verdict, for the audit row


class OutputGuard(Protocol):
    def feed(self, text: str) -> str: ...  # text that is safe to send now

    def finish(self) -> tuple[str, Any]: ...  # (remaining text to send, verdict)


class _PassThrough:
    def feed(self, text: str) -> str:
        return text

    def finish(self) -> tuple[str, Any]:
        return "", Decision()


def as_decision(verdict: Any) -> Decision:
    if verdict is None:
        return Decision()
    if isinstance(verdict, Decision):
        return verdict
    return Decision(action=str(getattr(verdict, "action", "allow")), text=getattr(verdict, "text", None), detail=verdict)


class RequestPipeline:
    def __init__(
        self,
        *,
        check_input: Callable[[RequestContext, str], Any] | None = None,
        output_guard: Callable[[RequestContext], OutputGuard] | None = None,
        record: Callable[[RequestContext, dict[str, Any]], None] | None = None,
        needs_logprobs: bool = False,
    ):
        self._check_input = check_input
        self._output_guard = output_guard
        self._record = record
        self.needs_logprobs = needs_logprobs  # the engine computes token log-probabilities for the checks

    @property
    def records(self) -> bool:
        return self._record is not None

    def check_input(self, ctx: RequestContext, text: str) -> Decision:
        return Decision() if self._check_input is None else as_decision(self._check_input(ctx, text))

    def output_guard(self, ctx: RequestContext) -> OutputGuard:
        return _PassThrough() if self._output_guard is None else self._output_guard(ctx)

    def record(self, ctx: RequestContext, record: dict[str, Any]) -> None:
        """Write the audit row (``record`` holds input, output, verdicts, latency, token counts)."""
        if self._record is not None:
            self._record(ctx, record)
