"""The audit log: append/verify round trip, every single-row and single-checkpoint mutation is detected and
named, restart continues the chain, concurrent writers (threads and processes) keep it valid, prune cuts at a
checkpoint, export formats, and the CLI's exit codes."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kogata.ops.audit import AuditLog, AuditRecord
from kogata.ops.audit.chain import GENESIS, ROW_COLUMNS, row_hash
from kogata.ops.audit.export import export_rows, parse_since
from tests.cli_helpers import run_cli

N_ROWS = 30
EVERY = 7
CHECKPOINT_ROWS = (7, 14, 21, 28, 30)  # every EVERY rows, and the last row on close


@dataclasses.dataclass
class FakeVerdict:  # the shape of a guard verdict: dataclasses are recorded as JSON
    action: str
    hits: list


def record(i: int, **kw) -> AuditRecord:
    base = dict(
        request_id=f"req-{i}", response_id=f"chatcmpl-{i}", key_name="support-bot", model_alias="production",
        artifact_id="a1b2c3d4", endpoint="chat.completions", status="ok", action="allow", latency_ms=123.456 + i,
        tokens_in=10 + i, tokens_out=20 + i,
        input=[{"role": "user", "content": f"注文番号{i}の配送状況を教えてください。\"quoted\" \\ back"}],
        output=f"ご注文{i}は明日お届け予定です。", verdicts=[FakeVerdict("allow", [])], meta={"mean_logprob": -0.5, "finish_reason": "stop"},
    )
    base.update(kw)
    return AuditRecord(**base)


def open_log(home: Path, **kw) -> AuditLog:
    return AuditLog.open(home, checkpoint_every=kw.pop("checkpoint_every", EVERY), checkpoint_seconds=3600, **kw)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A store with N_ROWS audit rows and checkpoints, copied for each mutation."""
    home = tmp_path_factory.mktemp("audit-template") / "home"
    log = open_log(home)
    for i in range(1, N_ROWS + 1):
        log.append(record(i))
    log.close()
    report = log.verify()
    assert report.ok and report.rows == N_ROWS and report.unsigned_rows == 0, report
    log.engine.dispose()
    return home


@pytest.fixture()
def home(template, tmp_path) -> Path:
    dst = tmp_path / "home"
    shutil.copytree(template, dst)
    return dst


def db(home: Path) -> sqlite3.Connection:
    con = sqlite3.connect(home / "kogata.db")
    con.execute("DROP TRIGGER IF EXISTS audit_log_append_only")  # what an attacker with file access does first
    return con


def rows(con) -> list[dict]:
    cur = con.execute(f"SELECT {','.join(ROW_COLUMNS)} FROM audit_log ORDER BY id")
    return [dict(zip(ROW_COLUMNS, r)) for r in cur]


def write_rows(con, all_rows: list[dict]) -> None:
    con.execute("DELETE FROM audit_log")
    con.executemany(f"INSERT INTO audit_log ({','.join(ROW_COLUMNS)}) VALUES ({','.join('?' * len(ROW_COLUMNS))})",
                    [tuple(r[k] for k in ROW_COLUMNS) for r in all_rows])
    con.commit()


def rechain(all_rows: list[dict], start: int) -> None:
    """Recompute hashes from index ``start`` on, as an attacker who knows the format would."""
    for i in range(start, len(all_rows)):
        prev = all_rows[i - 1]["hash"] if i else GENESIS
        all_rows[i]["previous_hash"] = prev
        all_rows[i]["hash"] = row_hash(prev, all_rows[i])


def forged(k: int, prev: str) -> dict:
    row = {**record(999).columns(), "id": k, "time_us": 1}
    row["previous_hash"] = prev
    row["hash"] = row_hash(prev, row)
    return row


def verify(home: Path):
    log = open_log(home)
    try:
        return log.verify()
    finally:
        log.engine.dispose()


