"""Model aliases (``production``, ``candidate``, ``previous`` …): ``aliases`` (now) and ``alias_history`` (every change).

Read later by rollback and promotion; written by ``kogata serve`` at start and by every hot swap.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from kogata.core.tables import Alias, AliasHistory


def record_alias(engine: Engine, name: str, artifact_id: str, *, by: str | None, reason: str | None) -> bool:
    """Point ``name`` at ``artifact_id``; appends a history row when that changes anything. Returns True if it did."""
    now = time.time()
    with Session(engine) as s, s.begin():
        row = s.get(Alias, name)
        previous = row.artifact_id if row is not None else None
        if previous == artifact_id:
            return False
        if row is None:
            s.add(Alias(name=name, artifact_id=artifact_id, updated=now, updated_by=by, reason=reason))
        else:
            row.artifact_id, row.updated, row.updated_by, row.reason = artifact_id, now, by, reason
        s.add(AliasHistory(name=name, artifact_id=artifact_id, previous_id=previous, at=now, by=by, reason=reason))
    return True


def alias_history(engine: Engine, name: str | None = None) -> list[dict[str, Any]]:
    q = select(AliasHistory).order_by(AliasHistory.id)
    if name is not None:
        q = q.where(AliasHistory.name == name)
    with Session(engine) as s:
        return [{"name": r.name, "artifact_id": r.artifact_id, "previous_id": r.previous_id, "at": r.at, "by": r.by,
                 "reason": r.reason} for r in s.execute(q).scalars()]


def current_aliases(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every alias now: name → {artifact_id, updated, by, reason}."""
    with Session(engine) as s:
        return {r.name: {"artifact_id": r.artifact_id, "updated": r.updated, "by": r.updated_by, "reason": r.reason}
                for r in s.execute(select(Alias).order_by(Alias.name)).scalars()}


def alias_target(engine: Engine, name: str) -> str:
    """The artifact id the alias ``name`` names now; a one-line error when there is no such alias."""
    from kogata.core.errors import KogataError

    row = current_aliases(engine).get(name)
    if row is None:
        raise KogataError(f"the store has no alias {name!r}", f"set it first: kogata models alias set {name} ARTIFACT")
    return row["artifact_id"]


def rollback_alias(engine: Engine, name: str, *, by: str | None, reason: str | None = None) -> str:
    """Point ``name`` back at the artifact it named before its last change; returns that artifact id."""
    from kogata.core.errors import KogataError

    history = alias_history(engine, name)
    if not history:
        raise KogataError(f"alias {name!r} does not exist", "list aliases with `kogata models alias show`")
    previous = history[-1]["previous_id"]
    if previous is None:
        raise KogataError(f"alias {name!r} has no earlier artifact to roll back to",
                          f"set one with `kogata models alias set {name} ARTIFACT`")
    record_alias(engine, name, previous, by=by, reason=reason or f"rollback from {history[-1]['artifact_id']}")
    return previous


def promote_alias(engine: Engine, source: str = "candidate", target: str = "production", *, by: str | None,
                  reason: str | None = None) -> tuple[str, str | None]:
    """Point ``target`` at the artifact ``source`` names and keep the old one as ``previous``; returns (new, old).
    ``kogata models alias rollback production`` undoes it."""
    from kogata.core.errors import KogataError

    new = alias_target(engine, source)
    old = (current_aliases(engine).get(target) or {}).get("artifact_id")
    if old == new:
        raise KogataError(f"{target} already names {new[:12]} (the artifact of {source})", "nothing to promote")
    if old is not None:
        record_alias(engine, "previous", old, by=by, reason=f"{target} before {source} {new[:12]} was promoted")
    record_alias(engine, target, new, by=by, reason=reason or f"promoted from {source}")
    return new, old
