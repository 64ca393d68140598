"""The store database's schema migrations (Alembic): a fresh store is at head, a store from the release before
migrations upgrades in place keeping its rows, a second open does nothing, concurrent opens from several processes
succeed, the models and the migrations describe the same schema, and a store newer than this kogata is refused."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kogata.core import db
from kogata.core.errors import KogataError

# What `Base.metadata.create_all` wrote in the release before migrations (SQLite DDL as SQLAlchemy emitted it).
LEGACY_ARTIFACTS = """
CREATE TABLE artifacts (
    id VARCHAR(32) NOT NULL, name VARCHAR(200) NOT NULL, format VARCHAR(16) NOT NULL, kind VARCHAR(32) NOT NULL,
    architecture VARCHAR(64), parent VARCHAR(32), params BIGINT, bytes BIGINT NOT NULL, path TEXT NOT NULL,
    created FLOAT NOT NULL, manifest JSON NOT NULL, PRIMARY KEY (id));
CREATE UNIQUE INDEX ix_artifacts_name ON artifacts (name);
"""
LEGACY_OPTIMIZE = """
CREATE TABLE optimize_runs (
    id VARCHAR(64) NOT NULL, project_path TEXT NOT NULL, base_id VARCHAR(32) NOT NULL, created FLOAT NOT NULL,
    elapsed_s FLOAT NOT NULL, status VARCHAR(16) NOT NULL, PRIMARY KEY (id));
CREATE TABLE optimize_candidates (
    run_id VARCHAR(64) NOT NULL, "key" VARCHAR(32) NOT NULL, position INTEGER NOT NULL, label TEXT NOT NULL,
    candidate JSON NOT NULL, status VARCHAR(16) NOT NULL, artifact_id VARCHAR(32), artifact_ids JSON, entry JSON,
    reason TEXT, duration_s FLOAT NOT NULL, PRIMARY KEY (run_id, "key"));
