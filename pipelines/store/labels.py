"""Label store methods for the feedback loop (issue 9): imports, latest verdicts as of a time.

Kept apart from ``review.py`` (the review app's side) so both can grow without conflicts;
:class:`~pipelines.store.db.ResultsStore` inherits both. Rules that live here:

- imports are idempotent: each row carries a ``dedupe_key`` and a row whose key is already
  stored is skipped (``INSERT .. ON CONFLICT DO NOTHING`` on the unique key);
- "what was known at t": only rows with ``known_at < t`` count, the latest of them per
  record decides, and a latest ``unsure`` or ``withdrawn`` means *no label*.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pipelines.store.models import Label, Score, ScoringRun

#: Verdicts that count as a label (``unsure`` and ``withdrawn`` do not).
COUNTING = ("fraud", "not_fraud")
LABEL_COLUMNS = [
    "record_id",
    "dataset",
    "entity",
    "verdict",
    "source",
    "reason_code",
    "note",
    "analyst",
    "known_at",
    "case_id",
    "flag_id",
    "model_name",
    "model_version",
    "score",
    "threshold",
    "dedupe_key",
    "created_at",
]


@dataclass
class LabelImportResult:
    """What an import wrote: new rows, rows already stored (same dedupe key)."""

    inserted: int
    duplicates: int


class LabelStoreMixin:
    """Mixed into ``ResultsStore``; relies on its ``session()``, ``engine`` and ``_audit``."""

    engine: sa.engine.Engine

    def add_label_rows(
        self, rows: pd.DataFrame, *, actor: str, source_name: str
    ) -> LabelImportResult:
        """Insert validated label rows (columns of :class:`Label`, ``dedupe_key`` set).

        Rows whose ``dedupe_key`` is already stored are skipped, so importing the same
        file twice writes nothing the second time. One audit entry per import.
        """
        records = [
            {k: (None if _missing(v) else v) for k, v in row.items()}
            for row in rows.to_dict(orient="records")
        ]
        with self.session() as session:  # type: ignore[attr-defined]
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            inserted = 0
            for start in range(0, len(records), 1000):
                chunk = records[start : start + 1000]
                statement = (
                    insert(Label)
                    .values(chunk)
                    .on_conflict_do_nothing(index_elements=["dedupe_key"])
                    .returning(Label.id)
                )
                # rowcount is -1 for multi-row inserts on some drivers; count what came back.
                inserted += len(session.execute(statement).all())
            self._audit(  # type: ignore[attr-defined]
                session,
                actor,
                "labels.imported",
                "labels",
                source_name,
                after={"inserted": inserted, "duplicates": len(records) - inserted},
                detail={"rows": len(records)},
            )
        return LabelImportResult(inserted=inserted, duplicates=len(records) - inserted)

    def label_rows(self, *, known_before: datetime | None = None) -> pd.DataFrame:
        """Every label row known before ``known_before`` (all when None), oldest first."""
        columns = [getattr(Label, c) for c in LABEL_COLUMNS]
        query = sa.select(Label.id.label("label_id"), *columns).order_by(Label.id)
        if known_before is not None:
            query = query.where(Label.known_at < known_before)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        for column in ("known_at", "created_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def known_labels(
        self, *, known_before: datetime | None = None, dataset: str | None = None
    ) -> pd.DataFrame:
        """The label of each record as known before ``known_before``: one row per record
        whose latest verdict then was ``fraud`` or ``not_fraud``.

        Latest = greatest ``known_at`` (ties: the later row). Labels without a data set
        apply to any data set; with ``dataset`` given, other data sets' labels are left out.
        Columns: record_id, entity, verdict, source, known_at, analyst, y (1 = fraud).
        """
        rows = self.label_rows(known_before=known_before)
        return latest_verdicts(rows, dataset=dataset)

    def model_scores(
        self, model_name: str, model_version: str, *, before: datetime | None = None
    ) -> pd.DataFrame:
        """Every score a model version gave in completed runs started before ``before``:
        record_id, score, run_id, run_started_at (the evidence thresholds are set from)."""
        query = (
            sa.select(
                Score.record_id,
                Score.score,
                Score.run_id,
                ScoringRun.started_at.label("run_started_at"),
            )
            .join(ScoringRun, ScoringRun.id == Score.run_id)
            .where(
                ScoringRun.model_name == model_name,
                ScoringRun.model_version == str(model_version),
                ScoringRun.status == "completed",
            )
        )
        if before is not None:
            query = query.where(ScoringRun.started_at < before)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["run_started_at"] = pd.to_datetime(frame["run_started_at"], utc=True)
        return frame


def latest_verdicts(rows: pd.DataFrame, *, dataset: str | None = None) -> pd.DataFrame:
    """Reduce label rows to the counting verdict per record (see ``known_labels``)."""
    if dataset is not None and "dataset" in rows.columns:
        rows = rows.loc[rows["dataset"].isna() | (rows["dataset"] == dataset)]
    order = ["known_at", "label_id"] if "label_id" in rows.columns else ["known_at"]
    latest = rows.sort_values(order, kind="stable").drop_duplicates("record_id", keep="last")
    latest = latest.loc[latest["verdict"].isin(COUNTING)].copy()
    latest["y"] = (latest["verdict"] == "fraud").astype("int64")
    keep = ["record_id", "entity", "verdict", "source", "known_at", "analyst", "y"]
    return latest[[c for c in keep if c in latest.columns]].reset_index(drop=True)


def _missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
