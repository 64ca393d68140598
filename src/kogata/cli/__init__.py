"""The ``kogata`` command: a thin typer app; each command calls one library function."""

from __future__ import annotations

import sys

import typer

import kogata.core.settings as settings
from kogata import __version__
from kogata.cli.common import console, err_console
from kogata.cli.models import app as models_app
from kogata.core.errors import KogataError

app = typer.Typer(
    name="kogata",
    help="kogata (小型): make language models small and cheap to run, and prove they still do the job.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_app, name="models")


def _register_optional() -> None:
    """Commands living in their own modules; each registers itself on ``app``."""
    import importlib

    for mod in ("eval", "compress", "optimize", "data", "guard", "serve", "audit", "review", "monitor", "improve", "search", "users"):
        try:
            importlib.import_module(f"{__name__}.{mod}").register(app)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":
                raise


def _version(value: bool) -> None:
    if value:
        console.print(f"kogata {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    threads: int = typer.Option(None, "--threads", "-t", help="CPU threads for every runtime (default: all cores).", envvar="KOGATA_THREADS"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    settings.set_threads(threads)


_register_optional()


def main() -> None:
    try:
        rc = app(standalone_mode=False)
        if rc:
            sys.exit(rc)
    except KogataError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # usage errors (unknown command, bad option): click's message, exit 2, no traceback
        import click

        # typer >= 0.22 raises its vendored click's exceptions, which derive from typer.TyperException, not click's
        usage = tuple(c for c in (click.ClickException, getattr(typer, "TyperException", None)) if c is not None)
        if isinstance(exc, usage) and hasattr(exc, "show"):
            exc.show()
            sys.exit(getattr(exc, "exit_code", 2))
        raise
