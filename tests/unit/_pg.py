"""A throw-away PostgreSQL server with pgvector for tests and benchmarks (real server, never a mock).

The binaries come from the ``pgserver`` wheel (PostgreSQL 16 + pgvector; Debian 12 has no pgvector package), or
from Debian's ``postgresql`` package when its share folder has pgvector. The cluster lives in a temporary folder,
listens on 127.0.0.1 on a free port, and runs as the ``postgres`` user when we are root (the server refuses
root). ``start_server()`` yields a :class:`PgServer`; ``server.new_database()`` gives a fresh database's URL.
``start_server(pgvector=False)`` takes any PostgreSQL (the store's migrations need no pgvector): one with pgvector
when there is one, else the first ``initdb`` on ``$PATH`` or Debian's newest.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """No server can be started here (the reason is the message): tests skip with it."""


class ServerFailed(ServerUnavailable):
    """The binaries are here but the server did not initialise or start (a test may fail on it rather than skip)."""


def pgvector_binaries() -> Path | None:
    """A PostgreSQL ``bin`` folder whose installation has the pgvector extension."""
    candidates = []
    spec = importlib.util.find_spec("pgserver")  # its folder only: importing pgserver starts lock files and warnings
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bin_dir in candidates:
        if not (bin_dir / "postgres").is_file():
            continue
        share = subprocess.run([str(bin_dir / "pg_config"), "--sharedir"], capture_output=True, text=True).stdout.strip() \
            if (bin_dir / "pg_config").is_file() else ""  # fmt: skip
        shares = [Path(share)] if share else []
        shares += [bin_dir.parent / "share" / "postgresql", Path("/usr/share/postgresql") / bin_dir.parent.name]
        if any((s / "extension" / "vector.control").is_file() for s in shares):
            return bin_dir
    return None


def postgres_binaries() -> Path | None:
    """Any PostgreSQL ``bin`` folder (pgvector or not): the one with pgvector first, else ``initdb`` on ``$PATH``,
    else Debian's newest ``/usr/lib/postgresql/*/bin``."""
    found = pgvector_binaries()
    if found is not None:
        return found
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return debian[0].parent if debian else None


class PgServer:
    def __init__(self, port: int, proc: subprocess.Popen, user: str = "kogata"):
        self.port, self.proc, self.user = port, proc, user
        self.admin = f"postgresql://{user}@127.0.0.1:{port}/postgres"
        self._count = 0

    def new_database(self, scheme: str = "postgresql") -> str:
        """A fresh database's URL; ``scheme`` e.g. ``postgresql+psycopg`` for SQLAlchemy (plain means psycopg2 there)."""
        import psycopg

        self._count += 1
        name = f"kg{self._count}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{scheme}://{self.user}@127.0.0.1:{self.port}/{name}"


@contextlib.contextmanager
def start_server(bin_dir: Path | None = None, timeout_s: float = 60.0, *, pgvector: bool = True) -> Iterator[PgServer]:
    """Start a cluster (of ``bin_dir``'s PostgreSQL; default: one with pgvector, or any with ``pgvector=False``),
    yield it, stop it and remove its folder. ServerUnavailable when that cannot be done here (ServerFailed when the
    binaries are here but initdb or the server failed)."""
    try:
        import psycopg
    except ImportError:
        raise ServerUnavailable('psycopg is not installed (pip install "psycopg[binary]")') from None
    bin_dir = bin_dir or (pgvector_binaries() if pgvector else postgres_binaries())
    if bin_dir is None:
        raise ServerUnavailable("no PostgreSQL with pgvector here (pip install pgserver==0.1.4 ships both)" if pgvector else
                                "no PostgreSQL server binaries (Debian: apt-get install postgresql; or pip install pgserver==0.1.4)")
    run_as: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="kogata-pgv-"))
    try:
        if os.geteuid() == 0:  # the server refuses to run as root
            import pwd

            try:
                pg_user = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable("running as root and there is no postgres user to run the server as") from None
            os.chown(base, pg_user.pw_uid, pg_user.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        data = base / "data"
        init = subprocess.run(run_as + [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "kogata", "--no-sync", "-E", "UTF8"],
                              capture_output=True, timeout=120)  # fmt: skip
        if init.returncode != 0:
            raise ServerFailed(f"initdb failed: {init.stderr.decode(errors='replace')[-500:]}")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(base / "server.log", "wb")  # noqa: SIM115 — closed below, after the server stops
        proc = subprocess.Popen(run_as + [str(bin_dir / "postgres"), "-D", str(data), "-k", str(base), "-h", "127.0.0.1", "-p", str(port),
                                          "-c", "fsync=off"],
                                stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
        server = PgServer(port, proc)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(server.admin, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise ServerFailed(f"PostgreSQL did not start: {(base / 'server.log').read_text(errors='replace')[-500:]}") from None
                time.sleep(0.2)
        try:
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
