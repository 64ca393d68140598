"""Shadow and canary results (``kogata.ops.tables.TrafficSplitRow``): read by ``kogata models alias promote``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "traffic_split" in set(sa.inspect(op.get_bind()).get_table_names()):
        return
    op.create_table(
        "traffic_split",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("alias", sa.String(200), nullable=False),
        sa.Column("artifact_id", sa.String(64), nullable=False),
        sa.Column("primary_artifact_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("primary_latency_ms", sa.Float(), nullable=True),
        sa.Column("guard_action", sa.String(16), nullable=True),
        sa.Column("primary_guard_action", sa.String(16), nullable=True),
        sa.Column("agreement", sa.Float(), nullable=True),
    )
    op.create_index("ix_traffic_split_artifact", "traffic_split", ["artifact_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_traffic_split_artifact", table_name="traffic_split")
    op.drop_table("traffic_split")
