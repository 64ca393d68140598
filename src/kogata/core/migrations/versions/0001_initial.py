"""The schema of the first release: the artifact index and the optimize search state.

Stores from that release were made by ``create_all`` and have no ``alembic_version`` table; for them this
revision creates only the tables they lack (``optimize_*`` appeared only once a search had run), then stamps 0001.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "artifacts" not in existing:
        op.create_table(
            "artifacts",
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("format", sa.String(16), nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("architecture", sa.String(64), nullable=True),
            sa.Column("parent", sa.String(32), nullable=True),
            sa.Column("params", sa.BigInteger(), nullable=True),
            sa.Column("bytes", sa.BigInteger(), nullable=False),
            sa.Column("path", sa.Text(), nullable=False),
            sa.Column("created", sa.Float(), nullable=False),
            sa.Column("manifest", sa.JSON(), nullable=False),
        )
        op.create_index("ix_artifacts_name", "artifacts", ["name"], unique=True)
    if "optimize_runs" not in existing:
        op.create_table(
            "optimize_runs",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("project_path", sa.Text(), nullable=False),
            sa.Column("base_id", sa.String(32), nullable=False),
            sa.Column("created", sa.Float(), nullable=False),
            sa.Column("elapsed_s", sa.Float(), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
        )
    if "optimize_candidates" not in existing:
        op.create_table(
            "optimize_candidates",
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("key", sa.String(32), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
            sa.Column("label", sa.Text(), nullable=False),
            sa.Column("candidate", sa.JSON(), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("artifact_id", sa.String(32), nullable=True),
            sa.Column("artifact_ids", sa.JSON(), nullable=True),
            sa.Column("entry", sa.JSON(), nullable=True),
            sa.Column("reason", sa.Text(), nullable=True),
            sa.Column("duration_s", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("run_id", "key"),
        )


def downgrade() -> None:
    op.drop_table("optimize_candidates")
    op.drop_table("optimize_runs")
    op.drop_index("ix_artifacts_name", table_name="artifacts")
    op.drop_table("artifacts")
