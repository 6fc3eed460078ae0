"""entity tags and notes; merged cases point at their survivor; cases found by entity

Revision ID: 0009_entity_tags_and_merges
Revises: 0008_drop_legacy_reviews
Create Date: 2026-12-03 12:00:00

Why: analysts keep what they learn about a card or customer across its cases (tags such
as ``watch`` or ``vip``, notes), filter the queue by tag, attach a flag to an existing case
and merge two cases. A merged case keeps its row (status ``merged``) and points at the
case that absorbed it, so nothing is lost. The tag filter and the "other open cases of this
entity" look-up find cases by entity, hence the index on ``cases (entity, dataset)``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_entity_tags_and_merges"
down_revision: str | None = "0008_drop_legacy_reviews"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("merged_into", sa.Integer(), nullable=True))
    op.create_index("ix_cases_merged_into", "cases", ["merged_into"])
    op.create_index("ix_cases_entity", "cases", ["entity", "dataset"])
    op.create_table(
        "entity_tags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=256), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("added_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset", "entity", "tag", name="uq_entity_tag"),
    )
    op.create_index("ix_entity_tags_tag", "entity_tags", ["tag", "dataset", "entity"])
    op.create_table(
        "entity_notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=256), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_entity_notes_entity", "entity_notes", ["dataset", "entity", "id"])


def downgrade() -> None:
    op.drop_table("entity_notes")
    op.drop_table("entity_tags")
    op.drop_index("ix_cases_entity", table_name="cases")
    op.drop_index("ix_cases_merged_into", table_name="cases")
    # The older schema knows no merged status: a merged case (it holds no flags) reads closed.
    op.execute("UPDATE cases SET status = 'closed' WHERE status = 'merged'")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("merged_into")
