"""The SQLite index (SQLAlchemy; a PostgreSQL URL in ``$KOGATA_DB_URL`` works too).

Artifacts on disk are the source of truth; this database indexes them and holds runs and search state.
"""

from __future__ import annotations

import time

from sqlalchemy import JSON, BigInteger, Float, String, Text, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    format: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32), default="causal-lm")
    architecture: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    path: Mapped[str] = mapped_column(Text)
    created: Mapped[float] = mapped_column(Float, default=time.time)
    manifest: Mapped[dict] = mapped_column(JSON)


def make_engine(url: str) -> Engine:
    engine = create_engine(url, future=True)
    Base.metadata.create_all(engine)
    return engine
