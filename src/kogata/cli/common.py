"""Console objects and small helpers shared by CLI modules."""

from __future__ import annotations

import os
import sys

from rich.console import Console

# Pipes and CI logs get 120 columns instead of rich's 80 so tables stay readable
_width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
console = Console(width=_width)
err_console = Console(stderr=True, width=_width)


def human_bytes(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def human_params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.1f}M" if n < 1e9 else f"{n / 1e9:.2f}B"


def log(msg: str) -> None:
    err_console.print(f"[dim]›[/] {msg}", highlight=False)
