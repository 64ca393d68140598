"""Turn the finished search state into one results document (the eval schema plus an ``optimize`` section)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kogata import __version__
from kogata.optimize.decide import decide
from kogata.optimize.reasons import stored_fields


def assemble(search: Any) -> dict[str, Any]:
    from kogata.eval.efficiency import library_versions, machine_info
    from kogata.eval.results import score_entries
    from kogata.eval.run import SCHEMA_VERSION, suite_record

    rows = search.state.rows()
    entries, candidates = [], []
    for r in rows:
        rec = {"key": r.key, "label": r.label, "family": r.candidate["family"], "steps": r.candidate["steps"],
               "status": r.status, **stored_fields(r.reason), "duration_s": r.duration_s, "entry": None}
        if r.entry:
            e = dict(r.entry)
            e["candidate"] = {"key": r.key, "label": r.label, "family": r.candidate["family"], "steps": r.candidate["steps"]}
            entries.append(e)
            rec["entry"] = e["key"]
        candidates.append(rec)
    baseline_key = entries[0]["key"] if entries and rows[0].status == "done" else None
    score_entries(entries, search.suite.kpis, search.price, baseline_key)
    project = search.project
    run = search.state.run()
    return {
        "schema_version": SCHEMA_VERSION,
        "kogata_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": run.elapsed_s,
        "suite": suite_record(search.suite),
        "settings": {"limit": project.limit, "screen_items": project.screen_limit, "threads": search.threads,
                     "runtimes": [project.runtime], "runtime_options": {}, "skipped": []},
        "price": search.price.to_dict(),
        "baseline": baseline_key,
        "machine": {**machine_info(), "contention": search.contention},
        "versions": library_versions(),
        "entries": entries,
        "optimize": {
            "run_id": search.run_id,
            "project": {"path": str(project.path), "name": project.name, "base": project.base, "base_id": search.base.id,
                        "suite": project.suite, "runtime": project.runtime, "threads": project.threads,
                        "threads_used": search.threads, "budget_minutes": project.budget_minutes, "limit": project.limit,
                        "screen_items": project.screen_limit, "quality_margins": project.quality_margins, "language": project.language,
                        "data": [str(d) for d in project.data], "sha256": project.sha256},
            "candidates": candidates,
            "decision": decide(entries, baseline_key, project.quality_margins) if baseline_key else None,
        },
    }
