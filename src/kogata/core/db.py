"""The store's database: SQLite by default, a PostgreSQL URL in ``$KOGATA_DB_URL`` works too.

Artifacts on disk are the source of truth; this database indexes them and holds runs, search state and the
service's tables. Its schema is versioned with Alembic (``kogata/core/migrations/versions/``) and brought up to
date whenever a store is opened: :func:`make_engine` → :func:`upgrade`. A store made before migrations existed
(tables from ``create_all``, no ``alembic_version``) is upgraded in place: revision 0001 creates only the tables
it lacks. SQLite runs in WAL mode with a busy timeout so that several processes can share one store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from sqlalchemy import JSON, BigInteger, Float, MetaData, String, Text, create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kogata.core.errors import KogataError

MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another process's write to finish
MIGRATION_LOCK_S = 120.0  # how long an open waits for another process that is upgrading the same database
PG_LOCK_KEY = 0x6B6F676174  # pg_advisory_xact_lock key serialising upgrades on PostgreSQL ("kogat")

# unique / foreign-key / check constraints get stable names, so later migrations can alter them by name
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s", "ix": "ix_%(column_0_label)s"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    format: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32), default="causal-lm")
    architecture: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    path: Mapped[str] = mapped_column(Text)
    created: Mapped[float] = mapped_column(Float, default=time.time)
    manifest: Mapped[dict] = mapped_column(JSON)


def make_engine(url: str) -> Engine:
    """An engine for ``url`` whose database is at the newest schema revision."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    upgrade(engine)
    return engine


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # first: switching to WAL may wait for a lock
    cur.execute("PRAGMA journal_mode = WAL")  # readers do not block the writer; persistent once set
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


# ---- migrations ----------------------------------------------------------------------------------------
def alembic_config(connection: Connection | None = None):
    """Alembic's config built in code (no alembic.ini at run time); ``connection`` is used by ``env.py``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(engine: Engine) -> frozenset[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision; a no-op (one query) when it is there already.

    Concurrent opens are serialised: a lock file beside a SQLite database, an advisory lock on PostgreSQL.
    """
    from alembic import command
    from alembic.util import CommandError

    heads = head_revisions()
    if current_revisions(engine) == heads:
        return
    with _upgrade_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        try:
            command.upgrade(alembic_config(conn), "heads")
        except CommandError as exc:  # e.g. a revision this release does not know: the store is newer
            raise KogataError(
                f"the store database {engine.url.render_as_string(hide_password=True)} has a schema this kogata "
                f"cannot upgrade ({exc})",
                "upgrade kogata to the release that made this store, or point KOGATA_HOME / KOGATA_DB_URL elsewhere",
            ) from None


@contextlib.contextmanager
def _upgrade_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock_path = Path(f"{database}.lock")
    with open(lock_path, "a+b") as f:
        deadline = time.monotonic() + MIGRATION_LOCK_S
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KogataError(
                        f"another process has been upgrading the store database {database} for {MIGRATION_LOCK_S:.0f} s",
                        f"wait for it to finish (it holds {lock_path}), then run the command again",
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def store_url(home: Path) -> str:
    """``$KOGATA_DB_URL``, or the SQLite file ``kogata.db`` in the store's home."""
    return os.environ.get("KOGATA_DB_URL") or f"sqlite:///{Path(home) / 'kogata.db'}"


import kogata.core.tables  # noqa: E402,F401  (the service's tables join Base.metadata)
import kogata.core.tables_ui  # noqa: E402,F401  (the web UI's users table)
