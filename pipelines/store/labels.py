"""Labels: what is known about a record and when it became known.

Rules that live here:

- label rows are immutable and append-only: a changed verdict is a new row, an undo is a
  ``withdrawn`` row;
- the label of a record is its *latest* row: the greatest ``known_at`` (the time it became
  known, not the time it was stored: an imported chargeback may be older than a review),
  ties going to the row stored later. One query, :func:`latest_label_query`, decides it
  for every reader;
- "what was known at t": only rows with ``known_at < t`` take part;
- a latest ``unsure`` or ``withdrawn`` row means the record has *no label*;
- imports are idempotent: each row carries a ``dedupe_key``, and a row whose key is
  already stored is skipped (``INSERT .. ON CONFLICT DO NOTHING`` on the unique key).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.store.audit import record_audit
from pipelines.store.database import Repository, insert_ignoring_conflicts
from pipelines.store.errors import aware
from pipelines.store.models import Label
from pipelines.store.vocabulary import COUNTING_VERDICTS, WITHDRAWN, Verdict

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
#: Record ids per query when reading the labels of given records (bound-parameter limits).
_IDS_PER_QUERY = 1000


@dataclass
class LabelImportResult:
    """What an import wrote: new rows, rows already stored (same dedupe key)."""

    inserted: int
    duplicates: int


def latest_label_query(
    *,
    known_before: datetime | None = None,
    dataset: str | None = None,
    record_ids: Sequence[str] | None = None,
) -> sa.Select:
    """The latest label row per record (every column of :data:`LABEL_COLUMNS`, with the
    row's id as ``label_id``), oldest first.

    Latest = greatest ``known_at``, ties going to the greater id (the row stored later).
    Only rows known before ``known_before`` take part; with ``dataset``, rows of other data
    sets are left out (rows without a data set apply to any). ``withdrawn`` and ``unsure``
    rows are latest rows like any other: readers decide what they mean.
    """
    recency = (
        sa.func.row_number()
        .over(partition_by=Label.record_id, order_by=(Label.known_at.desc(), Label.id.desc()))
        .label("recency")
    )
    ranked = sa.select(
        Label.id.label("label_id"), *(getattr(Label, c) for c in LABEL_COLUMNS), recency
    )
    if known_before is not None:
        ranked = ranked.where(Label.known_at < known_before)
    if dataset is not None:
        ranked = ranked.where(sa.or_(Label.dataset.is_(None), Label.dataset == dataset))
    if record_ids is not None:
        ranked = ranked.where(Label.record_id.in_(list(record_ids)))
    rows = ranked.subquery()
    columns = [rows.c.label_id, *(rows.c[c] for c in LABEL_COLUMNS)]
    return sa.select(*columns).where(rows.c.recency == 1).order_by(rows.c.known_at, rows.c.label_id)


def latest_labels(session: Session, record_ids: Sequence[str]) -> dict[str, dict]:
    """What people see of each record's label, inside the caller's transaction: verdict,
    analyst, reason code, note, when it became known, source. Records whose latest row
    is ``withdrawn`` have none; ``unsure`` is shown."""
    out: dict[str, dict] = {}
    for part in _chunks(list(record_ids)):
        for row in session.execute(latest_label_query(record_ids=part)):
            if row.verdict == WITHDRAWN:
                continue
            out[row.record_id] = {
                "verdict": row.verdict,
                "analyst": row.analyst,
                "reason_code": row.reason_code,
                "note": row.note,
                "known_at": aware(row.known_at),
                "source": row.source,
            }
    return out


class LabelRepository(Repository):
    """Label rows in (imports) and out (every row, or the label of each record)."""

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
        with self.db.session() as session:
            inserted = 0
            for start in range(0, len(records), 1000):
                chunk = records[start : start + 1000]
                statement = (
                    insert_ignoring_conflicts(session, Label)
                    .values(chunk)
                    .on_conflict_do_nothing(index_elements=["dedupe_key"])
                    .returning(Label.id)
                )
                # rowcount is -1 for multi-row inserts on some drivers; count what came back.
                inserted += len(session.execute(statement).all())
            record_audit(
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
        """Every label row known before ``known_before`` (all when None), oldest first,
        with its id as ``label_id``: the full history, for exports."""
        columns = [getattr(Label, c) for c in LABEL_COLUMNS]
        query = sa.select(Label.id.label("label_id"), *columns).order_by(Label.id)
        if known_before is not None:
            query = query.where(Label.known_at < known_before)
        return self._frame(query)

    def latest_label_rows(
        self,
        *,
        known_before: datetime | None = None,
        dataset: str | None = None,
        record_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The latest label row per record as a DataFrame (see :func:`latest_label_query`);
        ``withdrawn`` and ``unsure`` rows included."""
        everyone = latest_label_query(known_before=known_before, dataset=dataset)
        if record_ids is None:
            return self._frame(everyone)
        ids = list(dict.fromkeys(map(str, record_ids)))
        if len(ids) > _IDS_PER_QUERY * 10:
            # Many records (every record of a batch): one pass over the labels, which are
            # far fewer than scored records, costs less than a query per thousand ids.
            latest = self._frame(everyone)
            return latest.loc[latest["record_id"].isin(ids)].reset_index(drop=True)
        frames = [
            self._frame(
                latest_label_query(known_before=known_before, dataset=dataset, record_ids=part)
            )
            for part in _chunks(ids)
        ]
        if not frames:
            return self._frame(latest_label_query(record_ids=[]))
        return pd.concat(frames, ignore_index=True)

    def known_labels(
        self, *, known_before: datetime | None = None, dataset: str | None = None
    ) -> pd.DataFrame:
        """The label of each record as known before ``known_before``: one row per record
        whose latest verdict then was ``fraud`` or ``not_fraud``.

        Labels without a data set apply to any data set; with ``dataset`` given, other
        data sets' labels are left out. Columns: record_id, entity, verdict, source,
        known_at, analyst, y (1 = fraud).
        """
        latest = self.latest_label_rows(known_before=known_before, dataset=dataset)
        return _counting(latest)[
            ["record_id", "entity", "verdict", "source", "known_at", "analyst", "y"]
        ]

    def latest_verdicts(self, record_ids: Sequence[str]) -> pd.Series:
        """The label of each of these records (1 fraud, 0 not fraud), indexed by record id;
        records without one (none, or a latest ``unsure`` or ``withdrawn``) are left out."""
        latest = _counting(self.latest_label_rows(record_ids=record_ids))
        return pd.Series(latest["y"].to_numpy(), index=latest["record_id"].to_numpy())

    def _frame(self, query: sa.Select) -> pd.DataFrame:
        with self.db.connect() as conn:
            frame = pd.read_sql(query, conn)
        for column in ("known_at", "created_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame


def _counting(latest: pd.DataFrame) -> pd.DataFrame:
    """The rows whose verdict counts as a label, with ``y`` (1 = fraud)."""
    counting = latest.loc[latest["verdict"].isin(COUNTING_VERDICTS)].copy()
    counting["y"] = (counting["verdict"] == Verdict.FRAUD).astype("int64")
    return counting.reset_index(drop=True)


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _IDS_PER_QUERY):
        yield ids[start : start + _IDS_PER_QUERY]


def _missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
