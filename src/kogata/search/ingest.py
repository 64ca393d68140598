"""Read documents for search: the formats ``kogata data`` reads, plus HTML and PDF, as :class:`Document` objects.

* ``.txt`` / ``.md`` (and any other text file): one document per file, title = the first Markdown heading or the
  first line;
* ``.jsonl`` / ``.json`` / ``.csv`` / ``.tsv``: one document per record (an FAQ row is a document), read with
  :func:`kogata.data.readers.read_inputs`; title = a ``title`` field, else the question, else the first line;
* ``.html`` / ``.htm``: the visible text (scripts and styles dropped, block elements on their own lines), title
  from ``<title>`` or the first ``<h1>``;
* ``.pdf``: the text of every page through ``pypdf``; title from the PDF's metadata or the file name. An
  encrypted, damaged or text-less (scanned) PDF is an error naming the file (or skipped with ``skip_unreadable``).

Every text is normalised (NFKC, whitespace; code and URLs kept, see :mod:`kogata.data.normalize`) and, when
asked, PII is replaced by typed placeholders (:class:`kogata.data.pii.Scrubber`). ``source`` is the path
relative to the folder given (the file name for a file given directly); each document carries the sha256 of
its normalised text, which is what ``index update`` compares.
"""

from __future__ import annotations

import hashlib
import html.parser
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kogata.core.errors import KogataError
from kogata.data.normalize import normalize_text
from kogata.data.pii import Scrubber
from kogata.data.readers import decode, is_binary, read_inputs

RECORD_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")
HTML_SUFFIXES = (".html", ".htm")
MAX_FILE_MB = 50.0
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass
class Document:
    doc_id: str  # source, or source:line / source#item for records of a JSONL/CSV/JSON file
    source: str  # the file's path relative to the folder given
    title: str
    text: str
    sha: str = ""

    def __post_init__(self) -> None:
        if not self.sha:
            self.sha = hashlib.sha256(f"{self.title}\0{self.text}".encode()).hexdigest()


@dataclass
class IngestResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    pii: dict[str, int] = field(default_factory=dict)  # placeholders inserted per type

    def fingerprint(self) -> str:
        """A hash over every document's id and content hash (what the index's lineage records)."""
        h = hashlib.sha256()
        for d in sorted(self.documents, key=lambda d: d.doc_id):
            h.update(f"{d.doc_id}\0{d.sha}\n".encode())
        return h.hexdigest()[:16]


# ---- files ---------------------------------------------------------------------------------------
def discover_files(inputs: list[Path]) -> list[tuple[Path, str]]:
    """(path, source) for every non-hidden file under ``inputs``; ``source`` is relative to the folder given."""
    found: list[tuple[Path, str]] = []
    for p in map(Path, inputs):
        if not p.exists():
            raise KogataError(f"document path {p} does not exist", "give folders or files of documents (txt, md, jsonl, csv, html, pdf)")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not any(s.startswith(".") for s in f.relative_to(p).parts))
            found += [(f, f.relative_to(p).as_posix()) for f in files]
        else:
            found.append((p, p.name))
    seen: dict[str, Path] = {}
    for path, source in found:
        if source in seen and seen[source].resolve() != path.resolve():
            raise KogataError(f"two inputs give the same document path {source!r} ({seen[source]} and {path})",
                              "index one folder holding both, or rename one of them")  # fmt: skip
        seen[source] = path
    return found


class _TextOfHTML(html.parser.HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "table", "ul", "ol",
              "pre", "blockquote", "header", "footer", "dt", "dd"}  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.h1 = ""
        self._skip = 0
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        if tag in self.BLOCKS:
            self.parts.append("\n")
        if tag in ("td", "th"):
            self.parts.append(" | ")
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template") and self._skip:
            self._skip -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n")
        if tag in self._in:
            while self._in and self._in.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        current = self._in[-1] if self._in else ""
        if current == "title":
            self.title += data
            return
        if current == "h1" and not self.h1:
            self.h1 = data.strip()
        self.parts.append(data)


def html_to_text(raw: str) -> tuple[str, str]:
    """(visible text, title) of an HTML page."""
    parser = _TextOfHTML()
    parser.feed(raw)
    parser.close()
    lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in "".join(parser.parts).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, (parser.title.strip() or parser.h1)


