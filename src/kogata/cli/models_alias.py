"""``kogata models alias``: names (production, candidate, previous …) for artifacts, with their history."""

from __future__ import annotations

import getpass
import json
from datetime import datetime

import typer
from rich.table import Table

from kogata.cli.common import console

app = typer.Typer(help="Model aliases: set, show, history, promote, rollback (a running `kogata serve` follows a served `@alias`, or at once with --server).",
                  no_args_is_help=True)


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _push(server: str | None, key: str | None, alias: str, artifact_id: str, reason: str | None) -> None:
    """Hot-swap the alias on a running server (POST /admin/models/{alias}; in-flight requests finish first)."""
    if not server:
        return
    import httpx

    from kogata.core.errors import KogataError

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        r = httpx.post(server.rstrip("/") + f"/admin/models/{alias}", json={"artifact": artifact_id, "reason": reason},
                       headers=headers, timeout=600)
    except httpx.HTTPError as exc:
        raise KogataError(f"--server {server} did not answer ({exc})", "check the URL, or leave --server out") from None
    if r.status_code >= 400:
        try:
            msg = r.json()["error"]["message"]
        except Exception:  # noqa: BLE001
            msg = r.text[:200]
        raise KogataError(f"the server refused the swap: {msg}", "the alias is set in the store; retry the swap or restart the server")
    console.print(f"[green]›[/] {server} now serves {alias} = {artifact_id[:12]}", highlight=False)


@app.command("set")
def set_cmd(
    name: str = typer.Argument(..., help="Alias, e.g. production or candidate."),
    artifact: str = typer.Argument(..., help="Artifact name or id (prefix)."),
    reason: str = typer.Option(None, "--reason", help="Why (kept in the history)."),
    server: str = typer.Option(None, "--server", help="Also swap it on this running server (http://127.0.0.1:8000)."),
    key: str = typer.Option(None, "--key", envvar="KOGATA_API_KEY", help="Admin API key for --server."),
) -> None:
    """Point NAME at ARTIFACT (a history row records who, when and why)."""
    from kogata.artifacts.store import Store
    from kogata.ops.aliases import record_alias

    store = Store()
    art = store.get(artifact)
    changed = record_alias(store.engine, name, art.id, by=getpass.getuser(), reason=reason)
    console.print(f"{name} → {art.name} ({art.id[:12]})" + ("" if changed else "  [dim](unchanged)"), highlight=False)
    _push(server, key, name, art.id, reason)


@app.command("show")
def show_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every alias and the artifact it names now."""
    from kogata.artifacts.store import Store
    from kogata.ops.aliases import current_aliases

    store = Store()
    rows = current_aliases(store.engine)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    if not rows:
        console.print("[dim]no aliases yet: `kogata models alias set production ARTIFACT`")
        return
    tab = Table(title_justify="left")
    for col in ("alias", "artifact", "since", "by", "reason"):
        tab.add_column(col)
    for name, r in rows.items():
        tab.add_row(name, r["artifact_id"][:12], _when(r["updated"]), r["by"] or "-", r["reason"] or "-")
    console.print(tab)


@app.command("history")
def history_cmd(name: str = typer.Argument(None, help="Only this alias."),
                as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every change of the aliases, oldest first."""
    from kogata.artifacts.store import Store
    from kogata.ops.aliases import alias_history

    rows = alias_history(Store().engine, name)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    tab = Table(title_justify="left")
    for col in ("when", "alias", "from", "to", "by", "reason"):
        tab.add_column(col)
    for r in rows:
        tab.add_row(_when(r["at"]), r["name"], (r["previous_id"] or "-")[:12], r["artifact_id"][:12], r["by"] or "-", r["reason"] or "-")
    console.print(tab)


@app.command("rollback")
def rollback_cmd(
    name: str = typer.Argument(..., help="Alias to roll back to the artifact it named before."),
    reason: str = typer.Option(None, "--reason", help="Why (kept in the history)."),
    server: str = typer.Option(None, "--server", help="Also swap it on this running server."),
    key: str = typer.Option(None, "--key", envvar="KOGATA_API_KEY", help="Admin API key for --server."),
) -> None:
    """Undo the alias's last change (one command)."""
    from kogata.artifacts.store import Store
    from kogata.ops.aliases import rollback_alias

    store = Store()
    previous = rollback_alias(store.engine, name, by=getpass.getuser(), reason=reason)
    console.print(f"{name} → {previous[:12]} (rolled back)", highlight=False)
    _push(server, key, name, previous, reason or "rollback")


@app.command("promote")
def promote_cmd(
    source: str = typer.Argument("candidate", help="Alias to promote (default: candidate)."),
    to: str = typer.Option("production", "--to", help="Alias that gets its artifact; the old one becomes `previous`."),
    min_requests: int = typer.Option(50, "--min-requests", help="Shadow + canary requests needed as evidence."),
    force: bool = typer.Option(False, "--force", help="Promote although a gate fails or there is no shadow/canary evidence."),
    reason: str = typer.Option(None, "--reason", help="Why (kept in the history)."),
    server: str = typer.Option(None, "--server", help="Also swap it on this running server."),
    key: str = typer.Option(None, "--key", envvar="KOGATA_API_KEY", help="Admin API key for --server."),
) -> None:
    """Make SOURCE's artifact the production model once its shadow/canary gates hold (rollback: one command)."""
    from kogata.artifacts.store import Store
    from kogata.ops.aliases import alias_target, promote_alias
    from kogata.ops.traffic import PromotionGates, promotion_gates, split_summary

    store = Store()
    art_id = alias_target(store.engine, source)
    gates = promotion_gates(split_summary(store.engine, art_id), PromotionGates(min_requests=min_requests))
    tab = Table(title=f"gates for {source} = {art_id[:12]}", title_justify="left")
    for col in ("gate", "value", "limit", "result"):
        tab.add_column(col)
    for g in gates:
        tab.add_row(g["gate"], str(g["value"]), g["limit"], "[green]pass" if g["pass"] else "[red]fail")
    console.print(tab)
    failed = [g["gate"] for g in gates if not g["pass"]]
    if failed and not force:
        console.print(f"[red]not promoted:[/] {', '.join(failed)}. Run a shadow (`shadow: {source}` in serve.yaml) or a canary "
                      f"to collect evidence, or pass --force.", highlight=False)
        raise typer.Exit(1)
    new, old = promote_alias(store.engine, source, to, by=getpass.getuser(),
                             reason=reason or ("promoted with --force" if failed else f"promoted from {source}: gates passed"))
    console.print(f"{to} → {new[:12]}" + (f"  (previous = {old[:12]}; undo: kogata models alias rollback {to})" if old else ""), highlight=False)
    _push(server, key, to, new, reason or f"promoted from {source}")