# ---- round trip ------------------------------------------------------------------------------------------
def test_append_verify_and_read_back(tmp_path):
    log = open_log(tmp_path / "h")
    entries = [log.append(record(i)) for i in range(1, 6)]
    assert [e.id for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].previous_hash == GENESIS and entries[1].previous_hash == entries[0].hash
    got = log.find(response_id="chatcmpl-3")
    assert got is not None and got.id == 3
    assert got.record.input == record(3).input and got.record.output == "ご注文3は明日お届け予定です。"
    assert got.record.verdicts == [{"action": "allow", "hits": []}] and got.record.latency_ms == pytest.approx(126.456)
    report = log.verify()
    assert report.ok and report.rows == 5 and report.unsigned_rows == 5  # no checkpoint yet
    log.close()
    report = log.verify()
    assert report.ok and report.unsigned_rows == 0 and report.checkpoints == 1 and report.checkpoints_matched == 1


def test_signing_key_is_private_and_reused(tmp_path):
    log = open_log(tmp_path / "h")
    log.append(record(1))
    log.close()
    key = tmp_path / "h" / "keys" / "audit_ed25519"
    assert (key.stat().st_mode & 0o777) == 0o600
    before = key.read_bytes()
    log2 = open_log(tmp_path / "h")
    log2.append(record(2))
    log2.close()
    assert key.read_bytes() == before and log2.verify().ok


def test_records_from_the_server_pipeline(tmp_path):
    rec = AuditRecord.from_server({
        "request_id": "r1", "endpoint": "chat.completions", "key_name": "k", "model_alias": "production", "artifact_id": "x",
        "status": "ok", "input": [{"role": "user", "content": "hi"}], "output": "hello", "finish_reason": "stop",
        "verdicts": {"input": FakeVerdict("allow", []), "output": {"action": "flag", "hits": [{"start": 0, "end": 2}]}},
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}, "latency_s": 0.25, "ttft_s": 0.1,
    }, response_id="chatcmpl-1")
    assert rec.action == "flag" and rec.latency_ms == 250 and rec.tokens_in == 3 and rec.meta["finish_reason"] == "stop"
    log = open_log(tmp_path / "h")
    entry = log.append(rec)
    assert log.find(response_id="chatcmpl-1").record.verdicts["output"]["hits"] == [{"end": 2, "start": 0}]
    assert entry.record.action == "flag" and log.verify().ok


# ---- mutations: every kind on every row -------------------------------------------------------------------
ALL = list(range(1, N_ROWS + 1))


@pytest.mark.parametrize("k", ALL)
@pytest.mark.parametrize("column", ["output", "key_name", "time_us", "latency_ms"])
def test_edited_row_is_named(home, k, column):
    con = db(home)
    new = {"output": json.dumps("改ざんされた回答", ensure_ascii=False), "key_name": "someone-else", "time_us": 5, "latency_ms": 0.5}[column]
    con.execute(f"UPDATE audit_log SET {column} = ? WHERE id = ?", (new, k))
    con.commit()
    report = verify(home)
    assert not report.ok and report.problem.row == k and report.problem.kind == "edited", report.problem


@pytest.mark.parametrize("k", ALL)
def test_rewritten_row_with_recomputed_hash_is_named(home, k):
    con = db(home)
    all_rows = rows(con)
    all_rows[k - 1]["output"] = json.dumps("forged", ensure_ascii=False)
    all_rows[k - 1]["hash"] = row_hash(all_rows[k - 1]["previous_hash"], all_rows[k - 1])
    write_rows(con, all_rows)
    p = verify(home).problem
    assert p is not None and p.row == k, p
    assert p.kind == ("checkpoint_mismatch" if k in CHECKPOINT_ROWS else "rewritten")  # a signed row: its checkpoint catches it first


@pytest.mark.parametrize("k", ALL)
def test_deleted_row_is_named(home, k):
    con = db(home)
    con.execute("DELETE FROM audit_log WHERE id = ?", (k,))
    con.commit()
    p = verify(home).problem
    assert p is not None and p.row == k and p.kind in ("missing", "truncated"), p


