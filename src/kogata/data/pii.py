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
"""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

from kogata.data.normalize import find_urls

PII_TYPES = ("EMAIL", "PHONE", "POSTAL_CODE", "CREDIT_CARD", "MY_NUMBER", "URL")
URL_MODES = ("secrets", "all", "keep")

_SEP = r"[\-‐‑–—−－ー]"  # hyphen-like characters people put between digit groups
_SEP_OR_SPACE = r"[\-‐‑–—−－ー ]"
SECRET_KEYS = {"token", "key", "sig", "session", "sid", "auth", "password", "pass", "pwd", "secret", "apikey", "signature"}
_SECRET_PARTS = ("token", "secret", "passw", "api_key", "apikey", "signature", "session", "credential")

EMAIL_RE = re.compile(r"(?<![A-Za-z0-9.%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9\-])")
_NOT_IN_NUMBER = (r"(?<![\d+\-])(?<!\d[ \-])", r"(?![\d\-])(?![ \-]\d)")  # not part of a longer digit run
CARD_RE = re.compile(r"{0}(?:\d{{13,19}}|\d{{4}}(?:[ \-]\d{{2,6}}){{2,4}}){1}".format(*_NOT_IN_NUMBER))
MY_NUMBER_RE = re.compile(r"{0}\d{{4}}[ \-]?\d{{4}}[ \-]?\d{{4}}{1}".format(*_NOT_IN_NUMBER))
POSTAL_RE = re.compile(rf"((?:〒|郵便番号|postal code|post code|zip code|zip)\s*[:：]?\s*)(\d{{3}}{_SEP}?\d{{4}})(?!\d)", re.IGNORECASE)
_JP_PHONE = (
    rf"0\d{{1,4}}{_SEP_OR_SPACE}\d{{1,4}}{_SEP_OR_SPACE}\d{{3,4}}"  # 03-1234-5678, 0120-123-456
    rf"|\(0\d{{1,4}}\) ?\d{{1,4}}{_SEP}?\d{{3,4}}"  # (03)1234-5678
    rf"|0\d{{1,4}}\(\d{{1,4}}\)\d{{3,4}}"  # 03(1234)5678
    r"|0\d{9,10}"  # 0312345678, 09012345678
)
_INTL_PHONE = rf"\+\d{{1,3}}(?:{_SEP_OR_SPACE}?\(?\d{{1,4}}\)?){{2,5}}"
_NANP_PHONE = r"(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[\-. ])\d{3}[\-. ]\d{4}"
PHONE_RE = re.compile(rf"(?<![\d+\-])(?<!\d\.)(?:{_JP_PHONE}|{_INTL_PHONE}|{_NANP_PHONE})(?![\d\-])")


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
