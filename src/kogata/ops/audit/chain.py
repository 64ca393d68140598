"""The hash chain: how one audit row becomes bytes, and how a stream of rows is checked.

A row's hash is ``sha256(bytes.fromhex(previous_hash) + canonical(row))`` as lowercase hex. ``canonical(row)``
is the UTF-8 JSON array ``[1, <scalar columns in SCALAR_COLUMNS order>, <payload columns in JSON_COLUMNS
order>]`` — the leading ``1`` is the chain format version; no whitespace; strings as ``json.dumps(...,
ensure_ascii=False)`` writes them. The payload columns (input, output, verdicts, meta) are stored as canonical
JSON text already (sorted keys, no whitespace) and go into the array verbatim, so checking a row parses no
JSON and the verifier can read those columns as raw UTF-8 bytes — that is what makes :func:`check_rows`
fast. The first row of a fresh log links to :data:`GENESIS` (64 zeros).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

GENESIS = "0" * 64
FORMAT = 1

SCALAR_COLUMNS = (
    "id", "time_us", "request_id", "response_id", "key_name", "model_alias", "artifact_id", "endpoint", "status",
    "action", "latency_ms", "tokens_in", "tokens_out",
)
JSON_COLUMNS = ("input", "output", "verdicts", "meta")
ROW_COLUMNS = (*SCALAR_COLUMNS, *JSON_COLUMNS, "previous_hash", "hash")  # the order rows are selected in

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _fast_list_encoder():
    """json's C encoder built once (``JSONEncoder.encode`` builds one per call); same bytes, ~1.5× faster."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _encode

    def default(o: Any) -> Any:
        raise TypeError(f"{type(o).__name__} is not a JSON scalar")

    try:
        c = make(None, default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
        sample = [FORMAT, 1, "é\"x", None, 1.5, -0.0, 10**20]
        if "".join(c(sample, 0)) != _encode(sample):
            return _encode
    except TypeError:  # a Python whose C encoder takes other arguments
        return _encode
    return lambda values: "".join(c(values, 0))


_encode_list = _fast_list_encoder()


def canonical_json(value: Any) -> str:
    """The canonical JSON text of a payload value (sorted keys, no spaces, UTF-8, no NaN)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_bytes(scalars: tuple | list, payloads: tuple[bytes, ...]) -> bytes:
    """The bytes a row's hash covers: scalars in SCALAR_COLUMNS order, payload JSON as UTF-8 bytes."""
    head = _encode_list([FORMAT, *scalars])
    return head[:-1].encode("utf-8") + b"," + b",".join(payloads) + b"]"


def canonical_row(row: dict[str, Any]) -> bytes:
    """The bytes a row's hash covers (``row`` maps column name to stored value)."""
    return canonical_bytes([row[k] for k in SCALAR_COLUMNS], tuple(row[k].encode("utf-8") for k in JSON_COLUMNS))


def row_hash(previous_hash: str, row: dict[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(previous_hash) + canonical_row(row)).hexdigest()


# ---- checking a stream of rows -----------------------------------------------------------------------
@dataclass
class Problem:
    """The first thing found wrong: the row it names and what is wrong with it."""

    row: int | None
    kind: str  # edited | unlinked | missing | out_of_order | checkpoint_mismatch | truncated | checkpoint | start
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "kind": self.kind, "message": self.message}


@dataclass
class ChainState:
    """What :func:`check_rows` saw: rows checked, first/last row and hash, and the first problem (if any)."""

    rows: int = 0
    first_id: int | None = None
    last_id: int | None = None
    last_hash: str | None = None
    checkpoints_matched: int = 0
    problem: Problem | None = None


def check_rows(
    rows: Iterable[tuple],
    *,
    starts: dict[int, str],
    checkpoints: dict[int, str],
) -> ChainState:
    """Check rows (tuples in :data:`ROW_COLUMNS` order, ascending ``id``, payload columns as UTF-8 ``bytes``)
    and stop at the first problem.

    ``starts`` maps each row id the chain may legitimately begin at to the hash it must link to: ``{1:
    GENESIS}`` plus, for each signed prune, its first kept row and the checkpointed hash before it.
    ``checkpoints`` maps a row id to the hash a valid signed checkpoint recorded for it.
    """
    st = ChainState()
    n_s = len(SCALAR_COLUMNS)
    scalars = itemgetter(*range(n_s))
    payloads = itemgetter(*range(n_s, n_s + len(JSON_COLUMNS)))
    i_prev, i_hash = ROW_COLUMNS.index("previous_hash"), ROW_COLUMNS.index("hash")
    sha, fromhex, encode, version = hashlib.sha256, bytes.fromhex, _encode_list, FORMAT
    expected_id: int | None = None
    prev_hash = before_last = ""
    for r in rows:
        rid = r[0]
        if rid != expected_id:
            if expected_id is None:
                st.first_id = rid
                if rid not in starts:
                    below = sorted(s for s in starts if s < rid)
                    gap_from = below[-1] if below else 1
                    st.problem = Problem(gap_from, "missing", f"rows {gap_from}–{rid - 1} are missing (deleted): the log starts at row "
                                         f"{rid} and no signed prune allows that")
                    return st
                prev_hash = starts[rid]
            elif rid > expected_id:
                what = f"row {expected_id} is missing (deleted)" if rid == expected_id + 1 else f"rows {expected_id}–{rid - 1} are missing (deleted)"
                st.problem = Problem(expected_id, "missing", what)
                return st
            else:
                st.problem = Problem(rid, "out_of_order", f"row {rid} appears after row {expected_id - 1}")
                return st
        try:
            body = b"".join((encode([version, *scalars(r)])[:-1].encode("utf-8"), b",", b",".join(payloads(r)), b"]"))
        except (TypeError, ValueError) as exc:
            st.problem = Problem(rid, "edited", f"row {rid}: a column holds a value the chain cannot hold ({exc})")
            return st
        if r[i_prev] != prev_hash:
            st.problem = _unlinked(rid, r[i_prev], r[i_hash], body, before_last)
            return st
        digest = sha(fromhex(prev_hash) + body).hexdigest()
        if digest != r[i_hash]:
            st.problem = Problem(rid, "edited", f"row {rid}: its content does not match its hash (the row was edited)")
            return st
        cp = checkpoints.get(rid)
        if cp is not None:
            if cp != digest:
                st.problem = Problem(rid, "checkpoint_mismatch", f"row {rid}: hash differs from the signed checkpoint for it "
                                     "(this row, or a row since the previous checkpoint, was changed or inserted and the chain re-hashed)")
                return st
            st.checkpoints_matched += 1
        before_last, prev_hash = prev_hash, digest
        expected_id = rid + 1
        st.rows += 1
    st.last_id = expected_id - 1 if expected_id is not None else None
    st.last_hash = prev_hash or None
    return st


def _unlinked(rid: int, stored_prev: str, stored_hash: str, body: bytes, before_last: str) -> Problem:
    """Row ``rid`` does not link to the row before it: say which row is the culprit, where the rows tell."""
    if stored_prev == before_last and rid > 1:
        return Problem(rid - 1, "inserted", f"row {rid - 1} was inserted: row {rid} links to row {rid - 2}, not to it")
    try:
        intact = hashlib.sha256(bytes.fromhex(stored_prev) + body).hexdigest() == stored_hash
    except ValueError:
        intact = False
    if intact:  # row rid is intact and records the hash row rid-1 had: rid-1 was changed and re-hashed
        return Problem(rid - 1, "rewritten", f"row {rid - 1} was rewritten: its hash is not the one row {rid} recorded for it")
    return Problem(rid, "unlinked", f"row {rid}: previous_hash does not match the hash of row {rid - 1} "
                   "(this row was edited, moved, or rows before it were deleted and renumbered)")
