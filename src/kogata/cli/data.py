"""``kogata data prepare``: curate documents into a versioned training dataset (see docs/data-curation.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from kogata.cli.common import console, err_console
from kogata.core.errors import KogataError

app = typer.Typer(help="Prepare your documents as training data: normalise, scrub PII, filter, deduplicate, split.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data")


@app.command("prepare")
def prepare_cmd(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT...", help="Text, Markdown, JSONL, JSON or CSV files, or folders of them (read recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder to write (must not exist, or pass --overwrite)."),
    lang: str = typer.Option(None, "--lang", help="Keep only these languages, comma-separated (ja,en,zh,ko,latin). Default: keep all."),
    near_dup_threshold: float = typer.Option(0.8, "--near-dup-threshold", help="MinHash Jaccard similarity at which a record counts as a near duplicate (1 = off)."),
    min_chars: int = typer.Option(20, "--min-chars", help="Drop records shorter than this many characters."),
    max_chars: int = typer.Option(20000, "--max-chars", help="Drop records longer than this many characters."),
    max_repetition: float = typer.Option(0.3, "--max-repetition", help="Drop records whose repeated-line / repeated-10-gram share is above this."),
    max_symbol_ratio: float = typer.Option(0.25, "--max-symbol-ratio", help="Drop records whose share of symbol characters is above this."),
    no_pii: bool = typer.Option(False, "--no-pii", help="Do not scrub PII (e-mail, phone, postal code, card, My Number, secret URLs)."),
    keep_plain_urls: bool = typer.Option(True, "--keep-plain-urls/--scrub-all-urls", help="Replace only URLs carrying tokens/keys with [URL] (default), or every URL."),
    target_size: int = typer.Option(None, "--target-size", help="Keep at most N records, chosen for diversity (greedy farthest-point on MinHash)."),
    fmt: str = typer.Option("auto", "--format", help="auto: QA records keep their fields, others are text; qa: every record must be QA; text: read everything as text."),
    unit: str = typer.Option("paragraph", "--unit", help="Plain-text files: one record per paragraph (default) or per file."),
    seed: int = typer.Option(0, "--seed", help="Seed for MinHash, selection and splits: same seed and input, same dataset."),
    split: str = typer.Option(None, "--split", help="Also write NAME.jsonl and train.jsonl, e.g. heldout=0.1."),
    exclude: list[Path] = typer.Option(None, "--exclude", help="Held-out items (a suite's test JSONL): drop records whose question/prompt/text repeats one of their fields. Repeatable."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset folder."),
) -> None:
    """Curate documents into DATASET_DIR: data.jsonl, removed.jsonl, manifest.json, summary.html."""
    from kogata.data.prepare import PrepareConfig, parse_split, prepare
    from kogata.data.summary import render_terminal

    langs = tuple(x.strip() for x in lang.split(",") if x.strip()) if lang else None
    if lang is not None and not langs:
        raise KogataError("--lang is empty", "give languages like --lang ja,en")
    cfg = PrepareConfig(
        langs=langs, near_dup_threshold=near_dup_threshold, min_chars=min_chars, max_chars=max_chars,
        max_repetition=max_repetition, max_symbol_ratio=max_symbol_ratio, pii=not no_pii,
        urls="secrets" if keep_plain_urls else "all", target_size=target_size, format=fmt, unit=unit,
        seed=seed, split=parse_split(split), exclude=tuple(str(p) for p in exclude) if exclude else None,
    )
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        manifest = prepare(list(inputs), out, cfg, overwrite=overwrite, progress=progress)
    skipped = manifest["files"]["binary_skipped"]
    if skipped:
        err_console.print(f"[yellow]warning:[/] skipped {len(skipped)} binary file(s): {', '.join(skipped)}", highlight=False)
    console.print(render_terminal(manifest, str(out)))
    console.print(f"wrote {out}/data.jsonl ({manifest['records']} records), manifest.json, removed.jsonl, summary.html", highlight=False)
