"""Long jobs the UI starts: ``kogata optimize`` runs and model pulls, each a subprocess in its own process group.

A job is a folder ``$KOGATA_HOME/ui/jobs/<id>/`` holding ``job.json`` (what was started, the pid), ``log.txt``
(the command's output) and, once it ends, ``exit.json`` (its exit code; written by the small wrapper this module
runs as ``python -m kogata.serve.ui.jobs``, which also forwards a cancel to the command). Everything the pages show
is read back from these files and from the run's rows in the store database, so a reload, a second tab or a
restarted server sees the same progress. A job whose process is gone without an ``exit.json`` was interrupted
(machine or server restart, kill -9): *resume* starts the same command again, and ``kogata optimize`` continues
where its stored state stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from kogata.core.errors import KogataError
from kogata.core.io import atomic_write_json
from kogata.core.process import pid_alive

JOB_ID = re.compile(r"^[a-f0-9]{12}$")
KINDS = ("optimize", "pull")
LOG_TAIL_BYTES = 16_384


class Jobs:
    def __init__(self, root: Path, home: Path):
        self.root = Path(root)
        self.home = Path(home)
        self._procs: dict[str, subprocess.Popen] = {}

    # ---- files -------------------------------------------------------------------------------------
    def folder(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id or ""):
            raise KogataError(f"job id {job_id!r} is not valid", "open the job from the list of runs")
        return self.root / job_id

    def new_folder(self) -> tuple[str, Path]:
        job_id = uuid.uuid4().hex[:12]
        folder = self.root / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def get(self, job_id: str) -> dict[str, Any]:
        folder = self.folder(job_id)
        path = folder / "job.json"
        if not path.is_file():
            raise KogataError(f"no job {job_id}", "open the job from the list of runs")
        job = json.loads(path.read_text(encoding="utf-8"))
        exit_path = folder / "exit.json"
        self._reap(job_id)
        if exit_path.is_file():
            ended = json.loads(exit_path.read_text(encoding="utf-8"))
            job["returncode"] = ended.get("returncode")
            job["ended"] = ended.get("ended")
            job["status"] = "cancelled" if ended.get("cancelled") else ("done" if ended.get("returncode") == 0 else "failed")
        elif pid_alive(job.get("pid")):
            job["status"] = "running"
        else:
            job["status"] = "interrupted"
        return job

    def list(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        jobs = []
        for p in self.root.iterdir():
            if JOB_ID.match(p.name) and (p / "job.json").is_file():
                try:
                    job = self.get(p.name)
                except (KogataError, ValueError, OSError):
                    continue
                if kind is None or job.get("kind") == kind:
                    jobs.append(job)
        return sorted(jobs, key=lambda j: j.get("created", 0), reverse=True)

    def log_tail(self, job_id: str, lines: int = 12) -> list[str]:
        path = self.folder(job_id) / "log.txt"
        if not path.is_file():
            return []
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "\n")
        return [ln for ln in text.split("\n") if ln.strip()][-lines:]

    # ---- processes ---------------------------------------------------------------------------------
    def start(self, kind: str, title: str, args: list[str], *, folder: Path | None = None, job_id: str | None = None,
              meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start ``kogata ARGS`` as a job (a new one, or again in an existing job's folder: resume)."""
        if kind not in KINDS:
            raise KogataError(f"unknown job kind {kind!r}", f"use one of: {', '.join(KINDS)}")
        if job_id is None or folder is None:
            job_id, folder = self.new_folder()
        (folder / "exit.json").unlink(missing_ok=True)
        env = dict(os.environ)
        env.update({"KOGATA_HOME": str(self.home), "PYTHONUNBUFFERED": "1", "COLUMNS": "120"})
        src = Path(__file__).resolve().parents[3]
        if (src / "kogata").is_dir():
            env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(folder / "log.txt", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "kogata.serve.ui.jobs", str(folder), "--", *args], cwd=folder, env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs[job_id] = proc
        previous = {}
        if (folder / "job.json").is_file():
            previous = json.loads((folder / "job.json").read_text(encoding="utf-8"))
        job = {**previous, "id": job_id, "kind": kind, "title": title, "args": args, "pid": proc.pid,
               "created": previous.get("created", time.time()), "started": time.time(), "meta": {**previous.get("meta", {}), **(meta or {})},
               "starts": int(previous.get("starts", 0)) + 1}
        atomic_write_json(job, folder / "job.json")
        return self.get(job_id)

    def _reap(self, job_id: str) -> None:
        proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is not None:
            self._procs.pop(job_id, None)

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        if job["status"] != "running":
            raise KogataError(f"job {job_id} is {job['status']}, not running", "only a running job can be cancelled")
        try:
            os.killpg(job["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (self.folder(job_id) / "exit.json").is_file():
            time.sleep(0.05)
        return self.get(job_id)

    def resume(self, job_id: str) -> dict[str, Any]:
        job = self.get(job_id)
        if job["status"] == "running":
            raise KogataError(f"job {job_id} is still running", "wait for it, or cancel it first")
        return self.start(job["kind"], job["title"], job["args"], folder=self.folder(job_id), job_id=job_id)


def _wrapper(argv: list[str]) -> int:
    """``python -m kogata.serve.ui.jobs FOLDER -- ARGS``: run ``kogata ARGS``, forward SIGTERM, write ``exit.json``."""
    folder = Path(argv[0])
    args = argv[argv.index("--") + 1:]
    cancelled = False
    child = subprocess.Popen([sys.executable, "-m", "kogata", *args], stdin=subprocess.DEVNULL)

    def on_term(signum: int, frame: Any) -> None:
        nonlocal cancelled
        cancelled = True
        try:
            child.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    rc = child.wait()
    atomic_write_json({"returncode": rc, "cancelled": cancelled, "ended": time.time()}, folder / "exit.json")
    return 0


if __name__ == "__main__":
    sys.exit(_wrapper(sys.argv[1:]))
