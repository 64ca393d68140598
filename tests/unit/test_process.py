"""``kogata.core.process.pid_alive`` — the one liveness check the UI's jobs and the store's staging cleanup share."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from kogata.core.process import pid_alive


def test_no_pid_and_this_process():
    assert pid_alive(None) is False and pid_alive(0) is False
    assert pid_alive(os.getpid()) is True


def test_a_running_child_then_a_zombie_then_a_reaped_one():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(proc.pid) is True
    finally:
        proc.kill()
    deadline = time.monotonic() + 10
    while pid_alive(proc.pid) and time.monotonic() < deadline:  # killed, not yet reaped: a zombie is not running
        time.sleep(0.05)
    assert pid_alive(proc.pid) is False
    proc.wait()
    assert pid_alive(proc.pid) is False


def test_stale_staging_folders_of_dead_processes_are_removed(kogata_home):
    from kogata.artifacts.store import Store

    store = Store()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = store.tmp_dir / f"stage-{proc.pid}-deadbeef"
    mine = store.tmp_dir / f"stage-{os.getpid()}-cafebabe"
    dead.mkdir()
    mine.mkdir()
    store._clean_stale_staging()
    assert not dead.exists() and mine.exists()
