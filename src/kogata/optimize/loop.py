"""The search loop: baseline first, then candidates cheapest-to-try first, skipping what results make
pointless, within the time budget; resumable from the store's database after a kill."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import kogata.core.settings as settings
from kogata.core.errors import KogataError
from kogata.artifacts.artifact import Artifact
from kogata.artifacts.store import Store
from kogata.optimize.candidates import generate, skip_reason
from kogata.optimize.project import Project
from kogata.optimize.state import SearchState

FINISHED = ("done", "failed", "skipped")


def load_project_suite(project: Project) -> Any:
    from kogata.eval.suite import load_suite

    ref = project.suite
    local = (project.folder / ref)
    suite = load_suite(local if local.exists() else ref)
    if project.price is not None:
        suite = replace(suite, price=project.price)
    return suite


def resolve_base(store: Store, ref: str, log: Callable[[str], None]) -> Artifact:
    from kogata.artifacts.catalog import CATALOG
    from kogata.artifacts.importer import import_path, pull

    art = store.find(ref)
    if art is not None:
        return art
    if ref in CATALOG:
        return pull(store, ref, log=log)
    name = Path(ref).name
    return import_path(store, ref, name=name if store.find(name) is None else None, log=log)


class Search:
    def __init__(self, project: Project, *, store: Store | None = None, executor: Any = None, restart: bool = False,
                 log: Callable[[str], None] = print, on_event: Callable[[str, dict[str, Any]], None] | None = None):
        from kogata.eval.cost import load_price
        from kogata.eval.kpi import available_metric_names, validate_kpis

        self.project = project
        self.store = store or Store()
        self.log = log
        self.on_event = on_event or (lambda kind, data: None)
        settings.set_threads(project.threads)
        self.suite = load_project_suite(project)  # validates tasks and data before any model work
        validate_kpis(self.suite.kpis, available_metric_names(self.suite))
        self.price = load_price(self.suite.price)
        local = project.folder / project.base
        self.base = resolve_base(self.store, str(local) if local.exists() else project.base, log)
        if self.base.format != "hf" and project.runtime == "llamacpp":
            raise KogataError(f"base {self.base.name} is {self.base.format}; the search starts from a float hf model",
                              "use the hf artifact it came from (catalog names give the float baseline)")
        run_id = hashlib.sha256(f"{project.sha256}:{self.base.id}".encode()).hexdigest()[:24]
        self.state = SearchState(self.store, run_id, str(project.path), self.base.id)
        if restart:
            self.state.reset()
        self.candidates = generate(project)
        for i, c in enumerate(self.candidates):
            self.state.ensure(i, c.to_dict())
        first = self.state.rows()[0]
        if first.status == "failed":  # nothing can be decided without the baseline: always retry it
            self.state.update(first.key, status="pending", reason=None)
        self.executor = executor
        self.quality_gates = {m for bound in (self.suite.kpis or {}).values() for m in bound if "." in m}
        self._check_hand_edits()

    @property
    def run_id(self) -> str:
        return self.state.run_id

    def _check_hand_edits(self) -> None:
        """Finished candidates must still have their artifacts, unmodified; otherwise the record is stale."""
        for row in self.state.rows():
            if row.status != "done":
                continue
            for art_id in row.artifact_ids or [row.artifact_id]:
                art = self.store.find(art_id) if art_id else None
                problems = ["missing from the store"] if art is None else art.verify()
                if problems:
                    raise KogataError(
                        f"the store was changed by hand since candidate '{row.label}' ran: artifact {art_id} is {problems[0]}",
                        "rerun with --restart to search again from scratch",
                    )

    def remaining_s(self) -> float:
        return self.project.budget_minutes * 60.0 - self.state.run().elapsed_s

    def run(self) -> list[Any]:
        logs = str(self.store.home / "runs" / f"optimize-{self.run_id}" / "logs")
        args = {"project_path": str(self.project.path), "kogata_home": str(self.store.home), "base_id": self.base.id, "logs": logs}
        executor = self.executor
        if executor is None:
            from kogata.optimize.executor import LocalExecutor

            executor = LocalExecutor()
        while True:
            rows = self.state.rows()
            pending = [r for r in rows if r.status not in FINISHED]
            if not pending:
                break
            done = self._finished(rows)
            baseline_row = rows[0]
            eval_s = (baseline_row.entry or {}).get("timings", {}).get("quality_s", 0) + (baseline_row.entry or {}).get("timings", {}).get("efficiency_s", 0)
            batch = []
            for row in pending:
                if row.position > 0:
                    if baseline_row.status != "done":
                        break
                    from kogata.optimize.candidates import Candidate

                    cand = Candidate(**row.candidate)
                    base_bytes = baseline_row.entry["artifact"]["bytes"]
                    reason = skip_reason(cand, done, base_bytes, self.remaining_s(), eval_s, self.quality_gates)
                    if reason:
                        self.state.update(row.key, status="skipped", reason=reason)
                        self.on_event("skipped", {"label": row.label, "reason": reason})
                        continue
                batch.append(row)
                if row.position == 0 or len(batch) >= executor.parallel:
                    break
            if not batch:
                continue
            for row in batch:
                self.state.update(row.key, status="running")
                self.on_event("start", {"label": row.label, "position": row.position, "total": len(rows)})
            started = time.time()
            jobs = [(r.key, r.candidate) for r in batch]
            for key, result in executor.run(jobs, args, lambda text: self.on_event("stage", {"text": text})):
                row = next(r for r in batch if r.key == key)
                spent = time.time() - started
                if isinstance(result, BaseException):
                    self.state.update(key, status="failed", reason=str(result), duration_s=spent)
                    self.on_event("failed", {"label": row.label, "reason": str(result)})
                    if row.position == 0:
                        self.state.add_time(time.time() - started)
                        raise result
                else:
                    status = "done" if result["entry"].get("status") == "ok" else "failed"
                    self.state.update(key, status=status, entry=result["entry"], artifact_id=result["artifact_id"],
                                      artifact_ids=result["artifact_ids"] or [result["artifact_id"]], duration_s=spent,
                                      reason=result["entry"].get("error"))
                    self.on_event("done", {"label": row.label, "entry": result["entry"]})
            self.state.add_time(time.time() - started)
            if batch[0].position == 0:
                took = time.time() - started
                if took > self.project.budget_minutes * 60:
                    raise KogataError(
                        f"budget_minutes {self.project.budget_minutes:g} is too small: the baseline alone took {took / 60:.1f} min",
                        f"raise budget_minutes to at least {max(2 * took / 60, took / 60 + 2):.0f} (the baseline result is kept; rerun continues)",
                    )
        self.state.set_status("finished")
        return self.state.rows()

    def _finished(self, rows: list[Any]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            if r.status != "done" or not r.entry:
                continue
            out.append({"candidate": r.candidate, "label": r.label, "bytes": r.entry["artifact"]["bytes"],
                        "verdict": self._verdict(r.entry)["verdict"], "failed": self._verdict(r.entry)["failed"]})
        return out

    def _verdict(self, entry: dict[str, Any]) -> dict[str, Any]:
        from kogata.eval.cost import estimate_cost
        from kogata.eval.kpi import check_kpis, flat_metrics

        m = (entry.get("efficiency") or {}).get("metrics") or {}
        cost = estimate_cost(m.get("prefill_tok_s"), m.get("decode_tok_s"), self.price)
        return check_kpis(self.suite.kpis, flat_metrics(entry.get("quality"), entry.get("efficiency"), cost))


def project_run_folder(project: Project) -> Path:
    return project.folder / "kogata-report"
