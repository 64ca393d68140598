"""``kogata guard check``: run a guard policy on one text and show each check's verdict and spans."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from kogata.cli.common import console
from kogata.core.errors import KogataError

app = typer.Typer(help="Guardrails: try a guard policy (PII, blocked terms, injection, grounding, format) on a text.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="guard")


@app.command("check")
def check_cmd(
    text: str = typer.Argument(None, metavar="[TEXT|-]", help="The text to check; '-' or nothing reads standard input."),
    policy: Path = typer.Option(..., "--policy", "-p", help="Guard policy YAML (see examples/policy-support-desk.yaml)."),
    output: bool = typer.Option(False, "--output/--input", help="Check TEXT as a model answer (output checks) or as a user message (input checks, default)."),
    question: str = typer.Option(None, "--question", "-q", help="The question the answer replies to (grounding, language match)."),
    passage: list[str] = typer.Option(None, "--passage", help="A retrieved passage the answer should be grounded in (repeatable)."),
    passages_file: Path = typer.Option(None, "--passages-file", help="Passages, one per line (or a JSON list)."),
    json_schema: Path = typer.Option(None, "--json-schema", help="JSON schema file the answer must satisfy."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Exit 0 when the text would go out (maybe redacted or flagged), 1 when it would be blocked or held, 2 on a bad policy."""
    from kogata.guard import GuardContext, Policy

    pol = Policy.load(policy)
    if text is None or text == "-":
        if sys.stdin.isatty():
            raise KogataError("no text to check", "pass TEXT, or pipe it in with '-'")
        text = sys.stdin.read()
    passages = list(passage or [])
    if passages_file is not None:
        passages += _read_passages(passages_file)
    schema = None
    if json_schema is not None:
        try:
            schema = json.loads(json_schema.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise KogataError(f"cannot read JSON schema {json_schema}: {exc}", "pass a JSON file") from None
    ctx = GuardContext(question=question, passages=passages, json_schema=schema)
    verdict = pol.check_output(text, ctx) if output else pol.check_input(text, ctx)
    if as_json:
        console.print_json(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        _print_verdict(text, verdict)
    if verdict.blocked or verdict.held:
        raise typer.Exit(1)


def _read_passages(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KogataError(f"cannot read passages file {path}: {exc.strerror}", "pass a text file, one passage per line") from None
    if raw.lstrip().startswith("["):
        try:
            return [str(p) for p in json.loads(raw)]
        except json.JSONDecodeError:
            pass
    return [line for line in raw.splitlines() if line.strip()]


_STYLE = {"block": "bold red", "hold": "bold magenta", "redact": "yellow", "flag": "cyan", "allow": "green"}


def _print_verdict(text: str, verdict) -> None:
    table = Table(title=f"{verdict.where} checks", title_justify="left")
    for col in ("check", "verdict", "score", "hits (type start–end: text)"):
        table.add_column(col)
    for r in verdict.results:
        action = r.action if r.fired else "pass"
        style = _STYLE.get(r.action, "") if r.fired else "green"
        hits = "\n".join(f"{h.type} {h.start}–{h.end}: {text[h.start:h.end][:40]!r}" for h in r.hits) or "-"
        table.add_row(r.check, f"[{style}]{action}[/]", "-" if r.score is None else f"{r.score:.3f}", hits)
    console.print(table)
    style = _STYLE.get(verdict.action, "")
    console.print(f"verdict: [{style}]{verdict.action}[/]", highlight=False)
    console.print(verdict.text, highlight=False, markup=False)
