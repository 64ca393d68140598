"""``kogata serve ARTIFACT`` (the OpenAI-compatible server) and ``kogata serve keys create|list|revoke|usage``."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from kogata.cli.common import console, err_console


class _ServeGroup(TyperGroup):
    """``kogata serve keys …`` is a subcommand; anything else (``kogata serve ART --port 8000``,
    ``kogata serve --from OUT``) is the server itself."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] in self.commands:
            return super().resolve_command(ctx, args)
        return "run", self.commands["run"], args

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        run = self.commands["run"]
        with click.Context(run, info_name=ctx.info_name, parent=ctx.parent) as sub:
            run.format_help(sub, formatter)
        formatter.write_paragraph()
        with formatter.section("Key management"):
            formatter.write_dl([("keys create NAME", "new API key (shown once; only its hash is stored)"),
                                ("keys list", "every key with its limits"),
                                ("keys revoke NAME", "stop a key from working"),
                                ("keys usage [NAME]", "requests and tokens in/out per key")])


serve_app = typer.Typer(cls=_ServeGroup, no_args_is_help=True,
                        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                        help="Serve an artifact behind an OpenAI-compatible API (and manage API keys).")
keys_app = typer.Typer(help="API keys for `kogata serve`: only sha256 hashes are stored.", no_args_is_help=True)
serve_app.add_typer(keys_app, name="keys")


def register(app: typer.Typer) -> None:
    app.add_typer(serve_app, name="serve")


@serve_app.command("run", hidden=True)
def serve(
    artifact: str = typer.Argument(None, help="Artifact name or id to serve (or use --from / --config)."),
    alias: list[str] = typer.Option([], "--alias", "-a", help="Name clients use for it (repeatable; default: the artifact's name)."),
    from_out: Path = typer.Option(None, "--from", help="Serve the recommendation of a `kogata optimize` output folder."),
    host: str = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1; anything else requires API keys)."),
    port: int = typer.Option(None, "--port", "-p", help="Port (default 8000)."),
    threads: int = typer.Option(None, "--threads", "-t", help="CPU threads for the engine (default: all cores)."),
    parallel: int = typer.Option(None, "--parallel", help="Sequences decoded together (default 4)."),
    ctx: int = typer.Option(None, "--ctx", help="Context per sequence in tokens (default 4096, at most the model's)."),
    flash_attn: bool = typer.Option(None, "--flash-attn/--no-flash-attn", help="llama.cpp flash attention in the GGUF "
                                    "engine (default off: the build `kogata eval` scores; on is faster with many clients)."),
    max_waiting: int = typer.Option(None, "--max-waiting", help="Requests queued beyond --parallel before 429s (default 64)."),
    timeout: float = typer.Option(None, "--timeout", help="Per-request timeout in seconds (default 600)."),
    require_keys: bool = typer.Option(None, "--require-keys/--no-require-keys", help="Require API keys on loopback too."),
    ray: bool = typer.Option(None, "--ray", help="Run the engine as Ray Serve replicas behind the same gateway."),
    replicas: int = typer.Option(None, "--replicas", help="Ray Serve replicas (with --ray; default 1)."),
    policy: Path = typer.Option(None, "--policy", help="Guard policy YAML: input/output checks and their actions "
                                "(see examples/policy-support-desk.yaml; try it with `kogata guard check`)."),
    audit: bool = typer.Option(None, "--audit/--no-audit", help="Write one hash-chained audit row per exchange and feed "
                               "the review queue (default on; `kogata audit verify` checks it)."),
    config: Path = typer.Option(None, "--config", "-c", help="serve.yaml: the same keys as these flags, plus `models:` for several."),
) -> None:
    """Serve ARTIFACT on an OpenAI-compatible API: /v1/chat/completions, /v1/completions, /v1/embeddings,
    /v1/models, /v1/feedback, /v1/held/{id}, /health, /ready, /metrics, /admin/models/{alias}.

    With --policy, every request and answer goes through the guard checks (redact, block with the safe reply,
    flag for review, hold until a reviewer decides); every exchange is written to the audit log."""
    from kogata.serve.config import build_config
    from kogata.serve.server import run

    cfg = build_config(
        artifacts=[artifact] if artifact else None, aliases=alias or None, from_optimize=from_out, config_file=config,
        overrides={"host": host, "port": port, "threads": threads, "parallel": parallel, "ctx": ctx, "flash_attn": flash_attn,
                   "max_waiting": max_waiting, "request_timeout_s": timeout, "require_keys": require_keys,
                   "ray": ray, "replicas": replicas, "policy": str(policy) if policy else None, "audit": audit},
    )
    names = ", ".join(f"{m.artifact}" + (f" as {'/'.join(m.aliases)}" if m.aliases else "") for m in cfg.models)

    def announce() -> None:
        err_console.print(f"[dim]›[/] serving {names} on http://{cfg.host}:{cfg.port}  (Ctrl-C / SIGTERM stops; "
                          "/health is 503 until loaded)", highlight=False)

    rc = run(cfg, announce=announce)
    if rc:
        raise typer.Exit(rc)


