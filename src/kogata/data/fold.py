"""Fold text for matching (NFKC, width, case, kana) while remembering where each folded character came from.

Checks match on the folded form and report spans in the original text: ``０３－１２３４`` folds to ``03-1234``
and a hit on the folded ``03-1234`` maps back to the full-width original. Characters that NFKC leaves alone
(ASCII, hiragana, katakana, common kanji, 、。「」) are copied in runs, so folding costs little on ordinary text;
everything else is normalised one unit at a time (a base character with its combining marks, so
``ｶﾞ`` becomes ``ガ``), and zero-width characters are dropped.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_COMBINING = "\u0300-\u036f\u3099-\u309c\uff9e\uff9f"
_UNSTABLE = re.compile(rf"[^\n][{_COMBINING}]+|[^\t\n\x20-\x7e\u3041-\u3096\u309d\u309e\u30a1-\u30fa\u30fc-\u30fe\u4e00-\u9fff、。「」『』・]")
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u00ad")
# Katakana → hiragana and a few old/variant kanji people type for the same word (異体字), as one lookup table
# (a 64k-character string translates ~3× faster than a dict); list other variants as terms.
_LOOSE = {c: c - 0x60 for c in range(0x30A1, 0x30F7)} | str.maketrans("髙﨑嶋濵邊邉齋齊斎澤瀨國會學體櫻龍", "高崎島浜辺辺斉斉斉沢瀬国会学体桜竜")
_LOOSE_TABLE = "".join(chr(_LOOSE.get(i, i)) for i in range(0x10000))
_KATA_TABLE = {c: c - 0x60 for c in range(0x30A1, 0x30F7)}


class Folded:
    """``text`` folded, with ``starts[i]``/``ends[i]``: the original span folded character ``i`` came from."""

    __slots__ = ("text", "starts", "ends", "identity")

    def __init__(self, text: str, starts: list[int] | None, ends: list[int] | None):
        self.text, self.starts, self.ends = text, starts, ends
        self.identity = starts is None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of folded ``text[start:end]``."""
        if self.identity:
            return start, end
        if end <= start:
            pos = self.starts[start] if start < len(self.starts) else (self.ends[-1] if self.ends else 0)
            return pos, pos
        return self.starts[start], self.ends[end - 1]

    def orig_pos(self, i: int) -> int:
        """The original position of folded position ``i`` (``len`` maps to the original end)."""
        if self.identity:
            return i
        return self.starts[i] if i < len(self.starts) else (self.ends[-1] if self.ends else 0)


def _nfkc(text: str) -> Folded:
    if not _UNSTABLE.search(text):
        return Folded(text, None, None)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for m in _UNSTABLE.finditer(text):
        a, b = m.span()
        if a > pos:
            out.append(text[pos:a])
            starts.extend(range(pos, a))
            ends.extend(range(pos + 1, a + 1))
        unit = m.group(0)
        if unit not in _ZERO_WIDTH:
            n = unicodedata.normalize("NFKC", unit)
            out.append(n)
            starts.extend([a] * len(n))
            ends.extend([b] * len(n))
        pos = b
    if pos < len(text):
        out.append(text[pos:])
        starts.extend(range(pos, len(text)))
        ends.extend(range(pos + 1, len(text) + 1))
    return Folded("".join(out), starts, ends)


@lru_cache(maxsize=64)
def fold(text: str, loose: bool = False) -> Folded:
    """NFKC with offsets; ``loose`` also lower-cases, maps katakana to hiragana and folds variant kanji."""
    f = _nfkc(text)
    if not loose:
        return f
    low = f.text.lower()
    if len(low) != len(f.text):  # a character whose lower case is longer (İ): keep the original
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in f.text)
    return Folded(low.translate(_LOOSE_TABLE), f.starts, f.ends)


def fold_term(term: str) -> str:
    """How a blocked term or phrase is stored: the loose fold of the term itself."""
    return fold(term, True).text


def kana_to_hiragana(text: str) -> str:
    """Katakana → hiragana only (safe on regular expressions, which the loose fold's lower-casing is not)."""
    return text.translate(_KATA_TABLE)
