"""operations: run role and scoring time, run health (drift watch), source
manifests and watermarks for scheduled runs

Revision ID: 0006_operations
Revises: 0004_production_path
Create Date: 2026-11-30 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_operations"
down_revision: str | None = "0004_production_path"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("scoring_runs") as batch:
        batch.add_column(
            sa.Column("role", sa.String(length=16), nullable=False, server_default="primary")
        )
        batch.add_column(sa.Column("score_seconds", sa.Float(), nullable=True))
    op.create_table(
        "run_health",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("score_psi", sa.Float(), nullable=True),
        sa.Column("score_ks", sa.Float(), nullable=True),
        sa.Column("flag_rate", sa.Float(), nullable=True),
        sa.Column("expected_flag_rate", sa.Float(), nullable=True),
        sa.Column("unseen_share", sa.Float(), nullable=True),
        sa.Column("alarms", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["scoring_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "source_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_key", sa.String(length=300), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("scored_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["scoring_runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_key", "path", "content_hash", name="uq_source_file"),
    )
    op.create_index("ix_source_files_run_id", "source_files", ["run_id"])
    op.create_table(
        "source_watermarks",
        sa.Column("source_key", sa.String(length=300), nullable=False),
        sa.Column("column", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["scoring_runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("source_key"),
    )


def downgrade() -> None:
    op.drop_table("source_watermarks")
    op.drop_index("ix_source_files_run_id", table_name="source_files")
    op.drop_table("source_files")
    op.drop_table("run_health")
    with op.batch_alter_table("scoring_runs") as batch:
        batch.drop_column("score_seconds")
        batch.drop_column("role")
