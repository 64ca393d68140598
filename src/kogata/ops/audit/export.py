"""``kogata audit export``: rows as JSONL (payloads as JSON) or CSV (payloads as JSON text), with their hashes."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import time
from collections.abc import Iterable
from typing import IO, Any

from kogata.core.errors import KogataError
from kogata.ops.audit.log import AuditEntry

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = (
    "id", "time", "request_id", "response_id", "key_name", "model_alias", "artifact_id", "endpoint", "status", "action",
    "latency_ms", "tokens_in", "tokens_out", "input", "output", "verdicts", "meta", "previous_hash", "hash",
)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str | None, *, now: float | None = None) -> int | None:
    """``7d``/``12h``/``30m`` ago, or an ISO date/time (UTC unless it names a zone), as Unix microseconds."""
    if value is None or not value.strip():
        return None
    m = _RELATIVE.match(value)
    if m:
        return int(((now if now is not None else time.time()) - float(m.group(1)) * _UNIT_S[m.group(2)]) * 1e6)
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise KogataError(f"--since {value!r} is not a date, time or duration",
                          "use e.g. --since 2025-04-01, --since 2025-04-01T09:00+09:00 or --since 7d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1e6)


def iso(time_us: int) -> str:
    return dt.datetime.fromtimestamp(time_us / 1e6, tz=dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def export_rows(entries: Iterable[AuditEntry], out: IO[str], fmt: str = "jsonl") -> int:
    """Write ``entries`` to the text stream ``out``; returns the number of rows written."""
    if fmt not in FORMATS:
        raise KogataError(f"--format {fmt!r} is not an export format", f"use one of: {', '.join(FORMATS)}")
    n = 0
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for e in entries:
        d: dict[str, Any] = e.to_dict()
        d["time"] = iso(e.time_us)
        if writer is not None:
            for k in ("input", "output", "verdicts", "meta"):
                d[k] = json.dumps(d[k], ensure_ascii=False, sort_keys=True)
            writer.writerow(d)
        else:
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
        n += 1
    return n
