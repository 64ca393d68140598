"""``kogata data prepare``: turn a pile of company documents into a clean, versioned training dataset.

Stages, in order: read → normalise + scrub PII → quality filters → exact dedup → near dedup → (select to a
target size) → (split). The dataset folder is staged next to ``out`` and renamed into place when complete::

    data.jsonl      one record per line: {"id", "text"} or the QA fields, plus "source" and "lang"
    removed.jsonl   every removed record with "reason" and "detail" (already PII-scrubbed)
    manifest.json   version 1: config, seed, counts per stage, removal reasons with examples, PII counts,
                    fingerprint (sha256 of data.jsonl)
    summary.html    the same, readable, self-contained
    train.jsonl / heldout.jsonl  with --split heldout=0.1
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import kogata.data.dedup as dedup
import kogata.data.filters as filters
import kogata.data.readers as readers
from kogata import __version__
from kogata.core.errors import KogataError
from kogata.core.io import publish_folder
from kogata.data.normalize import normalize_text
from kogata.data.pii import PII_TYPES, Scrubber

MANIFEST_VERSION = 1
EXAMPLES_PER_REASON = 3
_HINTS = {
    "empty": "the inputs hold no text after normalisation; check the files",
    "too_short": "lower --min-chars (now {min_chars}), or use --unit file to keep whole documents",
    "too_long": "raise --max-chars (now {max_chars})",
    "repetitive": "raise --max-repetition (now {max_repetition})",
    "symbols": "raise --max-symbol-ratio (now {max_symbol_ratio})",
    "language": "add the detected language to --lang (now {lang_list}) or leave --lang out",
    "exact_duplicate": "every record repeats another; give more varied input",
    "held_out_overlap": "every record repeats an item of the --exclude files (held-out data); train on other data",
    "near_duplicate": "raise --near-dup-threshold (now {near_dup_threshold}) so fewer records count as duplicates",
}


@dataclasses.dataclass
class PrepareConfig:
    """Everything that decides the output; the CLI flags map one to one onto these fields."""

    langs: tuple[str, ...] | None = None
    near_dup_threshold: float = 0.8
    ngram: int = 5
    min_chars: int = 20
    max_chars: int = 20000
    max_repetition: float = 0.3
    max_symbol_ratio: float = 0.25
    pii: bool = True
    urls: str = "secrets"  # "secrets": only URLs carrying tokens/keys; "all": every URL
    target_size: int | None = None
    format: str = "auto"
    unit: str = "paragraph"
    seed: int = 0
    split: dict[str, float] | None = None
    exclude: tuple[str, ...] | None = None  # files of held-out items (e.g. a suite's test data) never to train on

    def validate(self) -> None:
        if not 0 < self.near_dup_threshold <= 1:
            raise KogataError(f"--near-dup-threshold {self.near_dup_threshold} is outside (0, 1]", "use e.g. 0.8; 1 turns near-dedup off")
        if self.min_chars < 0 or self.max_chars < max(self.min_chars, 1):
            raise KogataError(f"--min-chars {self.min_chars} / --max-chars {self.max_chars} leave no valid length", "use 0 <= --min-chars <= --max-chars")
        unknown = set(self.langs or ()) - set(filters.LANGUAGES)
        if unknown:
            raise KogataError(f"--lang {','.join(sorted(unknown))} is not a language kogata detects", f"use codes from: {', '.join(filters.LANGUAGES)}")
        if self.target_size is not None and self.target_size < 1:
            raise KogataError(f"--target-size {self.target_size} must be at least 1", "give the number of records to keep")
        if self.split and (any(f <= 0 for f in self.split.values()) or sum(self.split.values()) >= 1 or "train" in self.split):
            raise KogataError(f"--split {self.split} is not a valid split", "give NAME=FRACTION with fractions > 0 summing below 1, e.g. heldout=0.1")
        for f in self.exclude or ():
            if not Path(f).exists():
                raise KogataError(f"--exclude {f} does not exist", "give the file (or folder) of the held-out items to keep out of training")


def parse_split(spec: str | None) -> dict[str, float] | None:
    """``"heldout=0.1"`` or ``"val=0.05,test=0.05"`` → {name: fraction}; the rest is ``train``."""
    if not spec:
        return None
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, _, frac = part.partition("=")
        try:
            out[name.strip()] = float(frac)
        except ValueError:
            raise KogataError(f"--split {spec!r} is not NAME=FRACTION", "write it like --split heldout=0.1") from None
        if not name.strip().isidentifier():
            raise KogataError(f"--split name {name!r} is not a plain name", "write it like --split heldout=0.1")
    return out


class _Bars:
    """Optional rich progress bars; every call is a no-op without a Progress."""

    def __init__(self, progress: Any = None):
        self.progress, self.task = progress, None

    def start(self, description: str, total: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task(description, total=total)

    def tick(self, *_: Any) -> None:
        if self.task is not None:
            self.progress.advance(self.task)


def _clean(value: Any, scrubber: Scrubber | None) -> Any:
    if isinstance(value, str):
        text = normalize_text(value)
        return scrubber.scrub(text) if scrubber else text
    if isinstance(value, list):
        return [_clean(v, scrubber) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v, scrubber) for k, v in value.items()}
    return value


def _row(r: readers.Record) -> dict[str, Any]:
    return {"id": r.id, **r.fields, "source": r.source, "lang": r.lang}


def prepare(inputs: list[Path], out: Path, cfg: PrepareConfig, *, overwrite: bool = False, progress: Any = None) -> dict[str, Any]:
    """Run the curation pipeline and write the dataset folder; returns its manifest."""
    cfg.validate()
    out = Path(out)
    _check_out(out, overwrite)
    started = time.time()
    bars = _Bars(progress)
    bars.start("reading files", len(readers.discover(inputs, exclude=out)))
    read = readers.read_inputs(inputs, cfg.format, cfg.unit, on_file=bars.tick, exclude=out)
    records = read.records
    if not records:
        raise KogataError(f"no records in {', '.join(map(str, inputs))}: every file is empty", "give files with text in them")
    stages: list[dict[str, Any]] = [{"stage": "read", "in": len(read.files), "out": len(records), "unit": "files → records"}]
    removed: list[tuple[readers.Record, str, str, str]] = []  # record, stage, reason, detail

    scrubber = Scrubber(cfg.urls) if cfg.pii else None
    bars.start("normalising + PII", len(records))
    for r in records:
        r.fields = _clean(r.fields, scrubber)
        r.lang = filters.detect_language(r.text)
        bars.tick()
    stages.append({"stage": "normalize+pii", "in": len(records), "out": len(records)})

    fcfg = filters.FilterConfig(cfg.min_chars, cfg.max_chars, cfg.max_repetition, cfg.max_symbol_ratio, cfg.langs)
    bars.start("quality filters", len(records))
    kept = []
    for r in records:
        reason, detail = filters.check(r.text, r.lang, fcfg)
        (removed.append((r, "filter", reason, detail)) if reason else kept.append(r))
        bars.tick()
    records = _stage(stages, "filter", records, kept, removed, cfg)

    dups = {d.index: d for d in dedup.exact_duplicates([r.text for r in records])}
    kept = [r for i, r in enumerate(records) if i not in dups]
    removed += [(records[i], "exact_dedup", "exact_duplicate", f"same text as {records[d.of].id}") for i, d in dups.items()]
    records = _stage(stages, "exact_dedup", records, kept, removed, cfg)

    bars.start("MinHash signatures", len(records))
    sigs = dedup.signatures([r.text for r in records], cfg.ngram, cfg.seed, tick=bars.tick)
    if cfg.near_dup_threshold < 1:
        near = {d.index: d for d in dedup.near_duplicates(sigs, cfg.near_dup_threshold)}
        removed += [(records[i], "near_dedup", "near_duplicate", f"~{d.similarity:.2f} similar to {records[d.of].id}") for i, d in near.items()]
        sigs = [s for i, s in enumerate(sigs) if i not in near]
        records = _stage(stages, "near_dedup", records, [r for i, r in enumerate(records) if i not in near], removed, cfg)

    if cfg.exclude:
        records = _decontaminate(records, cfg, stages, removed)

    if cfg.target_size is not None and cfg.target_size < len(records):
        chosen = set(dedup.select_diverse(sigs, cfg.target_size, cfg.seed))
        removed += [(r, "select", "not_selected", f"diversity selection to {cfg.target_size}") for i, r in enumerate(records) if i not in chosen]
        records = _stage(stages, "select", records, [r for i, r in enumerate(records) if i in chosen], removed, cfg)

    splits = _split(records, cfg)
    manifest = _manifest(inputs, cfg, read, records, removed, stages, scrubber, splits, started)
    _write(out, records, removed, splits, manifest, overwrite)
    return manifest


MIN_FIELD_CHARS = 8  # shorter fields (a yes/no answer, a product code) say nothing about contamination
ANSWER_FIELDS = ("answer", "output", "response", "completion")  # a standard reply may repeat; the question must not


def _fields(r: readers.Record, *, answers: bool = True) -> list[str]:
    return [v for k in r.content_keys if (answers or k not in ANSWER_FIELDS)
            and isinstance(v := r.fields.get(k), str) and len(v.strip()) >= MIN_FIELD_CHARS]


def _decontaminate(records: list[readers.Record], cfg: PrepareConfig, stages, removed) -> list[readers.Record]:
    """Drop every record whose input (question, context, prompt, text — not its answer, which may be a standard
    reply) equals or nearly equals a field of an ``--exclude`` item (the suite's held-out items), so that what is
    tested is never trained on."""
    held_out = readers.read_inputs([Path(f) for f in cfg.exclude or ()], "auto", "paragraph").records
    reference = [normalize_text(t) for r in held_out for t in _fields(r)]
    if not reference:
        stages.append({"stage": "decontaminate", "in": len(records), "out": len(records), "removed": {}})
        return records
    threshold = min(cfg.near_dup_threshold, 0.9)
    hits = {d.index: d for d in dedup.overlapping([_fields(r, answers=False) for r in records], reference, threshold, cfg.ngram, cfg.seed)}
    removed += [(records[i], "decontaminate", "held_out_overlap", f"~{d.similarity:.2f} similar to a held-out item: {reference[d.of][:60]}")
                for i, d in hits.items()]
    return _stage(stages, "decontaminate", records, [r for i, r in enumerate(records) if i not in hits], removed, cfg)


def _stage(stages, name, before, after, removed, cfg) -> list[readers.Record]:
    reasons = Counter(reason for _, stage, reason, _ in removed if stage == name)
    stages.append({"stage": name, "in": len(before), "out": len(after), "removed": dict(reasons)})
    if before and not after:
        top = reasons.most_common(1)[0][0]
        langs = Counter(r.lang for r in before).most_common()
        values = {**dataclasses.asdict(cfg), "lang_list": ",".join(cfg.langs or ())}
        detail = ", ".join(f"{k} {v}" for k, v in reasons.most_common())
        detected = f" (detected: {', '.join(f'{k} {v}' for k, v in langs)})" if top == "language" else ""
        raise KogataError(
            f"curation removed every record at the {name} stage: {detail}{detected}",
            _HINTS.get(top, "relax the settings").format(**values),
        )
    return after


def _split(records: list[readers.Record], cfg: PrepareConfig) -> dict[str, list[readers.Record]] | None:
    if not cfg.split:
        return None
    order = list(range(len(records)))
    random.Random(f"split:{cfg.seed}").shuffle(order)
    assigned: dict[int, str] = {}
    pos = 0
    for name, frac in cfg.split.items():
        k = max(1, round(frac * len(records)))
        for i in order[pos : pos + k]:
            assigned[i] = name
        pos += k
    if pos >= len(records):
        raise KogataError(f"--split leaves no training records ({len(records)} records in all)", "give more data or smaller split fractions")
    out: dict[str, list[readers.Record]] = {"train": [], **{name: [] for name in cfg.split}}
    for i, r in enumerate(records):
        out[assigned.get(i, "train")].append(r)
    return out


def _manifest(inputs, cfg, read, records, removed, stages, scrubber, splits, started) -> dict[str, Any]:
    from importlib.metadata import version

    by_reason: dict[str, dict[str, Any]] = {}
    for r, stage, reason, detail in removed:
        entry = by_reason.setdefault(reason, {"count": 0, "stage": stage, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < EXAMPLES_PER_REASON:
            entry["examples"].append({"id": r.id, "snippet": r.text[:120], "detail": detail})
    counts = scrubber.counts if scrubber else Counter()
    return {
        "kind": "kogata-dataset",
        "version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": round(time.time() - started, 2),
        "inputs": [str(p) for p in inputs],
        "seed": cfg.seed,
        "config": {**dataclasses.asdict(cfg), "langs": list(cfg.langs) if cfg.langs else None},
        "records": len(records),
        "chars": sum(len(r.text) for r in records),
        "kinds": dict(Counter(r.kind for r in records)),
        "langs": dict(Counter(r.lang for r in records).most_common()),
        "files": {"read": read.files, "binary_skipped": read.binary, "empty": read.empty},
        "stages": stages,
        "removed": dict(sorted(by_reason.items(), key=lambda kv: -kv[1]["count"])),
        "pii": {t: counts.get(t, 0) for t in PII_TYPES} if cfg.pii else None,
        "splits": {name: len(rs) for name, rs in splits.items()} if splits else None,
        "tool_versions": {"kogata": __version__, "datasketch": version("datasketch")},
        "fingerprint": None,  # filled in by _write: sha256 of data.jsonl
        "files_sha256": {},
    }


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise KogataError(f"--out {out} already exists and is not empty", "choose a new folder, or pass --overwrite to replace it")
    if out.exists() and overwrite and out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise KogataError(f"--out {out} is a folder that is not a kogata dataset", "choose a new folder; --overwrite only replaces a dataset folder")


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _write(out: Path, records, removed, splits, manifest: dict[str, Any], overwrite: bool) -> None:
    from kogata.data.summary import render_html

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        sha = {"data.jsonl": _write_jsonl(stage / "data.jsonl", [_row(r) for r in records])}
        rows = [{**_row(r), "stage": st, "reason": reason, "detail": detail} for r, st, reason, detail in removed]
        sha["removed.jsonl"] = _write_jsonl(stage / "removed.jsonl", rows)
        for name, rs in (splits or {}).items():
            sha[f"{name}.jsonl"] = _write_jsonl(stage / f"{name}.jsonl", [_row(r) for r in rs])
        manifest["fingerprint"] = sha["data.jsonl"]
        manifest["files_sha256"] = sha
        (stage / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        (stage / "summary.html").write_text(render_html(manifest), encoding="utf-8")
        _check_out(out, overwrite)  # again: something may have appeared while we worked
        publish_folder(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def load_dataset(folder: Path, split: str = "data") -> list[dict[str, Any]]:
    """The records of a prepared dataset (``split`` = data, train, heldout …), for methods that train on it."""
    path = Path(folder) / f"{split}.jsonl"
    if not (Path(folder) / "manifest.json").is_file():
        raise KogataError(f"{folder} is not a kogata dataset (no manifest.json)", "make one with `kogata data prepare INPUT --out DIR`")
    if not path.is_file():
        raise KogataError(f"dataset {folder} has no {split}.jsonl", "prepare it with --split heldout=0.1 to get train/heldout")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
