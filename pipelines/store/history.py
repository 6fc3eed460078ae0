"""Entity history storage (sequence mode): each batch's records, kept so later batches
see each entity's recent past.

One segment per (data set, batch): the records' raw context columns and the context
features computed for them, as Parquet bytes. Keeping a batch is idempotent; segments
older than the data set's history horizon are pruned.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.store.database import Repository
from pipelines.store.models import EntityHistorySegment


class HistoryRepository(Repository):
    """Kept entity history: written once per batch, read by time window or whole."""

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
        with self.db.session() as session:
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
        with self.db.session() as session:
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
        with self.db.session() as session:
            segments = session.execute(
                query.order_by(EntityHistorySegment.first_time, EntityHistorySegment.id)
            ).all()
        return [
            (int(segment_id), signature, pd.read_parquet(io.BytesIO(payload)))
            for segment_id, signature, payload in segments
        ]

    def history_segment_ids(self, dataset: str) -> list[tuple[int, str, str]]:
        """(id, batch id, source) of a data set's kept segments: cheap, to see what is new."""
        with self.db.session() as session:
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
        with self.db.session() as session:
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
        with self.db.session() as session:
            result = session.execute(
                sa.delete(EntityHistorySegment).where(
                    EntityHistorySegment.dataset == dataset,
                    EntityHistorySegment.last_time < before,
                )
            )
            return int(result.rowcount or 0)


def entity_history_rows(
    session: Session,
    dataset: str,
    entity: str,
    id_column: str,
    entity_column: str,
    limit: int,
) -> list[dict]:
    """Sequence mode: the entity's records in the newest kept history segments."""
    segments = session.execute(
        sa.select(EntityHistorySegment.payload)
        .where(EntityHistorySegment.dataset == dataset)
        .order_by(EntityHistorySegment.last_time.desc())
        .limit(8)
    ).all()
    found: list[dict] = []
    for (payload,) in segments:
        frame = pd.read_parquet(io.BytesIO(payload))
        if id_column not in frame.columns or entity_column not in frame.columns:
            continue
        rows = frame[frame[entity_column].astype(str) == entity]
        for _, row in rows.iloc[::-1].iterrows():
            found.append({"record_id": str(row[id_column]), "record": _jsonable(row.to_dict())})
        if len(found) >= limit:
            break
    return found[:limit]


def _jsonable(values: dict) -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, pd.Timestamp):
            out[key] = value.isoformat()
        elif hasattr(value, "item"):
            out[key] = value.item()
        else:
            out[key] = value
        if isinstance(out[key], float) and out[key] != out[key]:
            out[key] = None
    return out
