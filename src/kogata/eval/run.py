"""An evaluation run: N artifacts × M runtimes on one suite → ``results.json`` + ``report.html`` + ``summary.md``.

For every artifact × runtime: quality (the suite's tasks, in this process), efficiency (its own process, see
:mod:`kogata.eval.efficiency`), cost (:mod:`kogata.eval.cost`) and the KPI verdict (:mod:`kogata.eval.kpi`).
Everything that can be checked without loading a model is checked first (KPI names, price profile, runtime ×
format compatibility, baseline, output folder), so a bad combination fails in seconds, not hours.

The output folder appears only when complete: files are written to a staging folder next to it and renamed
into place; an existing results folder is replaced only after success. Schema: ``docs/results-schema.md``.
"""

from __future__ import annotations

import gc
import os
import shutil
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kogata.core.settings as settings
from kogata import __version__
from kogata.core.errors import KogataError
from kogata.eval.cost import add_savings, estimate_cost, load_price
from kogata.eval.efficiency import DEFAULTS as EFFICIENCY_DEFAULTS
from kogata.eval.efficiency import library_versions, machine_info, run_probe_subprocess, task_type
from kogata.eval.kpi import available_metric_names, check_kpis, flat_metrics, validate_kpis

SCHEMA_VERSION = 1
# Formats each runtime can execute when the runtime registry does not say (torch reads GGUF by dequantising it)
FORMAT_SUPPORT = {"torch": ("hf", "gguf"), "llamacpp": ("gguf",)}
# The format a runtime runs as-is; when several runtimes are listed, an artifact runs on its native ones only
NATIVE_FORMAT = {"torch": "hf", "llamacpp": "gguf"}


class EvalProgress:
    """What :func:`run_eval` reports while it works; the CLI draws rich progress bars from these calls."""

    def start(self, total: int) -> None: ...

    def entry(self, key: str, index: int, total: int) -> None: ...

    def stage(self, key: str, text: str) -> None: ...

    def task(self, key: str, task: str, done: int, total: int) -> None: ...

    def entry_done(self, key: str, entry: dict[str, Any]) -> None: ...

    def finish(self) -> None: ...


# ---- seams (tests replace these) ------------------------------------------------------------------
def _open_runtime(name: str, artifact: Any, **options: Any) -> Any:
    from kogata.runtimes import open_runtime

    return open_runtime(name, artifact, **options)


def _evaluate_quality(runtime: Any, suite: Any, limit: int | None, progress: Any) -> dict[str, Any]:
    from kogata.eval.quality import evaluate_quality

    return evaluate_quality(runtime, suite, limit=limit, progress=progress)


def _probe(artifact: Any, runtime: str, suite: Any, *, threads: int, options: dict[str, Any], work_dir: Path, on_line: Any) -> dict[str, Any]:
    return run_probe_subprocess(artifact, runtime, suite.path, threads=threads, options=options, work_dir=work_dir, on_line=on_line)


# ---- checks before any model is loaded ------------------------------------------------------------
def entry_key(artifact: Any, runtime: str) -> str:
    return f"{artifact.name}@{runtime}"


class IncompatibleError(KogataError):
    """This runtime cannot run this artifact (another listed runtime may)."""


def check_compatible(runtime: str, artifact: Any, options: dict[str, Any] | None = None) -> None:
    """Raise if ``runtime`` cannot run ``artifact``: :class:`IncompatibleError` for a format it does not run,
    :class:`KogataError` for an unknown runtime or option, or an artifact that is not a language model."""
    from kogata.runtimes import get_runtime_class

    cls = get_runtime_class(runtime)  # KogataError naming the valid runtimes
    if getattr(artifact, "kind", "causal-lm") != "causal-lm":
        raise KogataError(f"{artifact.name} is an {artifact.kind}, not a language model", "kogata eval evaluates causal LMs")
    unknown = sorted(set(options or {}) - set(getattr(cls, "options", ()) or ()))
    if unknown:
        raise KogataError(f"runtime {runtime!r} has no option {unknown[0]!r}", f"valid options: {', '.join(cls.options) or '(none)'}")
    formats = getattr(cls, "formats", None) or FORMAT_SUPPORT.get(runtime, ())
    if artifact.format not in formats:
        raise IncompatibleError(
            f"runtime {runtime} cannot run {artifact.name} ({artifact.format} format; {runtime} runs {', '.join(formats)})",
            "list a runtime that runs it (torch runs hf, llamacpp runs gguf), or convert it "
            f"(`kogata compress {artifact.name} --method export-gguf` makes a GGUF)",
        )


