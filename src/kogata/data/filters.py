"""Quality filters and language identification.

Language identification is a **script-ratio heuristic**, not a statistical model (no extra dependency):

* ``ja`` — the text has kana, or kanji with at least a quarter of its letters being CJK characters and
  little Hangul; a long kanji-only text with no kana is ``zh``;
* ``ko`` — Hangul dominates;
* ``en`` — Latin letters dominate and common English function words make up ≥ 5 % of the words;
  other Latin-script text is ``latin`` (French, German … are not told apart);
* ``und`` — no letters at all.

It is reliable for telling Japanese from English, which is what an allow-list like ``--lang ja,en`` needs.
Each filter returns a reason (a key of :data:`REASONS`) or None; the first failing filter wins.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

LANGUAGES = ("ja", "en", "zh", "ko", "latin", "und")
REASONS = {
    "empty": "nothing left after normalisation",
    "too_short": "shorter than --min-chars",
    "too_long": "longer than --max-chars",
    "repetitive": "too many repeated lines or character n-grams",
    "symbols": "too many symbols for natural text",
    "language": "language not in --lang",
}
_EN_WORDS = frozenset(
    "the a an of to in and or is are was were be been it this that for on with as at by from not no you your we our "
    "they he she i me my us its their them his her can will would could do does did if but have has had please may "
    "must should what when where which who how why there here all any after before about into than then so up out "
    "just also only more one when last each per".split()
)
_NORMAL_PUNCT = set("。、，．！？「」『』（）()【】［］[]・：:；;,.!?'\"-‐―ー…〜~/&%#*_+=@<>|`")


@dataclass
class FilterConfig:
    min_chars: int = 20
    max_chars: int = 20000
    max_repetition: float = 0.3
    max_symbol_ratio: float = 0.25
    langs: tuple[str, ...] | None = None  # allow-list; None keeps every language


_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")
_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def detect_language(text: str) -> str:
    kana, han = len(_KANA.findall(text)), len(_HAN.findall(text))
    hangul, latin = len(_HANGUL.findall(text)), len(_LATIN.findall(text))
    cjk = kana + han
    if not (cjk or hangul or latin):
        return "und"
    if hangul > cjk and hangul * 2 >= latin:
        return "ko"
    if cjk and cjk * 4 >= cjk + latin:  # CJK characters carry about a word each, so a quarter is a majority
        if kana == 0 and han >= 20:
            return "zh"
        return "ja"
    words = re.findall(r"[a-z']+", text.lower())
    if words and sum(w in _EN_WORDS for w in words) >= 0.05 * len(words):
        return "en"
    return "latin"


def repetition_ratio(text: str, n: int = 10) -> float:
    """The larger of (a) the share of characters in lines that occur more than once and (b) the share of
    character n-grams (whitespace removed) that repeat an earlier n-gram. Natural prose scores well under
    0.2; boilerplate, spam and degenerate generations score high."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    counts = Counter(lines)
    total_chars = sum(len(line) for line in lines) or 1
    dup_lines = sum(len(line) for line in lines if counts[line] > 1) / total_chars
    flat = re.sub(r"\s+", "", text)
    if len(flat) <= n:
        return dup_lines
    grams = [flat[i : i + n] for i in range(len(flat) - n + 1)]
    dup_grams = 1 - len(set(grams)) / len(grams)
    return max(dup_lines, dup_grams)


def symbol_ratio(text: str) -> float:
    """Share of non-space characters that are symbols (Unicode S*: math, currency, box drawing, emoji …) or
    unusual punctuation; letters, digits and everyday punctuation (Japanese and Latin) do not count."""
    visible = len(text) - len(re.findall(r"\s", text))
    if not visible:
        return 0.0
    candidates = re.findall(r"[^\w\s]", text)  # letters, digits and spaces can never count
    odd = sum(1 for c in candidates if c not in _NORMAL_PUNCT and unicodedata.category(c)[0] in "SP" and c not in "円$€¥℃")
    return odd / visible


def check(text: str, lang: str, cfg: FilterConfig) -> tuple[str | None, str]:
    """(reason, detail) for the first filter ``text`` fails, or (None, "") when it passes them all."""
    n = len(text)
    if n == 0:
        return "empty", ""
    if n < cfg.min_chars:
        return "too_short", f"{n} chars < {cfg.min_chars}"
    if n > cfg.max_chars:
        return "too_long", f"{n} chars > {cfg.max_chars}"
    rep = repetition_ratio(text)
    if rep > cfg.max_repetition:
        return "repetitive", f"repetition {rep:.2f} > {cfg.max_repetition}"
    sym = symbol_ratio(text)
    if sym > cfg.max_symbol_ratio:
        return "symbols", f"symbol ratio {sym:.2f} > {cfg.max_symbol_ratio}"
    if cfg.langs and lang not in cfg.langs:
        return "language", f"{lang} not in {','.join(cfg.langs)}"
    return None, ""
