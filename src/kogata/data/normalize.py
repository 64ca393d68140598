"""Text normalisation: Unicode NFKC and whitespace, leaving code and URLs byte-for-byte alone.

NFKC folds full-width ASCII (ＡＢＣ１２３ → ABC123), half-width katakana (ｶﾀｶﾅ → カタカナ) and the
ideographic space, which is what Japanese business text needs before PII matching and deduplication.
It would also rewrite things whose exact characters matter, so these spans are *protected*:

* fenced code blocks (```` ``` ```` or ``~~~``) and inline code (`` `x` ``): kept as written;
* URLs (``http://`` / ``https://``): kept as written (NFKC could change a path or a signature).

Outside protected spans: NFKC, zero-width and control characters removed, runs of spaces/tabs inside a
line collapsed to one space (indentation kept), trailing spaces dropped, three or more newlines collapsed to a blank line.
"""

from __future__ import annotations

import re
import unicodedata

# A URL: ASCII only, so the Japanese text around it (「」。、) never becomes part of it.
URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_URL_TRAILING = ".,;:!?)]'"
_FENCE_RE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE_RE = re.compile(r"`[^`\n]+`")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200e\u200f\u2060\ufeff\u00ad"), None)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def find_urls(text: str) -> list[tuple[int, int]]:
    """(start, end) of every URL, without trailing sentence punctuation (``see https://a.jp/x.`` → no dot)."""
    spans = []
    for m in URL_RE.finditer(text):
        start, end = m.span()
        while end > start and text[end - 1] in _URL_TRAILING:
            if text[end - 1] == ")" and text[start:end].count("(") >= text[start:end].count(")"):
                break  # a balanced parenthesis belongs to the URL (wiki-style links)
            end -= 1
        spans.append((start, end))
    return spans


def protected_spans(text: str) -> list[tuple[int, int]]:
    """Sorted, non-overlapping spans of code blocks, inline code and URLs."""
    spans = [m.span() for m in _FENCE_RE.finditer(text)]

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in spans)

    for m in _INLINE_CODE_RE.finditer(text):
        if free(*m.span()):
            spans.append(m.span())
    for s in find_urls(text):
        if free(*s):
            spans.append(s)
    return sorted(spans)


def _normalize_prose(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH)
    text = _CONTROL_RE.sub("", text)
    return re.sub(r"(?<=\S)[ \t]+", " ", text)  # interior runs only: indentation stays (NFKC maps U+3000 to a space)


def normalize_text(text: str, nfkc: bool = True) -> str:
    """Normalise one string (see the module docstring); ``nfkc=False`` only fixes newlines and whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if nfkc:
        parts, pos = [], 0
        for start, end in protected_spans(text):
            parts.append(_normalize_prose(text[pos:start]))
            parts.append(text[start:end])
            pos = end
        parts.append(_normalize_prose(text[pos:]))
        text = "".join(parts)
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def dedup_key(text: str) -> str:
    """The form exact deduplication compares: case-folded, all whitespace removed."""
    return re.sub(r"\s+", "", text).casefold()
