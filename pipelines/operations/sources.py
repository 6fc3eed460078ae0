"""Where scheduled scoring runs get new data: a watched folder or a SQL watermark.

- **Folder**: each file is scored once, and only after it stopped changing (its size and
  modification time unchanged for ``settle_seconds``: a file still being copied waits for
  the next run). Scored files are remembered in the store (``source_files``).
- **SQL**: rows whose watermark column is after the last committed watermark.

The manifest row / watermark commits in the same transaction as the run's results (the
run's completion), so a crash leaves the file or rows pending for the next run, and a
duplicate run finds the batch already scored (the store's idempotent runs) and writes
nothing twice. A run with nothing new returns at once, without loading a model.

The scheduled-score job (:mod:`pipelines.jobs.scheduled`) asks a source what is new and
what commits with its run; sources never score.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import BaseModel, Field

from pipelines.intake.ingest import Batch, DataSourceError, read_batch
from pipelines.store import ResultsStore


class FolderSource(BaseModel):
    """A folder that receives files (CSV, CSV.GZ, TSV or Parquet)."""

    kind: Literal["folder"] = "folder"
    path: str = Field(description="The folder to watch.")
    pattern: str = Field(default="*.csv", description="Which files (glob).")
    settle_seconds: float = Field(
        default=60.0, ge=0, description="A file must be unchanged this long to be scored."
    )

    @property
    def key(self) -> str:
        return f"folder:{Path(self.path).expanduser().resolve()}:{self.pattern}"

    def describe(self) -> str:
        return f"folder {self.path} ({self.pattern})"


class SqlSource(BaseModel):
    """A SQL query whose rows carry a monotonically increasing watermark column (an id,
    an ingestion timestamp)."""

    kind: Literal["sql"] = "sql"
    url: str = Field(description="SQLAlchemy URL of the database to read.")
    query: str = Field(description="SELECT giving the candidate rows (no ORDER BY needed).")
    watermark_column: str = Field(description="Rows after the last committed value are new.")

    @property
    def key(self) -> str:
        digest = hashlib.sha256(f"{self.url}\n{self.query}".encode()).hexdigest()[:16]
        return f"sql:{digest}:{self.watermark_column}"

    def describe(self) -> str:
        host = self.url.split("@")[-1]
        return f"SQL query on {host} (watermark {self.watermark_column})"


ScheduledSource = Annotated[FolderSource | SqlSource, Field(discriminator="kind")]


@dataclass
class Pending:
    """One new batch: how to read it and what to commit with its run."""

    batch: Batch
    label: str
    path: str | None = None
    size: int | None = None
    watermark: str | None = None


@dataclass
class Listing:
    pending: list[Pending]
    waiting: list[str] = field(default_factory=list)
    known: int = 0


# -- folder -------------------------------------------------------------------------------


def list_folder(store: ResultsStore, source: FolderSource, *, now: float | None = None) -> Listing:
    """New, settled files in the folder, oldest first."""
    folder = Path(source.path).expanduser()
    if not folder.is_dir():
        raise DataSourceError(f"{folder}: watched folder does not exist")
    now = time.time() if now is None else now
    scored = store.scored_file_sizes(source.key)
    pending, waiting, known = [], [], 0
    files = sorted(
        (p for p in folder.glob(source.pattern) if p.is_file()), key=lambda p: p.stat().st_mtime
    )
    for path in files:
        stat = path.stat()
        resolved = str(path.resolve())
        if (resolved, stat.st_size) in scored:
            known += 1
            continue
        if now - stat.st_mtime < source.settle_seconds:
            waiting.append(path.name)
            continue
        batch = read_batch(path)
        after = path.stat()
        if (after.st_size, after.st_mtime) != (stat.st_size, stat.st_mtime):
            waiting.append(path.name)  # it changed while we read it
            continue
        pending.append(Pending(batch=batch, label=path.name, path=resolved, size=stat.st_size))
    return Listing(pending=pending, waiting=waiting, known=known)


# -- SQL ------------------------------------------------------------------------------------


def _watermark_text(value) -> str:
    if isinstance(value, pd.Timestamp | datetime | date):
        return pd.Timestamp(value).isoformat()
    if hasattr(value, "item"):
        value = value.item()
    return repr(value) if isinstance(value, int | float) else str(value)


def _watermark_value(text: str):
    """Back to a number when it was one, so the comparison in SQL is numeric."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def list_sql(store: ResultsStore, source: SqlSource) -> Listing:
    """Rows after the committed watermark, as one batch."""
    import sqlalchemy as sa

    last = store.watermark(source.key)
    if not source.watermark_column.replace("_", "").isalnum():
        raise DataSourceError(f"watermark column {source.watermark_column!r}: use a plain name")
    column = source.watermark_column
    sql = f"SELECT * FROM ({source.query}) AS src"
    params = {}
    if last is not None:
        sql += f" WHERE src.{column} > :watermark"
        params["watermark"] = _watermark_value(last)
    sql += f" ORDER BY src.{column}"
    engine = sa.create_engine(source.url)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(sa.text(sql), conn, params=params)
    except Exception as exc:  # noqa: BLE001 - any driver error becomes a named source error
        raise DataSourceError(f"{source.describe()}: {exc}") from exc
    finally:
        engine.dispose()
    if frame.empty:
        return Listing(pending=[], known=0)
    if source.watermark_column not in frame.columns:
        raise DataSourceError(
            f"{source.describe()}: the query returns no column {source.watermark_column!r}"
        )
    batch = Batch(frame=frame.reset_index(drop=True), source=source.describe())
    mark = _watermark_text(frame[source.watermark_column].max())
    label = f"{len(frame)} rows after {last or 'the beginning'} up to {mark}"
    return Listing(pending=[Pending(batch=batch, label=label, watermark=mark)])


def list_pending(store: ResultsStore, source: FolderSource | SqlSource) -> Listing:
    if isinstance(source, FolderSource):
        return list_folder(store, source)
    return list_sql(store, source)


# -- what commits with a run --------------------------------------------------------------


def committer(store: ResultsStore, source: FolderSource | SqlSource, item: Pending):
    """What commits with the run: the file's manifest row or the new watermark."""

    def commit(session, run) -> None:
        if isinstance(source, FolderSource):
            store.record_source_file(
                session,
                source_key=source.key,
                path=item.path,
                size=item.size,
                content_hash=item.batch.content_hash,
                batch_id=run.batch_id,
                run_id=run.id,
            )
        else:
            store.advance_watermark(
                session,
                source_key=source.key,
                column=source.watermark_column,
                value=item.watermark,
                run_id=run.id,
            )

    return commit
