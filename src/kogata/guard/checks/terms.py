"""``terms``: blocked terms and topics (ja/en), matched with an Aho-Corasick automaton on the loosely folded text.

Folding (NFKC, lower case, katakana → hiragana, a few variant kanji) makes ``ＣＯＭＰＥＴＩＴＯＲ``, ``competitor``,
``カジノ`` and ``かじの`` the same; list kanji and kana spellings of one word as separate terms
(``暴力団``, ``ぼうりょくだん``). Terms in Latin script match whole words only (``ass`` does not fire on ``class``).
``patterns`` adds regular expressions per topic (matched on the folded text, ignoring case).
"""

from __future__ import annotations

import re

import ahocorasick
import regex
from pydantic import field_validator

from kogata.data.fold import fold, fold_term, kana_to_hiragana
from kogata.guard.checks.registry import Check, CheckOptions, register_check
from kogata.guard.verdict import GuardContext, Hit

_WORDY = re.compile(r"[0-9a-z]")


class TermsOptions(CheckOptions):
    terms: dict[str, list[str]] = {}
    patterns: dict[str, list[str]] = {}
    placeholder: str = "[{type}]"

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for topic, pats in v.items():
            for p in pats:
                try:
                    regex.compile(p)
                except regex.error as exc:
                    raise ValueError(f"bad regex {p!r} in topic {topic!r}: {exc}") from None
        return v

    @field_validator("terms")
    @classmethod
    def _nonempty(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for topic, words in v.items():
            if any(not w.strip() for w in words):
                raise ValueError(f"empty term in topic {topic!r}")
        return v


@register_check("terms")
class TermsCheck(Check):
    Options = TermsOptions
    redactable = True
    streamable = True

    def __init__(self, options: TermsOptions | None = None):
        super().__init__(options)
        self._auto = ahocorasick.Automaton()
        self._max = 0
        for topic, words in self.options.terms.items():
            for w in words:
                key = fold_term(w.strip())
                latin = bool(_WORDY.match(key[0])), bool(_WORDY.match(key[-1]))
                self._auto.add_word(key, (topic, len(key), latin))
                self._max = max(self._max, len(key))
        if self._max:
            self._auto.make_automaton()
        # patterns see the folded text: fold their katakana too, and ignore case
        self._patterns = [(topic, regex.compile(kana_to_hiragana(p), regex.IGNORECASE))
                          for topic, pats in self.options.patterns.items() for p in pats]

    def scan(self, text: str, ctx: GuardContext | None = None) -> list[Hit]:
        f = fold(text, True)
        t = f.text
        hits = []
        if self._max:
            for end, (topic, n, (latin_start, latin_end)) in self._auto.iter(t):
                start = end - n + 1
                if latin_start and start > 0 and _WORDY.match(t[start - 1]):
                    continue
                if latin_end and end + 1 < len(t) and _WORDY.match(t[end + 1]):
                    continue
                hits.append(Hit(*f.span(start, end + 1), topic))
        for topic, p in self._patterns:
            hits.extend(Hit(*f.span(*m.span()), topic) for m in p.finditer(t) if m.end() > m.start())
        return _longest_first(hits)

    def hold_from(self, text: str) -> int:
        f = fold(text, True)
        t = f.text
        cut = len(t)
        for k in range(min(self._max, len(t)), 0, -1):  # longest tail that is the start of some term
            if self._auto.match(t[-k:]):
                cut = len(t) - k
                break
        for _, p in self._patterns:
            for m in p.finditer(t, max(0, len(t) - 256), partial=True):
                if (m.partial or m.end() >= len(t) - 3) and m.start() < cut:
                    cut = m.start()
        return f.orig_pos(cut) if cut < len(t) else len(text)


def _longest_first(hits: list[Hit]) -> list[Hit]:
    """Sorted by start; of overlapping hits keep the longer one."""
    out: list[Hit] = []
    for h in sorted(hits, key=lambda h: (h.start, -(h.end - h.start))):
        if out and h.start < out[-1].end:
            continue
        out.append(h)
    return out
