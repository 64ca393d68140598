"""``format``: the answer has the shape the request asked for.

Hit types: ``EMPTY`` (nothing but whitespace), ``TOO_LONG`` (over ``max_chars``; span = the excess),
``JSON_INVALID`` (JSON requested — ``json: true`` or the request's ``response_format`` — and it does not parse;
span from the error position), ``SCHEMA_MISMATCH`` (a JSON schema was given and the value violates it, checked
with ``jsonschema``), ``LANG_MISMATCH`` (asked in Japanese, answered in English, or the reverse) and
``REPETITION`` (a degenerate loop: the share of repeated character 10-grams above ``max_repetition``).
"""

from __future__ import annotations

import json
from typing import Literal

from kogata.data.filters import detect_language, repetition_ratio
from kogata.guard.checks.registry import Check, CheckOptions, register_check
from kogata.guard.verdict import GuardContext, Hit


class FormatOptions(CheckOptions):
    max_chars: int | None = None
    json_output: Literal["auto", True, False] = "auto"
    language: bool = True
    empty: bool = True
    max_repetition: float = 0.5
    min_chars_for_repetition: int = 80


def _requested_schema(ctx: GuardContext) -> tuple[bool, dict | None]:
    if ctx.json_schema is not None:
        return True, ctx.json_schema
    rf = ctx.response_format or {}
    if rf.get("type") == "json_schema":
        spec = rf.get("json_schema") or {}
        return True, spec.get("schema", spec if "type" in spec else None)
    return rf.get("type") == "json_object", None


@register_check("format")
class FormatCheck(Check):
    Options = FormatOptions

    def scan(self, text: str, ctx: GuardContext) -> list[Hit]:
        o, n = self.options, len(text)
        if not text.strip():
            return [Hit(0, n, "EMPTY")] if o.empty else []
        hits = []
        if o.max_chars is not None and n > o.max_chars:
            hits.append(Hit(o.max_chars, n, "TOO_LONG", n / o.max_chars))
        wants_json, schema = _requested_schema(ctx)
        if o.json_output is True or (o.json_output == "auto" and wants_json):
            hits.extend(_json_hits(text, schema))
        if o.language and ctx.question:
            asked, answered = detect_language(ctx.question), detect_language(text)
            if {asked, answered} == {"ja", "en"} or (asked == "ja" and answered == "latin"):
                hits.append(Hit(0, n, "LANG_MISMATCH"))
        if n >= o.min_chars_for_repetition:
            r = repetition_ratio(text)
            if r > o.max_repetition:
                hits.append(Hit(0, n, "REPETITION", r))
        return hits


def _json_hits(text: str, schema: dict | None) -> list[Hit]:
    body = text.strip()
    offset = text.find(body[:1]) if body else 0
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return [Hit(offset + exc.pos, len(text), "JSON_INVALID")]
    if schema is None:
        return []
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
    return [Hit(offset, offset + len(body), "SCHEMA_MISMATCH")] if errors else []
