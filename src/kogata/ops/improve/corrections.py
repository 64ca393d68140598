"""The reviewers' corrections an improvement trains on: read a ``kogata review export`` folder, check it, split it.

``chat.jsonl`` (see :mod:`kogata.ops.review.export`) holds one record per approved or corrected answer with the
artifact that produced it. Improvement uses the records whose artifact shares the production model's family (the
production artifact itself or any artifact derived from the same float model): corrections of another base
model's answers say nothing about this one. A fixed share of them, chosen by a hash of the record id (stable
when more corrections arrive), is held out: the candidate is scored on it and never trained on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError

REQUIRED = ("id", "prompt", "response")


@dataclass
class Corrections:
    folder: Path
    records: list[dict[str, Any]]
    manifest: dict[str, Any]
    other_base: dict[str, int] = field(default_factory=dict)  # artifact id → records dropped as another model's

    def split(self, heldout_fraction: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(train, held out): a record is held out when the hash of its id falls below the fraction."""
        train, held = [], []
        for r in self.records:
            h = int.from_bytes(hashlib.sha256(f"heldout:{r['id']}".encode()).digest()[:8], "big") / 2**64
            (held if h < heldout_fraction else train).append(r)
        return train, held


def read_export(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records and manifest of a review export; a one-line error for anything that is not one."""
    folder = Path(folder)
    manifest_file, chat = folder / "manifest.json", folder / "chat.jsonl"
    if not folder.is_dir():
        raise KogataError(f"corrections folder {folder} does not exist", "export the review queue first: kogata review export --out DIR")
    if not manifest_file.is_file() or not chat.is_file():
        raise KogataError(f"{folder} is not a review export (no manifest.json / chat.jsonl)",
                          "give the folder written by `kogata review export --out DIR`")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KogataError(f"{manifest_file} is not valid JSON ({exc})", "export the review queue again") from None
    if not isinstance(manifest, dict) or "files" not in manifest:
        raise KogataError(f"{manifest_file} is not a review export manifest", "export the review queue again")
    records = []
    with open(chat, encoding="utf-8", errors="strict") as fh:
        try:
            lines = fh.readlines()
        except UnicodeDecodeError as exc:
            raise KogataError(f"{chat} is not UTF-8 text ({exc.reason} at byte {exc.start})", "export the review queue again") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KogataError(f"{chat} line {n} is not valid JSON ({exc.msg})", "the export is damaged: export the review queue again") from None
        if not isinstance(rec, dict) or any(not isinstance(rec.get(k), str) or not rec.get(k).strip() for k in REQUIRED):
            raise KogataError(f"{chat} line {n}: a record needs non-empty {', '.join(REQUIRED)}",
                              "the export is damaged: export the review queue again")
        records.append(rec)
    expected = (manifest.get("files") or {}).get("chat.jsonl")
    if isinstance(expected, int) and expected != len(records):
        raise KogataError(f"{chat} has {len(records)} records but its manifest says {expected}",
                          "the export is incomplete or was edited: export the review queue again")
    return records, manifest


def load_corrections(folder: Path, family: set[str]) -> Corrections:
    """The export's records for the model ``family`` (artifact ids); records of other artifacts are counted apart."""
    records, manifest = read_export(folder)
    kept: list[dict[str, Any]] = []
    other: dict[str, int] = {}
    for r in records:
        art = r.get("artifact_id")
        if art and art not in family:
            other[art] = other.get(art, 0) + 1
            continue
        kept.append(r)
    return Corrections(Path(folder), kept, manifest, other)


def training_record(r: dict[str, Any]) -> dict[str, Any]:
    """A correction as a prompt/response record (what ``kogata data prepare`` and ``lora`` read)."""
    out = {"id": r["id"], "prompt": r["prompt"], "response": r["response"]}
    if r.get("system"):
        out["system"] = r["system"]
    return out
