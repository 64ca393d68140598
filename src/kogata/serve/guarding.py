"""Guardrails, the audit log and the review queue, plugged into the request pipeline of ``kogata serve``.

:func:`build_pipeline` turns a guard :class:`~kogata.guard.Policy` (optional), an
:class:`~kogata.ops.audit.AuditLog` and a :class:`~kogata.ops.review.ReviewQueue` into the
:class:`~kogata.serve.pipeline.RequestPipeline` the routes call:

- input checks run on every user message (``redact`` rewrites it before the model sees it; ``block`` answers
  with the policy's safe reply without calling the engine);
- output checks run on the token stream (:class:`~kogata.guard.stream.StreamGuard`: a redacted span never
  leaves in an earlier chunk; ``hold`` keeps the whole answer back);
- one audit row per exchange is committed before the response (or the final SSE event) is sent; it holds the
  redacted input and the output as sent, the verdicts with their spans, latency and token counts;
- the committed row goes to the review queue when a check flagged or held it, its confidence was low, or it
  was sampled (``review:`` in the policy).

A held answer is answered ``202`` with a ``kogata.poll`` URL; :func:`poll_held` gives the reviewed answer
exactly once (``GET /v1/held/{id}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kogata.guard import GuardContext, Policy
from kogata.ops.audit import AuditLog, AuditRecord
from kogata.ops.review import ReviewQueue
from kogata.serve.pipeline import RequestContext, RequestPipeline


@dataclass
class Oversight:
    """What one server runs beside the engine (``app.state.kogata.oversight``)."""

    policy: Policy | None
    audit: AuditLog | None
    review: ReviewQueue | None

    @classmethod
    def open(cls, store: Any, *, policy: Policy | None, audit: bool = True) -> Oversight:
        """The store's audit log and review queue (``audit=False``: neither; nothing is recorded)."""
        if not audit:
            return cls(policy, None, None)
        log = AuditLog(store.engine, store.home)
        opts = policy.review if policy is not None else {}
        queue = ReviewQueue(store.engine, audit=log, sample_rate=opts.get("sample_rate", 0.0),
                            low_confidence=opts.get("low_confidence"))
        return cls(policy, log, queue)

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()

    # ---- the pipeline ------------------------------------------------------------------------------
    def pipeline(self) -> RequestPipeline:
        policy = self.policy
        if policy is None:
            return RequestPipeline(record=self._record if self.audit is not None else None)
        return RequestPipeline(
            check_input=lambda ctx, text: policy.check_input(text, guard_context(ctx)),
            output_guard=lambda ctx: policy.stream(guard_context(ctx)),
            record=self._record if self.audit is not None else None,
            needs_logprobs=policy.needs_logprobs,
        )

    def _record(self, ctx: RequestContext, rec: dict[str, Any]) -> None:
        assert self.audit is not None
        lps = ctx.logprobs
        if lps:
            rec.setdefault("meta", {})["mean_logprob"] = round(sum(lps) / len(lps), 4)
        entry = self.audit.append(AuditRecord.from_server(rec, response_id=ctx.request_id))
        if self.review is not None:
            item = self.review.consider(entry)
            if item is not None:
                ctx.extra["review_item"] = item.id


def guard_context(ctx: RequestContext) -> GuardContext:
    """The one :class:`GuardContext` of a request (input and output checks share it; the engine's log-probabilities
    are appended to ``logprobs`` as the answer streams)."""
    g = ctx.extra.get("guard")
    if not isinstance(g, GuardContext):
        base = ctx.guard_ctx()
        g = GuardContext(question=base.get("question"), json_schema=ctx.json_schema,
                         passages=list(ctx.extra.get("passages") or []), logprobs=ctx.logprobs)
        ctx.extra["guard"] = g
    return g
