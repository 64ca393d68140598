"""The audit log (hash-chained, append-only) and the human review queue.

Models: ``kogata.ops.tables`` (``AuditRow``, ``ReviewItemRow``). ``audit_log`` gets a trigger that refuses
``UPDATE`` (SQLite and PostgreSQL): the application never edits a row, so an edit can only come from outside —
and the hash chain shows it even when the trigger is dropped first. Rows are deleted only by ``prune``.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY on SQLite: the rowid itself


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "audit_log" not in existing:
        op.create_table(
            "audit_log",
            sa.Column("id", _ID, primary_key=True, autoincrement=False),
            sa.Column("time_us", sa.BigInteger(), nullable=False),
            sa.Column("request_id", sa.String(64), nullable=False),
            sa.Column("response_id", sa.String(64), nullable=True),
            sa.Column("key_name", sa.String(200), nullable=True),
            sa.Column("model_alias", sa.String(200), nullable=True),
            sa.Column("artifact_id", sa.String(64), nullable=True),
            sa.Column("endpoint", sa.String(64), nullable=True),
            sa.Column("status", sa.String(32), nullable=True),
            sa.Column("action", sa.String(16), nullable=True),
            sa.Column("latency_ms", sa.Float(), nullable=True),
            sa.Column("tokens_in", sa.Integer(), nullable=True),
            sa.Column("tokens_out", sa.Integer(), nullable=True),
            sa.Column("input", sa.Text(), nullable=False),
            sa.Column("output", sa.Text(), nullable=False),
            sa.Column("verdicts", sa.Text(), nullable=False),
            sa.Column("meta", sa.Text(), nullable=False),
            sa.Column("previous_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
        )
        op.create_index("ix_audit_log_time_us", "audit_log", ["time_us"])
        op.create_index("ix_audit_log_request_id", "audit_log", ["request_id"])
        op.create_index("ix_audit_log_response_id", "audit_log", ["response_id"])
        _append_only_trigger()
    if "review_items" not in existing:
        op.create_table(
            "review_items",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("created", sa.Float(), nullable=False),
            sa.Column("source", sa.String(16), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("audit_id", _ID, nullable=True),
            sa.Column("request_id", sa.String(64), nullable=True),
            sa.Column("response_id", sa.String(64), nullable=True),
            sa.Column("model_alias", sa.String(200), nullable=True),
            sa.Column("artifact_id", sa.String(64), nullable=True),
            sa.Column("prompt", sa.Text(), nullable=False),
            sa.Column("original", sa.Text(), nullable=False),
            sa.Column("corrected", sa.Text(), nullable=True),
            sa.Column("confidence", sa.Float(), nullable=True),
            sa.Column("details", sa.Text(), nullable=False),
            sa.Column("rating", sa.Integer(), nullable=True),
            sa.Column("comment", sa.Text(), nullable=True),
            sa.Column("reviewer", sa.String(200), nullable=True),
            sa.Column("reviewed_at", sa.Float(), nullable=True),
            sa.Column("reason", sa.Text(), nullable=True),
            sa.Column("released_at", sa.Float(), nullable=True),
            sa.Column("version", sa.Integer(), nullable=False),
        )
        op.create_index("ix_review_items_state", "review_items", ["state"])
        op.create_index("ix_review_items_response_id", "review_items", ["response_id"])


def _append_only_trigger() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only" + (" ON audit_log" if dialect == "postgresql" else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_index("ix_review_items_response_id", table_name="review_items")
    op.drop_index("ix_review_items_state", table_name="review_items")
    op.drop_table("review_items")
    op.drop_index("ix_audit_log_response_id", table_name="audit_log")
    op.drop_index("ix_audit_log_request_id", table_name="audit_log")
    op.drop_index("ix_audit_log_time_us", table_name="audit_log")
    op.drop_table("audit_log")
