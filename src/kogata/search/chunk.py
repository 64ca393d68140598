"""Split documents into overlapping chunks at sentence and line boundaries, Japanese and English alike.

A document is cut into *units*: each line, and inside a line each sentence — a sentence ends after 。！？ (and
their half-width forms), after ``.`` ``!`` ``?`` followed by a space, or after a closing bracket that follows
one of those (「…。」). Units are packed greedily into chunks of at most ``size`` characters; a unit longer
than ``size`` is cut at ``size``. A Markdown heading starts a new chunk (when the current one is at least a
third full), so sections stay together. Consecutive chunks share ``overlap`` characters of whole trailing units
of the previous chunk (never more than ``overlap``; none when the last unit alone is longer).

Tables: a chunk that starts inside a Markdown table (``| a | b |`` lines) repeats the table's header row and
separator, so a row found on its own still says what its columns are.

Each :class:`Chunk` records its document, title, position, character span in the document text and a content
hash over what is embedded (title line + text) — the key of the vector cache, so an unchanged chunk is never
embedded twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from kogata.core.errors import KogataError
from kogata.search.ingest import Document

DEFAULT_SIZE = 400
DEFAULT_OVERLAP = 80
_SENTENCE_END = re.compile(r"(?:[。！？｡!?]+[」』）)\]”’]*|(?<=[a-z0-9)\]\"'])[.!?]+[\"')\]]*(?=\s))\s*", re.IGNORECASE)
_CLOSERS = "」』）)]”’\"'"
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


@dataclass(frozen=True)
class ChunkerSettings:
    size: int = DEFAULT_SIZE
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        if self.size < 50:
            raise KogataError(f"--chunk-size must be at least 50 characters, got {self.size}", f"e.g. --chunk-size {DEFAULT_SIZE}")
        if not 0 <= self.overlap < self.size // 2:
            raise KogataError(f"--overlap must be between 0 and half the chunk size ({self.size // 2 - 1}), got {self.overlap}",
                              f"e.g. --overlap {DEFAULT_OVERLAP}")  # fmt: skip

    def to_dict(self) -> dict[str, int]:
        return {"size": self.size, "overlap": self.overlap}


@dataclass
class Chunk:
    chunk_id: str  # doc_id#position
    doc_id: str
    source: str
    title: str
    position: int  # 0-based index of the chunk in its document
    start: int  # character span in the document text (the repeated table header is not part of it)
    end: int
    text: str
    hash: str = ""

    def __post_init__(self) -> None:
        if not self.hash:
            self.hash = content_hash(self.embed_text)

    @property
    def embed_text(self) -> str:
        """What BM25 and the embedder see: the document title (unless the text holds it already), then the text."""
        if self.title and self.title not in self.text:
            return f"{self.title}\n{self.text}"
        return self.text


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def split_units(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of lines and sentences covering ``text``; each span keeps its trailing whitespace."""
    spans = []
    pos = 0
    for line in text.splitlines(keepends=True):
        line_end = pos + len(line)
        start = pos
        for m in _SENTENCE_END.finditer(line):
            closed = m.group(0).rstrip()
            after = line[m.end() : m.end() + 1]
            if closed and closed[-1] in _CLOSERS and after and not after.isspace() and after not in "「『":
                continue  # 「はい。」と… : a quotation inside the sentence, not its end
            end = pos + m.end()
            if end > start and end < line_end:
                spans.append((start, end))
                start = end
        if line_end > start:
            spans.append((start, line_end))
        pos = line_end
    return spans


def _table_header(lines_before: list[str]) -> str:
    """The header + separator of the Markdown table the next line continues, or ''."""
    i = len(lines_before) - 1
    while i >= 0 and _TABLE_ROW.match(lines_before[i]):
        i -= 1
    rows = lines_before[i + 1 :]
    if len(rows) >= 2 and _TABLE_SEP.match(rows[1]):
        return rows[0].rstrip("\n") + "\n" + rows[1].rstrip("\n") + "\n"
    return ""


def chunk_document(doc: Document, settings: ChunkerSettings) -> list[Chunk]:
    text = doc.text
    units: list[tuple[int, int]] = []
    for start, end in split_units(text):  # units longer than size are cut
        while end - start > settings.size:
            units.append((start, start + settings.size))
            start += settings.size
        if end > start:
            units.append((start, end))
    groups: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for unit in units:
        length = current[-1][1] - current[0][0] if current else 0
        heading = bool(_HEADING.match(text[unit[0] : unit[1]])) and (unit[0] == 0 or text[unit[0] - 1] == "\n")
        if current and (length + unit[1] - unit[0] > settings.size or (heading and length >= settings.size // 3)):
            groups.append(current)
            carry: list[tuple[int, int]] = []
            for u in reversed(current):  # whole trailing units, at most `overlap` characters
                if current[-1][1] - u[0] > settings.overlap or heading:
                    break
                carry.insert(0, u)
            if carry and carry[0][0] == current[0][0]:
                carry = []  # the overlap would repeat the whole chunk
            current = carry
            while current and current[-1][1] - current[0][0] + unit[1] - unit[0] > settings.size:
                current.pop(0)
        current.append(unit)
    if current:
        groups.append(current)
    chunks = []
    for group in groups:
        start, end = group[0][0], group[-1][1]
        body = text[start:end].strip()
        if not body:
            continue
        lines_before = text[:start].splitlines(keepends=True)
        if _TABLE_ROW.match(body.split("\n", 1)[0]) and lines_before and _TABLE_ROW.match(lines_before[-1]):
            header = _table_header(lines_before)
            if header and not body.startswith(header.split("\n", 1)[0]):
                body = header + body
        position = len(chunks)
        chunks.append(Chunk(f"{doc.doc_id}#{position}", doc.doc_id, doc.source, doc.title, position, start, end, body))
    return chunks


def chunk_documents(docs: list[Document], settings: ChunkerSettings) -> list[Chunk]:
    return [c for d in docs for c in chunk_document(d, settings)]
