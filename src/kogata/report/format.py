"""Number formatting shared by the HTML and Markdown reports (no locale surprises, '–' for missing)."""

from __future__ import annotations

import math
from typing import Any

DASH = "–"
CURRENCY_SYMBOLS = {"USD": "$", "JPY": "¥", "EUR": "€", "GBP": "£"}


def missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v)))


def num(v: Any, digits: int | None = None) -> str:
    """A readable number: thousands separators, fewer decimals for bigger values."""
    if missing(v):
        return DASH
    if not isinstance(v, (int, float)):
        return str(v)
    if digits is not None:
        return f"{v:,.{digits}f}"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def score(v: Any) -> str:
    """A quality metric value (scores in [0, 1] get three decimals; perplexities as numbers)."""
    if missing(v):
        return DASH
    return f"{v:.3f}" if abs(v) < 10 else num(v)


def money(v: Any, currency: str | None) -> str:
    if missing(v):
        return DASH
    sym = CURRENCY_SYMBOLS.get(currency or "", "")
    a = abs(v)
    if a >= 100:
        body = f"{a:,.0f}"
    elif a >= 1:
        body = f"{a:,.2f}"
    elif a == 0:
        body = "0"
    else:
        body = f"{a:.3g}"
    sign = "−" if v < 0 else ""
    return f"{sign}{sym}{body}" if sym else f"{sign}{body} {currency or ''}".strip()


def pct(v: Any, signed: bool = True) -> str:
    if missing(v):
        return DASH
    v = round(v, 1) or 0.0  # no "-0.0%"
    return f"{v:+.1f}%" if signed else f"{v:.1f}%"


def mib(v: Any) -> str:
    if missing(v):
        return DASH
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.2f}"


def seconds(v: Any) -> str:
    """A duration: 42 s, 3.5 min, 1.2 h."""
    if missing(v):
        return "-"
    v = float(v)
    return f"{v:.0f} s" if v < 90 else f"{v / 60:.1f} min" if v < 5400 else f"{v / 3600:.1f} h"


def params(n: Any) -> str:
    if missing(n) or not n:
        return DASH
    return f"{n / 1e6:.1f}M" if n < 1e9 else f"{n / 1e9:.2f}B"


def lower_is_better(metric: str) -> bool:
    from kogata.eval.metrics import lower_is_better as registered

    return registered(metric)


def spread(d: dict[str, Any] | None) -> str:
    """``median [min–max]`` of a throughput spread."""
    if not d or missing(d.get("median")):
        return DASH
    return f"{num(d['median'])} [{num(d['min'])}–{num(d['max'])}]"
