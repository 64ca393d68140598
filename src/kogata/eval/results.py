"""Scoring one evaluated entry, once: cost → flat metrics → KPI gates → verdict.

An *entry* is one artifact × runtime as :func:`kogata.eval.run.run_entry` returns it (``quality``,
``efficiency``, ``status``). ``kogata eval``, the optimize search (its skip decisions) and the optimize
results document all score entries with :func:`score_entry`, so a verdict means the same everywhere.
"""

from __future__ import annotations

from typing import Any

from kogata.eval.cost import PriceProfile, add_savings, estimate_cost
from kogata.eval.kpi import check_kpis, flat_metrics


def entry_cost(entry: dict[str, Any], profile: PriceProfile) -> dict[str, Any] | None:
    """Serving cost from the entry's measured median throughput (None when it was not measured)."""
    m = (entry.get("efficiency") or {}).get("metrics") or {}
    return estimate_cost(m.get("prefill_tok_s"), m.get("decode_tok_s"), profile)


def score_entry(entry: dict[str, Any], kpis: dict[str, Any] | None, profile: PriceProfile) -> dict[str, Any]:
    """``{"cost", "metrics", "kpi", "verdict"}`` for one entry (the entry itself is not changed).

    ``verdict`` is ``ERROR`` for an entry that did not finish, else the KPI verdict (``PASS``/``FAIL``).
    """
    cost = entry_cost(entry, profile)
    metrics = flat_metrics(entry.get("quality"), entry.get("efficiency"), cost)
    kpi = check_kpis(kpis, metrics)
    verdict = "ERROR" if entry.get("status") == "error" else kpi["verdict"]
    return {"cost": cost, "metrics": metrics, "kpi": kpi, "verdict": verdict}


def score_entries(entries: list[dict[str, Any]], kpis: dict[str, Any] | None, profile: PriceProfile,
                  baseline: str | None) -> list[dict[str, Any]]:
    """Score every entry in place and add each cost's ``saving`` against the ``baseline`` entry's cost."""
    for e in entries:
        e.update(score_entry(e, kpis, profile))
    add_savings({e["key"]: e["cost"] for e in entries}, baseline)
    return entries
