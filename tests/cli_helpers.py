"""Run the ``kogata`` CLI in-process and capture its exit code and output."""

from __future__ import annotations

import sys


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    from kogata.cli import main

    monkeypatch.setattr(sys, "argv", ["kogata", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err
