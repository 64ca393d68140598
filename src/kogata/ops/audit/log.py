"""The audit log: append a record per request/response, verify the chain, checkpoint, prune.

Wiring it into a server is a few lines::

    audit = AuditLog.open()                                   # the store's database, $KOGATA_HOME
    entry = audit.append(AuditRecord(request_id=rid, response_id=resp_id, key_name=key.name,
                                     model_alias=alias, artifact_id=art.id, endpoint="chat.completions",
                                     input=messages, output=text, verdicts=[in_verdict, out_verdict],
                                     action=out_verdict.action, latency_ms=ms, tokens_in=n_in, tokens_out=n_out))
    review.consider(entry)                                    # flag / hold / low confidence / sampled → queue
    return response                                           # only now: the row is committed

``append`` is serialised (a thread lock, plus a database write lock taken *before* the last hash is read:
``BEGIN IMMEDIATE``-style on SQLite, an advisory transaction lock on PostgreSQL, and a primary-key conflict
retry as the last line of defence) and returns only after the row is committed.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import LargeBinary, cast, delete, func, insert, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from kogata.core.errors import KogataError
from kogata.ops.audit.chain import GENESIS, JSON_COLUMNS, ROW_COLUMNS, Problem, canonical_json, check_rows, row_hash
from kogata.ops.audit.checkpoint import (
    PUBLIC_NAME,
    CheckpointFile,
    CheckpointSet,
    load_or_create_key,
    load_public_key,
    read_checkpoints,
)
from kogata.ops.tables import AuditRow

TABLE = AuditRow.__table__
_SELECT_COLUMNS = [TABLE.c[name] for name in ROW_COLUMNS]
_ADVISORY_LOCK = 0x6B6F6761  # "koga"


def _raw_columns(dialect: str) -> list:
    """The chain's columns with the payload columns read as their stored UTF-8 bytes (no decode, no re-encode)."""
    cols = []
    for name in ROW_COLUMNS:
        c = TABLE.c[name]
        if name in JSON_COLUMNS:
            c = func.convert_to(c, "UTF8", type_=LargeBinary) if dialect == "postgresql" else cast(c, LargeBinary)
        cols.append(c.label(name))
    return cols


def to_jsonable(value: Any) -> Any:
    """Plain JSON data from verdicts and payloads: dataclasses, objects with ``to_dict()``, enums, tuples."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"cannot record a {type(value).__name__} in the audit log; pass JSON data, a dataclass or an object with to_dict()")


SEVERITY = ("allow", "redact", "flag", "hold", "block")  # the final action is the most severe one


def final_action(verdicts: Any) -> str | None:
    """The most severe ``action`` among verdicts (objects with ``.action``, dicts, or lists/dicts of them)."""
    found: list[str] = []

    def walk(v: Any) -> None:
        if v is None:
            return
        action = v.get("action") if isinstance(v, dict) else getattr(v, "action", None)
        if isinstance(action, str) and action in SEVERITY:
            found.append(action)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(verdicts)
    return max(found, key=SEVERITY.index) if found else None


@dataclass
class AuditRecord:
    """What the server knows about one exchange. ``input``/``output`` are JSON data (text or messages)."""

    request_id: str
    response_id: str | None = None
    key_name: str | None = None
    model_alias: str | None = None
    artifact_id: str | None = None
    endpoint: str | None = None
    status: str | None = None  # how the exchange ended: ok | error | cancelled | an HTTP status …
    action: str | None = None  # the final guard action: allow | redact | flag | hold | block
    latency_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    input: Any = None
    output: Any = None
    verdicts: Any = None
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"mean_logprob": -1.2, "finish_reason": "stop"}

    @classmethod
    def from_server(cls, rec: dict[str, Any], *, response_id: str | None = None) -> AuditRecord:
        """The record ``kogata serve``'s request pipeline hands to its ``record`` hook (a plain dict)."""
        usage = rec.get("usage") or {}
        latency_s = rec.get("latency_s")
        meta = {k: rec[k] for k in ("finish_reason", "ttft_s", "mean_logprob") if rec.get(k) is not None}
        return cls(
            request_id=str(rec["request_id"]), response_id=response_id or rec.get("response_id"), key_name=rec.get("key_name"),
            model_alias=rec.get("model_alias"), artifact_id=rec.get("artifact_id"), endpoint=rec.get("endpoint"),
            status=None if rec.get("status") is None else str(rec["status"]), action=final_action(rec.get("verdicts")),
            latency_ms=None if latency_s is None else float(latency_s) * 1000, tokens_in=usage.get("prompt_tokens"),
            tokens_out=usage.get("completion_tokens"), input=rec.get("input"), output=rec.get("output"),
            verdicts=rec.get("verdicts"), meta={**meta, **(rec.get("meta") or {})},
        )

    def columns(self) -> dict[str, Any]:
        cols: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in JSON_COLUMNS:
                cols[f.name] = canonical_json(to_jsonable(v if v is not None or f.name != "meta" else {}))
            elif f.name == "latency_ms" and v is not None:
                cols[f.name] = round(float(v), 3)
            elif f.name in ("tokens_in", "tokens_out") and v is not None:
                cols[f.name] = int(v)
            else:
                cols[f.name] = None if v is None else str(v)
        return cols


