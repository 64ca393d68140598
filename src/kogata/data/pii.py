"""PII scrubbing: replace personal data with typed placeholders such as ``[EMAIL]`` and ``[PHONE]``.

Run it on NFKC-normalised text (full-width digits become ASCII); the patterns also accept any Unicode
digit, so text inside code blocks is covered too. Order matters and is fixed:

1. URLs: ``[URL]`` when the URL carries a secret (``token=``, ``key=``, ``sig=``, ``session=``,
   ``access_token`` …, or ``user:password@``) — or every URL with ``urls="all"``. URLs that stay are
   protected from the later patterns (an ID in a path is not a phone number).
2. ``[EMAIL]``.
3. ``[CREDIT_CARD]``: 13–19 digits (contiguous, or in groups split by spaces/dashes) **only when the Luhn
   check passes**.
4. ``[MY_NUMBER]``: 12 digits (マイナンバー) **only when the check digit is valid** (see :func:`my_number_valid`).
5. ``[POSTAL_CODE]``: ``123-4567`` only after 〒 / 郵便番号 / "postal code" / "zip"; the label is kept.
6. ``[PHONE]``: Japanese numbers (03-1234-5678, 090-1234-5678, 0120-123-456, (03)1234-5678, 0312345678),
   international ones (+81 90-1234-5678, +1 415 555 0100) and North-American ones ((415) 555-0100).

What it does not find: names, street addresses, birthdays, bank accounts. Review ``removed.jsonl`` and a
sample of ``data.jsonl`` before sharing a dataset.

:func:`find_pii` is the span-finding form used by the guardrails (``kogata.guard``): the same patterns in the
same order plus ``CORPORATE_NUMBER`` (法人番号 / invoice number ``T`` + 13 digits, check digit verified),
``BANK_ACCOUNT`` (after a label such as 普通 / 口座番号 / "account number", or an IBAN with its mod-97 check)
and ``ADDRESS`` (a Japanese prefecture/city followed by 丁目・番地 numbers, or an English street address).
It returns ``(start, end, type)`` on the text it is given; normalise first (NFKC) and map spans back.
"""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

from kogata.data.normalize import find_urls

PII_TYPES = ("EMAIL", "PHONE", "POSTAL_CODE", "CREDIT_CARD", "MY_NUMBER", "URL")
FIND_TYPES = PII_TYPES + ("CORPORATE_NUMBER", "BANK_ACCOUNT", "ADDRESS")
URL_MODES = ("secrets", "all", "keep")

_SEP = r"[\-‐‑–—−－ー]"  # hyphen-like characters people put between digit groups
_SEP_OR_SPACE = r"[\-‐‑–—−－ー ]"
SECRET_KEYS = {"token", "key", "sig", "session", "sid", "auth", "password", "pass", "pwd", "secret", "apikey", "signature"}
_SECRET_PARTS = ("token", "secret", "passw", "api_key", "apikey", "signature", "session", "credential")

EMAIL_RE = re.compile(r"(?<![A-Za-z0-9.%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9\-])")
_NOT_IN_NUMBER = (r"(?<![\d+\-])(?<!\d[ \-])", r"(?![\d\-])(?![ \-]\d)")  # not part of a longer digit run
CARD_RE = re.compile(r"{0}(?:\d{{13,19}}|\d{{4}}(?:[ \-]\d{{2,6}}){{2,4}}){1}".format(*_NOT_IN_NUMBER))  # noqa: UP030
MY_NUMBER_RE = re.compile(r"{0}\d{{4}}[ \-]?\d{{4}}[ \-]?\d{{4}}{1}".format(*_NOT_IN_NUMBER))  # noqa: UP030
POSTAL_RE = re.compile(rf"((?:〒|郵便番号|postal code|post code|zip code|zip)\s*(?:[:：]|は|is)?\s*)(\d{{3}}{_SEP}?\d{{4}})(?!\d)", re.IGNORECASE)
_JP_PHONE = (
    rf"0\d{{1,4}}{_SEP_OR_SPACE}\d{{1,4}}{_SEP_OR_SPACE}\d{{3,4}}"  # 03-1234-5678, 0120-123-456
    rf"|\(0\d{{1,4}}\) ?\d{{1,4}}{_SEP}?\d{{3,4}}"  # (03)1234-5678
    rf"|0\d{{1,4}}\(\d{{1,4}}\)\d{{3,4}}"  # 03(1234)5678
    r"|0\d{9,10}"  # 0312345678, 09012345678
)
_INTL_PHONE = rf"\+\d{{1,3}}(?:{_SEP_OR_SPACE}?\(?\d{{1,4}}\)?){{2,5}}"
_NANP_PHONE = r"(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[\-. ])\d{3}[\-. ]\d{4}"
PHONE_RE = re.compile(rf"(?<![\d+\-])(?<!\d\.)(?:{_JP_PHONE}|{_INTL_PHONE}|{_NANP_PHONE})(?![\d\-])")


