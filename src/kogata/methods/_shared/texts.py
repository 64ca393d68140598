"""The user's texts for the methods that learn from them (trim-vocab, prune, distill): whole text files and
every string value of JSONL/JSON records, folders read recursively."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError


# ---- the corpus ---------------------------------------------------------------------------------------------
def read_texts(paths: list[Path]) -> list[str]:
    """Every text in ``paths``: whole .txt/.md files (any non-JSON suffix is read as UTF-8 text), every string
    field of each .jsonl record or .json document. Folders are read recursively."""
    out: list[str] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise KogataError(f"data file {p} does not exist", "check the --data path")
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")) if p.is_dir() else [p]
        for f in files:
            out.extend(_texts_of(f))
    return [t for t in out if t]


def _texts_of(f: Path) -> Iterator[str]:
    try:
        raw = f.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KogataError(f"{f} is not UTF-8 text", "give plain text, Markdown or JSONL files") from None
    suffix = f.suffix.lower()
    if suffix == ".jsonl":
        for number, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    yield from _strings(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise KogataError(f"{f}:{number} is not valid JSON ({exc.msg})", "fix or remove that line") from None
    elif suffix == ".json":
        try:
            yield from _strings(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise KogataError(f"{f} is not valid JSON ({exc.msg})", "fix the file, or rename it .txt to read it as text") from None
    else:
        yield raw


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
