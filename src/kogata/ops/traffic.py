"""Shadow and canary results, and the gates ``kogata models alias promote`` checks before a candidate goes live.

``kogata serve`` writes one :class:`~kogata.ops.tables.TrafficSplitRow` per mirrored (shadow) or split (canary,
control) request — never prompt or answer text. :func:`split_summary` aggregates them for one candidate artifact;
:func:`promotion_gates` turns the summary into pass/fail lines:

* enough evidence: at least ``min_requests`` shadow or canary requests;
* agreement (shadow): mean token F1 between the candidate's and production's answers ≥ ``min_agreement`` — a
  candidate trained on corrections *should* differ somewhat, so the default (0.2) only catches answers that
  have nothing to do with production's;
* guard hits: the candidate's share of answers an output check acted on (flag, redact, block, hold) is at most
  ``max_guard_increase`` above production's on the same requests;
* errors: the candidate's failed requests (status other than ok) at most ``max_error_rate``;
* latency: the candidate's p95 at most ``max_latency_ratio`` × production's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from kogata.ops.tables import TrafficSplitRow

T = TrafficSplitRow.__table__
GUARD_HIT = ("flag", "redact", "block", "hold")


def record_split(engine: Engine, **values: Any) -> None:
    """Append one row (see :class:`~kogata.ops.tables.TrafficSplitRow` for the fields)."""
    with engine.begin() as conn:
        conn.execute(insert(T).values(at=time.time(), **values))


def _p95(values: list[float]) -> float | None:
    import numpy as np

    return float(np.percentile(values, 95)) if values else None


def _rate(actions: list[str | None]) -> float | None:
    return sum(a in GUARD_HIT for a in actions) / len(actions) if actions else None


def split_summary(engine: Engine, artifact_id: str, since: float | None = None) -> dict[str, Any]:
    """``{"shadow": {...}, "canary": {...}, "control": {...}}`` for the candidate ``artifact_id``."""
    stmt = select(T)
    if since is not None:
        stmt = stmt.where(T.c.at >= since)
    with engine.connect() as conn:
        rows = [r for r in conn.execute(stmt) if r.artifact_id == artifact_id or r.kind == "control"]
    out: dict[str, Any] = {}
    for kind in ("shadow", "canary", "control"):
        rs = [r for r in rows if r.kind == kind and (kind == "control" or r.artifact_id == artifact_id)]
        ok = [r for r in rs if r.status == "ok"]
        d: dict[str, Any] = {"n": len(rs), "errors": len(rs) - len(ok),
                             "error_rate": (len(rs) - len(ok)) / len(rs) if rs else None,
                             "latency_p95_ms": _p95([r.latency_ms for r in ok if r.latency_ms is not None]),
                             "guard_hit_rate": _rate([r.guard_action for r in ok])}
        if kind == "shadow":
            agree = [r.agreement for r in ok if r.agreement is not None]
            d["agreement"] = sum(agree) / len(agree) if agree else None
            d["primary_latency_p95_ms"] = _p95([r.primary_latency_ms for r in ok if r.primary_latency_ms is not None])
            d["primary_guard_hit_rate"] = _rate([r.primary_guard_action for r in ok])
        out[kind] = d
    return out


@dataclass
class PromotionGates:
    min_requests: int = 50
    min_agreement: float = 0.2
    max_guard_increase: float = 0.02
    max_error_rate: float = 0.01
    max_latency_ratio: float = 1.5


def promotion_gates(summary: dict[str, Any], gates: PromotionGates | None = None) -> list[dict[str, Any]]:
    """One ``{"gate", "value", "limit", "pass"}`` per check that has evidence; the evidence gate always."""
    g = gates or PromotionGates()
    shadow, canary, control = summary["shadow"], summary["canary"], summary["control"]
    n = shadow["n"] + canary["n"]
    out = [{"gate": "requests (shadow + canary)", "value": n, "limit": f">= {g.min_requests}", "pass": n >= g.min_requests}]

    def add(name: str, value: float | None, ok: bool, shown: str) -> None:
        if value is not None:
            out.append({"gate": name, "value": round(value, 4), "limit": shown, "pass": ok})

    def compare(kind: str, cand: dict[str, Any], base: dict[str, Any], base_name: str) -> None:
        """The candidate's errors, guard hits and p95 latency against the requests it is compared with."""
        add(f"{kind} error rate", cand["error_rate"], (cand["error_rate"] or 0) <= g.max_error_rate, f"<= {g.max_error_rate}")
        if cand["guard_hit_rate"] is not None and base["guard_hit_rate"] is not None:
            diff = cand["guard_hit_rate"] - base["guard_hit_rate"]
            add(f"{kind} guard hits − {base_name}'s", diff, diff <= g.max_guard_increase, f"<= {g.max_guard_increase:+}")
        if cand["latency_p95_ms"] and base["latency_p95_ms"]:
            r = cand["latency_p95_ms"] / base["latency_p95_ms"]
            add(f"{kind} p95 latency ÷ {base_name}'s", r, r <= g.max_latency_ratio, f"<= {g.max_latency_ratio}")

    if shadow["n"]:
        a = shadow["agreement"]
        add("shadow agreement (token F1 with production)", a, a is not None and a >= g.min_agreement, f">= {g.min_agreement}")
        primary = {"guard_hit_rate": shadow["primary_guard_hit_rate"], "latency_p95_ms": shadow["primary_latency_p95_ms"]}
        compare("shadow", shadow, primary, "production")  # the same requests, as production answered them
    if canary["n"]:
        compare("canary", canary, control, "control")
    return out
