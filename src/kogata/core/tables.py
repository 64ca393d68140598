"""The service's tables in the store database: API keys and their usage, model aliases and their history.

Created by migration ``0002``. Times are Unix seconds (float); ``key_usage.minute`` is ``int(time // 60)``.
"""

from __future__ import annotations

import time

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kogata.core.db import Base


class ApiKey(Base):
    """One API key. Only the hash of the secret is stored; ``revoked`` is the time it was revoked (None: active)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created: Mapped[float] = mapped_column(Float, default=time.time)
    revoked: Mapped[float | None] = mapped_column(Float, nullable=True)
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)  # requests per minute; None: no limit
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)  # tokens (in + out) per minute; None: no limit
    allowed_models: Mapped[list | None] = mapped_column(JSON, nullable=True)  # aliases/artifact ids; None: all


class KeyUsage(Base):
    """Requests and tokens of one key in one minute (the server keeps hot counters in memory and flushes here)."""

    __tablename__ = "key_usage"

    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id"), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)


class Alias(Base):
    """A served name (``production``, ``candidate`` …) and the artifact it points at now."""

    __tablename__ = "aliases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    artifact_id: Mapped[str] = mapped_column(String(32))
    updated: Mapped[float] = mapped_column(Float, default=time.time)
    updated_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class AliasHistory(Base):
    """Every change of an alias, oldest first (``previous_id`` None: the alias was created)."""

    __tablename__ = "alias_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    artifact_id: Mapped[str] = mapped_column(String(32))
    previous_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    at: Mapped[float] = mapped_column(Float, default=time.time)
    by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
