"""Read a task's records from local files: JSON Lines, CSV, plain text, or a ``datasets`` spec.

* ``.jsonl`` — one JSON object per line (blank lines skipped); a malformed line is reported with its number.
* ``.csv`` — a header row, then one record per row (values are strings).
* ``.txt`` — documents separated by one or more blank lines; each becomes ``{"text": ...}``.
* ``{"datasets": {"path": "json", "data_files": "x.jsonl", "split": "train"}}`` — loaded with
  ``datasets.load_dataset``; relative ``data_files`` are resolved against the suite folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError

Record = dict[str, Any]
SUFFIXES = (".jsonl", ".csv", ".txt")


def load_records(spec: str | dict[str, Any], base_dir: Path, *, where: str) -> list[Record]:
    """Records for ``spec`` (a file name relative to ``base_dir`` or a ``{datasets: ...}`` mapping).

    ``where`` names the place in the suite the spec came from (e.g. ``suite.yaml: task faq_qa, data``), so an
    error can say which line of YAML to fix. An empty result is an error.
    """
    if isinstance(spec, dict):
        if set(spec) != {"datasets"} or not isinstance(spec["datasets"], dict):
            raise KogataError(
                f"{where}: a data mapping must be {{datasets: {{path, data_files, split}}}}, got keys {sorted(spec)}",
                "write a file name (faq.jsonl) or datasets: {path: json, data_files: faq.jsonl, split: train}",
            )
        records = _load_datasets(spec["datasets"], base_dir, where)
        label = f"datasets spec {spec['datasets'].get('data_files') or spec['datasets'].get('path')}"
    elif isinstance(spec, str) and spec:
        path = (base_dir / spec).resolve()
        if not path.is_file():
            raise KogataError(f"{where}: data file {path} does not exist", "check the file name; paths are relative to the suite file")
        records = _load_file(path)
        label = str(path)
    else:
        raise KogataError(f"{where}: missing data file", "set data: <file>.jsonl|.csv|.txt")
    if not records:
        raise KogataError(f"{where}: dataset {label} is empty", "add at least one record (blank lines and comments are not records)")
    return records


def fingerprint(records: list[Record]) -> str:
    """A short hash of the records' content (recorded with results so a changed dataset is visible)."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def _load_file(path: Path) -> list[Record]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return [dict(row) for row in csv.DictReader(f)]
    if suffix == ".txt":
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        return [{"text": doc.strip("\n")} for doc in re.split(r"\n\s*\n", text) if doc.strip()]
    raise KogataError(f"unsupported data file type {path.name}", f"use one of {', '.join(SUFFIXES)} or a datasets spec")


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise KogataError(
                    f"{path}:{number}: malformed JSON line ({e.msg} at column {e.colno})",
                    "each line must be one JSON object; fix or remove that line",
                ) from None
            if not isinstance(record, dict):
                raise KogataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}", "write one {...} object per line")
            records.append(record)
    return records


def _load_datasets(ds: dict[str, Any], base_dir: Path, where: str) -> list[Record]:
    try:
        import datasets
    except ImportError:
        raise KogataError(f"{where}: a datasets spec needs the 'datasets' package", "pip install datasets, or point data: at a local .jsonl file") from None
    if "path" not in ds:
        raise KogataError(f"{where}: datasets spec has no 'path'", "e.g. datasets: {path: json, data_files: faq.jsonl, split: train}")
    kwargs = {k: v for k, v in ds.items() if k not in ("path", "data_files")}
    kwargs.setdefault("split", "train")
    files = ds.get("data_files")
    if files is not None:
        files = _resolve_files(files, base_dir)
    try:
        dataset = datasets.load_dataset(ds["path"], data_files=files, **kwargs)
    except Exception as e:  # datasets raises many types; one line is what the user needs
        raise KogataError(f"{where}: datasets.load_dataset failed: {type(e).__name__}: {e}".splitlines()[0], "check path, data_files and split") from None
    return [dict(r) for r in dataset]


def _resolve_files(files: Any, base_dir: Path) -> Any:
    if isinstance(files, str):
        return str((base_dir / files).resolve())
    if isinstance(files, list):
        return [_resolve_files(f, base_dir) for f in files]
    if isinstance(files, dict):
        return {k: _resolve_files(v, base_dir) for k, v in files.items()}
    return files