@dataclass
class AuditEntry:
    """A committed row: its chain position and hash, and the record as stored (payloads decoded)."""

    id: int
    time_us: int
    previous_hash: str
    hash: str
    record: AuditRecord

    @classmethod
    def from_columns(cls, row: dict[str, Any]) -> AuditEntry:
        import json

        fields = {f.name for f in dataclasses.fields(AuditRecord)}
        rec = {k: (json.loads(row[k]) if k in JSON_COLUMNS else row[k]) for k in fields}
        return cls(row["id"], row["time_us"], row["previous_hash"], row["hash"], AuditRecord(**rec))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time_us": self.time_us, **dataclasses.asdict(self.record),
                "previous_hash": self.previous_hash, "hash": self.hash}


@dataclass
class VerifyReport:
    ok: bool
    rows: int
    first_row: int | None
    last_row: int | None
    checkpoints: int  # valid checkpoint lines
    checkpoints_matched: int  # checkpoints whose row was found and matched
    unsigned_rows: int  # rows after the last checkpoint: a checkpoint does not vouch for them yet
    seconds: float
    key_id: str | None
    problem: Problem | None = None  # the first bad row (chain), or the first bad checkpoint line
    problems: list[Problem] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["problem"] = self.problem.to_dict() if self.problem else None
        d["problems"] = [p.to_dict() for p in self.problems]
        return d


