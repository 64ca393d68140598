"""``pii``: personal data (e-mail, phones ja/intl, postal code, マイナンバー, 法人番号, cards, bank accounts, addresses).

Detection is :func:`kogata.data.pii.find_pii` (one PII engine for data curation and the guard) run on the
NFKC-folded text, so ``０３－１２３４－５６７８`` is caught; spans are mapped back to the original characters.
Numbers right after a reference label (注文番号, order no., tracking, 型番, JAN …) are business identifiers, not
personal data, and are skipped for the number-only types (phone, My Number, 法人番号, bank account).
"""

from __future__ import annotations

import re

import regex
from pydantic import field_validator

from kogata.data import pii as engine
from kogata.data.fold import fold
from kogata.guard.checks.registry import Check, CheckOptions, register_check
from kogata.guard.verdict import GuardContext, Hit

_REFERENCE_LABEL = re.compile(
    r"(?:注文番号|注文No|ご注文|受注番号|受付番号|お問い合わせ番号|問い合わせ番号|伝票番号|追跡番号|送り状番号|管理番号|請求書番号|請求番号|"
    r"会員ID|チケット番号|型番|品番|製品番号|シリアル番号|製造番号|JANコード|JAN|ISBN|商品コード|"
    r"order(?: number| no\.?| id| #)?|invoice(?: number| no\.?)?|tracking(?: number| no\.?)?|ticket(?: number| no\.?)?|"
    r"serial(?: number| no\.?)?|model(?: number| no\.?)?|sku|part(?: number| no\.?)|ref(?:erence)?(?: number| no\.?)?)"
    r"\s*(?:は|:|#|No\.?)?\s*$",
    re.IGNORECASE,
)
_NUMBER_ONLY = {"PHONE", "MY_NUMBER", "CORPORATE_NUMBER", "BANK_ACCOUNT", "CREDIT_CARD"}
_PARTIAL = tuple(
    regex.compile(p.pattern, (p.flags & re.IGNORECASE) | regex.V0)
    for p in (engine.EMAIL_RE, engine.CARD_RE, engine.MY_NUMBER_RE, engine.CORPORATE_NUMBER_RE, engine.BANK_ACCOUNT_RE,
              engine.POSTAL_RE, engine.PHONE_RE, engine.ADDRESS_RE)
)
_HOLD_WINDOW = 128  # longest PII span a stream may still be growing
_TAIL = 3  # a match ending this close to the end may still grow or change (groups and lookaheads need ≤ 3 more)


class PiiOptions(CheckOptions):
    types: list[str] = list(engine.FIND_TYPES)
    skip_references: bool = True  # numbers after 注文番号 / order no. / 型番 … are not PII
    placeholder: str = "[{type}]"

    @field_validator("types")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in engine.FIND_TYPES]
        if bad:
            raise ValueError(f"unknown PII type {bad[0]!r} (known: {', '.join(engine.FIND_TYPES)})")
        return v


@register_check("pii")
class PiiCheck(Check):
    Options = PiiOptions
    redactable = True
    streamable = True

    def __init__(self, options: PiiOptions | None = None):
        super().__init__(options)
        self._types = tuple(self.options.types)

    def scan(self, text: str, ctx: GuardContext | None = None) -> list[Hit]:
        if not text:
            return []
        f = fold(text)
        hits = []
        for a, b, kind in engine.find_pii(f.text, self._types):
            if self.options.skip_references and kind in _NUMBER_ONLY and _REFERENCE_LABEL.search(f.text[max(0, a - 24):a]):
                continue
            start, end = f.span(a, b)
            hits.append(Hit(start, end, kind))
        return hits

    def hold_from(self, text: str) -> int:
        f = fold(text)
        t = f.text
        window = max(0, len(t) - _HOLD_WINDOW)
        cut = len(t)
        for p in _PARTIAL:
            for m in p.finditer(t, window, partial=True):
                if (m.partial or m.end() >= len(t) - _TAIL) and m.start() < cut:
                    cut = m.start()
        return f.orig_pos(cut) if cut < len(t) else len(text)