CORPORATE_NUMBER_RE = re.compile(r"(?<![A-Za-z\d\-])(?:T ?)?\d{13}(?![\d\-])")
_BANK_LABEL = r"(?:普通預金|当座預金|貯蓄預金|普通|当座|貯蓄|総合|口座番号|口座|記号|account (?:number|no\.?|#)|acct\.? ?(?:no\.?|#)?)"
BANK_ACCOUNT_RE = re.compile(
    rf"({_BANK_LABEL}\s*(?:口座)?\s*(?:番号)?\s*[:：]?\s*(?:No\.?\s*)?)(\d{{7,12}}|\d{{5}}(?:{_SEP}|\s*番号\s*)\d{{7,8}})(?![\d\-])"
    r"|(?-i:(?<![A-Z\d])([A-Z]{2}\d{2}(?: ?[A-Z\d]{4}){2,7}(?: ?[A-Z\d]{1,3})?)(?![A-Za-z\d]))",
    re.IGNORECASE,
)
_PREFECTURES = (
    "北海道|青森県|岩手県|宮城県|秋田県|山形県|福島県|茨城県|栃木県|群馬県|埼玉県|千葉県|東京都|神奈川県|新潟県|富山県|石川県|"
    "福井県|山梨県|長野県|岐阜県|静岡県|愛知県|三重県|滋賀県|京都府|大阪府|兵庫県|奈良県|和歌山県|鳥取県|島根県|岡山県|広島県|"
    "山口県|徳島県|香川県|愛媛県|高知県|福岡県|佐賀県|長崎県|熊本県|大分県|宮崎県|鹿児島県|沖縄県"
)
_CITY = r"[\u4e00-\u9fffヶケ]{1,6}?[市区町村郡]"
_BLOCK = rf"\d{{1,4}}(?:丁目|{_SEP})\d{{1,4}}(?:番地?|{_SEP})?(?:\d{{1,4}}号?)?"
ADDRESS_RE = re.compile(
    rf"(?:(?:{_PREFECTURES}){_CITY}(?:{_CITY})?|{_CITY}(?:{_CITY})?)[\u4e00-\u9fff\u3041-\u3096\u30a1-\u30faー]{{0,10}}?{_BLOCK}"
    r"|\b\d{1,5} (?:[A-Z][a-z]+ ){1,3}(?:Street|St\.|Avenue|Ave\.|Road|Rd\.|Boulevard|Blvd\.|Lane|Ln\.|Drive|Dr\.|Way|Court|Ct\.|Place|Pl\.)"
    r"(?:,? (?:Apt\.?|Suite|Unit|#) ?[A-Za-z\d\-]+)?"
)


def _digits(s: str) -> str:
    return "".join(str(int(c)) for c in s if c.isdecimal())


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check every payment card number carries in its last digit."""
    digits = [int(d) for d in _digits(number)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return bool(digits) and total % 10 == 0


def my_number_check_digit(first11: str) -> int:
    """The check digit of an Individual Number (マイナンバー), as the MIC ordinance (総務省令第85号 第5条) defines it.

    With Pn the n-th of the 11 digits counted from the right (n = 1 is the last) and Qn = n + 1 for
    n ≤ 6, n − 5 for n ≥ 7: remainder = Σ Pn·Qn mod 11; the check digit is 0 when remainder ≤ 1,
    else 11 − remainder.
    """
    digits = [int(d) for d in _digits(first11)]
    if len(digits) != 11:
        raise ValueError("an Individual Number has 11 digits before its check digit")
    total = sum(p * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(reversed(digits), start=1))
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def my_number_valid(number: str) -> bool:
    digits = _digits(number)
    return len(digits) == 12 and my_number_check_digit(digits[:11]) == int(digits[11])


def corporate_number_valid(number: str) -> bool:
    """法人番号 (13 digits): the first digit is 9 − (Σ Pn·Qn mod 9) over the other 12, Pn the n-th digit from the
    right and Qn = 1 for odd n, 2 for even n (国税庁, 法人番号の指定等に関する省令 第2条)."""
    digits = _digits(number)
    if len(digits) != 13:
        return False
    total = sum(int(p) * (1 if n % 2 else 2) for n, p in enumerate(reversed(digits[1:]), start=1))
    return int(digits[0]) == 9 - total % 9


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check: move the first four characters to the end, letters → 10..35, remainder 1."""
    s = re.sub(r"\s", "", iban).upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    return int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1


def _fast(pattern: re.Pattern, first: str) -> re.Pattern:
    """The same pattern behind a lookahead for the characters it can start with: the regex engine then skips
    ahead to candidates instead of trying every position (5–7× faster on prose)."""
    return re.compile(f"(?={first})(?:{pattern.pattern})", pattern.flags)


