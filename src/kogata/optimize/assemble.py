"""Turn the finished search state into one results document (the eval schema plus an ``optimize`` section)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from kogata import __version__
from kogata.optimize.decide import decide


def assemble(search: Any) -> dict[str, Any]:
    from kogata.eval.cost import add_savings, estimate_cost
    from kogata.eval.efficiency import library_versions, machine_info
    from kogata.eval.kpi import check_kpis, flat_metrics
    from kogata.eval.run import SCHEMA_VERSION, suite_record

    rows = search.state.rows()
    entries, candidates = [], []
    for r in rows:
        rec = {"key": r.key, "label": r.label, "family": r.candidate["family"], "steps": r.candidate["steps"],
               "status": r.status, "reason": r.reason, "duration_s": r.duration_s, "entry": None}
        if r.entry:
            e = dict(r.entry)
            e["candidate"] = {"key": r.key, "label": r.label, "family": r.candidate["family"], "steps": r.candidate["steps"]}
            entries.append(e)
            rec["entry"] = e["key"]
        candidates.append(rec)
    costs = {}
    for e in entries:
        m = (e.get("efficiency") or {}).get("metrics") or {}
        costs[e["key"]] = estimate_cost(m.get("prefill_tok_s"), m.get("decode_tok_s"), search.price)
    baseline_key = entries[0]["key"] if entries and rows[0].status == "done" else None
    add_savings(costs, baseline_key)
    for e in entries:
        e["cost"] = costs[e["key"]]
        e["metrics"] = flat_metrics(e.get("quality"), e.get("efficiency"), e["cost"])
        e["kpi"] = check_kpis(search.suite.kpis, e["metrics"])
        e["verdict"] = "ERROR" if e.get("status") == "error" else e["kpi"]["verdict"]
    project = search.project
    run = search.state.run()
    return {
        "schema_version": SCHEMA_VERSION,
        "kogata_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": run.elapsed_s,
        "suite": suite_record(search.suite),
        "settings": {"limit": project.limit, "threads": project.threads, "runtimes": [project.runtime], "runtime_options": {}, "skipped": []},
        "price": search.price.to_dict(),
        "baseline": baseline_key,
        "machine": machine_info(),
        "versions": library_versions(),
        "entries": entries,
        "optimize": {
            "run_id": search.run_id,
            "project": {"path": str(project.path), "name": project.name, "base": project.base, "base_id": search.base.id,
                        "suite": project.suite, "runtime": project.runtime, "threads": project.threads,
                        "budget_minutes": project.budget_minutes, "limit": project.limit, "language": project.language,
                        "data": [str(d) for d in project.data], "sha256": project.sha256},
            "candidates": candidates,
            "decision": decide(entries, baseline_key) if baseline_key else None,
        },
    }