"""
SERVICE_TABLES = {"api_keys", "key_usage", "aliases", "alias_history"}
FIRST_RELEASE_TABLES = {"artifacts", "optimize_runs", "optimize_candidates"}


def _legacy_store(home: Path, with_optimize: bool = True) -> str:
    """A store as the release before migrations left it: one artifact (folder + row), one optimize run."""
    art_id = "0123456789abcdef0123456789abcdef"
    folder = home / "artifacts" / art_id
    folder.mkdir(parents=True)
    manifest = {"manifest_version": 1, "id": art_id, "name": "old-model", "format": "hf", "kind": "causal-lm",
                "architecture": "llama", "parent": None, "lineage": [{"method": "import"}], "params": 10, "bytes": 3,
                "files": {"w.txt": "0" * 64}, "created": 1.0}
    (folder / "w.txt").write_text("abc")
    (folder / "kogata.json").write_text(json.dumps(manifest))
    con = sqlite3.connect(home / "kogata.db")
    con.executescript(LEGACY_ARTIFACTS + (LEGACY_OPTIMIZE if with_optimize else ""))
    con.execute("INSERT INTO artifacts VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (art_id, "old-model", "hf", "causal-lm", "llama", None, 10, 3, str(folder), 1.0, json.dumps(manifest)))
    if with_optimize:
        con.execute("INSERT INTO optimize_runs VALUES ('run1', 'p.yaml', ?, 1.0, 12.5, 'done')", (art_id,))
        con.execute("""INSERT INTO optimize_candidates VALUES ('run1', 'k1', 0, 'Q8_0', '{"key": "k1"}', 'done',
                       NULL, NULL, NULL, NULL, 3.0)""")
    con.commit()
    con.close()
    return art_id


def _tables(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


def _version(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT version_num FROM alembic_version")}
    finally:
        con.close()


def test_fresh_store_is_at_head_in_wal_mode(kogata_home):
    from kogata.artifacts.store import Store

    store = Store()
    path = kogata_home / "kogata.db"
    assert FIRST_RELEASE_TABLES | SERVICE_TABLES | {"alembic_version"} <= _tables(path)
    assert _version(path) == set(db.head_revisions()) and "0002" in _ancestors()
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS
        assert raw.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def _ancestors() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db.alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def test_revisions_are_a_single_line_from_0001():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db.alembic_config())
    assert len(script.get_heads()) == 1, "two migrations claim the same parent: give one the other as down_revision"
    assert script.get_base() == "0001" and {"0001", "0002"} <= _ancestors()


def test_old_store_upgrades_in_place_and_keeps_its_rows(kogata_home):
    from sqlalchemy import text

    from kogata.artifacts.store import Store

    art_id = _legacy_store(kogata_home)
    assert "alembic_version" not in _tables(kogata_home / "kogata.db")
    store = Store()
    assert SERVICE_TABLES | {"alembic_version"} <= _tables(kogata_home / "kogata.db")
    assert _version(kogata_home / "kogata.db") == set(db.head_revisions())
    assert store.get("old-model").id == art_id and [a.id for a in store.list()] == [art_id]
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT elapsed_s, status FROM optimize_runs WHERE id = 'run1'")).one() == (12.5, "done")
        assert conn.execute(text("SELECT label FROM optimize_candidates")).scalars().all() == ["Q8_0"]
    # the new tables work on the upgraded store
    from sqlalchemy.orm import Session

    from kogata.core.tables import Alias, ApiKey, KeyUsage

    with Session(store.engine) as s, s.begin():
        s.add(ApiKey(id="k1", name="team", key_hash="h" * 64, rpm=60, allowed_models=["production"]))
        s.add(Alias(name="production", artifact_id=art_id, updated_by="test"))
    with Session(store.engine) as s, s.begin():
        s.add(KeyUsage(key_id="k1", minute=int(time.time() // 60), requests=1, tokens_in=5, tokens_out=7))
    with Session(store.engine) as s:
        assert s.get(ApiKey, "k1").allowed_models == ["production"] and s.get(ApiKey, "k1").revoked is None
        assert s.get(Alias, "production").artifact_id == art_id


def test_old_store_without_optimize_tables_gets_them(kogata_home):
    from kogata.artifacts.store import Store

    _legacy_store(kogata_home, with_optimize=False)
    Store()
    assert FIRST_RELEASE_TABLES | SERVICE_TABLES <= _tables(kogata_home / "kogata.db")


def test_second_open_is_a_no_op(kogata_home, monkeypatch):
    import alembic.command

    from kogata.artifacts.store import Store

    Store()
    before = _version(kogata_home / "kogata.db")

    def no_upgrade(*a, **k):
        raise AssertionError("upgrade ran on a store already at head")

    monkeypatch.setattr(alembic.command, "upgrade", no_upgrade)
    Store()
    assert _version(kogata_home / "kogata.db") == before


def test_foreign_keys_are_enforced(kogata_home):
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from kogata.artifacts.store import Store
    from kogata.core.tables import KeyUsage

    store = Store()
    with pytest.raises(IntegrityError):
        with Session(store.engine) as s, s.begin():
            s.add(KeyUsage(key_id="no-such-key", minute=1, requests=1, tokens_in=0, tokens_out=0))


CHILD = """
import sys, time
from pathlib import Path
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.005)
from sqlalchemy.orm import Session
from kogata.artifacts.store import Store
from kogata.core.tables import AliasHistory
store = Store()
for i in range(20):
    with Session(store.engine) as s, s.begin():
        s.add(AliasHistory(name="production", artifact_id=f"{sys.argv[2]}-{i}", by=sys.argv[2]))
