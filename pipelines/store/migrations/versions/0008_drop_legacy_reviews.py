"""drop the legacy reviews table; any rows in it become label rows first

Revision ID: 0008_drop_legacy_reviews
Revises: 0007_lean_scores
Create Date: 2026-12-03 09:00:00

Why: ``reviews`` (flag id, analyst, ``confirmed`` / ``dismissed``) came before the review
app; verdicts are label rows since (``labels``: what is known about a record and when it
became known). Nothing writes ``reviews`` any more, but a store may still hold rows from
then: each becomes a label row (confirmed = fraud, dismissed = not fraud, anything else
= unsure) with the flag's record, model, score and threshold, known when it was reviewed,
so no verdict is lost. The downgrade recreates the table empty; the label rows stay.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_drop_legacy_reviews"
down_revision: str | None = "0007_lean_scores"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LABELS_FROM_REVIEWS = """
INSERT INTO labels (
    record_id, dataset, entity, verdict, source, note, analyst, known_at, case_id,
    flag_id, model_name, model_version, score, threshold, created_at
)
SELECT
    f.record_id, r.dataset, f.entity,
    CASE
        WHEN v.verdict IN ('fraud', 'not_fraud', 'unsure') THEN v.verdict
        WHEN v.verdict = 'confirmed' THEN 'fraud'
        WHEN v.verdict = 'dismissed' THEN 'not_fraud'
        ELSE 'unsure'
    END,
    'review', v.note, SUBSTR(v.analyst, 1, 64), v.created_at, f.case_id,
    f.id, r.model_name, r.model_version, f.score, f.threshold, v.created_at
FROM reviews v
JOIN flags f ON f.id = v.flag_id
JOIN scoring_runs r ON r.id = f.run_id
ORDER BY v.id
"""


def upgrade() -> None:
    op.execute(sa.text(_LABELS_FROM_REVIEWS))
    op.drop_table("reviews")  # its index goes with it


def downgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flag_id", sa.Integer(), nullable=False),
        sa.Column("analyst", sa.String(length=128), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["flag_id"], ["flags.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reviews_flag_id"), ["flag_id"], unique=False)
