"""An evaluation run: N artifacts × M runtimes on one suite → ``results.json`` (+ the reports the caller writes).

For every artifact × runtime: quality (the suite's tasks, in this process), efficiency (its own process, see
:mod:`kogata.eval.efficiency`), cost (:mod:`kogata.eval.cost`) and the KPI verdict (:mod:`kogata.eval.kpi`).
Everything that can be checked without loading a model is checked first (KPI names, price profile, runtime ×
format compatibility, baseline, output folder), so a bad combination fails in seconds, not hours.

The output folder appears only when complete: files are written to a staging folder next to it and renamed
into place; an existing results folder is replaced only after success (:mod:`kogata.core.io`). The reports are
rendered by a layer above (``kogata.report``): the caller passes its writer as ``write_reports`` and it runs on
the staging folder before publishing. Library warnings and llama.cpp's log go to ``eval.log`` in the folder,
not to the terminal (:mod:`kogata.eval.library_logs`). Schema: ``docs/results-schema.md``.
"""

from __future__ import annotations

import gc
import shutil
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kogata.core.settings as settings
from kogata import __version__
from kogata.core.errors import KogataError
from kogata.core.io import atomic_write_json, publish_folder, staging_folder
from kogata.eval.cost import load_price
from kogata.eval.efficiency import DEFAULTS as EFFICIENCY_DEFAULTS
from kogata.eval.efficiency import RUNTIME_LIBRARIES, library_versions, machine_info, run_probe_subprocess, task_type
from kogata.eval.kpi import available_metric_names, validate_kpis
from kogata.eval.library_logs import capture_library_logs
from kogata.eval.results import score_entries

SCHEMA_VERSION = 2
LOG_FILE = "eval.log"
ReportWriter = Callable[[dict[str, Any], Path], Any]  # (results, folder) -> writes report files into folder
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
    kind = artifact_kind(artifact)
    if kind not in ("lm", "embedder"):
        raise KogataError(f"{artifact.name} is a {kind}, not a model kogata eval can run", "evaluate the model it belongs to")
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
    refuse = getattr(cls, "refuses", None)  # a runtime that runs only some folders of its format says why not
    why = refuse(artifact) if callable(refuse) else None
    if why:
        raise IncompatibleError(f"runtime {runtime} cannot run {artifact.name}: {why}", "list a runtime that runs it")


def artifact_kind(artifact: Any) -> str:
    """``lm`` (scores and generates text), ``embedder``, or another manifest kind (e.g. ``lora-adapter``)."""
    kind = getattr(artifact, "kind", "lm") or "lm"
    return "lm" if kind in ("lm", "causal-lm") else kind


def default_runtimes(suite: Any) -> list[str]:
    """Every registered runtime whose kind the suite's tasks need (torch first): ``kogata eval`` without --runtime."""
    from kogata.runtimes import get_runtime_class, runtime_names

    kinds = {getattr(t, "runtime_kind", "lm") for t in suite.tasks}
    names = [r for r in runtime_names() if {getattr(get_runtime_class(r), "kind", "lm")} >= kinds]
    return sorted(names, key=lambda r: (r != "torch", r))


def check_kinds(suite: Any, artifacts: list[Any], runtimes: list[str]) -> None:
    """Refuse an embedder artifact or runtime on tasks that need a language model (and the reverse), in one line."""
    from kogata.runtimes import get_runtime_class

    needs: dict[str, Any] = {}  # runtime kind -> the first task that needs it
    for t in suite.tasks:
        needs.setdefault(getattr(t, "runtime_kind", "lm"), t)

    def refuse(what: str, kind: str) -> None:
        for want, task in needs.items():
            if kind != want:
                wanted = "a language model" if want == "lm" else f"an {want}"
                raise KogataError(f"{what} is an {kind}, but task {task.name!r} ({task_type(task)}) needs {wanted}",
                                  "evaluate it with a suite whose tasks fit its kind, or leave it out")  # fmt: skip

    for rt in runtimes:
        refuse(f"runtime {rt}", getattr(get_runtime_class(rt), "kind", "lm"))
    for a in artifacts:
        if artifact_kind(a) in ("lm", "embedder"):
            refuse(a.name, artifact_kind(a))


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


# ---- the run --------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KogataError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:500]


def _artifact_record(a: Any) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "format": a.format, "kind": a.kind, "architecture": a.architecture,
            "params": a.params, "bytes": a.bytes, "parent": a.parent, "lineage": a.lineage, "path": str(a.path)}


def run_entry(artifact: Any, runtime: str, suite: Any, *, limit: int | None, threads: int, options: dict[str, Any],
              logs: Path, progress: EvalProgress) -> dict[str, Any]:
    """Quality (in this process) then efficiency (own process) of one artifact on one runtime; never raises
    for a failure of the entry itself: it is kept with ``status: "error"`` and its one-line error."""
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
             progress: EvalProgress | None = None, write_reports: ReportWriter | None = None) -> dict[str, Any]:
    """Evaluate every artifact × runtime on ``suite``; write ``out_dir/results.json``, ``eval.log``, ``logs/``
    and whatever ``write_reports(results, folder)`` adds (``kogata eval`` passes the HTML/Markdown writer).

    ``runtime_options`` maps a runtime name to the options passed to ``open_runtime`` (e.g.
    ``{"torch": {"dtype": "bfloat16"}}``). Returns the results document. An entry that fails while running is
    kept with ``status: "error"`` and its one-line error; checks that can fail early raise :class:`KogataError`.
    """
    progress = progress or EvalProgress()
    started_wall, started = datetime.now(UTC), time.perf_counter()
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
    check_kinds(suite, artifacts, runtimes)
    pairs, skipped = plan_entries(artifacts, runtimes, options)
    baseline = resolve_baseline(suite.baseline, artifacts, pairs)
    out_dir = Path(out_dir).expanduser().resolve()
    staging = staging_folder(out_dir, marker="results.json", subdirs=("logs",))
    libraries = [lib for rt in runtimes for lib in RUNTIME_LIBRARIES.get(rt, ())]
    try:
        with capture_library_logs(staging / LOG_FILE, libraries):
            progress.start(len(pairs))
            entries = []
            for i, (a, rt) in enumerate(pairs):
                progress.entry(entry_key(a, rt), i, len(pairs))
                entries.append(run_entry(a, rt, suite, limit=limit, threads=threads, options=options[rt],
                                         logs=staging / "logs", progress=progress))
            score_entries(entries, suite.kpis, profile, baseline)
            for e in entries:
                progress.entry_done(e["key"], e)
            results = {
                "schema_version": SCHEMA_VERSION,
                "kogata_version": __version__,
                "created": started_wall.isoformat(timespec="seconds"),
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
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
            atomic_write_json(results, staging / "results.json")
            if write_reports is not None:
                write_reports(results, staging)
        publish_folder(staging, out_dir)
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

