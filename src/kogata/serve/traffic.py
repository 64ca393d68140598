"""Shadow and canary traffic (serve.yaml ``shadow:`` / ``canary:``), recorded for ``kogata models alias promote``.

* **canary** ``{production: {candidate: 10}}`` — 10% of the requests for ``production`` are answered by the model
  behind ``candidate``. The choice is sticky: a hash of the client (API key name + the request's ``user`` field,
  else the client address) picks a bucket 0–99, so one user sees one model. The response names the artifact that
  really answered (``x-kogata-artifact``, audit row). Every split request is recorded as ``canary`` or
  ``control``.
* **shadow** ``{production: candidate}`` (+ ``shadow_share``) — after production has answered, a copy of the
  request goes to ``candidate`` in the background; its answer is discarded and compared: token F1 agreement with
  the answer that was sent, the output check's action on each, both latencies. At most one shadow request runs at
  a time and none while the candidate's engine has requests waiting, so a shadow never delays real traffic
  (skipped ones are counted on ``/metrics`` as ``kogata:shadow_skipped_total``).

No prompt or answer text is stored by either (only the audit log stores text, when it is on).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import logging
import time
from typing import Any

from kogata.serve.pipeline import RequestContext, as_decision

log = logging.getLogger("kogata.serve")


def bucket(*parts: str) -> int:
    """0–99 from the client's identity (stable across requests and restarts)."""
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:4], "big") % 100


class TrafficSplit:
    def __init__(self, config: Any, models: Any, store: Any):
        self.canary: dict[str, dict[str, float]] = dict(config.canary or {})
        self.shadow: dict[str, str] = dict(config.shadow or {})
        self.shadow_share = config.shadow_share
        self.models = models
        self.store = store
        self._shadow_busy = asyncio.Lock() if self.shadow else None
        self.skipped = 0
        self._tasks: set[asyncio.Task] = set()

    @property
    def active(self) -> bool:
        return bool(self.canary or self.shadow)

    # ---- canary ------------------------------------------------------------------------------------
    def route(self, requested: str, client: str) -> tuple[str, str | None]:
        """(the alias to answer with, "canary" | "control" | None) for a request for ``requested``."""
        split = self.canary.get(requested)
        if not split:
            return requested, None
        b, edge = bucket(requested, client), 0.0
        for alias, pct in split.items():
            edge += pct
            if b < edge:
                return alias, "canary"
        return requested, "control"

    def record(self, kind: str, *, alias: str, artifact_id: str, status: str, latency_ms: float | None,
               guard_action: str | None, **extra: Any) -> None:
        from kogata.ops.traffic import record_split

        try:
            record_split(self.store.engine, kind=kind, alias=alias, artifact_id=artifact_id, status=status,
                         latency_ms=latency_ms, guard_action=guard_action, **extra)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must never fail a request
            log.warning("recording %s traffic failed: %s", kind, exc)

    # ---- shadow ------------------------------------------------------------------------------------
    def shadow_of(self, alias: str, request_id: str) -> str | None:
        target = self.shadow.get(alias)
        if target is None or target == alias:
            return None
        if self.shadow_share < 1 and bucket("shadow", request_id) >= self.shadow_share * 100:
            return None
        return target

    def mirror(self, state: Any, target: str, gen: Any, ctx: RequestContext, sent: str, latency_ms: float,
               sent_action: str | None) -> None:
        """Start the shadow request in the background (returns at once)."""
        assert self._shadow_busy is not None
        if self._shadow_busy.locked():
            self.skipped += 1
            return
        task = asyncio.ensure_future(self._shadow(state, target, copy.deepcopy(gen), ctx, sent, latency_ms, sent_action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shadow(self, state: Any, target: str, gen: Any, ctx: RequestContext, sent: str, latency_ms: float,
                      sent_action: str | None) -> None:
        from kogata.eval.metrics import f1

        assert self._shadow_busy is not None
        async with self._shadow_busy:
            try:
                lease = self.models.acquire(target)
            except Exception:  # noqa: BLE001 - the shadow alias is not loaded (yet): nothing to compare
                self.skipped += 1
                return
            status, text, t0 = "ok", "", time.perf_counter()
            try:
                stats = lease.model.backend.stats()
                if stats.get("waiting", 0) > 0:
                    self.skipped += 1
                    return
                gen.logprobs = bool(state.pipeline.needs_logprobs)
                stream = lease.model.backend.submit(gen, queue_timeout_s=state.config.queue_timeout_s)
                parts = [piece.text async for piece in stream]
                text = "".join(parts)
            except Exception as exc:  # noqa: BLE001 - a failing candidate is what the shadow is for
                status = type(exc).__name__
            finally:
                lease.release()
            elapsed = (time.perf_counter() - t0) * 1000
            action = None
            if status == "ok":
                shadow_ctx = RequestContext(request_id=ctx.request_id + "-shadow", endpoint=ctx.endpoint, key_name=ctx.key_name,
                                            model_alias=target, artifact_id=lease.model.id, messages=ctx.messages,
                                            prompt=ctx.prompt, json_schema=ctx.json_schema)
                guard = state.pipeline.output_guard(shadow_ctx)
                guard.feed(text)
                action = as_decision(guard.finish()[1]).action
            await asyncio.to_thread(
                self.record, "shadow", alias=ctx.model_alias, artifact_id=lease.model.id, status=status, latency_ms=elapsed,
                guard_action=action, primary_artifact_id=ctx.artifact_id, primary_latency_ms=latency_ms,
                primary_guard_action=sent_action, agreement=f1(text, sent) if status == "ok" else None)

    async def drain(self, timeout_s: float = 10.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)


def after_response(state: Any, g: Any, kind: str | None, status: str) -> None:
    """Bookkeeping once an answer has gone out (called on the event loop): the canary/control row, the shadow copy."""
    split = getattr(state, "traffic", None)
    if split is None or not split.active:
        return
    latency = (time.perf_counter() - g.t0) * 1000
    action = g.output_decision.action
    if kind is not None:  # a database write: in a worker thread, off the event loop (nothing waits for it)
        asyncio.get_running_loop().run_in_executor(None, functools.partial(
            split.record, kind, alias=g.ctx.model_alias, artifact_id=g.lease.model.id, status=status, latency_ms=latency,
            guard_action=action))
    target = split.shadow_of(g.ctx.model_alias, g.ctx.request_id) if status == "ok" else None
    if target is not None and g.outcome.text:
        split.mirror(state, target, g.gen, g.ctx, g.outcome.text, latency, action)
