"""Signed checkpoints: Ed25519 signatures over (row id, row hash, time), appended to a JSONL file.

``$KOGATA_HOME/audit/checkpoints.jsonl`` holds one JSON object per line, each signed and each linked to the
line before it (``prev`` = sha256 of the previous line's canonical JSON, :data:`GENESIS` for the first), so a
line cannot be edited, dropped from the middle or moved without ``verify`` noticing::

    {"kind": "checkpoint", "seq": 3, "row": 3000, "hash": "<row 3000's hash>", "time_us": …, "prev": "…",
     "key": "<key id>", "sig": "<hex Ed25519 signature>"}
    {"kind": "prune", "seq": 4, "first_row": 2001, "anchor": "<hash of row 2000>", "keep_days": 90, …}

A ``prune`` line authorises deleting every row before ``first_row``: the chain may then begin at
``first_row``, linking to ``anchor`` (a hash an earlier checkpoint signed). The key pair is made on first use:
``$KOGATA_HOME/keys/audit_ed25519`` (PKCS#8 PEM, mode 0600) and ``audit_ed25519.pub``. The signature covers
the canonical JSON of every field except ``sig``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kogata.core.errors import KogataError
from kogata.ops.audit.chain import GENESIS, Problem, canonical_json

PRIVATE_NAME = "audit_ed25519"
PUBLIC_NAME = "audit_ed25519.pub"


# ---- keys --------------------------------------------------------------------------------------------
def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _create_exclusive(path: Path, data: bytes, mode: int) -> bool:
    """Write ``path`` only if it does not exist yet (atomically, safe against a second process). True if written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # fails if another process made the file first
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create_key(keys_dir: Path) -> Ed25519PrivateKey:
    """The signing key under ``keys_dir``, generated (0600) on first use."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    private = keys_dir / PRIVATE_NAME
    if not private.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        _create_exclusive(private, pem, 0o600)
    try:
        key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KogataError(f"audit signing key {private} cannot be read ({exc})", "restore it from a backup; never edit it") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KogataError(f"audit signing key {private} is not an Ed25519 key", "restore the original key file")
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _create_exclusive(keys_dir / PUBLIC_NAME, pub, 0o644)
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise KogataError(f"public key {path} cannot be read ({exc})", "pass the audit_ed25519.pub written next to the signing key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KogataError(f"{path} is not an Ed25519 public key", "pass the audit_ed25519.pub written next to the signing key")
    return key


# ---- the file ------------------------------------------------------------------------------------------
def line_digest(obj: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def _last_line(path: Path) -> str | None:
    """The last complete line of ``path`` (reads only the file's tail)."""
    if not path.exists():
        return None
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        block = 4096
        while True:
            start = max(0, size - block)
            fh.seek(start)
            data = fh.read(size - start)
            end = data.rfind(b"\n")  # a last line without its newline is torn (a crash mid-write): not a line
            if end < 0:
                if start == 0:
                    return None
                block *= 4
                continue
            body = data[:end]
            cut = body.rfind(b"\n")
            if cut >= 0 or start == 0:
                line = body[cut + 1:]
                return line.decode("utf-8") if line.strip() else None
            block *= 4


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path`` shared by every process writing it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _drop_torn_tail(path: Path) -> None:
    """A crash mid-write leaves a last line without its newline: it was never complete, so cut it off."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        fh.truncate(data.rfind(b"\n") + 1)
        fh.flush()
        os.fsync(fh.fileno())


class CheckpointFile:
    """Appends signed lines to ``checkpoints.jsonl``; :func:`read_checkpoints` checks them."""

    def __init__(self, path: Path, key: Ed25519PrivateKey):
        self.path = Path(path)
        self.key = key
        self.key_id = key_id(key.public_key())

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        with _locked(self.path):
            _drop_torn_tail(self.path)
            last = _last_line(self.path)
            prev_obj = json.loads(last) if last else None
            obj: dict[str, Any] = {
                "kind": kind,
                "seq": (prev_obj["seq"] + 1) if prev_obj else 1,
                **fields,
                "time_us": time.time_ns() // 1000,
                "prev": line_digest(prev_obj) if prev_obj else GENESIS,
                "key": self.key_id,
            }
            obj["sig"] = self.key.sign(canonical_json(obj).encode("utf-8")).hex()
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(canonical_json(obj) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            return obj

    def last(self, kind: str | None = None) -> dict[str, Any] | None:
        """The last line (of ``kind``: scans back only when the last line is of another kind)."""
        line = _last_line(self.path)
        if line is None:
            return None
        obj = json.loads(line)
        if kind is None or obj.get("kind") == kind:
            return obj
        for o in reversed(list(iter_lines(self.path))):
            if isinstance(o, dict) and o.get("kind") == kind:
                return o
        return None


def iter_lines(path: Path) -> Iterator[Any]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield None


@dataclass
class CheckpointSet:
    """The verified content of the checkpoint file."""

    checkpoints: dict[int, str] = field(default_factory=dict)  # row id -> signed hash
    starts: dict[int, str] = field(default_factory=lambda: {1: GENESIS})  # row id the chain may begin at -> anchor
    count: int = 0
    last_row: int = 0  # highest row id a checkpoint vouches for
    problem: Problem | None = None


def read_checkpoints(path: Path, public: Ed25519PublicKey) -> CheckpointSet:
    """Check every line's signature, sequence number and link; stop at the first bad line."""
    out = CheckpointSet()
    kid = key_id(public)
    prev = GENESIS
    for n, obj in enumerate(iter_lines(path), 1):
        where = f"checkpoint line {n}"
        if not isinstance(obj, dict) or "sig" not in obj:
            out.problem = Problem(None, "checkpoint", f"{where} is not a signed JSON object (edited or corrupt)")
            return out
        body = {k: v for k, v in obj.items() if k != "sig"}
        try:
            public.verify(bytes.fromhex(str(obj["sig"])), canonical_json(body).encode("utf-8"))
        except (InvalidSignature, ValueError):
            signer = "" if body.get("key") == kid else f" (signed by key {body.get('key')}, not {kid})"
            out.problem = Problem(_row_of(body), "checkpoint", f"{where}: bad signature — the line was edited or forged{signer}")
            return out
        if body.get("seq") != n or body.get("prev") != prev:
            out.problem = Problem(_row_of(body), "checkpoint", f"{where}: out of sequence (seq {body.get('seq')}, expected {n}) — "
                                  "a checkpoint line was deleted, inserted or reordered")
            return out
        prev = line_digest(obj)
        out.count += 1
        if body.get("kind") == "checkpoint":
            out.checkpoints[int(body["row"])] = str(body["hash"])
            out.last_row = max(out.last_row, int(body["row"]))
        elif body.get("kind") == "prune":
            first = int(body["first_row"])
            out.starts[first] = str(body["anchor"])
    return out


def _row_of(body: dict[str, Any]) -> int | None:
    v = body.get("row", body.get("first_row"))
    return v if isinstance(v, int) else None
