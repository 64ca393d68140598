"""The library side of the Runs pages: which base models and suites the wizard offers, how an uploaded file is
checked, how a project file is written from the wizard's answers, and a run's progress read from its stored state
(the ``optimize_runs`` / ``optimize_candidates`` rows that ``kogata optimize`` keeps) and its output folder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from kogata.core.errors import KogataError

UPLOAD_SUFFIXES = (".jsonl", ".csv", ".txt", ".md", ".json")
UPLOAD_MAX_BYTES = 20_000_000  # 20 MB: a suite's data or a corpus of texts (the upload route's own body limit)
FORM_ROOM_BYTES = 64 * 1024  # the wizard's other fields and the multipart framing around the file
UPLOAD_CHUNK_BYTES = 1 << 20
KPI_KEYS = ("f1", "exact_match", "rouge_l", "acc", "acc_norm", "bits_per_byte", "word_perplexity", "peak_rss_mb",
            "latency_p95_ms", "decode_tok_s", "monthly_cost")


def suites(home: Path) -> list[dict[str, Any]]:
    """The built-in suites, then your own under ``$KOGATA_HOME/suites/<name>/suite.yaml``."""
    from kogata.eval.suite import SUITE_FILE, SUITES_DIR, builtin_suites

    out = [{"name": n, "path": SUITES_DIR / n / SUITE_FILE, "builtin": True} for n in builtin_suites()]
    own = Path(home) / "suites"
    if own.is_dir():
        for p in sorted(own.glob(f"*/{SUITE_FILE}")):
            out.append({"name": p.parent.name, "path": p, "builtin": False})
    for s in out:
        try:
            doc = yaml.safe_load(Path(s["path"]).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            doc = {}
        s["language"] = doc.get("language", "")
        s["description"] = str(doc.get("description") or "").strip()
        s["kpis"] = doc.get("kpis") or {}
    return out


def find_suite(home: Path, name: str) -> dict[str, Any]:
    for s in suites(home):
        if s["name"] == name:
            return s
    raise KogataError(f"suite {name!r} is not offered here", "choose one of the listed suites")


def base_models(store: Any) -> list[dict[str, Any]]:
    """Catalog language models (pulled on first use) and the float (hf) language models in the store."""
    from kogata.artifacts.catalog import CATALOG

    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for e in CATALOG.values():
        if e.kind == "causal-lm":
            out.append({"name": e.name, "label": e.title, "catalog": True, "in_store": store.find(e.name) is not None})
            seen.add(e.name)
    for a in store.list():
        if a.format == "hf" and a.kind == "causal-lm" and a.name not in seen:
            out.append({"name": a.name, "label": a.name, "catalog": False, "in_store": True})
    return out


def kpi_fields(suite: dict[str, Any]) -> list[dict[str, Any]]:
    """One form field per KPI of the suite: ``kpi__min__faq_qa.f1`` with its default and the metric's short name."""
    fields = []
    for side in ("min", "max"):
        for metric, value in ((suite.get("kpis") or {}).get(side) or {}).items():
            short = str(metric).split(".")[-1]
            fields.append({"field": f"kpi__{side}__{metric}", "side": side, "metric": metric, "value": value,
                           "explain": short if short in KPI_KEYS else "generic", "task": metric.split(".")[0] if "." in metric else ""})
    return fields


class UploadTooLarge(KogataError):
    """The data file passed the upload limit (the page says so in its own language)."""


def megabytes(n: int) -> str:
    """``20_000_000`` → ``20``, ``983_040`` → ``0.98``: how the UI names a size limit (decimal MB)."""
    return f"{n / 1e6:.3g}"


