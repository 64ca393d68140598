"""``kogata review``: the human review queue — list, show, approve, correct, reject, export as training data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from kogata.cli.common import console
from kogata.core.errors import KogataError

app = typer.Typer(help="Review doubtful answers: approve, correct or reject them; export the corrections as training data.", no_args_is_help=True)
REVIEWER = typer.Option(..., "--reviewer", "-r", envvar="KOGATA_REVIEWER", help="Your name, recorded with the decision (or $KOGATA_REVIEWER).")
REASON = typer.Option(None, "--reason", help="Why (recorded with the decision).")
VERSION = typer.Option(None, "--version", help="The item version you reviewed (from `show`); the action fails if it changed since.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="review")


def _queue():
    from kogata.ops.review import ReviewQueue

    return ReviewQueue.open()


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _short(text: str | None, n: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


@app.command("list")
def list_cmd(
    state: str = typer.Option("open", "--state", help="open, approved, corrected, rejected or all."),
    source: str = typer.Option(None, "--source", help="Only items from flag, hold, low_confidence, sample or feedback."),
    limit: int = typer.Option(50, "--limit", help="At most this many items."),
    as_json: bool = typer.Option(False, "--json", help="Print the items as a JSON list (for scripts)."),
) -> None:
    """Items waiting for review (or in another state)."""
    from kogata.ops.review.export import conversation

    items = _queue().list(state=None if state == "all" else state, source=source, limit=limit)
    if as_json:
        print(json.dumps([it.to_dict() for it in items], ensure_ascii=False, indent=1))
        return
    if not items:
        console.print("[dim]no review items" + ("" if state == "all" else f" in state {state}"))
        return
    tab = Table(title_justify="left")
    for col in ("id", "state", "source", "created", "model", "question", "answer"):
        tab.add_column(col, no_wrap=col in ("id", "state", "source", "created"))
    for it in items:
        question = _short(conversation(it.prompt)[1])
        tab.add_row(str(it.id), it.state, it.source, _when(it.created), it.model_alias or "-", question, _short(it.answer or it.original))
    console.print(tab)


@app.command("show")
def show_cmd(item_id: int = typer.Argument(...), as_json: bool = typer.Option(False, "--json", help="Print the item as JSON.")) -> None:
    """One item in full: the conversation, the answer, why it is here, and any decision."""
    from kogata.ops.review.export import conversation

    it = _queue().get(item_id)
    if as_json:
        console.print_json(json.dumps(it.to_dict(), ensure_ascii=False))
        return
    console.print(f"[bold]item {it.id}[/] · {it.state} · from {it.source} · version {it.version} · created {_when(it.created)}", highlight=False)
    console.print(f"model {it.model_alias or '-'} ({it.artifact_id or '-'}) · response {it.response_id or '-'} · "
                  f"audit row {it.audit_id or '-'}", highlight=False)
    for m in conversation(it.prompt)[2]:
        console.print(f"[cyan]{m['role']}:[/] {m['content']}", highlight=False)
    console.print(f"[magenta]answer:[/] {it.original}", highlight=False)
    if it.confidence is not None:
        console.print(f"mean token log-probability {it.confidence:.3f}", highlight=False)
    if it.rating is not None or it.comment:
        console.print(f"user feedback: rating {it.rating} {it.comment or ''}", highlight=False)
    hits = [v for v in (it.details.get("verdicts") or []) if v]
    if hits:
        console.print(f"verdicts: {json.dumps(hits, ensure_ascii=False)}", highlight=False)
    if it.state != "open":
        console.print(f"[bold]{it.state}[/] by {it.reviewer} at {_when(it.reviewed_at)}{': ' + it.reason if it.reason else ''}", highlight=False)
    if it.corrected:
        console.print(f"[green]corrected:[/] {it.corrected}", highlight=False)


@app.command("approve")
def approve_cmd(item_id: int = typer.Argument(...), reviewer: str = REVIEWER, reason: str = REASON, version: int = VERSION) -> None:
    """The answer is right as it is (a held answer is released to the client)."""
    q = _queue()
    it = q.approve(item_id, reviewer, reason, version=version)
    q.audit.close()  # sign the decision's audit row now
    console.print(f"item {it.id} approved by {it.reviewer}", highlight=False)


@app.command("correct")
def correct_cmd(
    item_id: int = typer.Argument(...),
    reviewer: str = REVIEWER,
    text: str = typer.Option(None, "--text", help="The right answer."),
    file: Path = typer.Option(None, "--file", help="Read the right answer from this UTF-8 file."),
    reason: str = REASON,
    version: int = VERSION,
) -> None:
    """Replace the answer with the right one (a held client gets the correction; export uses it as training data)."""
    if (text is None) == (file is None):
        raise KogataError("give the corrected answer with exactly one of --text or --file", "e.g. kogata review correct 12 --text '…' --reviewer you")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KogataError(f"cannot read {file} ({exc.strerror or exc})", "give a readable UTF-8 text file") from None
    q = _queue()
    it = q.correct(item_id, reviewer, text, reason, version=version)
    q.audit.close()  # sign the decision's audit row now
    console.print(f"item {it.id} corrected by {it.reviewer}", highlight=False)


@app.command("reject")
def reject_cmd(item_id: int = typer.Argument(...), reviewer: str = REVIEWER, reason: str = REASON, version: int = VERSION) -> None:
    """The answer is wrong and there is no right one to give (a held client gets the policy's safe reply)."""
    q = _queue()
    it = q.reject(item_id, reviewer, reason, version=version)
    q.audit.close()  # sign the decision's audit row now
    console.print(f"item {it.id} rejected by {it.reviewer}", highlight=False)


@app.command("export")
def export_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write chat.jsonl, preferences.jsonl and manifest.json to."),
    corrections_only: bool = typer.Option(False, "--corrections-only", help="Only corrected items (default: approved ones too)."),
    since: str = typer.Option(None, "--since", help="Only items decided from this time on (ISO date/time or a duration like 7d)."),
) -> None:
    """Reviewed answers as training data: chat.jsonl for `kogata data prepare` / lora, preferences.jsonl for preference tuning."""
    from kogata.ops.audit.export import parse_since
    from kogata.ops.review.export import export_reviewed

    since_us = parse_since(since)
    m = export_reviewed(_queue(), out, corrections_only=corrections_only, since=since_us / 1e6 if since_us is not None else None)
    console.print(f"wrote {out}/chat.jsonl ({m['files']['chat.jsonl']} records) and preferences.jsonl "
                  f"({m['files']['preferences.jsonl']} pairs); next: kogata data prepare {out}/chat.jsonl --out DATASET", highlight=False)