@pytest.mark.parametrize("k", ALL)
def test_deleted_row_with_renumbering_is_named(home, k):
    con = db(home)
    all_rows = rows(con)
    del all_rows[k - 1]
    for i, r in enumerate(all_rows, 1):
        r["id"] = i
    write_rows(con, all_rows)
    p = verify(home).problem
    assert p is not None and p.row == k, p


@pytest.mark.parametrize("k", ALL)
def test_inserted_row_is_named(home, k):
    """A well-formed forged row placed at position k (later rows renumbered, their hashes left alone)."""
    con = db(home)
    all_rows = rows(con)
    prev = all_rows[k - 2]["hash"] if k > 1 else GENESIS
    all_rows.insert(k - 1, forged(k, prev))
    for i, r in enumerate(all_rows, 1):
        r["id"] = i
    write_rows(con, all_rows)
    p = verify(home).problem
    assert p is not None and p.row == k, p
    assert p.kind == ("checkpoint_mismatch" if k in CHECKPOINT_ROWS else "inserted"), p


@pytest.mark.parametrize("k", ALL)
def test_inserted_row_with_the_rest_rechained_is_caught_by_the_next_checkpoint(home, k):
    con = db(home)
    all_rows = rows(con)
    all_rows.insert(k - 1, forged(k, GENESIS))
    for i, r in enumerate(all_rows, 1):
        r["id"] = i
    rechain(all_rows, k - 1)
    write_rows(con, all_rows)
    p = verify(home).problem
    next_cp = min(c for c in CHECKPOINT_ROWS if c >= k)
    assert p is not None and p.kind == "checkpoint_mismatch" and p.row == next_cp, p


@pytest.mark.parametrize("k", ALL[:-1])
def test_swapped_rows_are_named(home, k):
    con = db(home)
    all_rows = rows(con)
    a, b = all_rows[k - 1], all_rows[k]
    all_rows[k - 1], all_rows[k] = {**b, "id": k}, {**a, "id": k + 1}
    write_rows(con, all_rows)
    p = verify(home).problem
    assert p is not None and p.row == k, p


def test_a_forged_row_appended_after_the_last_checkpoint_shows_as_unsigned(home):
    """The limit of any hash chain: a correctly chained row after the last checkpoint is not provably forged —
    verify says how many rows no checkpoint vouches for yet."""
    con = db(home)
    all_rows = rows(con)
    all_rows.append(forged(N_ROWS + 1, all_rows[-1]["hash"]))
    write_rows(con, all_rows)
    report = verify(home)
    assert report.ok and report.unsigned_rows == 1


# ---- mutations of the checkpoint file --------------------------------------------------------------------
def cp_lines(home: Path) -> list[str]:
    return (home / "audit" / "checkpoints.jsonl").read_text().splitlines()


def write_cp(home: Path, lines: list[str]) -> None:
    (home / "audit" / "checkpoints.jsonl").write_text("".join(line + "\n" for line in lines))


N_CP = 5


@pytest.mark.parametrize("n", range(1, N_CP + 1))
@pytest.mark.parametrize("field", ["hash", "row", "time_us"])
def test_edited_checkpoint_is_named(home, n, field):
    lines = cp_lines(home)
    assert len(lines) == N_CP
    obj = json.loads(lines[n - 1])
    obj[field] = {"hash": "f" * 64, "row": obj["row"] - 1, "time_us": obj["time_us"] + 1}[field]
    lines[n - 1] = json.dumps(obj)
    write_cp(home, lines)
    p = verify(home).problem
    assert p is not None and p.kind == "checkpoint" and f"checkpoint line {n}:" in p.message, p


