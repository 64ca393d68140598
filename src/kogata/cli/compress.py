"""``kogata compress``: apply one method or a recipe of steps; every intermediate becomes an artifact."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from kogata.artifacts.store import Store
from kogata.cli.common import console, err_console, human_bytes, human_params, log
from kogata.core.errors import KogataError


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)


def _methods_table() -> Table:
    from kogata.methods.registry import list_methods

    tab = Table(title="Methods", title_justify="left")
    for col in ("method", "input", "what it does", "parameters (default)"):
        tab.add_column(col)
    for spec in list_methods():
        params = ", ".join(_param(f) for f in dataclasses.fields(spec.config_cls))
        tab.add_row(spec.name, "/".join(spec.input_formats), spec.summary, params or "-")
    return tab


def _param(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"{f.name}={f.default!r}"
    if f.default_factory is not dataclasses.MISSING:
        return f"{f.name}={f.default_factory()!r}"
    return f"{f.name} (required)"


def compress(
    artifact: str = typer.Argument(None, help="Artifact name or id to start from (see `kogata models list`)."),
    method: str = typer.Option(None, "--method", "-m", help="One method to apply (see --list)."),
    sets: list[str] = typer.Option([], "--set", "-s", help="Method parameter as key=value; repeatable."),
    recipe: Path = typer.Option(None, "--recipe", "-r", help="A recipe YAML: a list of method steps."),
    data: list[Path] = typer.Option([], "--data", "-d", help="Your texts (plain text / JSONL / folder) for methods that need data; repeatable."),
    out: str = typer.Option(None, "--out", "-o", help="Name of the final artifact (default: derived from the input and the method)."),
    seed: int = typer.Option(0, "--seed", help="Random seed recorded in the lineage."),
    no_reuse: bool = typer.Option(False, "--no-reuse", help="Recompute even when the same step already exists in the store."),
    list_: bool = typer.Option(False, "--list", help="List the methods and their parameters, then exit."),
) -> None:
    """Make a model smaller: `kogata compress ART --method quantize --set type=Q4_K_M` or `--recipe steps.yaml`."""
    from kogata.methods.recipe import load_recipe, run_steps
    from kogata.methods.registry import MethodContext, parse_sets

    if list_:
        console.print(_methods_table())
        return
    if not artifact:
        raise KogataError("no artifact given", "usage: kogata compress ARTIFACT --method NAME | --recipe FILE (see --list)")
    if bool(method) == bool(recipe):
        raise KogataError("give exactly one of --method or --recipe", "e.g. --method quantize --set type=Q4_K_M")
    for d in data:
        if not d.exists():
            raise KogataError(f"--data {d} does not exist", "give a text/JSONL file or a folder of them")
    if recipe:
        steps = load_recipe(recipe)["steps"]
    else:
        steps = [{"method": method, "params": parse_sets(sets)}]
        from kogata.methods.recipe import validate_steps

        validate_steps(steps, where="--method")
    store = Store()
    start = store.get(artifact)
    started = time.time()
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        ctx = MethodContext(store=store, data=list(data), seed=seed, log=log, progress=progress, allow_reuse=not no_reuse)
        done = run_steps(start, steps, ctx, final_name=out)
    tab = Table(title=f"compress: {len(done)} step(s) in {time.time() - started:.1f}s", title_justify="left")
    for col in ("step", "artifact", "id", "format", "params", "size", "vs start"):
        tab.add_column(col)
    for d in done:
        art = d.artifact
        ratio = f"{art.bytes / start.bytes:.2f}× size" if start.bytes else "-"
        label = f"{d.step['method']} (added)" if d.added_for else d.step["method"]
        tab.add_row(label, art.name, art.id, art.format, human_params(art.params), human_bytes(art.bytes), ratio)
    console.print(tab)
    for d in done:
        if d.added_for:
            console.print(f"{d.added_for} needed a {d.artifact.format} artifact: ran {d.step['method']} first "
                          f"({', '.join(f'{k}={v}' for k, v in d.step['params'].items())}) → {d.artifact.name}; "
                          "both steps are in the lineage")
