"""Results store access: the one place that decides what a run wrote.

Idempotency lives here: a scoring run is keyed by (batch id, model name, model version).
Scoring a batch that already has a completed run writes nothing; a run that failed
half-way is wiped and redone, so a re-run never duplicates or drops records.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from pipelines.store.labels import LabelStoreMixin
from pipelines.store.models import (
    EntityHistorySegment,
    Flag,
    QuarantinedRow,
    Score,
    ScoringRun,
)
from pipelines.store.operations import OperationsStoreMixin
from pipelines.store.production import ProductionStoreMixin, quarantine_rows
from pipelines.store.review import ReviewStoreMixin

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The newest migration (a test checks it against Alembic's head): a store already there
#: is not handed to Alembic at all.
HEAD_REVISION = "0007_lean_scores"


def make_engine(url: str) -> Engine:
    """An engine with SQLite made safe for a CLI and a web app sharing one file."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class ResultsStore(ProductionStoreMixin, ReviewStoreMixin, LabelStoreMixin, OperationsStoreMixin):
    """Reads and writes scoring results and reviews; every write happens in one transaction."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (no-op when current).

        The common case (already current) is one query: importing Alembic and loading its
        scripts was ~0.5 CPU s of every short command."""
        if self._schema_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def _schema_revision(self) -> str | None:
        """The store's Alembic revision; None for an empty or unversioned database."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        except sa.exc.DBAPIError:
            return None
        return rows[0][0] if len(rows) == 1 else None

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- scoring runs -------------------------------------------------------------------

    def add_quarantine(
        self, run_id: str | None, batch_id: str, source: str, quarantined: pd.DataFrame
    ) -> None:
        if not len(quarantined):
            return
        rows = quarantine_rows(run_id, batch_id, source, quarantined)
        with self.session() as session:
            session.execute(sa.insert(QuarantinedRow), rows)

    def replace_training_quarantine(
        self, batch_id: str, source: str, quarantined: pd.DataFrame
    ) -> None:
        """Training data has no scoring run; re-training on the same file replaces, not
        duplicates, its quarantined rows."""
        with self.session() as session:
            session.execute(
                sa.delete(QuarantinedRow).where(
                    QuarantinedRow.batch_id == batch_id, QuarantinedRow.run_id.is_(None)
                )
            )
        self.add_quarantine(None, batch_id, source, quarantined)

    # -- entity history (sequence mode) ---------------------------------------------------

    def save_history(
        self,
        *,
        dataset: str,
        batch_id: str,
        source: str,
        signature: str,
        frame: pd.DataFrame,
        seconds: Sequence[float],
    ) -> bool:
        """Keep a batch's records as history for later batches; False if already kept.

        ``seconds`` are the records' event times (float seconds) used to find segments.
        """
        if not len(frame):
            return False
        with self.session() as session:
            exists = session.scalar(
                sa.select(EntityHistorySegment.id).where(
                    EntityHistorySegment.dataset == dataset,
                    EntityHistorySegment.batch_id == batch_id,
                )
            )
            if exists is not None:
                return False
            buffer = io.BytesIO()
            frame.reset_index(drop=True).to_parquet(buffer, index=False)
            session.add(
                EntityHistorySegment(
                    dataset=dataset,
                    batch_id=batch_id,
                    source=source,
                    context_signature=signature,
                    first_time=float(min(seconds)),
                    last_time=float(max(seconds)),
                    rows=len(frame),
                    payload=buffer.getvalue(),
                )
            )
        return True

    def load_history(
        self, *, dataset: str, since: float, until: float
    ) -> list[tuple[str, pd.DataFrame]]:
        """Segments that may hold records with ``since <= time < until``, oldest first,
        as (context signature, frame); the caller filters rows by time."""
        with self.session() as session:
            segments = session.execute(
                sa.select(EntityHistorySegment.context_signature, EntityHistorySegment.payload)
                .where(
                    EntityHistorySegment.dataset == dataset,
                    EntityHistorySegment.last_time >= since,
                    EntityHistorySegment.first_time < until,
                )
                .order_by(EntityHistorySegment.first_time, EntityHistorySegment.id)
            ).all()
        return [
            (signature, pd.read_parquet(io.BytesIO(payload))) for signature, payload in segments
        ]

    def history_segments(
        self, dataset: str, *, ids: Sequence[int] | None = None
    ) -> list[tuple[int, str, pd.DataFrame]]:
        """Every kept segment of a data set (or those with ``ids``), oldest first, as
        (id, context signature, frame): what a long-running scorer loads once."""
        query = sa.select(
            EntityHistorySegment.id,
            EntityHistorySegment.context_signature,
            EntityHistorySegment.payload,
        ).where(EntityHistorySegment.dataset == dataset)
        if ids is not None:
            query = query.where(EntityHistorySegment.id.in_(list(ids)))
        with self.session() as session:
            segments = session.execute(
                query.order_by(EntityHistorySegment.first_time, EntityHistorySegment.id)
            ).all()
        return [
            (int(segment_id), signature, pd.read_parquet(io.BytesIO(payload)))
            for segment_id, signature, payload in segments
        ]

    def history_segment_ids(self, dataset: str) -> list[tuple[int, str, str]]:
        """(id, batch id, source) of a data set's kept segments: cheap, to see what is new."""
        with self.session() as session:
            rows = session.execute(
                sa.select(
                    EntityHistorySegment.id,
                    EntityHistorySegment.batch_id,
                    EntityHistorySegment.source,
                ).where(EntityHistorySegment.dataset == dataset)
            ).all()
        return [(int(i), batch_id, source) for i, batch_id, source in rows]

    def history_extent(self, dataset: str) -> tuple[float, float, int] | None:
        """(first time, last time, segments) of a data set's kept history, or None."""
        with self.session() as session:
            first, last, count = session.execute(
                sa.select(
                    sa.func.min(EntityHistorySegment.first_time),
                    sa.func.max(EntityHistorySegment.last_time),
                    sa.func.count(),
                ).where(EntityHistorySegment.dataset == dataset)
            ).one()
        return None if not count else (float(first), float(last), int(count))

    def prune_history(self, dataset: str, *, before: float) -> int:
        """Drop segments whose newest record is older than ``before``; returns how many."""
        with self.session() as session:
            result = session.execute(
                sa.delete(EntityHistorySegment).where(
                    EntityHistorySegment.dataset == dataset,
                    EntityHistorySegment.last_time < before,
                )
            )
            return int(result.rowcount or 0)

    # -- reading ------------------------------------------------------------------------

    def list_runs(self, limit: int = 50) -> list[ScoringRun]:
        with self.session() as session:
            return list(
                session.scalars(
                    sa.select(ScoringRun).order_by(ScoringRun.started_at.desc()).limit(limit)
                )
            )

    def get_run(self, run_id: str) -> ScoringRun | None:
        with self.session() as session:
            run = session.get(ScoringRun, run_id)
            if run is None:  # allow an unambiguous id prefix, as people copy short ids
                matches = list(
                    session.scalars(sa.select(ScoringRun).where(ScoringRun.id.like(f"{run_id}%")))
                )
                run = matches[0] if len(matches) == 1 else None
            return run

    def list_flags(
        self, run_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Flag]:
        with self.session() as session:
            query = sa.select(Flag).order_by(Flag.score.desc()).limit(limit)
            if run_id:
                query = query.where(Flag.run_id == run_id)
            if status:
                query = query.where(Flag.status == status)
            return list(session.scalars(query))

    def count(self, table: type, run_id: str | None = None) -> int:
        with self.session() as session:
            query = sa.select(sa.func.count()).select_from(table)
            if run_id is not None:
                query = query.where(table.run_id == run_id)
            return int(session.scalar(query))

    def scores_frame(self, run_id: str) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(
                sa.select(Score.record_id, Score.score, Score.is_anomaly).where(
                    Score.run_id == run_id
                ),
                conn,
            )

    def quarantine_frame(self, run_id: str) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(
                sa.select(QuarantinedRow).where(QuarantinedRow.run_id == run_id), conn
            )
