"""entity history segments (sequence-mode state between batches)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entity_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("context_signature", sa.String(length=64), nullable=False),
        sa.Column("first_time", sa.Float(), nullable=False),
        sa.Column("last_time", sa.Float(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset", "batch_id", name="uq_history_dataset_batch"),
    )
    with op.batch_alter_table("entity_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_history_dataset_last_time", ["dataset", "last_time"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("entity_history", schema=None) as batch_op:
        batch_op.drop_index("ix_history_dataset_last_time")
    op.drop_table("entity_history")
