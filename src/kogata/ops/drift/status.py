"""The drift signals as they stand now, for a dashboard (the web UI's monitoring page).

``alias_status(log, reference, aliases, since_us=…)`` checks the recent window of each served alias's traffic
against a reference with the same :func:`kogata.ops.drift.check` that ``kogata serve``'s monitor loop and
``kogata monitor check`` run — read-only: the audit log is only read, nothing is written or published.
``signal_rows(report, lang)`` flattens a report into table rows; ``cached_reference(paths)`` reads reference
questions once per file version; ``monitor_report_file(home)`` finds the HTML report that
``kogata monitor report --out $KOGATA_HOME/monitor`` wrote.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kogata.ops.drift.monitor import DriftReport, check, reference_from_files
from kogata.ops.drift.signals import Thresholds
from kogata.ops.drift.window import Exchange, served

REPORT_DIR = "monitor"  # under $KOGATA_HOME: where a dashboard looks for `kogata monitor report`'s output
REPORT_FILE = "monitor.html"


@dataclass
class AliasStatus:
    alias: str
    report: DriftReport


def alias_status(log: Any, reference: list[Exchange], aliases: list[str], *, since_us: int | None,
                 until_us: int | None = None, min_window: int = 50) -> list[AliasStatus]:
    """One drift report per alias: its answered requests in ``[since, until)`` against ``reference``."""
    th = Thresholds(min_window=min_window)
    out = []
    for alias in aliases:
        current = served(log, since_us=since_us, until_us=until_us, alias=alias)
        out.append(AliasStatus(alias, check(current, reference, thresholds=th, window={"since_us": since_us, "until_us": until_us})))
    return out


def signal_rows(report: DriftReport, lang: str) -> list[dict[str, Any]]:
    """The report's signals as rows: name, status, the window's value and the reference's, effect, threshold,
    p-value, and the signal's message in ``lang`` (``en`` or ``ja``)."""
    lang = lang if lang in ("en", "ja") else "en"
    return [{"name": s.name, "status": s.status, "value": s.value, "reference": s.reference, "effect": s.effect,
             "threshold": s.threshold, "p_value": s.p_value, "n": s.n, "n_reference": s.n_reference,
             "message": s.message.get(lang, "")} for s in report.signals]


_REFERENCES: dict[tuple[tuple[str, int, int], ...], list[Exchange]] = {}
_LOCK = threading.Lock()


def cached_reference(paths: list[str | Path]) -> list[Exchange]:
    """``reference_from_files(paths)``, read again only when a file changed (size or modification time)."""
    key = []
    for p in paths:
        path = Path(p)
        st = path.stat() if path.exists() else None
        key.append((str(path), st.st_mtime_ns if st else 0, st.st_size if st else -1))
    with _LOCK:
        hit = _REFERENCES.get(tuple(key))
    if hit is not None:
        return hit
    reference = reference_from_files([Path(p) for p in paths])
    with _LOCK:
        if len(_REFERENCES) > 16:
            _REFERENCES.clear()
        _REFERENCES[tuple(key)] = reference
    return reference


def monitor_report_file(home: str | Path) -> Path | None:
    """``$KOGATA_HOME/monitor/monitor.html`` when ``kogata monitor report --out $KOGATA_HOME/monitor`` wrote it."""
    path = Path(home) / REPORT_DIR / REPORT_FILE
    return path if path.is_file() else None
