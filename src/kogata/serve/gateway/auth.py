"""API keys: ``kg-`` + 32 random bytes (url-safe base64), stored only as their sha256 in ``api_keys``.

A key may carry a requests/minute limit, a tokens/minute limit and a list of allowed models (aliases, artifact
names or ids; ``None`` = all). The reserved entry ``@admin`` in ``allowed_models`` marks an admin key (it may
call ``/admin``); aliases cannot start with ``@``, so the two never clash.

The server keeps the active keys in memory (refreshed from the database every few seconds, so a key revoked by
``kogata serve keys revoke`` in another process stops working within ``refresh_s``) and compares digests with
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from kogata.core.errors import KogataError
from kogata.core.tables import ApiKey, KeyUsage

TOKEN_PREFIX = "kg-"
ADMIN_SCOPE = "@admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key (by id and name, with its limits) or anonymous (keys not required)."""

    key_id: str | None
    name: str
    rpm: int | None = None
    tpm: int | None = None
    allowed_models: tuple[str, ...] | None = None
    admin: bool = False

    @property
    def anonymous(self) -> bool:
        return self.key_id is None

    def may_use(self, *names: str) -> bool:
        if self.allowed_models is None:
            return True
        return any(n in self.allowed_models for n in names if n)


ANONYMOUS = Principal(key_id=None, name="-")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _principal(row: ApiKey) -> Principal:
    allowed = row.allowed_models
    models = None if allowed is None else tuple(m for m in allowed if m != ADMIN_SCOPE)
    admin = bool(allowed) and ADMIN_SCOPE in allowed
    if allowed is not None and models == () and admin:
        models = None  # an admin key without a model list may use every model
    return Principal(key_id=row.id, name=row.name, rpm=row.rpm, tpm=row.tpm, allowed_models=models, admin=admin)


class KeyStore:
    def __init__(self, engine: Engine, *, refresh_s: float = 2.0):
        self.engine = engine
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._by_hash: dict[str, tuple[str, Principal]] = {}
        self._loaded_at = 0.0

    # ---- management (CLI) --------------------------------------------------------------------------
    def create(self, name: str, *, rpm: int | None = None, tpm: int | None = None, models: list[str] | None = None,
               admin: bool = False) -> tuple[Principal, str]:
        """A new key named ``name``; returns it and the secret token (shown once, never stored)."""
        if not name or len(name) > 200:
            raise KogataError("a key needs a name of 1-200 characters", "kogata serve keys create NAME")
        for label, v in (("--rpm", rpm), ("--tpm", tpm)):
            if v is not None and v < 1:
                raise KogataError(f"{label} must be at least 1, got {v}", f"leave {label} out for no limit")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        allowed = list(models) if models else None
        if admin:
            allowed = (allowed or []) + [ADMIN_SCOPE]
        row = ApiKey(id=uuid.uuid4().hex[:16], name=name, key_hash=hash_token(token), created=time.time(),
                     revoked=None, rpm=rpm, tpm=tpm, allowed_models=allowed)
        with Session(self.engine) as s, s.begin():
            if s.execute(select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
                raise KogataError(f"a key named {name!r} already exists", "choose another name, or revoke the old key first")
            s.add(row)
            who = _principal(row)
        self._loaded_at = 0.0
        return who, token

    def list(self, *, include_revoked: bool = True) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            rows = s.execute(select(ApiKey).order_by(ApiKey.created)).scalars().all()
            return [{"id": r.id, "name": r.name, "created": r.created, "revoked": r.revoked, "rpm": r.rpm, "tpm": r.tpm,
                     "allowed_models": [m for m in (r.allowed_models or []) if m != ADMIN_SCOPE] or None,
                     "admin": ADMIN_SCOPE in (r.allowed_models or [])}
                    for r in rows if include_revoked or r.revoked is None]

    def revoke(self, ref: str) -> str:
        """Revoke by name or id; returns the name."""
        with Session(self.engine) as s, s.begin():
            row = s.execute(select(ApiKey).where((ApiKey.name == ref) | (ApiKey.id == ref))).scalar_one_or_none()
            if row is None:
                raise KogataError(f"no API key named {ref!r}", "see `kogata serve keys list`")
            if row.revoked is None:
                s.execute(update(ApiKey).where(ApiKey.id == row.id).values(revoked=time.time()))
            name = row.name
        self._loaded_at = 0.0
        return name

    def active_count(self) -> int:
        with Session(self.engine) as s:
            return s.execute(select(func.count()).select_from(ApiKey).where(ApiKey.revoked.is_(None))).scalar_one()

    def usage(self, ref: str | None = None, *, since_minute: int | None = None) -> list[dict[str, Any]]:
        """Requests and tokens in/out per key (summed over minutes ≥ ``since_minute``)."""
        q = (select(ApiKey.id, ApiKey.name, func.coalesce(func.sum(KeyUsage.requests), 0), func.coalesce(func.sum(KeyUsage.tokens_in), 0),
                    func.coalesce(func.sum(KeyUsage.tokens_out), 0), func.max(KeyUsage.minute))
             .select_from(ApiKey).outerjoin(KeyUsage, KeyUsage.key_id == ApiKey.id).group_by(ApiKey.id, ApiKey.name).order_by(ApiKey.name))
        if since_minute is not None:
            q = q.where((KeyUsage.minute >= since_minute) | KeyUsage.minute.is_(None))
        if ref:
            q = q.where((ApiKey.name == ref) | (ApiKey.id == ref))
        with Session(self.engine) as s:
            rows = s.execute(q).all()
        if ref and not rows:
            raise KogataError(f"no API key named {ref!r}", "see `kogata serve keys list`")
        return [{"id": r[0], "name": r[1], "requests": int(r[2]), "tokens_in": int(r[3]), "tokens_out": int(r[4]),
                 "last_minute": r[5]} for r in rows]

    # ---- verification (server) ---------------------------------------------------------------------
    def _refresh(self) -> None:
        with Session(self.engine) as s:
            rows = s.execute(select(ApiKey).where(ApiKey.revoked.is_(None))).scalars().all()
            table = {r.key_hash: (r.key_hash, _principal(r)) for r in rows}
        with self._lock:
            self._by_hash = table
            self._loaded_at = time.monotonic()

    def verify(self, token: str) -> Principal | None:
        """The active key whose hash matches ``token``, else None."""
        if time.monotonic() - self._loaded_at > self.refresh_s:
            self._refresh()
        digest = hash_token(token)
        stored, principal = self._by_hash.get(digest, ("", None))
        return principal if principal is not None and hmac.compare_digest(stored, digest) else None


def bearer_token(authorization: str | None, x_api_key: str | None = None) -> str | None:
    """The token of ``Authorization: Bearer kg-...`` (or of an ``x-api-key`` header)."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_api_key.strip() if x_api_key and x_api_key.strip() else None
