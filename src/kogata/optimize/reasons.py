"""Why a candidate was skipped or failed: a catalog key with parameters, so each report words it in its own
language (the ``reason_*`` keys of :mod:`kogata.report.i18n`), plus the English text for the terminal and for
results.json readers that predate the keys (``reason`` beside ``reason_key`` / ``reason_params``).

The search state keeps a reason in its ``reason`` text column as JSON (:meth:`Reason.dumps`); a row written
before reasons had keys holds plain English, which :func:`stored_fields` passes through unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# key → English wording; the report catalog's en.yaml holds the same text (tests/unit/test_report_reasons.py)
REASONS = {
    "reason_smaller_passes": "cannot be smaller than {label}, which already passes every KPI",
    "reason_quantizes_harder": "{label} already misses {gates}; {quant} quantizes harder",
    "reason_no_budget": "not enough budget left (needs ~{need_min:.1f} min, {left_min:.1f} min left)",
    "reason_no_budget_confirm": "no budget left to confirm on all items (needs ~{need_min:.1f} min)",
    "reason_failed": "{error}",
}


@dataclass(frozen=True)
class Reason:
    key: str  # one of REASONS
    params: dict[str, Any] = field(default_factory=dict)  # JSON values; candidate labels under "label"

    def __post_init__(self) -> None:
        if self.key not in REASONS:
            raise ValueError(f"unknown reason key {self.key!r}")

    @property
    def text(self) -> str:
        return REASONS[self.key].format(**self.params)

    def __str__(self) -> str:
        return self.text

    def fields(self) -> dict[str, Any]:
        """``reason`` (English), ``reason_key`` and ``reason_params``: what events and results rows carry."""
        return {"reason": self.text, "reason_key": self.key, "reason_params": dict(self.params)}

    def dumps(self) -> str:
        return json.dumps({"key": self.key, "params": self.params, "text": self.text}, ensure_ascii=False)


def failed(error: Any) -> Reason:
    """A build or evaluation that failed: its one-line error, as the exception or results entry gave it."""
    return Reason("reason_failed", {"error": str(error)})


def stored_fields(raw: str | None) -> dict[str, Any]:
    """The ``reason*`` fields of a search-state row's ``reason`` column (JSON, plain text from older runs, or None)."""
    if raw and raw.startswith("{"):
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("key") in REASONS:
            return Reason(doc["key"], doc.get("params") or {}).fields()
    return {"reason": raw, "reason_key": None, "reason_params": None}
