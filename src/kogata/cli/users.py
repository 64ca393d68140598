"""``kogata users``: the web UI's local users (``/ui``) — add, list, remove, change a role.

Passwords are read from a hidden prompt (asked twice) or, for scripts, from standard input with
``--password-stdin``; only their argon2id hash is stored.
"""

from __future__ import annotations

import sys
import time

import typer
from rich.table import Table

from kogata.cli.common import console
from kogata.core.errors import KogataError

app = typer.Typer(help="Users of the web UI (/ui): who may sign in, and with which role (viewer, reviewer, admin).",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="users")


def _users():
    from kogata.artifacts.store import Store
    from kogata.serve.ui.users import UserStore

    return UserStore(Store().engine)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise KogataError("--password-stdin: standard input held no password", "pipe the password in: echo \"$PW\" | kogata users add …")
        return password
    first = typer.prompt("password", hide_input=True)
    again = typer.prompt("password (again)", hide_input=True)
    if first != again:
        raise KogataError("the two passwords differ", "run the command again and type the same password twice")
    return first


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The sign-in name (letters, digits, . _ @ -)."),
    role: str = typer.Option("viewer", "--role", help="viewer (reads), reviewer (also decides review items) or admin (everything)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input (first line)."),
) -> None:
    """Add a user who may sign in to the web UI."""
    from kogata.serve.ui.users import check_name, check_role

    check_name(name)
    check_role(role)
    user = _users().add(name, _read_password(password_stdin), role)
    console.print(f"[green]added[/] {user.name} ({user.role})", highlight=False)


@app.command("list")
def list_cmd() -> None:
    """The web UI's users and their roles."""
    rows = _users().list()
    if not rows:
        console.print("[dim]no users yet: add one with `kogata users add NAME --role admin`")
        return
    tab = Table(title_justify="left")
    for col in ("name", "role", "created", "last sign-in"):
        tab.add_column(col)
    for r in rows:
        when = [time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-" for t in (r["created"], r["last_login"])]
        tab.add_row(r["name"], r["role"], *when)
    console.print(tab)


@app.command("remove")
def remove(name: str = typer.Argument(..., help="The user to remove (their sessions end at their next request).")) -> None:
    """Remove a user."""
    console.print(f"[green]removed[/] {_users().remove(name)}", highlight=False)


@app.command("set-role")
def set_role(name: str = typer.Argument(...), role: str = typer.Argument(..., help="viewer, reviewer or admin.")) -> None:
    """Change a user's role."""
    user = _users().set_role(name, role)
    console.print(f"[green]{user.name}[/] is now {user.role}", highlight=False)