class AuditLog:
    """The ``audit_log`` table plus ``$KOGATA_HOME/audit/checkpoints.jsonl`` and the signing key."""

    def __init__(self, engine: Engine, home: Path, *, checkpoint_every: int = 1000, checkpoint_seconds: float = 60.0,
                 redact: Callable[[Any], Any] | None = None):
        if checkpoint_every < 1 or checkpoint_seconds <= 0:
            raise KogataError("audit checkpoint interval must be positive", "use e.g. checkpoint_every=1000, checkpoint_seconds=60")
        self.engine = engine
        self.home = Path(home)
        self.keys_dir = self.home / "keys"
        self.checkpoint_path = self.home / "audit" / "checkpoints.jsonl"
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.redact = redact
        self._lock = threading.Lock()
        self._file: CheckpointFile | None = None
        self._last_cp: tuple[int, float] | None = None  # (row id, unix time) of the last checkpoint this process knows

    @classmethod
    def open(cls, home: Path | None = None, **kwargs: Any) -> AuditLog:
        """The audit log of the store at ``home`` (default ``$KOGATA_HOME``)."""
        import kogata.core.settings as settings
        from kogata.core.db import make_engine, store_url

        home = Path(home) if home is not None else settings.kogata_home()
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KogataError(f"KOGATA_HOME {home} cannot be created ({exc.strerror or exc})", "set KOGATA_HOME to a folder you can write") from None
        return cls(make_engine(store_url(home)), home, **kwargs)

    @property
    def checkpoints(self) -> CheckpointFile:
        if self._file is None:
            self._file = CheckpointFile(self.checkpoint_path, load_or_create_key(self.keys_dir))
        return self._file

    # ---- writing --------------------------------------------------------------------------------------
    def append(self, record: AuditRecord) -> AuditEntry:
        """Add ``record`` to the chain; returns once the row is committed (then checkpoints when one is due)."""
        if self.redact is not None:
            record = dataclasses.replace(record, input=self.redact(record.input), output=self.redact(record.output))
        cols = record.columns()
        with self._lock:
            entry = self._insert(cols, record)
            if self._checkpoint_due(entry):
                self._write_checkpoint()
        return entry

    def _insert(self, cols: dict[str, Any], record: AuditRecord) -> AuditEntry:
        for attempt in range(200):
            try:
                with self.engine.connect() as conn:
                    self._write_lock(conn)
                    last = conn.execute(select(TABLE.c.id, TABLE.c.hash, TABLE.c.time_us).order_by(TABLE.c.id.desc()).limit(1)).first()
                    row_id, prev, last_us = (last[0] + 1, last[1], last[2]) if last else (1, GENESIS, 0)
                    row = {**cols, "id": row_id, "time_us": max(time.time_ns() // 1000, last_us)}
                    row["previous_hash"] = prev
                    row["hash"] = row_hash(prev, row)
                    conn.execute(insert(TABLE).values(**row))
                    conn.commit()
                return AuditEntry(row_id, row["time_us"], prev, row["hash"], record)
            except IntegrityError:  # another writer took this id first: read the new last row and try again
                continue
            except OperationalError as exc:
                if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                    raise
                time.sleep(min(0.05, 0.001 * (attempt + 1)))
        raise KogataError("the audit log stayed locked by other writers", "check for a stuck process holding the database")

    def _write_lock(self, conn: Connection) -> None:
        """Take the database's write lock before reading the last hash, so two writers never share a parent."""
        dialect = conn.dialect.name
        if dialect == "sqlite":
            conn.execute(text("UPDATE audit_log SET id = id WHERE 0"))  # starts the write transaction, changes nothing
        elif dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})

    def _checkpoint_due(self, entry: AuditEntry) -> bool:
        if self._last_cp is None:
            last = self.checkpoints.last("checkpoint")
            self._last_cp = (int(last["row"]), last["time_us"] / 1e6) if last else (0, time.time())
        row, at = self._last_cp
        return entry.id - row >= self.checkpoint_every or time.time() - at >= self.checkpoint_seconds

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the current last row now (None when the log is empty or that row is already signed)."""
        with self._lock:
            return self._write_checkpoint()

    def _write_checkpoint(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            last = conn.execute(select(TABLE.c.id, TABLE.c.hash).order_by(TABLE.c.id.desc()).limit(1)).first()
        if last is None:
            return None
        prior = self.checkpoints.last("checkpoint")
        if prior is not None and int(prior["row"]) >= last[0]:
            self._last_cp = (int(prior["row"]), time.time())
            return None
        line = self.checkpoints.append("checkpoint", row=int(last[0]), hash=last[1])
        self._last_cp = (int(last[0]), time.time())
        return line

    def close(self) -> None:
        """Sign the tail before shutting down, so no acknowledged row is left unvouched."""
        self.checkpoint()

    # ---- reading --------------------------------------------------------------------------------------
    def iter_rows(self, *, since_us: int | None = None, until_us: int | None = None, batch: int = 10000) -> Iterator[AuditEntry]:
        """Committed rows in chain order (streamed), optionally within a time window."""
        stmt = select(*_SELECT_COLUMNS).order_by(TABLE.c.id)
        if since_us is not None:
            stmt = stmt.where(TABLE.c.time_us >= since_us)
        if until_us is not None:
            stmt = stmt.where(TABLE.c.time_us < until_us)
        with self.engine.connect() as conn:
            for r in conn.execution_options(stream_results=True, yield_per=batch).execute(stmt):
                yield AuditEntry.from_columns(dict(zip(ROW_COLUMNS, r)))

    def find(self, *, response_id: str | None = None, row_id: int | None = None) -> AuditEntry | None:
        """The row of a response (its last row, if several) or of a row id."""
        stmt = select(*_SELECT_COLUMNS).order_by(TABLE.c.id.desc()).limit(1)
        if response_id is not None:
            stmt = stmt.where(TABLE.c.response_id == response_id)
        elif row_id is not None:
            stmt = stmt.where(TABLE.c.id == row_id)
        else:
            raise ValueError("give response_id or row_id")
        with self.engine.connect() as conn:
            r = conn.execute(stmt).first()
        return AuditEntry.from_columns(dict(zip(ROW_COLUMNS, r))) if r else None

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(TABLE)).scalar_one())

    # ---- verifying -------------------------------------------------------------------------------------
    def _public_key(self, path: Path | None):
        if path is not None:
            return load_public_key(path)
        if (self.keys_dir / PUBLIC_NAME).exists():
            return load_public_key(self.keys_dir / PUBLIC_NAME)
        return None

    def verify(self, *, public_key: Path | None = None) -> VerifyReport:
        """Check every row's hash and link, and every checkpoint's signature and sequence; name the first bad one."""
        from kogata.ops.audit.checkpoint import key_id

        started = time.perf_counter()
        pub = self._public_key(public_key)
        problems: list[Problem] = []
        if pub is not None:
            cps = read_checkpoints(self.checkpoint_path, pub)
            if cps.problem:
                problems.append(cps.problem)
        else:
            cps = CheckpointSet()
            if self.checkpoint_path.exists() and self.checkpoint_path.stat().st_size:
                problems.append(Problem(None, "checkpoint", f"checkpoints exist but the public key {self.keys_dir / PUBLIC_NAME} is missing"))
        with self.engine.connect() as conn:
            stmt = select(*_raw_columns(conn.dialect.name)).order_by(TABLE.c.id)
            if conn.dialect.name == "sqlite":  # the driver's cursor streams by itself; skip the Row layer (~15% faster)
                cursor = conn.connection.dbapi_connection.cursor()
                cursor.execute(str(stmt.compile(dialect=conn.dialect)))
                state = check_rows(cursor, starts=cps.starts, checkpoints=cps.checkpoints)
                cursor.close()
            else:
                result = conn.execution_options(stream_results=True, yield_per=20000).execute(stmt)
                state = check_rows(result, starts=cps.starts, checkpoints=cps.checkpoints)
                result.close()
        if state.problem:
            problems.insert(0, state.problem)
        else:
            end = state.last_id or 0
            covering = max((r for r in cps.checkpoints if r >= max(cps.starts)), default=0)
            if covering > end:
                problems.insert(0, Problem(end + 1, "truncated", f"rows {end + 1}–{covering} are missing (deleted): a signed checkpoint vouches "
                                           f"for row {covering} but the log ends at row {end or 'none'}"))
        signed_to = max((r for r in cps.checkpoints if state.last_id is not None and r <= state.last_id), default=0)
        unsigned = (state.last_id - max(signed_to, (state.first_id or 1) - 1)) if state.last_id is not None else 0
        return VerifyReport(
            ok=not problems, rows=state.rows, first_row=state.first_id, last_row=state.last_id, checkpoints=cps.count,
            checkpoints_matched=state.checkpoints_matched, unsigned_rows=unsigned, seconds=time.perf_counter() - started,
            key_id=key_id(pub) if pub is not None else None, problem=problems[0] if problems else None, problems=problems,
        )

    # ---- retention -------------------------------------------------------------------------------------
    def prune(self, keep_days: float, *, now: float | None = None) -> dict[str, Any]:
        """Delete rows older than ``keep_days``, cutting the chain at the newest checkpoint among them.

        A signed ``prune`` line (first kept row + the checkpointed hash it links to) is written first, so
        ``verify`` accepts the new start; rows after the cut stay untouched. Refuses on a chain that does not verify.
        """
        if keep_days < 0:
            raise KogataError(f"--keep-days {keep_days} is negative", "give the number of days of audit rows to keep")
        report = self.verify()
        if not report.ok:
            raise KogataError(f"the audit log does not verify ({report.problem.message if report.problem else '?'}); nothing was pruned",
                              "investigate with `kogata audit verify` before deleting evidence")
        cutoff_us = int(((now if now is not None else time.time()) - keep_days * 86400) * 1e6)
        with self.engine.connect() as conn:
            last_old = conn.execute(select(func.max(TABLE.c.id)).where(TABLE.c.time_us < cutoff_us)).scalar()
            last_id = conn.execute(select(func.max(TABLE.c.id))).scalar()
        pub = self._public_key(None)
        cps = read_checkpoints(self.checkpoint_path, pub) if pub is not None else CheckpointSet()
        first = report.first_row or 1
        cuts = [r for r in cps.checkpoints if last_old is not None and first <= r <= last_old and r < (last_id or 0)]
        if not cuts:
            return {"deleted": 0, "first_row": report.first_row, "cut_at": None,
                    "reason": "no signed checkpoint among the rows old enough to delete (the newest row is always kept)"}
        cut = max(cuts)
        with self._lock:
            line = self.checkpoints.append("prune", first_row=cut + 1, anchor=cps.checkpoints[cut], keep_days=keep_days, cutoff_us=cutoff_us)
            with self.engine.connect() as conn:
                deleted = conn.execute(delete(TABLE).where(TABLE.c.id <= cut)).rowcount
                conn.commit()
        return {"deleted": int(deleted or 0), "first_row": cut + 1, "cut_at": cut, "prune_line": line["seq"]}