def save_upload(filename: str, source: BinaryIO, folder: Path, limit: int = UPLOAD_MAX_BYTES) -> Path:
    """Copy an uploaded data file, in pieces, into ``folder`` under a name of our own (never the client's), stopping
    as soon as it passes ``limit`` bytes; then read it as the CLI would. On any error nothing is left behind."""
    from kogata.data.readers import read_inputs

    suffix = Path(filename or "").suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise KogataError(f"data file type {suffix or '(none)'} is not accepted", f"upload one of: {', '.join(UPLOAD_SUFFIXES)}")
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".upload{suffix}.part"
    size, blank = 0, True
    try:
        with part.open("wb") as out:
            while chunk := source.read(UPLOAD_CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(f"data file is over the limit of {megabytes(limit)} MB ({limit:,} bytes)",
                                      f"upload at most {megabytes(limit)} MB (split the file, or leave out what the model does not need)")
                blank = blank and not chunk.strip()
                out.write(chunk)
        if blank:
            raise KogataError("data file is empty", "upload a file with your texts or question/answer pairs")
        path = folder / f"upload{suffix}"
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    try:
        result = read_inputs([path])
    except KogataError as exc:
        path.unlink(missing_ok=True)
        raise KogataError(exc.message.replace(str(path), "data file"), exc.hint) from None
    if not result.records:
        path.unlink(missing_ok=True)
        raise KogataError("data file holds no records", "one text per line (JSONL {\"text\": …}) or one CSV row per text")
    return path


def check_upload(filename: str, data: bytes, folder: Path, limit: int = UPLOAD_MAX_BYTES) -> Path:
    """:func:`save_upload` of bytes already in memory."""
    import io

    return save_upload(filename, io.BytesIO(data), folder, limit)


def write_project(folder: Path, *, name: str, base: str, suite: dict[str, Any], kpis: dict[str, dict[str, float]], language: str,
                  budget_minutes: float, limit: int | None, data: list[Path]) -> Path:
    """``kogata.yaml`` (and a copy of the suite with the chosen KPIs) in the job folder; checked by ``load_project``."""
    from kogata.optimize.project import load_project

    suite_src = Path(suite["path"]).parent
    suite_dir = folder / "suite"
    if suite_dir.exists():
        shutil.rmtree(suite_dir)
    shutil.copytree(suite_src, suite_dir)
    doc = yaml.safe_load((suite_dir / "suite.yaml").read_text(encoding="utf-8")) or {}
    doc["kpis"] = {side: dict(bounds) for side, bounds in kpis.items() if bounds}
    (suite_dir / "suite.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    train_docs = suite_dir / "docs_train.txt"
    texts = [str(p) for p in data] or ([str(train_docs)] if train_docs.is_file() else [])
    project = {"version": 1, "name": re.sub(r"[^A-Za-z0-9._-]+", "-", name)[:60] or "ui-project", "language": language,
               "base": base, "suite": "suite/suite.yaml", "runtime": "llamacpp", "threads": 2, "data": texts,
               "budget_minutes": budget_minutes, "limit": limit, "search": {"quantize": ["Q4_0", "Q8_0"], "trim_vocab": {"enabled": "auto"}}}
    path = folder / "kogata.yaml"
    path.write_text(yaml.safe_dump(project, allow_unicode=True, sort_keys=False), encoding="utf-8")
    load_project(path)
    return path


def reason_text(reason: str | None, lang: str) -> str | None:
    """A candidate's stored reason in the page's language: ``kogata optimize`` keeps structured notes
    (``{"key", "params", "text"}``) worded by the report catalog."""
    if not reason or not reason.startswith("{"):
        return reason
    try:
        note = json.loads(reason)
    except ValueError:
        return reason
    if not isinstance(note, dict) or "key" not in note:
        return reason
    from kogata.report.i18n import note_text, strings

    t = strings(lang)
    return note_text(note, t) if note["key"] in t else str(note.get("text") or reason)


def progress(store: Any, project_path: str, lang: str = "ja") -> dict[str, Any] | None:
    """The stored state of the optimize run of ``project_path``: candidates and their status, time used."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from kogata.optimize.state import CandidateRow, OptimizeRun

    with Session(store.engine) as s:
        run = s.execute(select(OptimizeRun).where(OptimizeRun.project_path == project_path).order_by(OptimizeRun.created.desc())).scalars().first()
        if run is None:
            return None
        rows = s.execute(select(CandidateRow).where(CandidateRow.run_id == run.id).order_by(CandidateRow.position)).scalars().all()
        cands = [{"label": r.label, "status": r.status, "reason": reason_text(r.reason, lang), "duration_s": r.duration_s,
                  "artifact": (r.entry or {}).get("artifact", {}).get("name") if r.entry else None} for r in rows]
        info = {"run_id": run.id, "status": run.status, "elapsed_s": run.elapsed_s}
    finished = sum(c["status"] in ("done", "failed", "skipped") for c in cands)
    current = next((c["label"] for c in cands if c["status"] == "running"), None)
    return {**info, "candidates": cands, "total": len(cands), "finished": finished, "current": current,
            "percent": int(100 * finished / len(cands)) if cands else 0}


def results(out_dir: Path) -> dict[str, Any] | None:
    """The finished run's summary from ``results.json``: candidates with their verdicts and the recommendation."""
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    decision = (doc.get("optimize") or {}).get("decision") or {}
    rec_key = decision.get("recommended")
    entries = []
    for e in doc.get("entries") or []:
        art = e.get("artifact") or {}
        kpi = e.get("kpi") or {}
        entries.append({"key": e.get("key"), "label": (e.get("candidate") or {}).get("label") or art.get("name"),
                        "artifact": art.get("name"), "artifact_id": art.get("id"), "bytes": art.get("bytes"),
                        "verdict": e.get("verdict") or kpi.get("verdict"), "failed": kpi.get("failed") or [],
                        "recommended": e.get("key") == rec_key})
    rec = next((e for e in entries if e["recommended"]), None)
    return {"entries": entries, "recommended": rec, "has_report": (Path(out_dir) / "report.html").is_file()}
