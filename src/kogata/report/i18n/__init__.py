"""One en/ja catalog for every report (eval, optimize): ``en.yaml`` and ``ja.yaml`` next to this file, with the
same keys. :func:`strings` picks the language (English for anything unknown, and for any missing key);
:func:`fmt` fills ``{placeholders}`` without ever failing a report over a bad one."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
LANGUAGES = ("en", "ja")


@cache
def catalog(language: str) -> dict[str, str]:
    """The raw catalog of ``language`` as written in its YAML file."""
    path = HERE / f"{language}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in doc.items()}


STRINGS: dict[str, dict[str, str]] = {lang: catalog(lang) for lang in LANGUAGES}


def strings(language: str | None) -> dict[str, str]:
    """The report strings for ``language`` (English for anything unknown; missing keys fall back too)."""
    lang = language if language in LANGUAGES else "en"
    return {**STRINGS["en"], **STRINGS[lang]}


def fmt(template: str, **kwargs: Any) -> str:
    try:
        return template.format(**kwargs)
    except (KeyError, ValueError, IndexError):
        return template


def note_text(note: dict[str, Any], t: dict[str, str]) -> str:
    """A structured note ``{"key", "params"}`` (decision notes, next steps) in the catalog's words."""
    return fmt(t.get(note.get("key", ""), note.get("key", "")), **(note.get("params") or {}))
