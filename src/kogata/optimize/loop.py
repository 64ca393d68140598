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
from kogata.artifacts.artifact import Artifact
from kogata.artifacts.store import Store
from kogata.core.errors import KogataError
from kogata.optimize.candidates import generate, skip_reason
from kogata.optimize.project import Project
from kogata.optimize.reasons import Reason, failed
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
        from kogata.eval.run import check_kinds

        self.project = project
        self.store = store or Store()
        self.log = log
        self.on_event = on_event or (lambda kind, data: None)
        settings.set_threads(project.threads)
        self.suite = load_project_suite(project)  # validates tasks and data before any model work
        validate_kpis(self.suite.kpis, available_metric_names(self.suite))
        check_kinds(self.suite, [], [project.runtime])  # a retrieval task needs an embedder runtime: say so before building
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
        self.threads = project.threads
        self.contention: dict[str, Any] | None = None
        self.contention_seconds = 1.0
        full = [len(t.selected(project.limit)) for t in self.suite.tasks]
        screen = [len(t.selected(project.screen_limit)) for t in self.suite.tasks]
        self.needs_confirm = full != screen
        self.full_over_screen = max((f / s for f, s in zip(full, screen) if s), default=1.0)
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

    # ---- the machine --------------------------------------------------------------------------------
    def check_machine(self) -> dict[str, Any]:
        """Measure contention before measuring anything; choose the threads (kept from the baseline on resume)."""
        from kogata.core.machine import free_threads, measure_contention

        c = measure_contention(self.contention_seconds)
        baseline = self.state.rows()[0]
        fixed = (baseline.entry or {}).get("threads") if baseline.status == "done" else None
        threads = int(fixed) if fixed else free_threads(self.project.threads, c)
        self.threads = threads
        self.contention = {**c.to_dict(), "threads_requested": self.project.threads, "threads_used": threads}
        if c.contended:
            self.log(f"machine busy: other processes use {c.busy_cores:.1f} of {c.usable_cores} cores "
                     f"(core(s) {', '.join(map(str, c.taken))} taken); measuring with {threads} thread(s)"
                     + (f" instead of {self.project.threads}" if threads != self.project.threads else "")
                     + ("; speed figures are pessimistic, rerun on an idle machine before acting on them" if threads > c.free_cores else ""))
        self.on_event("contention", self.contention)
        return self.contention

    # ---- budget planning -----------------------------------------------------------------------------
    def _estimate_eval_s(self, baseline_entry: dict[str, Any], rel_size: float | None) -> float:
        """A candidate's evaluation time from the baseline's: CPU inference time follows the bytes read."""
        t = baseline_entry.get("timings") or {}
        factor = max(rel_size, 0.25) if rel_size is not None else 1.0
        return (t.get("quality_s", 0.0) + t.get("efficiency_s", 0.0)) * factor

    def _confirm_reserve_s(self, baseline_row: Any) -> float:
        """Time kept back for confirming the baseline and one finalist on all items (0 when screening is all)."""
        if not self.needs_confirm or baseline_row.status != "done" or (baseline_row.entry or {}).get("confirmed"):
            return 0.0
        q = (baseline_row.entry.get("timings") or {}).get("quality_s", 0.0)
        return q * self.full_over_screen * 1.5

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self) -> list[Any]:
        if self.contention is None:
            self.check_machine()
        logs = str(self.store.home / "runs" / f"optimize-{self.run_id}" / "logs")
        args = {"project_path": str(self.project.path), "kogata_home": str(self.store.home), "base_id": self.base.id, "logs": logs,
                "threads": self.threads, "limit": self.project.screen_limit}
        executor = self.executor
        if executor is None:
            from kogata.optimize.executor import LocalExecutor

            executor = LocalExecutor()
        while self._screen_step(executor, args):
            pass
        self._confirm_finalists(args)
        self.state.set_status("finished")
        return self.state.rows()

    def _screen_step(self, executor: Any, args: dict[str, Any]) -> bool:
        """Evaluate the next batch of pending candidates on the screening items; False when none is left."""
        from kogata.optimize.candidates import Candidate

        rows = self.state.rows()
        pending = [r for r in rows if r.status not in FINISHED]
        if not pending:
            return False
        done = self._finished(rows)
        baseline_row = rows[0]
        batch = []
        for row in pending:
            if row.position > 0:
                if baseline_row.status != "done":
                    break
                cand = Candidate(**row.candidate)
                base_bytes = baseline_row.entry["artifact"]["bytes"]
                eval_s = self._estimate_eval_s(baseline_row.entry, cand.rel_size)
                remaining = self.remaining_s() - self._confirm_reserve_s(baseline_row)
                reason = skip_reason(cand, done, base_bytes, remaining, eval_s, self.quality_gates)
                if reason:
                    self.state.update(row.key, status="skipped", reason=reason.dumps())
                    self.on_event("skipped", {"label": row.label, **reason.fields()})
                    continue
            batch.append(row)
            if row.position == 0 or len(batch) >= executor.parallel:
                break
        if not batch:
            return True
        for row in batch:
            self.state.update(row.key, status="running")
            self.on_event("start", {"label": row.label, "position": row.position, "total": len(rows)})
        started = time.time()
        jobs = [(r.key, r.candidate) for r in batch]
        for key, result in executor.run(jobs, args, lambda text: self.on_event("stage", {"text": text})):
            row = next(r for r in batch if r.key == key)
            spent = time.time() - started
            if isinstance(result, BaseException):
                reason = failed(result)
                self.state.update(key, status="failed", reason=reason.dumps(), duration_s=spent)
                self.on_event("failed", {"label": row.label, **reason.fields()})
                if row.position == 0:
                    self.state.add_time(time.time() - started)
                    raise result
            else:
                entry = {**result["entry"], "confirmed": not self.needs_confirm, "contention": self.contention}
                status = "done" if entry.get("status") == "ok" else "failed"
                self.state.update(key, status=status, entry=entry, artifact_id=result["artifact_id"],
                                  artifact_ids=result["artifact_ids"] or [result["artifact_id"]], duration_s=spent,
                                  reason=failed(entry["error"]).dumps() if entry.get("error") else None)
                self.on_event("done", {"label": row.label, "entry": entry, "position": row.position})
        self.state.add_time(time.time() - started)
        if batch[0].position == 0:
            took = time.time() - started
            if took > self.project.budget_minutes * 60:
                raise KogataError(
                    f"budget_minutes {self.project.budget_minutes:g} is too small: the baseline alone took {took / 60:.1f} min",
                    f"raise budget_minutes to at least {max(2 * took / 60, took / 60 + 2):.0f}, or lower screen_items "
                    "(the baseline result is kept; rerun continues)",
                )
        return True

    # ---- confirming the finalists on all items -------------------------------------------------------
    def _confirm_finalists(self, args: dict[str, Any]) -> None:
        """Baseline first, then KPI-passing candidates cheapest first, until the cheapest one that keeps the
        baseline's quality on all items is confirmed (or the budget is spent: the decision then says so)."""
        if not self.needs_confirm:
            return
        rows = self.state.rows()
        if rows[0].status != "done":
            return
        if not self._confirm(rows[0], args):
            return
        while True:
            rows = self.state.rows()
            base = rows[0].entry
            finalists = self._finalists(rows, base)
            if not finalists or finalists[0].entry.get("confirmed"):
                return
            if not self._confirm(finalists[0], args):
                return

    def _finalists(self, rows: list[Any], base: dict[str, Any]) -> list[Any]:
        from kogata.eval.noninferiority import quality_gate
        from kogata.optimize.decide import _cost_key

        out = []
        for r in rows[1:]:
            if r.status != "done" or not r.entry or self._verdict(r.entry)["verdict"] != "PASS":
                continue
            gate = quality_gate(r.entry, base, self.project.quality_margins)["verdict"]
            if gate == "kept" or (gate == "unclear" and not r.entry.get("confirmed")):
                out.append(r)
        return sorted(out, key=lambda r: _cost_key({**r.entry, "cost": self._cost(r.entry)}))

    def _confirm(self, row: Any, args: dict[str, Any]) -> bool:
        """Re-measure ``row``'s quality on all items; False (and a note in the row) when the budget does not allow."""
        from kogata.optimize.executor import confirm_quality

        if row.entry.get("confirmed"):
            return True
        q_s = (row.entry.get("timings") or {}).get("quality_s", 0.0) * self.full_over_screen
        if q_s > self.remaining_s() and row.position > 0:
            self.on_event("skipped", {"label": row.label, **Reason("reason_no_budget_confirm", {"need_min": q_s / 60}).fields()})
            return False
        self.on_event("start", {"label": f"{row.label} (confirm)", "position": row.position, "total": len(self.state.rows())})
        started = time.time()
        try:
            quality = confirm_quality(args["project_path"], row.artifact_id, args["kogata_home"], self.threads,
                                      self.project.limit, on_stage=lambda text: self.on_event("stage", {"text": text}))
        finally:
            self.state.add_time(time.time() - started)
        entry = {**row.entry, "screen_quality": row.entry.get("quality"), "quality": quality, "confirmed": True}
        entry["timings"] = {**(entry.get("timings") or {}), "confirm_s": time.time() - started}
        self.state.update(row.key, entry=entry)
        self.on_event("confirmed", {"label": row.label, "entry": entry})
        return True

    def _finished(self, rows: list[Any]) -> list[dict[str, Any]]:
        from kogata.eval.noninferiority import quality_gate

        base = rows[0].entry if rows and rows[0].status == "done" else None
        out = []
        for r in rows:
            if r.status != "done" or not r.entry:
                continue
            v = self._verdict(r.entry)
            gate = quality_gate(r.entry, base, self.project.quality_margins) if base else {"verdict": "kept", "tasks": []}
            worse = [f"{t['task']}.{t['metric']}" for t in gate["tasks"] if t["verdict"] == "worse"]
            self.quality_gates.update(worse)
            passes = v["verdict"] == "PASS" and gate["verdict"] == "kept"
            out.append({"candidate": r.candidate, "label": r.label, "bytes": r.entry["artifact"]["bytes"],
                        "verdict": "PASS" if passes else "FAIL", "failed": list(dict.fromkeys(v["failed"] + worse))})
        return out

    def _cost(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        from kogata.eval.results import entry_cost

        return entry_cost(entry, self.price)

    def _verdict(self, entry: dict[str, Any]) -> dict[str, Any]:
        from kogata.eval.results import score_entry

        return score_entry(entry, self.suite.kpis, self.price)["kpi"]


def project_run_folder(project: Project) -> Path:
    return project.folder / "kogata-report"
