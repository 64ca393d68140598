"""The web UI's table in the store database: its local users (created by migration ``0004``).

Only the argon2id hash of a password is stored; ``role`` is ``viewer``, ``reviewer`` or ``admin``
(:mod:`kogata.serve.ui.users` manages the rows).
"""

from __future__ import annotations

import time

from sqlalchemy import Float, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kogata.core.db import Base


class UserRow(Base):
    __tablename__ = "ui_users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    created: Mapped[float] = mapped_column(Float, default=time.time)
    last_login: Mapped[float | None] = mapped_column(Float, nullable=True)
