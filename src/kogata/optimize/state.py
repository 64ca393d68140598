"""Search state in the store's database, so a killed run continues where it stopped.

A run is keyed by the project file's content and the base artifact: rerunning the same command finds it.
Each candidate row moves pending → running → done | failed | skipped; finished rows are never redone.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from kogata.artifacts.store import Store
from kogata.core.db import Base


class OptimizeRun(Base):
    __tablename__ = "optimize_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_path: Mapped[str] = mapped_column(Text)
    base_id: Mapped[str] = mapped_column(String(32))
    created: Mapped[float] = mapped_column(Float, default=time.time)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)  # search time spent over all attempts
    status: Mapped[str] = mapped_column(String(16), default="running")


class CandidateRow(Base):
    __tablename__ = "optimize_candidates"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(Text)
    candidate: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    artifact_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    artifact_ids: Mapped[list | None] = mapped_column(JSON, nullable=True)  # every intermediate
    entry: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # Reason.dumps() (optimize/reasons.py); older runs: English
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)


class SearchState:
    def __init__(self, store: Store, run_id: str, project_path: str, base_id: str):
        self.store = store
        self.run_id = run_id
        with Session(store.engine) as s, s.begin():
            if s.get(OptimizeRun, run_id) is None:
                s.add(OptimizeRun(id=run_id, project_path=project_path, base_id=base_id))

    def run(self) -> OptimizeRun:
        with Session(self.store.engine) as s:
            row = s.get(OptimizeRun, self.run_id)
            s.expunge(row)
            return row

    def add_time(self, seconds: float) -> None:
        with Session(self.store.engine) as s, s.begin():
            s.get(OptimizeRun, self.run_id).elapsed_s += seconds

    def set_status(self, status: str) -> None:
        with Session(self.store.engine) as s, s.begin():
            s.get(OptimizeRun, self.run_id).status = status

    def ensure(self, position: int, cand: dict[str, Any]) -> None:
        with Session(self.store.engine) as s, s.begin():
            if s.get(CandidateRow, (self.run_id, cand["key"])) is None:
                s.add(CandidateRow(run_id=self.run_id, key=cand["key"], position=position, label=cand["label"], candidate=cand))

    def rows(self) -> list[CandidateRow]:
        with Session(self.store.engine) as s:
            rows = s.execute(select(CandidateRow).where(CandidateRow.run_id == self.run_id).order_by(CandidateRow.position)).scalars().all()
            for r in rows:
                s.expunge(r)
            return list(rows)

    def update(self, key: str, **fields: Any) -> None:
        with Session(self.store.engine) as s, s.begin():
            row = s.get(CandidateRow, (self.run_id, key))
            for k, v in fields.items():
                setattr(row, k, v)

    def reset(self) -> None:
        with Session(self.store.engine) as s, s.begin():
            for row in s.execute(select(CandidateRow).where(CandidateRow.run_id == self.run_id)).scalars():
                s.delete(row)
            run = s.get(OptimizeRun, self.run_id)
            run.elapsed_s, run.status = 0.0, "running"