@pytest.mark.parametrize("n", range(1, N_CP))
def test_deleted_checkpoint_is_named(home, n):
    lines = cp_lines(home)
    del lines[n - 1]
    write_cp(home, lines)
    p = verify(home).problem
    assert p is not None and p.kind == "checkpoint" and f"checkpoint line {n}:" in p.message and "out of sequence" in p.message, p


@pytest.mark.parametrize("n", range(1, N_CP))
def test_reordered_checkpoints_are_named(home, n):
    lines = cp_lines(home)
    lines[n - 1], lines[n] = lines[n], lines[n - 1]
    write_cp(home, lines)
    p = verify(home).problem
    assert p is not None and p.kind == "checkpoint" and f"checkpoint line {n}:" in p.message, p


@pytest.mark.parametrize("n", range(1, N_CP + 2))
def test_inserted_checkpoint_is_named(home, n, tmp_path):
    """A line signed with another key (the attacker's), placed anywhere."""
    other = open_log(tmp_path / "other")
    other.append(record(1))
    forged_line = json.dumps(other.checkpoint())
    lines = cp_lines(home)
    lines.insert(n - 1, forged_line)
    write_cp(home, lines)
    p = verify(home).problem
    assert p is not None and p.kind == "checkpoint" and f"checkpoint line {n}:" in p.message and "signature" in p.message, p


def test_duplicated_checkpoint_is_named(home):
    lines = cp_lines(home)
    lines.insert(2, lines[1])
    write_cp(home, lines)
    p = verify(home).problem
    assert p is not None and "checkpoint line 3:" in p.message


def test_torn_last_checkpoint_line_is_repaired_on_the_next_write(home):
    path = home / "audit" / "checkpoints.jsonl"
    path.write_text(path.read_text() + '{"kind": "checkpoint", "seq": 6, "ro')  # a crash mid-write
    log = open_log(home)
    log.append(record(31))
    log.close()
    assert log.verify().ok and len(cp_lines(home)) == N_CP + 1


# ---- restart and concurrency -------------------------------------------------------------------------------
def test_restart_continues_the_chain(home):
    log = open_log(home)
    e = log.append(record(31))
    assert e.id == N_ROWS + 1 and e.previous_hash == log.find(row_id=N_ROWS).hash
    log.close()
    report = log.verify()
    assert report.ok and report.rows == N_ROWS + 1 and report.checkpoints == N_CP + 1


