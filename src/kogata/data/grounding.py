"""Is an answer supported by its passages? The grounding test shared by the guard's ``grounding`` check and the
``rag_qa`` task's ``grounded_rate`` (both must judge an answer the same way).

The answer's checkable items — quoted spans, dates, amounts, product codes, other numbers, and content words
(Latin words that are not function words, katakana and kanji runs, split by character class: no tokenizer
dependency) — are looked up in the passages after loose folding; items that also appear in the question are
taken as given. Any unsupported quote, date, amount, code or number makes the answer unsupported; so does a share
of supported content words below ``min_word_support``. Score = supported items / all items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from kogata.data.fold import Folded, fold

HARD_TYPES = ("QUOTE", "DATE", "AMOUNT", "CODE", "NUMBER")
_ITEM_RE = re.compile(  # the lookahead lets the engine skip to candidate characters
    r"(?=[「『\"“¥$€£\da-z\u4e00-\u9fff々ァ-ヺ])(?:"
    r"(?P<QUOTE>「[^」\n]{2,80}」|『[^』\n]{2,80}』|\"[^\"\n]{3,80}\"|“[^”\n]{3,80}”)"
    r"|(?P<DATE>\d{4}[年/.\-]\d{1,2}[月/.\-]\d{1,2}日?|\d{4}年\d{1,2}月|\d{1,2}月\d{1,2}日)"
    r"|(?P<AMOUNT>[¥$€£]\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:万円|千円|円|ドル|yen|usd|dollars?|jpy|eur)(?![a-z]))"
    r"|(?P<CODE>(?<![a-z0-9\-])[a-z]{1,6}(?:-?[a-z]{1,4})?-?\d[a-z0-9]*(?:-[a-z0-9]+)*(?![a-z0-9]))"
    r"|(?P<NUMBER>(?<![\d.])\d[\d,]*(?:\.\d+)?)"
    r"|(?P<WORD>[a-z][a-z']{2,}|[\u4e00-\u9fff々]{2,}|[ァ-ヺー]{2,}))"
)
_EN_STOP = frozenset(
    "the and for are was were been this that with from have has had not but you your our they their them its his her "
    "can will would could should may might must shall does did doing done into onto than then also only just more most "
    "some such any all each every other about after before over under again very what when where which who whom why "
    "how there here these those being because while until upon per via yes please thank thanks hello dear sir madam "
    "get got let make made use used using like need needs well one two three please however therefore yet still even".split()
)
_NUM_IN = re.compile(r"\d[\d,]*(?:\.\d+)?")
_DATE_PARTS = re.compile(r"\d+")


def _fold(text: str) -> Folded:
    """NFKC and lower case, katakana kept (katakana runs are content words; hiragana ones are not)."""
    f = fold(text)
    low = f.text.lower()
    return Folded(low, f.starts, f.ends) if len(low) == len(f.text) else Folded(f.text, f.starts, f.ends)


def _num(s: str) -> str:
    s = s.replace(",", "")
    return s.rstrip("0").rstrip(".") if "." in s else s.lstrip("0") or "0"


def _date_key(s: str) -> str:
    return "-".join(str(int(p)) for p in _DATE_PARTS.findall(s))


@lru_cache(maxsize=4096)
def _stem(w: str) -> str:
    for suf in ("ies", "es", "s", "ed", "ing", "'s"):
        if len(w) > len(suf) + 2 and w.endswith(suf):
            return w[: -len(suf)]
    return w


class Source:
    """Folded passages (or question) with the number, date and word sets items are looked up in."""

    def __init__(self, text: str):
        self.text = _fold(text).text
        self.flat = self.text.replace(",", "").replace("-", "").replace(" ", "")
        self.numbers = {_num(m.group(0)) for m in _NUM_IN.finditer(self.text)}
        self.dates = {_date_key(m.group("DATE")) for m in _ITEM_RE.finditer(self.text) if m.lastgroup == "DATE"}
        self.words = {_stem(w) for w in re.findall(r"[a-z][a-z']+", self.text)}

    def has(self, kind: str, item: str) -> bool:
        if kind == "QUOTE":
            return item[1:-1].strip() in self.text
        if kind == "DATE":
            key = _date_key(item)
            return key in self.dates or any(d.endswith("-" + key) or d.startswith(key + "-") for d in self.dates)
        if kind in ("AMOUNT", "NUMBER"):
            n = _NUM_IN.search(item)
            if not n:
                return True
            v = _num(n.group(0))
            if v in self.numbers:
                return True
            scale = 10000 if "万" in item else 1000 if "千" in item else 1
            return scale > 1 and _num(str(int(float(v) * scale))) in self.numbers
        if kind == "CODE":
            return item.replace("-", "") in self.flat
        if item[0].isascii():
            return _stem(item) in self.words or item in self.text
        if item in self.text:
            return True
        # a long kanji run is usually several two-character words (追加|送料|無料): each must be there
        pieces = [item[i : i + 2] for i in range(0, len(item) - 1, 2)] + ([item[-2:]] if len(item) % 2 else [])
        return len(item) > 2 and all(p in self.text for p in pieces)


def checkable_items(text: str, ignore_words: list[str] | tuple[str, ...] = ()) -> tuple[Folded, list[tuple[str, int, int, str]]]:
    """The folded text and (type, start, end, item) of every checkable item, in folded coordinates."""
    f = _fold(text)
    ignore = {_fold(w).text for w in ignore_words}
    out = []
    for m in _ITEM_RE.finditer(f.text):
        kind, item = m.lastgroup, m.group(0)
        if kind == "WORD" and (item in _EN_STOP or item in ignore):
            continue
        out.append((kind, m.start(), m.end(), item))
    return f, out


@dataclass
class Grounding:
    supported: bool  # False: an unsupported hard item, or too few supported content words
    score: float | None  # supported items / all items (None: no passages to judge against)
    unsupported: list[tuple[str, int, int, str]] = field(default_factory=list)  # (type, start, end, item), folded coordinates
    folded: Folded | None = None  # the answer as folded (maps spans back to the original text)


def judge(answer: str, passages: list[str], question: str | None = None, *, min_word_support: float = 0.5,
          min_words: int = 2, ignore_words: list[str] | tuple[str, ...] = ()) -> Grounding:
    """Judge ``answer`` against ``passages`` (see the module docstring)."""
    if not passages:
        return Grounding(True, None)
    source, asked = Source("\n".join(passages)), Source(question or "")
    memo: dict[tuple[str, str], tuple[bool, bool]] = {}  # long answers repeat items: look each up once

    def lookup(kind: str, item: str) -> tuple[bool, bool]:
        key = (kind, item)
        if key not in memo:
            in_q = asked.has(kind, item)
            memo[key] = (in_q, in_q or source.has(kind, item))
        return memo[key]

    f, found = checkable_items(answer, ignore_words)
    items = [it for it in found if not lookup(it[0], it[3])[0]]
    if not items:
        return Grounding(True, 1.0, [], f)
    unsupported = [it for it in items if not lookup(it[0], it[3])[1]]
    words = [it for it in items if it[0] == "WORD"]
    bad_words = [it for it in unsupported if it[0] == "WORD"]
    word_support = 1 - len(bad_words) / len(words) if words else 1.0
    hard = [it for it in unsupported if it[0] != "WORD"]
    fired = bool(hard) or (len(words) >= min_words and word_support < min_word_support)
    return Grounding(not fired, 1 - len(unsupported) / len(items), unsupported, f)
