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
  already stored is skipped, checked for the whole import at once (an anti-join against
  the unique key, ``ON CONFLICT DO NOTHING`` for a concurrent import).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.store.audit import record_audit
from pipelines.store.database import Repository
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

        The rows go in set-wise, as a scoring run's scores do: staged with the backend's
        bulk path (PostgreSQL ``COPY``, SQLite ``executemany``, in chunks), then one
        ``INSERT .. SELECT`` that leaves out the keys already stored (an anti-join on the
        unique key, ``ON CONFLICT DO NOTHING`` for an import racing this one), in the
        file's order. All in one transaction: an import is all there or not there.
        """
        if "dedupe_key" in rows and rows["dedupe_key"].duplicated().any():
            rows = rows.drop_duplicates("dedupe_key")
        staged = _staging_table(rows, created_at=datetime.now(UTC))
        with self.db.session() as session:
            dbapi = session.connection().connection.driver_connection
            inserted = _insert_new_labels(dbapi, staged, postgres=self.db.is_postgres)
            record_audit(
                session,
                actor,
                "labels.imported",
                "labels",
                source_name,
                after={"inserted": inserted, "duplicates": len(rows) - inserted},
                detail={"rows": len(rows)},
            )
        return LabelImportResult(inserted=inserted, duplicates=len(rows) - inserted)

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


#: Label rows per staging chunk (one COPY or one executemany each): bounds the memory a
#: chunk's text takes while keeping per-chunk costs negligible.
_STAGE_CHUNK = 200_000
_TIME_COLUMNS = ("known_at", "created_at")
#: SQLite page cache while importing, in KiB.
_SQLITE_IMPORT_CACHE_KIB = 256 * 1024
_NUMBER_TYPES = {
    "case_id": pa.int64(),
    "flag_id": pa.int64(),
    "score": pa.float64(),
    "threshold": pa.float64(),
}


def _staging_table(rows: pd.DataFrame, *, created_at: datetime) -> pa.Table:
    """The rows as an Arrow table of the stored columns (``ord`` first: the file's
    order), columns NULL in every row left out, times as UTC text
    (``YYYY-MM-DD HH:MM:SS.ffffff``, the form SQLAlchemy stores in SQLite)."""
    arrays = {"ord": pa.array(range(len(rows)), type=pa.int64())}
    for column in LABEL_COLUMNS:
        if column in _TIME_COLUMNS:
            given = rows[column] if column in rows else pd.Series(pd.NaT, index=rows.index)
            times = pd.to_datetime(given, utc=True).fillna(pd.Timestamp(created_at))
            values = times.dt.tz_convert(UTC).dt.tz_localize(None).to_numpy()
            arrays[column] = pc.cast(pa.array(values.astype("datetime64[us]")), pa.string())
        elif column not in rows or rows[column].isna().all():
            continue  # NULL in every row: the column's default, nothing to send
        elif column in _NUMBER_TYPES:
            arrays[column] = pa.array(rows[column], type=_NUMBER_TYPES[column], from_pandas=True)
        else:
            values = rows[column].astype(object)
            values = values.where(values.notna(), None)
            try:
                arrays[column] = pa.array(values, type=pa.string(), from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                text = values.map(lambda v: v if v is None else str(v))
                arrays[column] = pa.array(text, type=pa.string(), from_pandas=True)
    return pa.table(arrays)


def _insert_new_labels(dbapi, staged: pa.Table, *, postgres: bool) -> int:
    """Stage the rows and insert those whose dedupe key is not stored yet; returns how
    many were inserted. ``dbapi`` is the session's driver connection (inside its
    transaction)."""
    names = staged.column_names
    columns = ", ".join(names[1:])
    if postgres:
        create = (
            "CREATE TEMP TABLE labels_in ON COMMIT DROP AS "
            f"SELECT CAST(0 AS BIGINT) AS ord, {columns} FROM labels LIMIT 0"
        )
    else:
        create = (
            "CREATE TEMP TABLE labels_in AS "
            f"SELECT CAST(0 AS INTEGER) AS ord, {columns} FROM labels LIMIT 0"
        )
    insert = (
        f"INSERT INTO labels ({columns}) SELECT {columns} FROM labels_in AS s "
        # A row without a key never matches (NULL = NULL is not true), so it goes in.
        "WHERE NOT EXISTS (SELECT 1 FROM labels AS l WHERE l.dedupe_key = s.dedupe_key) "
        # SQLite keeps the staged rows in rowid order (the file's): no sort needed there.
        f"ORDER BY s.{'ord' if postgres else 'rowid'}"
    )
    racing = f"{insert} ON CONFLICT (dedupe_key) DO NOTHING"
    cursor = dbapi.cursor()
    cache_size = None
    try:
        if not postgres:
            cursor.execute("DROP TABLE IF EXISTS temp.labels_in")
            # The unique key's index takes random insertions: with SQLite's default page
            # cache (2 MB) a large import spends its time re-reading index pages.
            cache_size = cursor.execute("PRAGMA cache_size").fetchone()[0]
            cursor.execute(f"PRAGMA cache_size = -{_SQLITE_IMPORT_CACHE_KIB}")
        else:
            # The planner's guess for the anti-join is far off, so it compiles the query
            # (JIT, half a second) and sorts on disk; neither is needed.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(create)
        for part in staged.to_batches(max_chunksize=_STAGE_CHUNK):
            if postgres:
                statement = f"COPY labels_in ({', '.join(names)}) FROM STDIN (FORMAT csv)"
                with cursor.copy(statement) as copy:
                    copy.write(_labels_csv(part))
            else:
                marks = ", ".join("?" * len(names))
                cursor.executemany(
                    f"INSERT INTO labels_in ({', '.join(names)}) VALUES ({marks})",
                    zip(*(column.to_pylist() for column in part.columns), strict=True),
                )
        if postgres:
            cursor.execute("ANALYZE labels_in")
            inserted = _insert_unless_raced(cursor, insert, racing)
        else:  # SQLite: the statement holds the write lock, so no import races it
            cursor.execute(racing)
            inserted = cursor.rowcount
        if not postgres:
            cursor.execute("DROP TABLE temp.labels_in")
    finally:
        if cache_size is not None:
            cursor.execute(f"PRAGMA cache_size = {int(cache_size)}")
        cursor.close()
    return int(inserted)


#: PostgreSQL's SQLSTATE of a unique key violation.
_UNIQUE_VIOLATION = "23505"


def _insert_unless_raced(cursor, insert: str, racing: str) -> int:
    """Insert the staged rows the anti-join found new; if an import committed the same
    keys in the meantime, insert again skipping those (``ON CONFLICT DO NOTHING``).

    The plain insert is the common case and the cheaper one: an ``ON CONFLICT`` insert
    checks the unique index before each row and writes one more WAL record per row."""
    cursor.execute("SAVEPOINT labels_insert")
    try:
        cursor.execute(insert)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
            raise
        cursor.execute("ROLLBACK TO SAVEPOINT labels_insert")
        cursor.execute(racing)
    inserted = cursor.rowcount
    cursor.execute("RELEASE SAVEPOINT labels_insert")
    return int(inserted)


def _labels_csv(part: pa.RecordBatch) -> memoryview:
    """One staging chunk as CSV for ``COPY``, written by Arrow: strings quoted (any text
    survives, an empty string stays empty), missing values unquoted empty (NULL), times
    marked UTC."""
    import pyarrow.csv as pacsv

    columns = [
        pc.binary_join_element_wise(column, "+00", "") if name in _TIME_COLUMNS else column
        for name, column in zip(part.schema.names, part.columns, strict=True)
    ]
    table = pa.Table.from_arrays(columns, names=part.schema.names)
    out = pa.BufferOutputStream()
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False))
    return memoryview(out.getvalue())


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
