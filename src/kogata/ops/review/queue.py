"""The review queue: doubtful answers wait here for a person to approve, correct or reject them.

Items come from audit rows (:meth:`ReviewQueue.consider`: ``flag``/``hold`` verdicts, low-confidence
answers, a deterministic sample of traffic) and from user feedback (:meth:`ReviewQueue.record_feedback`).

States: ``open → approved | corrected | rejected``; nothing leaves a final state. Every change is
``UPDATE … WHERE id = ? AND version = ?`` (optimistic concurrency): of two reviewers acting on the same
item at once, one wins and the other gets :class:`ReviewConflict`. A ``hold`` item's answer is given to the
client once, by :meth:`ReviewQueue.release`, after approve (the original) or correct (the correction).
With an :class:`~kogata.ops.audit.AuditLog` attached, every reviewer action and every release is an audit row.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from kogata.core.errors import KogataError
from kogata.ops.audit.log import AuditEntry, AuditLog, AuditRecord, to_jsonable
from kogata.ops.tables import ReviewItemRow

T = ReviewItemRow.__table__
STATES = ("open", "approved", "corrected", "rejected")
FINAL = {"approved", "corrected", "rejected"}
SOURCES = ("flag", "hold", "low_confidence", "sample", "feedback")
RATINGS = (-1, 0, 1)
MAX_COMMENT = 4000


class ReviewConflict(KogataError):
    """Someone else changed the item first (or it was already released)."""


class ReviewPending(KogataError):
    """A held answer has no reviewer verdict yet."""


class UnknownResponse(KogataError):
    """Feedback names a response id that no audit row has."""


@dataclass
class ReviewItem:
    id: int
    created: float
    source: str
    state: str
    audit_id: int | None
    request_id: str | None
    response_id: str | None
    model_alias: str | None
    artifact_id: str | None
    prompt: Any  # the request's messages (list of {role, content}) or prompt text
    original: str
    corrected: str | None
    confidence: float | None
    details: dict[str, Any]
    rating: int | None
    comment: str | None
    reviewer: str | None
    reviewed_at: float | None
    reason: str | None
    released_at: float | None
    version: int

    @classmethod
    def from_row(cls, row: Any) -> ReviewItem:
        d = dict(row._mapping)
        d["prompt"] = json.loads(d["prompt"])
        d["details"] = json.loads(d["details"] or "{}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def answer(self) -> str | None:
        """The answer a reviewer stands behind: the correction, or the original when approved."""
        return self.corrected if self.state == "corrected" else self.original if self.state == "approved" else None


def sampled(request_id: str, rate: float) -> bool:
    """A deterministic coin for ``request_id``: the same request is always in (or out of) the sample."""
    if rate <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(request_id.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < rate


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(to_jsonable(value), ensure_ascii=False)


class ReviewQueue:
    """Review items in the store database. ``low_confidence``: queue answers whose ``meta["mean_logprob"]`` is below it."""

    def __init__(self, engine: Engine, *, audit: AuditLog | None = None, sample_rate: float = 0.0, low_confidence: float | None = None):
        if not 0 <= sample_rate <= 1:
            raise KogataError(f"review sample_rate {sample_rate} is outside [0, 1]", "use e.g. sample_rate: 0.01 to review 1% of traffic")
        self.engine = engine
        self.audit = audit
        self.sample_rate = sample_rate
        self.low_confidence = low_confidence

    @classmethod
    def open(cls, home: Path | None = None, *, audit: AuditLog | None = None, **kwargs: Any) -> ReviewQueue:
        audit = audit or AuditLog.open(home)
        return cls(audit.engine, audit=audit, **kwargs)

    # ---- adding --------------------------------------------------------------------------------------
    def why(self, entry: AuditEntry) -> str | None:
        """The reason an audit row goes to review (a :data:`SOURCES` name), or None."""
        rec = entry.record
        if rec.endpoint and rec.endpoint.startswith("review."):
            return None
        if rec.action in ("flag", "hold"):
            return rec.action
        mean_lp = (rec.meta or {}).get("mean_logprob")
        if self.low_confidence is not None and isinstance(mean_lp, (int, float)) and mean_lp < self.low_confidence:
            return "low_confidence"
        if rec.action != "block" and sampled(rec.request_id, self.sample_rate):
            return "sample"
        return None

    def consider(self, entry: AuditEntry) -> ReviewItem | None:
        """Queue the exchange of a committed audit row when it needs a reviewer; returns the new item or None."""
        source = self.why(entry)
        return self._add_from_entry(entry, source) if source else None

    def _add_from_entry(self, entry: AuditEntry, source: str, **extra: Any) -> ReviewItem:
        rec = entry.record
        mean_lp = (rec.meta or {}).get("mean_logprob")
        return self.add(
            source=source, prompt=rec.input, original=_text(rec.output), audit_id=entry.id, request_id=rec.request_id,
            response_id=rec.response_id, model_alias=rec.model_alias, artifact_id=rec.artifact_id,
            confidence=float(mean_lp) if isinstance(mean_lp, (int, float)) else None,
            details={"action": rec.action, "verdicts": to_jsonable(rec.verdicts)}, **extra,
        )

    def add(self, *, source: str, prompt: Any, original: str, details: dict[str, Any] | None = None, **fields: Any) -> ReviewItem:
        if source not in SOURCES:
            raise KogataError(f"unknown review source {source!r}", f"use one of: {', '.join(SOURCES)}")
        values = {
            "created": time.time(), "source": source, "state": "open", "prompt": json.dumps(to_jsonable(prompt), ensure_ascii=False),
            "original": original, "details": json.dumps(to_jsonable(details or {}), ensure_ascii=False), "version": 1, **fields,
        }
        with self.engine.connect() as conn:
            item_id = conn.execute(insert(T).values(**values)).inserted_primary_key[0]
            conn.commit()
        return self.get(item_id)

    def record_feedback(self, response_id: str, rating: int, comment: str | None = None) -> ReviewItem:
        """A user's rating (−1 bad, 0 neutral, +1 good) of a response: attached to its open item, or a new item."""
        if isinstance(rating, bool) or rating not in RATINGS:
            raise KogataError(f"rating {rating!r} is not -1, 0 or 1", "send rating -1 (bad), 0 (neutral) or 1 (good)")
        if comment is not None and len(comment) > MAX_COMMENT:
            raise KogataError(f"comment is {len(comment)} characters long", f"keep feedback comments under {MAX_COMMENT} characters")
        for _ in range(20):
            current = self.find(response_id, state="open")
            if current is None:
                break
            with self.engine.connect() as conn:
                done = conn.execute(update(T).where(T.c.id == current.id, T.c.version == current.version)
                                    .values(rating=rating, comment=comment, version=current.version + 1)).rowcount
                conn.commit()
            if done:
                return self.get(current.id)
        else:
            raise ReviewConflict(f"feedback for {response_id} kept colliding with reviewers", "send it again")
        entry = self.audit.find(response_id=response_id) if self.audit is not None else None
        if entry is None:
            raise UnknownResponse(f"no response with id {response_id!r} is on record", "send the id of a response this server gave")
        return self._add_from_entry(entry, "feedback", rating=rating, comment=comment)

    # ---- reading -------------------------------------------------------------------------------------
    def get(self, item_id: int) -> ReviewItem:
        with self.engine.connect() as conn:
            row = conn.execute(select(T).where(T.c.id == int(item_id))).first()
        if row is None:
            raise KogataError(f"review item {item_id} does not exist", "list items with `kogata review list`")
        return ReviewItem.from_row(row)

    def find(self, response_id: str, *, state: str | None = None, source: str | None = None) -> ReviewItem | None:
        """The newest item for a response (optionally in ``state``, from ``source``)."""
        stmt = select(T).where(T.c.response_id == response_id).order_by(T.c.id.desc()).limit(1)
        if state is not None:
            stmt = stmt.where(T.c.state == state)
        if source is not None:
            stmt = stmt.where(T.c.source == source)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return ReviewItem.from_row(row) if row else None

    def list(self, *, state: str | None = "open", source: str | None = None, limit: int = 50, offset: int = 0) -> list[ReviewItem]:
        if state is not None and state not in STATES:
            raise KogataError(f"unknown review state {state!r}", f"use one of: {', '.join(STATES)}")
        stmt = select(T).order_by(T.c.id).limit(limit).offset(offset)
        if state is not None:
            stmt = stmt.where(T.c.state == state)
        if source is not None:
            stmt = stmt.where(T.c.source == source)
        with self.engine.connect() as conn:
            return [ReviewItem.from_row(r) for r in conn.execute(stmt)]

    # ---- reviewer actions ----------------------------------------------------------------------------
    def approve(self, item_id: int, reviewer: str, reason: str | None = None, *, version: int | None = None) -> ReviewItem:
        return self._decide(item_id, "approved", reviewer, reason, None, version)

    def correct(self, item_id: int, reviewer: str, text: str, reason: str | None = None, *, version: int | None = None) -> ReviewItem:
        if not text or not text.strip():
            raise KogataError("a correction needs the right answer", "pass the corrected text, e.g. --text '…' or --file answer.txt")
        return self._decide(item_id, "corrected", reviewer, reason, text, version)

    def reject(self, item_id: int, reviewer: str, reason: str | None = None, *, version: int | None = None) -> ReviewItem:
        return self._decide(item_id, "rejected", reviewer, reason, None, version)

    def _decide(self, item_id: int, state: str, reviewer: str, reason: str | None, corrected: str | None, version: int | None) -> ReviewItem:
        if not reviewer or not reviewer.strip():
            raise KogataError("a reviewer name is required", "pass --reviewer NAME (it is recorded with the decision)")
        item = self.get(item_id)
        expected = item.version if version is None else version
        if item.state in FINAL and version is None:
            raise ReviewConflict(f"review item {item.id} is already {item.state} (by {item.reviewer}, version {item.version})",
                                 "a decided item cannot be changed; show it with `kogata review show`")
        now = time.time()
        with self.engine.connect() as conn:
            done = conn.execute(
                update(T).where(T.c.id == item.id, T.c.version == expected, T.c.state == "open")
                .values(state=state, reviewer=reviewer, reviewed_at=now, reason=reason, corrected=corrected, version=expected + 1)
            ).rowcount
            conn.commit()
        if done != 1:
            now_item = self.get(item.id)
            raise ReviewConflict(
                f"review item {item.id} was changed by someone else (now {now_item.state}"
                f"{' by ' + now_item.reviewer if now_item.reviewer else ''}, version {now_item.version}; you acted on version {expected})",
                "reload it with `kogata review show` and decide again",
            )
        decided = self.get(item.id)
        self._audit(decided, f"review.{state}", reviewer,
                    {"item": decided.id, "reason": reason, "version": decided.version}, corrected)
        return decided

    def release(self, item_id: int) -> str:
        """The answer a held client gets, exactly once: the correction, or the original when approved."""
        item = self.get(item_id)
        if item.source != "hold":
            raise KogataError(f"review item {item.id} is not a held answer (source {item.source})", "only hold items are released")
        if item.state == "open":
            raise ReviewPending(f"review item {item.id} is still waiting for a reviewer", "poll again later")
        if item.state == "rejected":
            raise KogataError(f"review item {item.id} was rejected: its answer is never released", "send the client the policy's safe reply")
        now = time.time()
        with self.engine.connect() as conn:
            done = conn.execute(
                update(T).where(T.c.id == item.id, T.c.version == item.version, T.c.released_at.is_(None))
                .values(released_at=now, version=item.version + 1)
            ).rowcount
            conn.commit()
        if done != 1:
            raise ReviewConflict(f"review item {item.id} was already released", "an answer is given to the client only once")
        text = item.answer or ""
        try:
            self._audit(item, "review.release", None, {"item": item.id, "state": item.state}, text)
        except Exception:  # no audit row, no release: put it back so a later poll can try again
            with self.engine.connect() as conn:
                conn.execute(update(T).where(T.c.id == item.id, T.c.released_at == now).values(released_at=None, version=item.version + 2))
                conn.commit()
            raise
        return text

    def _audit(self, item: ReviewItem, endpoint: str, reviewer: str | None, info: dict[str, Any], output: str | None) -> None:
        if self.audit is None:
            return
        self.audit.append(AuditRecord(
            request_id=f"review-{item.id}-v{item.version}", response_id=item.response_id, key_name=reviewer,
            model_alias=item.model_alias, artifact_id=item.artifact_id, endpoint=endpoint, action=item.state,
            input=info, output=output, meta={"review_item": item.id},
        ))