def plan_entries(artifacts: list[Any], runtimes: list[str], options: dict[str, dict[str, Any]]) -> tuple[list[tuple[Any, str]], list[dict[str, str]]]:
    """Which artifact runs on which of the listed runtimes, and which combinations are skipped (and why).

    Every artifact runs on each listed runtime that runs its format natively (torch: hf, llamacpp: gguf); if
    none does, on each one that can run it at all (torch dequantises GGUF). An artifact no listed runtime can
    run is an error, raised before anything is loaded.
    """
    pairs, skipped, problems = [], [], []
    for a in artifacts:
        able, reasons = [], {}
        for rt in runtimes:
            try:
                check_compatible(rt, a, options.get(rt))
                able.append(rt)
            except IncompatibleError as exc:  # unknown runtime, wrong kind: raised as they are
                reasons[rt] = exc
        if not able:
            problems.extend(reasons.values())
            continue
        native = [rt for rt in able if NATIVE_FORMAT.get(rt, a.format) == a.format]
        chosen = native or able
        pairs.extend((a, rt) for rt in chosen)
        for rt in runtimes:
            if rt not in chosen:
                why = reasons[rt].message if rt in reasons else f"{rt} would only convert it; {', '.join(chosen)} runs it natively"
                skipped.append({"artifact": a.name, "runtime": rt, "reason": why})
    if problems:
        raise problems[0] if len(problems) == 1 else KogataError("; ".join(p.message for p in problems), problems[0].hint)
    return pairs, skipped


def resolve_baseline(ref: str | None, artifacts: list[Any], pairs: list[tuple[Any, str]]) -> str:
    """The entry key savings are measured against: the suite's ``baseline`` artifact, or the first one given."""
    if ref:
        match = [a for a in artifacts if ref in (a.name, a.id) or (len(ref) >= 4 and a.id.startswith(ref))]
        if not match:
            raise KogataError(
                f"the suite's baseline {ref!r} is not among the artifacts being evaluated",
                f"add {ref} to the command, or set `baseline: null` in the suite to compare against the first artifact",
            )
        art = match[0]
    else:
        art = artifacts[0]
    return next(entry_key(a, rt) for a, rt in pairs if a is art)


def _staging_folder(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise KogataError(f"--out {out_dir} is a file", "give a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "results.json").is_file():
        raise KogataError(f"--out {out_dir} exists and is not a kogata results folder", "choose a new or empty folder; it would be replaced")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "logs").mkdir(parents=True)
    except OSError as exc:
        raise KogataError(f"cannot write the results to {out_dir} ({exc.strerror or exc})", "choose a folder you can write to with --out") from None
    return staging


def _publish(staging: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---- the run --------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KogataError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:500]


def _artifact_record(a: Any) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "format": a.format, "kind": a.kind, "architecture": a.architecture,
            "params": a.params, "bytes": a.bytes, "parent": a.parent, "lineage": a.lineage, "path": str(a.path)}


def _run_entry(artifact: Any, runtime: str, suite: Any, *, limit: int | None, threads: int, options: dict[str, Any],
               logs: Path, progress: EvalProgress) -> dict[str, Any]:
    key = entry_key(artifact, runtime)
    entry: dict[str, Any] = {"key": key, "artifact": _artifact_record(artifact),
                             "runtime": {"name": runtime, "options": options, "info": None},
                             "threads": threads, "status": "ok", "error": None, "quality": None, "efficiency": None,
                             "timings": {}}
    try:
        progress.stage(key, "loading for quality")
        started = time.perf_counter()
        rt = _open_runtime(runtime, artifact, **options)
        try:
            entry["runtime"]["info"] = rt.info()

            def on_task(task: str, done: int, total: int) -> None:
                progress.task(key, task, done, total)

            entry["quality"] = _evaluate_quality(rt, suite, limit, on_task)
        finally:
            rt.close()
            del rt
            gc.collect()
        entry["timings"]["quality_s"] = time.perf_counter() - started
        progress.stage(key, "efficiency probe (own process)")
        started = time.perf_counter()
        entry["efficiency"] = _probe(artifact, runtime, suite, threads=threads, options=options, work_dir=logs,
                                     on_line=lambda line: progress.stage(key, line))
        entry["timings"]["efficiency_s"] = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - one failing entry must not lose the others
        entry["status"], entry["error"] = "error", _one_line(exc)
        (logs / f"{key.replace('/', '_')}.error.log").write_text(traceback.format_exc(), encoding="utf-8")
    return entry