def pdf_to_text(path: Path, raw: bytes) -> tuple[str, str]:
    """(text of every page, title) of a PDF; KogataError naming the file when it cannot be read."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise KogataError("reading PDF files needs the pypdf package", "install it: pip install pypdf") from None
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")  # PDFs with only an owner password open with an empty user password
            except Exception:  # noqa: BLE001 - an unsupported encryption is still "encrypted"
                ok = 0
            if not ok:
                raise KogataError(f"{path} is an encrypted PDF", "save an unencrypted copy (or remove it from the documents)")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta = reader.metadata
        title = (meta.title if meta is not None and meta.title else "") or ""
    except KogataError:
        raise
    except (PdfReadError, Exception) as exc:  # noqa: BLE001 - pypdf raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise KogataError(f"{path} is not a readable PDF ({first})", "re-export it as PDF or text, or remove it from the documents") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text.strip():
        raise KogataError(f"{path} has no text layer (a scanned PDF?)", "run OCR on it first, or export the document as text")
    return text, str(title).strip()


def _title_of(text: str, fallback: str) -> str:
    m = _HEADING.search(text[:2000])
    if m:
        return m.group(1).strip()
    first = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
    return (first[:80] if first else fallback).strip()


def _record_title(fields: dict, text: str, fallback: str) -> str:
    for key in ("title", "name", "subject", "question", "instruction", "prompt"):
        value = fields.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:120]
    return _title_of(text, fallback)


# ---- documents -----------------------------------------------------------------------------------
def read_documents(
    inputs: list[Path],
    *,
    scrub_pii: bool = False,
    max_file_mb: float = MAX_FILE_MB,
    skip_unreadable: bool = False,
    on_file: Callable[[str, int, int], None] | None = None,
) -> IngestResult:
    """Every document under ``inputs`` (sorted by path, then position in the file), normalised and maybe scrubbed."""
    files = discover_files(inputs)
    if not files:
        raise KogataError(f"no documents found in {', '.join(map(str, inputs))}", "give folders or files of documents (txt, md, jsonl, csv, html, pdf)")
    result = IngestResult()
    scrubber = Scrubber() if scrub_pii else None
    for number, (path, source) in enumerate(files, 1):
        if on_file is not None:
            on_file(source, number, len(files))
        size = path.stat().st_size
        if size > max_file_mb * 2**20:
            raise KogataError(f"{path} is {size / 2**20:.0f} MB, above the {max_file_mb:g} MB limit for one document file",
                              "split it into smaller files, or raise the limit with --max-file-mb")  # fmt: skip
        try:
            docs = _documents_of(path, source)
        except KogataError as exc:
            if not skip_unreadable:
                raise
            result.skipped.append((source, exc.message))
            continue
        if docs is None:
            result.skipped.append((source, "binary file"))
            continue
        for doc in docs:
            text = normalize_text(doc.text)
            title = normalize_text(doc.title)
            if scrubber is not None:
                text, title = scrubber.scrub(text), scrubber.scrub(title)
            if text.strip():
                result.documents.append(Document(doc.doc_id, doc.source, title or source, text))
    if scrubber is not None:
        result.pii = dict(scrubber.counts)
    if not result.documents:
        why = "; ".join(f"{s}: {w}" for s, w in result.skipped[:3])
        raise KogataError(f"no text found in {', '.join(map(str, inputs))}" + (f" ({why})" if why else ""),
                          "give text, Markdown, JSONL, CSV, HTML or PDF files with text in them")  # fmt: skip
    return result


def _documents_of(path: Path, source: str) -> list[Document] | None:
    """The documents of one file; None for a binary file kogata does not read."""
    suffix = path.suffix.lower()
    raw = path.read_bytes()
    if suffix == ".pdf" or raw.startswith(b"%PDF"):
        text, title = pdf_to_text(path, raw)
        return [Document(source, source, title or _title_of(text, path.stem), text)]
    if is_binary(raw):
        return None
    if suffix in HTML_SUFFIXES:
        text, title = html_to_text(decode(raw, path)[0])
        return [Document(source, source, title or _title_of(text, path.stem), text)]
    if suffix in RECORD_SUFFIXES:
        records = read_inputs([path], fmt="auto", unit="file").records
        out = []
        for rec in records:
            local = rec.id[len(rec.source):] if rec.id.startswith(rec.source) else f"#{rec.id}"
            text = rec.text
            out.append(Document(f"{source}{local}", source, _record_title(rec.fields, text, path.stem), text))
        return out
    text = decode(raw, path)[0].replace("\r\n", "\n").replace("\r", "\n")
    return [Document(source, source, _title_of(text, path.stem), text)]
