"""Read your documents into records: plain text, Markdown, JSONL, JSON and CSV, or folders of them.

A **record** is one unit of training data. Plain text / Markdown files become one record per paragraph
(blocks separated by blank lines; a short single-line block such as a heading is joined to the block after
it; fenced code blocks are never split) or one record per file with ``unit="file"``. Each JSONL line, JSON
array item or CSV row is one record:

* **QA records** keep their fields: ``instruction``/``input``/``output``, ``question``/``answer`` (+``context``),
  ``prompt``/``response`` or ``prompt``/``completion`` (+``system``);
* **text records** take the ``text`` (or ``content``, ``body``, ``document``, ``passage``) field; with none of
  those, every string field joined by newlines.

``fmt="qa"`` makes a line without QA fields an error (file and line number); ``fmt="text"`` reads QA-shaped
records as text. Encodings tried: UTF-8 (with or without BOM), UTF-16 with a BOM, then cp932 (Shift_JIS) and
EUC-JP — when both of those decode, the one that reads more like Japanese wins. Binary files are skipped.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError

# (required fields, content fields in reading order)
QA_SCHEMAS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("instruction", "output"), ("system", "instruction", "input", "output")),
    (("question", "answer"), ("context", "question", "answer")),
    (("prompt", "response"), ("system", "prompt", "response")),
    (("prompt", "completion"), ("system", "prompt", "completion")),
]
TEXT_FIELDS = ("text", "content", "body", "document", "passage")
FORMATS = ("auto", "text", "qa")
UNITS = ("paragraph", "file")
_BINARY_MAGIC = (b"%PDF", b"PK\x03\x04", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"\x7fELF", b"\xd0\xcf\x11\xe0", b"SQLite format 3")
_QA_HINT = "each line needs instruction+output, question+answer, prompt+response or prompt+completion; or use --format auto/text"


@dataclass
class Record:
    id: str
    source: str
    kind: str  # "text" | "qa"
    fields: dict[str, Any]  # text records: {"text": ...}; QA records: their fields
    content_keys: tuple[str, ...]  # the string fields that make up the record's text, in order
    lang: str | None = None

    @property
    def text(self) -> str:
        """The record's text as filters and dedup see it: its content fields joined by newlines."""
        return "\n".join(self.fields[k] for k in self.content_keys if isinstance(self.fields.get(k), str) and self.fields[k])


@dataclass
class ReadResult:
    records: list[Record] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)  # source, encoding, records
    binary: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)


# ---- files -----------------------------------------------------------------------------------------
def discover(inputs: list[Path], exclude: Path | None = None) -> list[tuple[Path, str]]:
    """(path, source name) of every file under ``inputs``, folders recursively, hidden files and anything
    under ``exclude`` (the output folder, when it sits inside an input) skipped."""
    found: list[tuple[Path, str]] = []
    skip = Path(exclude).resolve() if exclude else None
    for p in map(Path, inputs):
        if not p.exists():
            raise KogataError(f"input {p} does not exist", "give text/Markdown/JSONL/CSV files or folders of them")
        if p.is_dir():
            files = sorted(
                f for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and not (skip and f.resolve().is_relative_to(skip))
            )
            found += [(f, f"{p.resolve().name}/{f.relative_to(p).as_posix()}") for f in files]
        else:
            found.append((p, p.name))
    names = [s for _, s in found]
    if len(set(names)) < len(names):  # two inputs with the same name: fall back to the paths as given
        found = [(f, f.as_posix()) for f, _ in found]
    return found


def is_binary(raw: bytes) -> bool:
    head = raw[:8192]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 with a BOM
    return head.startswith(_BINARY_MAGIC) or b"\x00" in head


def _implausible(c: str) -> bool:
    """Characters real text almost never has, but a wrong legacy decoding produces (C0/C1 controls, private use)."""
    return (c < " " and c not in "\n\r\t") or "\x7f" <= c <= "\x9f" or "\ue000" <= c <= "\uf8ff"


def _japaneseness(text: str) -> int:
    good = sum(1 for c in text if "\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff")
    bad = sum(1 for c in text if "\uff61" <= c <= "\uff9f" or _implausible(c))
    return good - 3 * bad