def test_concurrent_appends_from_threads_and_engines(tmp_path):
    home = tmp_path / "h"
    logs = [open_log(home, checkpoint_every=5), open_log(home, checkpoint_every=5)]  # two engines, like two workers
    errors: list[BaseException] = []

    def work(log: AuditLog, tag: str) -> None:
        try:
            for i in range(40):
                log.append(record(i, request_id=f"{tag}-{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(logs[i % 2], f"t{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    logs[0].close()
    report = logs[0].verify()
    assert report.ok and report.rows == 160 and report.last_row == 160, report.problem


_WORKER = """
import sys
from kogata.ops.audit import AuditLog, AuditRecord
log = AuditLog.open(sys.argv[1], checkpoint_every=7, checkpoint_seconds=3600)
for i in range(int(sys.argv[3])):
    log.append(AuditRecord(request_id=f"{sys.argv[2]}-{i}", output="x" * (i % 5), input={"n": i}))
"""


def test_concurrent_appends_from_two_processes(tmp_path):
    home = tmp_path / "h"
    open_log(home).engine.dispose()  # create the database first (both workers would otherwise also migrate)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(home), f"p{j}", "60"], env=env, stderr=subprocess.PIPE)
             for j in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()
    log = open_log(home)
    log.close()
    report = log.verify()
    assert report.ok and report.rows == 120, report.problem
    ids = {e.record.request_id for e in log.iter_rows()}
    assert len(ids) == 120


# ---- retention -----------------------------------------------------------------------------------------------
def test_prune_cuts_at_a_checkpoint_and_the_chain_still_verifies(home):
    log = open_log(home)
    result = log.prune(keep_days=1, now=time.time() + 3 * 86400)  # every row is old
    assert result["cut_at"] == 28 and result["first_row"] == 29 and result["deleted"] == 28  # newest row is kept
    report = log.verify()
    assert report.ok and report.first_row == 29 and report.rows == 2, report.problem
    log.append(record(31))
    log.close()
    assert log.verify().ok
    # deleting one more row at the new start is still caught
    con = db(home)
    con.execute("DELETE FROM audit_log WHERE id = 29")
    con.commit()
    p = log.verify().problem
    assert p is not None and p.row == 29 and p.kind == "missing", p


def test_prune_keeps_recent_rows(home):
    log = open_log(home)
    assert log.prune(keep_days=30)["deleted"] == 0 and log.count() == N_ROWS


def test_deleting_old_rows_without_a_signed_prune_is_caught(home):
    con = db(home)
    con.execute("DELETE FROM audit_log WHERE id <= 14")  # up to a checkpoint, as prune would, but unsigned
    con.commit()
    p = verify(home).problem
    assert p is not None and p.kind == "missing" and p.row == 1, p


def test_prune_refuses_a_broken_chain(home):
    con = db(home)
    con.execute("UPDATE audit_log SET output = '\"x\"' WHERE id = 3")
    con.commit()
    from kogata.core.errors import KogataError

    with pytest.raises(KogataError, match="does not verify"):
        open_log(home).prune(keep_days=0, now=time.time() + 86400)


def test_the_database_refuses_updates(home):
    log = open_log(home)
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    with pytest.raises(DatabaseError, match="append-only"), log.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET output = '\"x\"' WHERE id = 3"))
    assert log.verify().ok


# ---- export and the CLI ---------------------------------------------------------------------------------------
def test_export_jsonl_and_csv_read_back(home):
    log = open_log(home)
    buf = io.StringIO()
    assert export_rows(log.iter_rows(), buf, "jsonl") == N_ROWS
    first = json.loads(buf.getvalue().splitlines()[0])
    assert first["id"] == 1 and first["input"] == record(1).input and first["hash"] and first["time"].endswith("Z")
    buf = io.StringIO()
    export_rows(log.iter_rows(), buf, "csv")
    table = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(table) == N_ROWS and json.loads(table[4]["output"]) == "ご注文5は明日お届け予定です。"
    later = list(log.iter_rows(since_us=log.find(row_id=20).time_us))
    assert [e.id for e in later] == list(range(20, N_ROWS + 1))


def test_parse_since():
    now = 1_700_000_000.0
    assert parse_since("7d", now=now) == int((now - 7 * 86400) * 1e6)
    assert parse_since("2024-01-01") == 1704067200 * 10**6
    assert parse_since("2024-01-01T09:00+09:00") == 1704067200 * 10**6
    from kogata.core.errors import KogataError

    with pytest.raises(KogataError, match="--since"):
        parse_since("last tuesday")


def test_cli_verify_export_and_exit_codes(home, capsys, monkeypatch):
    monkeypatch.setenv("KOGATA_HOME", str(home))
    code, out, err = run_cli(capsys, monkeypatch, "audit", "verify")
    assert code == 0 and f"{N_ROWS} rows" in out, err
    target = home.parent / "audit.csv"
    code, out, err = run_cli(capsys, monkeypatch, "audit", "export", "--format", "csv", "--out", str(target))
    assert code == 0 and len(list(csv.DictReader(target.open()))) == N_ROWS
    con = db(home)
    con.execute("UPDATE audit_log SET output = '\"edited\"' WHERE id = 17")
    con.commit()
    code, out, err = run_cli(capsys, monkeypatch, "audit", "verify")
    assert code == 1 and "row 17" in err
    code, out, err = run_cli(capsys, monkeypatch, "audit", "export", "--format", "xml")
    assert code == 2 and "--format" in err