def _store_keys():
    from kogata.artifacts.store import Store
    from kogata.serve.gateway.auth import KeyStore

    return KeyStore(Store().engine)


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "-"


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="A name for the key (shown in metrics and usage)."),
    rpm: int = typer.Option(None, "--rpm", help="Requests per minute (default: no limit)."),
    tpm: int = typer.Option(None, "--tpm", help="Tokens in + out per minute (default: no limit)."),
    model: list[str] = typer.Option([], "--model", "-m", help="Allowed model alias / artifact (repeatable; default: all)."),
    admin: bool = typer.Option(False, "--admin", help="May call /admin (hot swap)."),
) -> None:
    """Create a key and print it once (only its sha256 is stored)."""
    who, token = _store_keys().create(name, rpm=rpm, tpm=tpm, models=model or None, admin=admin)
    err_console.print(f"[green]created key[/] {who.name} ({who.key_id}); store it now, it is not shown again:", highlight=False)
    console.print(token, highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list() -> None:
    """Every key with its limits (revoked ones dimmed)."""
    rows = _store_keys().list()
    tab = Table(title="API keys", title_justify="left")
    for col in ("name", "id", "created", "revoked", "rpm", "tpm", "models", "admin"):
        tab.add_column(col)
    for r in rows:
        style = "dim" if r["revoked"] else None
        tab.add_row(r["name"], r["id"], _when(r["created"]), _when(r["revoked"]), str(r["rpm"] or "-"), str(r["tpm"] or "-"),
                    ", ".join(r["allowed_models"]) if r["allowed_models"] else "all", "yes" if r["admin"] else "", style=style)
    console.print(tab if rows else "[dim]No keys yet: `kogata serve keys create NAME`.")


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="Key name or id.")) -> None:
    """Revoke a key (a running server stops accepting it within a few seconds)."""
    done = _store_keys().revoke(name)
    console.print(f"[green]revoked[/] {done}")


@keys_app.command("usage")
def keys_usage(
    name: str = typer.Argument(None, help="One key (default: all)."),
    minutes: int = typer.Option(None, "--minutes", help="Only the last N minutes (default: all time)."),
) -> None:
    """Requests and tokens in/out per key (flushed by the server every few seconds)."""
    since = int(time.time() // 60) - minutes + 1 if minutes else None
    rows = _store_keys().usage(name, since_minute=since)
    tab = Table(title="API key usage" + (f" (last {minutes} min)" if minutes else ""), title_justify="left")
    for col in ("name", "requests", "tokens in", "tokens out", "last active"):
        tab.add_column(col, justify="right" if col.startswith(("req", "tok")) else "left")
    for r in rows:
        tab.add_row(r["name"], str(r["requests"]), str(r["tokens_in"]), str(r["tokens_out"]),
                    _when(r["last_minute"] * 60 if r["last_minute"] is not None else None))
    console.print(tab)