def decode(raw: bytes, path: Path) -> tuple[str, str]:
    """(text, encoding name); raises KogataError naming the file when no candidate encoding fits."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
    try:
        if raw.startswith(b"\xef\xbb\xbf"):
            return raw.decode("utf-8-sig"), "utf-8-sig"
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    candidates = []
    for enc in ("cp932", "euc_jp"):
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        if sum(map(_implausible, text)) <= 0.01 * len(text):
            candidates.append((text, enc))
    if not candidates:
        raise KogataError(
            f"{path} is not in a text encoding kogata reads (tried utf-8, utf-8-sig, cp932/shift_jis, euc-jp)",
            "convert it to UTF-8 (e.g. `iconv -f ENCODING -t UTF-8`) or remove it from the input",
        )
    return max(candidates, key=lambda c: _japaneseness(c[0]))


# ---- records ---------------------------------------------------------------------------------------
def _qa_schema(obj: dict[str, Any]) -> tuple[str, ...] | None:
    for required, content in QA_SCHEMAS:
        if all(isinstance(obj.get(k), str) and obj[k].strip() for k in required):
            return tuple(k for k in content if isinstance(obj.get(k), str))
    return None


def record_from_object(obj: Any, *, rid: str, source: str, fmt: str, where: str) -> Record:
    """One JSONL line / JSON item / CSV row as a record; ``where`` (``file:line``) names it in errors."""
    if isinstance(obj, str):
        obj = {"text": obj}
    if not isinstance(obj, dict):
        raise KogataError(f"{where} is a JSON {type(obj).__name__}, not an object", "give one JSON object per line")
    qa = _qa_schema(obj)
    if fmt == "qa" and qa is None:
        found = ", ".join(sorted(obj)) or "no fields"
        raise KogataError(f"{where} has no instruction/answer fields (found: {found})", _QA_HINT)
    fields = {("orig_" + k if k in ("id", "source", "lang") else k): v for k, v in obj.items()}
    if qa is not None and fmt != "text":
        return Record(rid, source, "qa", fields, qa)
    if qa is not None:  # --format text on a QA record: its content fields as one text
        used = list(qa)
    else:
        key = next((k for k in TEXT_FIELDS if isinstance(obj.get(k), str)), None)
        used = [key] if key else [k for k, v in obj.items() if isinstance(v, str) and k not in ("id", "source", "lang")]
    text = "\n".join(obj[k] for k in used if obj[k])
    rest = {k: v for k, v in fields.items() if k not in used and k != "text"}
    return Record(rid, source, "text", {"text": text, **rest}, ("text",))


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks; fenced code stays whole; a short one-line block joins the next one."""
    blocks, current, in_fence = [], [], False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if not line.strip() and not in_fence:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    merged: list[str] = []
    carry = ""
    for block in blocks:
        block = f"{carry}\n{block}" if carry else block
        if "\n" not in block.strip() and len(block.strip()) < 40:
            carry = block
            continue
        merged.append(block)
        carry = ""
    if carry:
        merged.append(carry)
    return merged


def _records_of(path: Path, source: str, text: str, fmt: str, unit: str) -> list[Record]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        out = []
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise KogataError(f"{path}:{number} is not valid JSON ({exc.msg})", "fix or remove that line: each line of a .jsonl file is one JSON object") from None
            out.append(record_from_object(obj, rid=f"{source}:{number}", source=source, fmt=fmt, where=f"{path}:{number}"))
        return out
    if suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KogataError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})", "fix the file, or rename it .txt to read it as text") from None
        items = doc if isinstance(doc, list) else [doc]
        return [record_from_object(o, rid=f"{source}#{i}", source=source, fmt=fmt, where=f"{path} item {i}") for i, o in enumerate(items, 1)]
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        out = []
        for row in reader:
            obj = {k: v for k, v in row.items() if k and isinstance(v, str) and v.strip()}
            out.append(record_from_object(obj, rid=f"{source}:{reader.line_num}", source=source, fmt=fmt, where=f"{path}:{reader.line_num}"))
        return out
    if fmt == "qa":
        raise KogataError(f"{path} is a plain text file, but --format qa needs JSONL/JSON/CSV records", _QA_HINT)
    if unit == "file":
        return [Record(source, source, "text", {"text": text}, ("text",))] if text.strip() else []
    return [Record(f"{source}#{i}", source, "text", {"text": p}, ("text",)) for i, p in enumerate(split_paragraphs(text), 1)]


def read_inputs(
    inputs: list[Path], fmt: str = "auto", unit: str = "paragraph", on_file: Callable[[str], None] | None = None, exclude: Path | None = None
) -> ReadResult:
    """Every record under ``inputs`` in a stable order (sorted paths, then position in the file)."""
    if fmt not in FORMATS:
        raise KogataError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}", "use auto (default), text or qa")
    if unit not in UNITS:
        raise KogataError(f"--unit {unit!r} is not one of {', '.join(UNITS)}", "use paragraph (default) or file")
    files = discover(inputs, exclude)
    if not files:
        raise KogataError(f"no files found in {', '.join(map(str, inputs))}", "give text/Markdown/JSONL/CSV files or folders of them")
    result = ReadResult()
    for path, source in files:
        if on_file:
            on_file(source)
        raw = path.read_bytes()
        if is_binary(raw) or path.suffix.lower() in (".pdf", ".docx", ".xlsx", ".pptx", ".zip", ".gz"):
            result.binary.append(source)
            continue
        text, encoding = decode(raw, path)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        records = _records_of(path, source, text, fmt, unit)
        if not records:
            result.empty.append(source)
        result.files.append({"source": source, "encoding": encoding, "records": len(records)})
        result.records.extend(records)
    if not result.files:
        raise KogataError(
            f"every input file is binary ({', '.join(result.binary[:5])}{' …' if len(result.binary) > 5 else ''})",
            "kogata reads plain text, Markdown, JSONL, JSON and CSV; export documents to text first",
        )
    return result
