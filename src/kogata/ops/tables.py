"""The audit log and the review queue as tables in the store database (created by migration ``0003``).

``audit_log`` is append-only: each row carries ``hash = sha256(previous_hash ‖ canonical JSON of the row)``
(see :mod:`kogata.ops.audit.chain`). Its JSON payload columns (``input``, ``output``, ``verdicts``, ``meta``)
hold canonical JSON *text*, so the chain hashes exactly the bytes that are stored. Times are integer
microseconds since the Unix epoch (exact in every database).

``review_items`` carries a ``version`` column for optimistic concurrency: every change is
``UPDATE … WHERE id = ? AND version = ?``; a second reviewer acting on a stale copy changes nothing and is told so.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kogata.core.db import Base


class AuditRow(Base):
    """One request/response exchange (or a reviewer action) in the hash chain."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    time_us: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str] = mapped_column(String(64))
    response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    model_alias: Mapped[str | None] = mapped_column(String(200), nullable=True)
    artifact_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str | None] = mapped_column(String(32), nullable=True)  # ok | error | cancelled | HTTP code …
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens_in: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_out: Mapped[int | None] = mapped_column(Integer, nullable=True)
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    verdicts: Mapped[str] = mapped_column(Text)
    meta: Mapped[str] = mapped_column(Text)
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_log_time_us", "time_us"),
        Index("ix_audit_log_request_id", "request_id"),
        Index("ix_audit_log_response_id", "response_id"),
    )


class ReviewItemRow(Base):
    """One answer waiting for (or given) a human verdict. States: open → approved | corrected | rejected."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16))  # flag | hold | low_confidence | sample | feedback
    state: Mapped[str] = mapped_column(String(16), default="open")
    audit_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_alias: Mapped[str | None] = mapped_column(String(200), nullable=True)
    artifact_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prompt: Mapped[str] = mapped_column(Text)  # JSON text: the request's messages (or prompt string)
    original: Mapped[str] = mapped_column(Text)  # the model's answer as generated
    corrected: Mapped[str | None] = mapped_column(Text, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # mean token log-probability
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON text: verdict hits, why it was queued
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)  # user feedback: -1, 0, +1
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reviewed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    released_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # hold items: when the client got it
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        Index("ix_review_items_state", "state"),
        Index("ix_review_items_response_id", "response_id"),
    )


class TrafficSplitRow(Base):
    """One request of a shadow or canary experiment (no prompt or answer text): who answered, how fast, what the
    output check said, and — for a shadow — how far the mirrored answer agreed with the one that was sent.

    ``kind``: ``shadow`` (the candidate answered a copy, discarded), ``canary`` (the candidate's answer was sent),
    ``control`` (production answered while a canary of the same alias ran: the comparison group)."""

    __tablename__ = "traffic_split"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(16))
    alias: Mapped[str] = mapped_column(String(200))  # the alias the client asked for
    artifact_id: Mapped[str] = mapped_column(String(64))  # who answered (the candidate for shadow/canary)
    primary_artifact_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # shadow: who answered the client
    status: Mapped[str] = mapped_column(String(32))
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    primary_latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    guard_action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    primary_guard_action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    agreement: Mapped[float | None] = mapped_column(Float, nullable=True)  # token F1 of shadow vs sent answer

    __table_args__ = (Index("ix_traffic_split_artifact", "artifact_id", "kind"),)
