"""``kogata improve``: retrain lightly on reviewed corrections and prove the result beats production before it
gets the ``candidate`` alias (:mod:`kogata.ops.improve`)."""

from __future__ import annotations

from pathlib import Path

import typer

from kogata.cli.common import console, err_console
from kogata.core.errors import KogataError


def register(app: typer.Typer) -> None:
    app.command("improve")(improve_cmd)


def improve_cmd(
    corrections: Path = typer.Argument(..., metavar="CORRECTIONS", help="Folder written by `kogata review export --out DIR`."),
    suite: str = typer.Option(..., "--suite", "-s", help="Suite whose KPIs the candidate must pass (built-in name or suite.yaml)."),
    out: Path = typer.Option(..., "--out", "-o", help="Work and result folder; rerun the same command to resume a stopped run."),
    production: str = typer.Option("production", "--production", help="The model to improve: an alias (default: production) or an artifact."),
    data: list[Path] = typer.Option(None, "--data", help="Original training data to train on with the corrections (repeatable)."),
    min_corrections: int = typer.Option(50, "--min-corrections", help="Refuse with fewer approved corrections for this model."),
    heldout: float = typer.Option(0.2, "--heldout", help="Share of the corrections held out to score candidate vs production."),
    lora_set: list[str] = typer.Option(None, "--lora-set", help="LoRA parameter key=value (e.g. steps=60, rank=8); repeatable."),
    runtime: str = typer.Option(None, "--runtime", help="Runtime for the comparison (default: llamacpp for GGUF, torch for hf)."),
    limit: int = typer.Option(None, "--limit", help="At most N items per suite task (quick runs)."),
    require: str = typer.Option("significant", "--require", help="significant: the gain's 95% interval must exclude zero; better: the estimate > 0; none."),
    alias: str = typer.Option("candidate", "--alias", help="Alias the candidate gets when every gate passes."),
    language: str = typer.Option("en", "--lang", help="Report language: en or ja."),
) -> None:
    """Corrections → data prepare → LoRA → merge → production's quantization → eval vs production → gates → alias.

    Example:
      kogata review export --out corrections/
      kogata improve corrections/ --suite support-desk-ja --data my-data/train.jsonl --out improve-1
      kogata models alias promote candidate
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    import kogata.core.settings as settings
    from kogata.artifacts.store import Store
    from kogata.methods.registry import parse_sets
    from kogata.ops.improve import ImproveConfig, improve
    from kogata.report import write_reports
    from kogata.report.improve import write_improve_report

    if language not in ("en", "ja"):
        raise KogataError(f"--lang {language!r} is not en or ja", "use --lang en or --lang ja")
    cfg = ImproveConfig(corrections=corrections, suite=suite, out=out, production=production, data=list(data or []),
                        min_corrections=min_corrections, heldout_fraction=heldout, lora=parse_sets(lora_set or []),
                        runtime=runtime, limit=limit, threads=settings.get_threads(), alias=alias, require=require)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        doc = improve(cfg, Store(), log=lambda m: err_console.print(f"› {m}", highlight=False), progress=progress,
                      write_reports=lambda res, folder: write_reports(res, folder))
    report = write_improve_report(doc, Path(out) / f"report.{language}.html", language)
    d = doc["decision"]
    held = d.get("corrections") or {}
    if held:
        console.print(f"held-out corrections F1: production {held['baseline']:.3f} → candidate {held['value']:.3f} "
                      f"({held['improvement']:+.3f}, 95% CI [{held['ci_low']:+.3f}, {held['ci_high']:+.3f}], n={held['n']})", highlight=False)
    for t in d.get("tasks") or []:
        console.print(f"  {t['task']}.{t['metric']}: {t['baseline']:.3f} → {t['value']:.3f} ({t['verdict']})", highlight=False)
    if d["passed"]:
        console.print(f"[green]PASS[/] {doc['candidate']['name']} is now alias {d['alias']!r}; "
                      f"promote it with: kogata models alias promote {d['alias']}", highlight=False)
    else:
        console.print("[red]NOT PROMOTED[/] " + "; ".join(d["reasons"]), highlight=False)
    console.print(f"report: {report}   results: {Path(out) / 'improve.json'}", highlight=False)
    if not d["passed"]:
        raise typer.Exit(1)