print("ok")
"""


@pytest.mark.parametrize("legacy", [False, True], ids=["fresh", "old-store"])
def test_concurrent_opens_and_writes_from_several_processes(kogata_home, tmp_path, legacy):
    """Three processes open the same (fresh or old) store at the same moment and write: none fails."""
    kogata_home.mkdir(parents=True, exist_ok=True)
    if legacy:
        _legacy_store(kogata_home)
    go = tmp_path / "go"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env_root = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "KOGATA_HOME": str(kogata_home), "PYTHONPATH": env_root}
    procs = [subprocess.Popen([sys.executable, str(script), str(go), f"p{n}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(3)]
    time.sleep(0.5)  # let them all reach the wait loop; correctness does not depend on it
    go.write_text("")
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    con = sqlite3.connect(kogata_home / "kogata.db")
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT by) FROM alias_history").fetchone() == (60, 3)
    con.close()
    assert _version(kogata_home / "kogata.db") == set(db.head_revisions())


def test_models_and_migrations_describe_the_same_schema(tmp_path):
    """Autogenerate finds nothing to do at head: every model's table and column has a migration."""
    import importlib

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    for mod in ("kogata.core.tables", "kogata.optimize.state", "kogata.ops.tables"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    engine = db.make_engine(f"sqlite:///{tmp_path / 'head.db'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.Base.metadata)
    assert diff == [], f"models and migrations differ (write a migration): {diff}"


def test_downgrade_to_base_and_back(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'rt.db'}"
    engine = db.make_engine(url)
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "base")
    assert _tables(tmp_path / "rt.db") <= {"alembic_version"}
    db.upgrade(engine)
    assert FIRST_RELEASE_TABLES | SERVICE_TABLES <= _tables(tmp_path / "rt.db")


def test_store_from_a_newer_release_is_a_user_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    db.make_engine(url)
    con = sqlite3.connect(tmp_path / "new.db")
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    with pytest.raises(KogataError, match="cannot upgrade") as err:
        db.make_engine(url)
    assert "upgrade kogata" in err.value.hint


def test_kogata_db_url_selects_the_database(kogata_home, tmp_path, monkeypatch):
    from kogata.artifacts.store import Store

    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("KOGATA_DB_URL", f"sqlite:///{other}")
    Store()
    assert "api_keys" in _tables(other) and not (kogata_home / "kogata.db").exists()


# ---- PostgreSQL (KOGATA_DB_URL): a real server started for these tests, loopback only -----------------------------
@pytest.fixture(scope="module")
def pg_server():
    """``make_url()``: a fresh database's SQLAlchemy URL on a throw-away PostgreSQL cluster on 127.0.0.1
    (:func:`tests.unit._pg.start_server`, any PostgreSQL: the migrations need no pgvector)."""
    pytest.importorskip("psycopg")
    from tests.unit._pg import ServerFailed, ServerUnavailable, start_server

    try:
        with start_server(pgvector=False) as server:
            yield lambda: server.new_database("postgresql+psycopg")
    except ServerFailed as exc:  # the binaries are here: a server that does not start is a failure, not a skip
        pytest.fail(f"PostgreSQL did not start: {exc}")
    except ServerUnavailable as exc:
        pytest.skip(f"no PostgreSQL server could start here: {exc}")


def test_postgresql_store_is_migrated_and_works(kogata_home, monkeypatch, pg_server):
    from sqlalchemy import inspect
    from sqlalchemy.orm import Session

    from kogata.artifacts.store import Store
    from kogata.core.tables import AliasHistory

    monkeypatch.setenv("KOGATA_DB_URL", pg_server())
    store = Store()
    assert store.engine.dialect.name == "postgresql" and not (kogata_home / "kogata.db").exists()
    assert FIRST_RELEASE_TABLES | SERVICE_TABLES | {"alembic_version"} <= set(inspect(store.engine).get_table_names())
    assert db.current_revisions(store.engine) == db.head_revisions()
    with Session(store.engine) as s, s.begin():
        s.add(AliasHistory(name="production", artifact_id="a1", reason="初回リリース"))
    Store()  # a second open is a no-op
    with Session(Store().engine) as s:
        assert s.query(AliasHistory).one().reason == "初回リリース"


def test_postgresql_models_and_migrations_agree(pg_server):
    import importlib

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    for mod in ("kogata.core.tables", "kogata.optimize.state", "kogata.ops.tables"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    engine = db.make_engine(pg_server())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.Base.metadata)
    assert diff == [], f"models and migrations differ on PostgreSQL: {diff}"


def test_postgresql_concurrent_opens(kogata_home, tmp_path, pg_server):
    """Three processes open one fresh PostgreSQL store at once (an advisory lock serialises the upgrade) and write."""
    from sqlalchemy import create_engine, text

    url = pg_server()
    go = tmp_path / "go"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {**os.environ, "KOGATA_HOME": str(kogata_home), "KOGATA_DB_URL": url,
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    procs = [subprocess.Popen([sys.executable, str(script), str(go), f"p{n}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(3)]
    time.sleep(0.5)
    go.write_text("")
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    with create_engine(url).connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM alias_history")).scalar() == 60
