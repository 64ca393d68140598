"""Real ``kogata serve`` processes on 127.0.0.1 (a free port each) over the tiny GGUFs of ``tests/conftest.py``.

Every wait is bounded; every server is stopped (SIGTERM, then SIGKILL) when its fixture ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m kogata serve ARGS`` in its own process group, with its log in a file."""

    def __init__(self, home: Path, args: list[str], *, port: int | None = None, log_name: str = "server"):
        self.home = home
        self.port = port or free_port()
        self.args = list(args) + ["--port", str(self.port), "--threads", "1"]
        self.log_path = home / f"{log_name}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"KOGATA_HOME": str(self.home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"),
                    "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
        env.pop("KOGATA_DB_URL", None)
        return env

    def start(self, *, wait: bool = True) -> ServerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "kogata", "serve", *self.args], cwd=ROOT, env=self.env(),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not healthy after {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def serve_home(tmp_path_factory, tiny_llama_gguf, tiny_gemma3_gguf) -> Path:
    """A store holding two tiny GGUF artifacts: ``tiny`` (llama) and ``tiny-b`` (gemma3)."""
    from kogata.artifacts.importer import import_path
    from kogata.artifacts.store import Store

    home = tmp_path_factory.mktemp("serve-home")
    store = Store(home)
    import_path(store, str(tiny_llama_gguf), name="tiny", log=lambda m: None)
    import_path(store, str(tiny_gemma3_gguf), name="tiny-b", log=lambda m: None)
    return home


@pytest.fixture(scope="session")
def store(serve_home):
    from kogata.artifacts.store import Store

    return Store(serve_home)


@pytest.fixture(scope="module")
def server(serve_home):
    """The open server (no keys needed on loopback): ``tiny`` as ``prod`` (and by its name)."""
    srv = ServerProcess(serve_home, ["tiny", "--alias", "prod", "--parallel", "4", "--ctx", "256"], log_name="open").start()
    yield srv
    srv.stop()
