"""Quarantine: rows rejected by validation, kept whole with the reason so nothing is lost.

A scoring run's rejected rows are written with its chunks (:mod:`runs`); training data
has no run, and re-training on the same file replaces its rows instead of adding to them.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from pipelines.store.database import Repository
from pipelines.store.models import QuarantinedRow


class QuarantineRepository(Repository):
    """Rejected rows in and out."""

    def add_quarantine(
        self, run_id: str | None, batch_id: str, source: str, quarantined: pd.DataFrame
    ) -> None:
        if not len(quarantined):
            return
        rows = quarantine_rows(run_id, batch_id, source, quarantined)
        with self.db.session() as session:
            session.execute(sa.insert(QuarantinedRow), rows)

    def replace_training_quarantine(
        self, batch_id: str, source: str, quarantined: pd.DataFrame
    ) -> None:
        """Training data has no scoring run; re-training on the same file replaces, not
        duplicates, its quarantined rows."""
        with self.db.session() as session:
            session.execute(
                sa.delete(QuarantinedRow).where(
                    QuarantinedRow.batch_id == batch_id, QuarantinedRow.run_id.is_(None)
                )
            )
        self.add_quarantine(None, batch_id, source, quarantined)

    def quarantine_frame(self, run_id: str) -> pd.DataFrame:
        """A run's quarantined rows."""
        with self.db.connect() as conn:
            return pd.read_sql(
                sa.select(QuarantinedRow).where(QuarantinedRow.run_id == run_id), conn
            )


def quarantine_rows(
    run_id: str | None, batch_id: str, source: str, quarantined: pd.DataFrame
) -> list[dict]:
    """Quarantine table rows for a frame of rejected rows (one shape for every writer)."""
    return [
        {
            "run_id": run_id,
            "batch_id": batch_id,
            "source": source,
            "row_number": int(r.row_number),
            "record_id": r.record_id,
            "column": r.column,
            "value": r.value,
            "reason": r.reason,
            "raw": r.raw,
        }
        for r in quarantined.itertuples(index=False)
    ]
