"""label rows index their case and flag only where they have one

Revision ID: 0010_partial_label_indexes
Revises: 0008_drop_legacy_reviews
Create Date: 2026-12-03 12:00:00

Why: ``labels.case_id`` and ``labels.flag_id`` are set on verdicts given in the review app
and NULL on every imported row (a chargeback file names records, not cases). Their
indexes are read only to find the labels of a case or a flag, so NULL entries are never
looked up, yet a bulk import paid an entry in each for every row. Partial indexes
(``WHERE ... IS NOT NULL``, on PostgreSQL and SQLite alike) keep the lookups and drop
that cost. The downgrade brings back the full indexes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_partial_label_indexes"
down_revision: str | None = "0009_entity_tags_and_merges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("case_id", "flag_id")


def upgrade() -> None:
    for column in _COLUMNS:
        name = f"ix_labels_{column}"
        op.drop_index(name, table_name="labels")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "labels", [column], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for column in _COLUMNS:
        name = f"ix_labels_{column}"
        op.drop_index(name, table_name="labels")
        op.create_index(name, "labels", [column])
