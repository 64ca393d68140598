"""The web UI's local users (``kogata.core.tables_ui.UserRow``): name, argon2 password hash, role.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "ui_users" in set(sa.inspect(op.get_bind()).get_table_names()):
        return
    op.create_table(
        "ui_users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("last_login", sa.Float(), nullable=True),
        sa.UniqueConstraint("name", name="uq_ui_users_name"),
    )


def downgrade() -> None:
    op.drop_table("ui_users")
