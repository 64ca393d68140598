"""The UI's words: ``i18n/en.yaml`` and ``i18n/ja.yaml`` beside this file, one key set (a test checks).

The page language is ``?lang=`` (remembered in a cookie), then that cookie, then the browser's
``Accept-Language``, then Japanese. Templates only ever show catalog text through ``t(KEY)`` — no literal text.

A key whose value is a mapping is a **table** (``catalog_descriptions``: the model catalog's descriptions by
catalog name), read with ``t.table(KEY, NAME, fallback)``; a name missing from the page language's table shows
the fallback (the library's own English text).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent / "i18n"
LANGUAGES = ("ja", "en")
DEFAULT = "ja"
COOKIE = "kogata_lang"


@cache
def _document(language: str) -> dict[str, Any]:
    return yaml.safe_load((HERE / f"{language}.yaml").read_text(encoding="utf-8")) or {}


@cache
def catalog(language: str) -> dict[str, str]:
    """The plain strings of one language (tables left out)."""
    return {str(k): str(v) for k, v in _document(language).items() if not isinstance(v, dict)}


@cache
def tables(language: str) -> dict[str, dict[str, str]]:
    """The tables of one language: ``{table: {name: text}}``."""
    return {str(k): {str(n): str(t) for n, t in v.items()} for k, v in _document(language).items() if isinstance(v, dict)}


class Translator:
    """``t(KEY, n=3)``: the catalog text with ``{placeholders}`` filled; a missing key shows as ``[key]``."""

    def __init__(self, language: str):
        self.lang = language if language in LANGUAGES else DEFAULT
        self.strings = catalog(self.lang)
        self.tables = tables(self.lang)

    def __call__(self, key: str, **kwargs: Any) -> str:
        text = self.strings.get(key)
        if text is None:
            return f"[{key}]"
        if kwargs:
            try:
                return text.format(**kwargs)
            except (KeyError, ValueError, IndexError):
                return text
        return text

    def table(self, key: str, name: str, fallback: str) -> str:
        """``name``'s text in table ``key`` of the page language, else ``fallback``."""
        return self.tables.get(key, {}).get(name) or fallback


def from_accept_language(header: str | None) -> str | None:
    """The first of our languages in an ``Accept-Language`` header, by quality (``ja-JP`` counts as ``ja``)."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in LANGUAGES and q > 0:
            ranked.append((-q, i, base))
    return min(ranked)[2] if ranked else None


def negotiate(query: str | None, cookie: str | None, accept: str | None) -> tuple[str, bool]:
    """(language, remember): ``remember`` when ``?lang=`` chose it (the response sets the cookie)."""
    if query in LANGUAGES:
        return query, query != cookie
    if cookie in LANGUAGES:
        return cookie, False
    return from_accept_language(accept) or DEFAULT, False
