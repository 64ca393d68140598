"""Processes: whether one is still running (the UI's jobs, the store's stale staging folders)."""

from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` is running: False for no pid (None, 0), a process that is gone or a zombie (a child
    not yet reaped); True for this process and for one we may not signal (another user's)."""
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child, not yet reaped) is not running
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:  # no /proc (macOS): kill(pid, 0) succeeded, so it runs
        return True
