"""Local users of the web UI: a name, an argon2id password hash and a role (``viewer`` < ``reviewer`` < ``admin``).

The table ``ui_users`` (:mod:`kogata.core.tables_ui`) is created by migration ``0004``. Only the argon2 hash is stored (``argon2-cffi``'s
defaults: argon2id, 64 MiB, 3 passes); :meth:`UserStore.verify` re-hashes when those defaults change, and spends the
same time on an unknown name as on a wrong password (no user-name oracle).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from kogata.core.errors import KogataError
from kogata.core.tables_ui import UserRow

ROLES = ("viewer", "reviewer", "admin")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024


@dataclass(frozen=True)
class User:
    name: str
    role: str
    local: bool = False  # the implicit admin of a loopback-only server (no login)

    def can(self, role: str) -> bool:
        """True when this user's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


LOCAL_ADMIN = User(name="local", role="admin", local=True)


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def role_rank(role: str) -> int:
    return ROLES.index(role)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise KogataError(f"role {role!r} is not known", f"use one of: {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise KogataError(f"user name {name!r} is not allowed",
                          "use 1-64 letters, digits and . _ @ - (starting with a letter or digit)")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise KogataError(f"password is {len(password)} characters long", f"use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise KogataError(f"password is {len(password)} characters long", f"use at most {MAX_PASSWORD} characters")
    return password


class UserStore:
    """The ``ui_users`` table of a store database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._dummy: str | None = None

    def add(self, name: str, password: str, role: str) -> User:
        check_name(name)
        check_role(role)
        check_password(password)
        digest = _hasher().hash(password)
        with Session(self.engine) as s, s.begin():
            if s.execute(select(UserRow.id).where(UserRow.name == name)).first() is not None:
                raise KogataError(f"a user named {name!r} already exists", "choose another name, or remove the old user first")
            s.add(UserRow(id=uuid.uuid4().hex[:16], name=name, password_hash=digest, role=role, created=time.time()))
        return User(name=name, role=role)

    def list(self) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            rows = s.execute(select(UserRow).order_by(UserRow.created)).scalars().all()
            return [{"name": r.name, "role": r.role, "created": r.created, "last_login": r.last_login} for r in rows]

    def count(self) -> int:
        return len(self.list())

    def get(self, name: str) -> User | None:
        with Session(self.engine) as s:
            row = s.execute(select(UserRow).where(UserRow.name == name)).scalar_one_or_none()
            return User(name=row.name, role=row.role) if row is not None else None

    def remove(self, name: str) -> str:
        with Session(self.engine) as s, s.begin():
            done = s.execute(delete(UserRow).where(UserRow.name == name)).rowcount
        if not done:
            raise KogataError(f"no user named {name!r}", "see `kogata users list`")
        return name

    def set_role(self, name: str, role: str) -> User:
        check_role(role)
        with Session(self.engine) as s, s.begin():
            done = s.execute(update(UserRow).where(UserRow.name == name).values(role=role)).rowcount
        if not done:
            raise KogataError(f"no user named {name!r}", "see `kogata users list`")
        return User(name=name, role=role)

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None (same work either way)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        ph = _hasher()
        with Session(self.engine) as s:
            row = s.execute(select(UserRow).where(UserRow.name == name)).scalar_one_or_none()
            stored = row.password_hash if row is not None else None
        if stored is None:
            if self._dummy is None:
                self._dummy = ph.hash(uuid.uuid4().hex)
            try:
                ph.verify(self._dummy, password[:MAX_PASSWORD])
            except VerificationError:
                pass
            return None
        try:
            ph.verify(stored, password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            return None
        values: dict[str, Any] = {"last_login": time.time()}
        if ph.check_needs_rehash(stored):
            values["password_hash"] = ph.hash(password)
        with Session(self.engine) as s, s.begin():
            s.execute(update(UserRow).where(UserRow.name == name).values(**values))
        return User(name=row.name, role=row.role)
