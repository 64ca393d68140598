"""``kogata audit``: check the tamper-evident audit log, export it, sign its tail, prune old rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from kogata.cli.common import console, err_console

app = typer.Typer(help="The tamper-evident audit log of every request and response (see docs/operations.md).", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="audit")


def _log():
    from kogata.ops.audit import AuditLog

    return AuditLog.open()


@app.command("verify")
def verify_cmd(
    public_key: Path = typer.Option(
        None, "--public-key", help="Check signatures with this public key (a copy kept elsewhere) instead of $KOGATA_HOME/keys/audit_ed25519.pub."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check every row's hash and link and every signed checkpoint; exit 1 naming the first bad row."""
    report = _log().verify(public_key=public_key)
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
    elif report.ok:
        span = f"rows {report.first_row}–{report.last_row}" if report.rows else "no rows"
        console.print(f"[green]ok:[/] {report.rows} rows ({span}), {report.checkpoints} signed checkpoint lines "
                      f"({report.checkpoints_matched} matched), key {report.key_id or '-'}; checked in {report.seconds:.2f} s", highlight=False)
        if report.unsigned_rows:
            console.print(f"[yellow]note:[/] the last {report.unsigned_rows} row(s) are not covered by a checkpoint yet "
                          "(`kogata audit checkpoint` signs them)", highlight=False)
    else:
        for p in report.problems:
            err_console.print(f"[bold red]audit log broken:[/] {p.message}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint_cmd() -> None:
    """Sign the current last row now (a server does this every N rows / seconds and on shutdown)."""
    line = _log().checkpoint()
    console.print(f"signed row {line['row']} (checkpoint {line['seq']})" if line else "nothing new to sign", highlight=False)


@app.command("export")
def export_cmd(
    since: str = typer.Option(None, "--since", help="Rows from this time on: an ISO date/time (UTC unless it has a zone) or a duration like 7d, 12h."),
    until: str = typer.Option(None, "--until", help="Rows before this time (same forms as --since)."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl (payloads as JSON) or csv (payloads as JSON text)."),
    out: Path = typer.Option(None, "--out", "-o", help="File to write (default: standard output)."),
) -> None:
    """Write audit rows, with their hashes, as JSONL or CSV."""
    from kogata.ops.audit.export import export_rows, parse_since

    log = _log()
    rows = log.iter_rows(since_us=parse_since(since), until_us=parse_since(until))
    if out is None:
        n = export_rows(rows, sys.stdout, fmt)
    else:
        from kogata.core.io import atomic_text_file

        with atomic_text_file(out, newline="") as fh:
            n = export_rows(rows, fh, fmt)
    err_console.print(f"exported {n} row(s){f' to {out}' if out else ''}", highlight=False)


@app.command("prune")
def prune_cmd(
    keep_days: float = typer.Option(..., "--keep-days", help="Keep rows from the last N days; older rows are deleted up to a signed checkpoint."),
) -> None:
    """Delete old rows by cutting the chain at a checkpoint (a signed prune line vouches for the new first row)."""
    result = _log().prune(keep_days)
    if result["deleted"]:
        console.print(f"deleted {result['deleted']} row(s); the log now starts at row {result['first_row']} "
                      f"(vouched for by the checkpoint of row {result['cut_at']})", highlight=False)
    else:
        console.print(f"nothing deleted: {result.get('reason', 'no rows older than the cut-off')}", highlight=False)