def run_eval(artifacts: list[Any], suite: Any, runtimes: list[str], *, limit: int | None = None, threads: int | None = None,
             out_dir: Path, runtime_options: dict[str, dict[str, Any]] | None = None,
             progress: EvalProgress | None = None) -> dict[str, Any]:
    """Evaluate every artifact × runtime on ``suite``; write ``out_dir/{results.json,report.html,summary.md}``.

    ``runtime_options`` maps a runtime name to the options passed to ``open_runtime`` (e.g.
    ``{"torch": {"dtype": "bfloat16"}}``). Returns the results document. An entry that fails while running is
    kept with ``status: "error"`` and its one-line error; checks that can fail early raise :class:`KogataError`.
    """
    from kogata.report import write_reports

    progress = progress or EvalProgress()
    started_wall, started = datetime.now(timezone.utc), time.perf_counter()
    if not artifacts:
        raise KogataError("no artifacts to evaluate", "name at least one artifact (see `kogata models list`)")
    runtimes = list(dict.fromkeys(runtimes))
    if not runtimes:
        raise KogataError("no runtime given", "e.g. --runtime torch,llamacpp")
    if limit is not None and limit < 1:
        raise KogataError(f"--limit must be at least 1, got {limit}", "leave it out to use every item")
    threads = settings.set_threads(threads) if threads else settings.get_threads()
    options = {rt: dict((runtime_options or {}).get(rt) or {}) for rt in runtimes}
    validate_kpis(suite.kpis, available_metric_names(suite))
    profile = load_price(suite.price)
    pairs, skipped = plan_entries(artifacts, runtimes, options)
    baseline = resolve_baseline(suite.baseline, artifacts, pairs)
    out_dir = Path(out_dir).expanduser().resolve()
    staging = _staging_folder(out_dir)
    try:
        progress.start(len(pairs))
        entries = []
        for i, (a, rt) in enumerate(pairs):
            progress.entry(entry_key(a, rt), i, len(pairs))
            entries.append(_run_entry(a, rt, suite, limit=limit, threads=threads, options=options[rt],
                                      logs=staging / "logs", progress=progress))
        costs = {}
        for e in entries:
            m = (e["efficiency"] or {}).get("metrics") or {}
            costs[e["key"]] = estimate_cost(m.get("prefill_tok_s"), m.get("decode_tok_s"), profile)
        add_savings(costs, baseline if costs.get(baseline) else None)
        for e in entries:
            e["cost"] = costs[e["key"]]
            e["metrics"] = flat_metrics(e["quality"], e["efficiency"], e["cost"])
            e["kpi"] = check_kpis(suite.kpis, e["metrics"])
            e["verdict"] = "ERROR" if e["status"] == "error" else e["kpi"]["verdict"]
            progress.entry_done(e["key"], e)
        results = {
            "schema_version": SCHEMA_VERSION,
            "kogata_version": __version__,
            "created": started_wall.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "duration_s": time.perf_counter() - started,
            "suite": suite_record(suite),
            "settings": {"limit": limit, "threads": threads, "runtimes": runtimes, "runtime_options": options,
                         "skipped": skipped},
            "price": profile.to_dict(),
            "baseline": baseline,
            "machine": machine_info(),
            "versions": library_versions(),
            "entries": entries,
        }
        write_json(results, staging / "results.json")
        write_reports(results, staging)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        progress.finish()
    return results


def suite_record(suite: Any) -> dict[str, Any]:
    return {
        "name": suite.name,
        "version": suite.version,
        "language": suite.language,
        "description": getattr(suite, "description", "") or "",
        "path": str(getattr(suite, "path", "") or ""),
        "sha256": getattr(suite, "sha256", None),
        "seed": getattr(suite, "seed", None),
        "tasks": [{"name": t.name, "type": task_type(t), "version": getattr(t, "version", None)} for t in suite.tasks],
        "kpis": suite.kpis or {},
        "efficiency": {**EFFICIENCY_DEFAULTS, **{k: v for k, v in (getattr(suite, "efficiency", None) or {}).items() if v is not None}},
        "price": suite.price,
        "baseline": getattr(suite, "baseline", None),
    }


def write_json(data: dict[str, Any], path: Path) -> None:
    import json
    import math

    def clean(v: Any) -> Any:  # JSON has no NaN/inf: write null
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    path.write_text(json.dumps(clean(data), indent=2, ensure_ascii=False, default=str), encoding="utf-8")
