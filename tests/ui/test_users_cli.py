"""``kogata users``: add (password from standard input), list, set-role, remove; bad input is one line + exit 2."""

from __future__ import annotations

import io
import sys

from tests.cli_helpers import run_cli


def test_users_cli(kogata_home, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a sturdy password\n"))
    code, out, _ = run_cli(capsys, monkeypatch, "users", "add", "yuki", "--role", "reviewer", "--password-stdin")
    assert code == 0 and "yuki (reviewer)" in out
    code, out, _ = run_cli(capsys, monkeypatch, "users", "list")
    assert code == 0 and "yuki" in out and "reviewer" in out
    from kogata.artifacts.store import Store
    from kogata.serve.ui.users import UserStore

    users = UserStore(Store().engine)
    assert users.verify("yuki", "a sturdy password").role == "reviewer" and users.verify("yuki", "wrong") is None
    row = users.engine.connect().exec_driver_sql("SELECT password_hash FROM ui_users WHERE name='yuki'").scalar_one()
    assert row.startswith("$argon2id$") and "sturdy" not in row
    code, out, _ = run_cli(capsys, monkeypatch, "users", "set-role", "yuki", "admin")
    assert code == 0 and users.get("yuki").role == "admin"
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    code, _, err = run_cli(capsys, monkeypatch, "users", "add", "kai", "--password-stdin")
    assert code == 2 and "use at least 10 characters" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, monkeypatch, "users", "add", "kai", "--role", "boss", "--password-stdin")
    assert code == 2 and "role 'boss' is not known" in err
    code, out, _ = run_cli(capsys, monkeypatch, "users", "remove", "yuki")
    assert code == 0 and users.get("yuki") is None
    code, _, err = run_cli(capsys, monkeypatch, "users", "remove", "yuki")
    assert code == 2 and "no user named 'yuki'" in err
