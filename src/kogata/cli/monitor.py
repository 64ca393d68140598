"""``kogata monitor``: drift and quality signals over served traffic (the audit log) against a reference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from kogata.cli.common import console

app = typer.Typer(help="Drift and quality monitoring of served traffic (see docs/operations.md → Monitoring).",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="monitor")


def _window(log, since: str | None, until: str | None, last: int | None, skip_last: int, alias: str | None):
    from kogata.ops.audit.export import parse_since
    from kogata.ops.drift import served

    ex = served(log, since_us=parse_since(since), until_us=parse_since(until), alias=alias)
    if skip_last:
        ex = ex[:-skip_last] if skip_last < len(ex) else []
    if last:
        ex = ex[-last:]
    return ex


def _reference(log, files: list[Path], since: str | None, until: str | None, alias: str | None):
    """The reference exchanges: question files, or an earlier window of served traffic."""
    from kogata.core.errors import KogataError
    from kogata.ops.drift import reference_from_files

    if not files and not since:
        raise KogataError("no reference to compare with", "pass --reference SUITE_DATA.jsonl or --reference-since 14d --reference-until 7d")
    for p in files:
        if not p.exists():
            raise KogataError(f"reference file {p} not found", "pass the suite's data file or a folder of questions")
    return reference_from_files(files) if files else _window(log, since, until, None, 0, alias)


@app.command("check")
def check_cmd(
    since: str = typer.Option("1d", "--since", help="Start of the window: a duration (24h, 7d) or an ISO date/time."),
    until: str = typer.Option(None, "--until", help="End of the window (default: now)."),
    last: int = typer.Option(None, "--last", help="Only the last N requests of the window."),
    skip_last: int = typer.Option(0, "--skip-last", help="Leave out the newest N requests (look at an earlier window)."),
    reference: list[Path] = typer.Option([], "--reference", "-r", help="Reference questions: the suite's data or a "
                                         "training corpus (any format `kogata data` reads). Repeatable."),
    reference_since: str = typer.Option(None, "--reference-since", help="Or: served traffic from then as the reference."),
    reference_until: str = typer.Option(None, "--reference-until", help="End of the reference traffic window."),
    alias: str = typer.Option(None, "--alias", help="Only requests to this model alias."),
    min_window: int = typer.Option(50, "--min-window", help="Fewer requests than this: no verdict, no alert."),
    lang: str = typer.Option(None, "--lang", help="Language of the verdict: en or ja (default: the terminal's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Compare recent traffic with a reference; exit 1 when a signal alerts (for cron and CI)."""
    from kogata.ops.audit import AuditLog
    from kogata.ops.drift import Thresholds, check

    log = AuditLog.open()
    ref = _reference(log, reference, reference_since, reference_until, alias)
    cur = _window(log, since, until, last, skip_last, alias)
    report = check(cur, ref, thresholds=Thresholds(min_window=min_window))
    lang = lang or _terminal_lang()
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    else:
        tab = Table(title_justify="left")
        for col in ("signal", "status", "window", "reference", "effect", "threshold", "p"):
            tab.add_column(col)
        fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        for s in report.signals:
            style = {"alert": "bold red", "ok": "green"}.get(s.status, "dim")
            tab.add_row(s.name, f"[{style}]{s.status}[/]", fmt(s.value), fmt(s.reference), fmt(s.effect), fmt(s.threshold), fmt(s.p_value))
        console.print(f"{report.n} requests vs {report.n_reference} reference items")
        console.print(tab)
        console.print(report.verdict(lang), highlight=False)
        if report.alerts and report.new_terms:
            console.print("new terms: " + ", ".join(t["term"] for t in report.new_terms), highlight=False)
    if report.alerts:
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for monitor.html (self-contained, offline) and monitor.json."),
    since: str = typer.Option("7d", "--since", help="Start of the traffic to chart: a duration (7d) or an ISO date/time."),
    until: str = typer.Option(None, "--until", help="End of it (default: now)."),
    window: int = typer.Option(100, "--window", help="Requests per point on the charts."),
    reference: list[Path] = typer.Option([], "--reference", "-r", help="Reference questions (as for `check`)."),
    reference_since: str = typer.Option(None, "--reference-since", help="Or: served traffic from then as the reference."),
    reference_until: str = typer.Option(None, "--reference-until", help="End of the reference traffic window."),
    alias: str = typer.Option(None, "--alias", help="Only requests to this model alias."),
    lang: str = typer.Option("ja", "--lang", help="Language of the page: ja or en."),
) -> None:
    """Every signal over time, window by window, with the verdict in plain words (HTML, ja/en)."""
    from kogata.core.errors import KogataError
    from kogata.core.io import atomic_write_json
    from kogata.ops.audit import AuditLog
    from kogata.ops.drift import Thresholds, rolling
    from kogata.report.monitor import write_monitor_report

    if lang not in ("en", "ja"):
        raise KogataError(f"--lang {lang!r} is not en or ja", "use --lang ja or --lang en")
    log = AuditLog.open()
    ref = _reference(log, reference, reference_since, reference_until, alias)
    cur = _window(log, since, until, None, 0, alias)
    windows = rolling(cur, ref, window, thresholds=Thresholds(min_window=min(50, window)))
    if not windows:
        raise KogataError(f"only {len(cur)} requests since {since}: fewer than one window of {window}",
                          "use a smaller --window or a longer --since")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json({"windows": [w.to_dict() for w in windows]}, out / "monitor.json")
    page = write_monitor_report(windows, out / "monitor.html", lang)
    console.print(f"wrote {page} ({len(windows)} windows of {window} requests)", highlight=False)
    console.print(windows[-1].verdict(lang), highlight=False)


def _terminal_lang() -> str:
    import os

    return "ja" if (os.environ.get("LANG") or os.environ.get("LC_ALL") or "").lower().startswith("ja") else "en"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