_DETECTORS = (  # (pattern, type, validity check on the match, group holding the PII; None: BANK_ACCOUNT's 2 or 3)
    (EMAIL_RE, "EMAIL", None, 0),
    (_fast(CARD_RE, r"\d"), "CREDIT_CARD", lambda s: 13 <= len(_digits(s)) <= 19 and luhn_valid(s), 0),
    (_fast(MY_NUMBER_RE, r"\d"), "MY_NUMBER", my_number_valid, 0),
    (_fast(CORPORATE_NUMBER_RE, r"[T\d]"), "CORPORATE_NUMBER", corporate_number_valid, 0),
    (_fast(BANK_ACCOUNT_RE, r"[普当貯総口記aA]|(?-i:[A-Z]{2}\d)"), "BANK_ACCOUNT", None, None),
    (_fast(POSTAL_RE, r"[〒郵pPzZ]"), "POSTAL_CODE", None, 2),
    (_fast(PHONE_RE, r"[\d(+]"), "PHONE", lambda s: _phone_ok(s), 0),
    (_fast(ADDRESS_RE, r"[\u4e00-\u9fffヶケ]|\d"), "ADDRESS", None, 0),
)


def find_pii(text: str, types: tuple[str, ...] | None = None) -> list[tuple[int, int, str]]:
    """``(start, end, type)`` of every PII span in ``text`` (already NFKC-normalised), sorted, non-overlapping.

    Same order and validity checks as :class:`Scrubber`; URLs without secrets are protected (an ID in a path is not
    a phone number). Labelled types (postal code, bank account) cover the number only, not the label.
    """
    wanted = set(FIND_TYPES if types is None else types)
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, int, str]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in taken)

    def add(a: int, b: int, kind: str) -> None:
        if free(a, b):
            taken.append((a, b))
            if kind in wanted:
                found.append((a, b, kind))

    for start, end in find_urls(text):
        add(start, end, "URL" if url_has_secret(text[start:end]) else "")
    has_digit = any(c in text for c in "0123456789")
    for pattern, kind, valid, group in _DETECTORS:
        if kind not in wanted or (kind == "EMAIL" and "@" not in text) or (kind != "EMAIL" and not has_digit):
            continue
        for m in pattern.finditer(text):
            g = group if group is not None else (2 if m.group(2) else 3)
            if kind == "BANK_ACCOUNT" and g == 3 and not iban_valid(m.group(3)):
                continue
            if valid is None or valid(m.group(g)):
                add(m.start(g), m.end(g), kind)
    return sorted(found)


def url_has_secret(url: str) -> bool:
    """True when a query/fragment parameter looks like a credential, or the URL embeds ``user:password@``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.password:
        return True
    for key, _ in parse_qsl(parts.query, keep_blank_values=True) + parse_qsl(parts.fragment, keep_blank_values=True):
        k = key.lower()
        if k in SECRET_KEYS or any(p in k for p in _SECRET_PARTS) or k.endswith(("_key", "-key")):
            return True
    return False


class Scrubber:
    """Replaces PII in strings and counts what it replaced per type (``self.counts``)."""

    def __init__(self, urls: str = "secrets"):
        if urls not in URL_MODES:
            raise ValueError(f"urls must be one of {URL_MODES}")
        self.urls = urls
        self.counts: Counter[str] = Counter()

    def scrub(self, text: str) -> str:
        out, pos = [], 0
        for start, end in find_urls(text):
            out.append(self._scrub_plain(text[pos:start]))
            url = text[start:end]
            if self.urls == "all" or (self.urls == "secrets" and url_has_secret(url)):
                self.counts["URL"] += 1
                url = "[URL]"
            out.append(url)
            pos = end
        out.append(self._scrub_plain(text[pos:]))
        return "".join(out)

    def _scrub_plain(self, text: str) -> str:
        if not any(c.isdecimal() or c == "@" for c in text):
            return text
        text = self._sub(EMAIL_RE, "EMAIL", text)
        text = self._sub(CARD_RE, "CREDIT_CARD", text, lambda s: 13 <= len(_digits(s)) <= 19 and luhn_valid(s))
        text = self._sub(MY_NUMBER_RE, "MY_NUMBER", text, my_number_valid)
        text = POSTAL_RE.sub(self._postal, text)
        return self._sub(PHONE_RE, "PHONE", text, _phone_ok)

    def _sub(self, pattern: re.Pattern, kind: str, text: str, valid=None) -> str:
        def repl(m: re.Match) -> str:
            if valid is not None and not valid(m.group(0)):
                return m.group(0)
            self.counts[kind] += 1
            return f"[{kind}]"

        return pattern.sub(repl, text)

    def _postal(self, m: re.Match) -> str:
        self.counts["POSTAL_CODE"] += 1
        return f"{m.group(1)}[POSTAL_CODE]"


def _phone_ok(s: str) -> bool:
    n = len(_digits(s))
    if s.startswith("+"):
        return 8 <= n <= 15  # E.164 allows at most 15 digits
    if s.lstrip("(").startswith("0"):
        return n in (10, 11)  # Japanese numbers: 10 digits, 11 for mobile / 050 / 0800
    return n == 10  # North America
