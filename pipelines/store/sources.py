"""What scheduled sources have delivered: the files a watched folder brought (a
manifest) and the watermark of each SQL source.

The writes take the caller's session: they commit in the same transaction as the run
they belong to, so a crash or a duplicate run neither skips nor double-scores.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.store.database import Repository, insert_ignoring_conflicts
from pipelines.store.models import SourceFile, SourceWatermark


class SourceRepository(Repository):
    """File manifests and SQL watermarks of scheduled sources."""

    def scored_file_sizes(self, source_key: str) -> set[tuple[str, int]]:
        """(path, size) of every file this source has delivered and scored: a listing
        skips those without reading them again."""
        with self.db.session() as session:
            rows = session.execute(
                sa.select(SourceFile.path, SourceFile.size).where(
                    SourceFile.source_key == source_key
                )
            ).all()
        return {(p, int(s)) for p, s in rows}

    @staticmethod
    def record_source_file(
        session: Session,
        *,
        source_key: str,
        path: str,
        size: int,
        content_hash: str,
        batch_id: str,
        run_id: str | None,
    ) -> None:
        """Remember a scored file inside the caller's transaction; a duplicate run that
        got there first leaves one row (insert-or-ignore)."""
        insert = insert_ignoring_conflicts(session, SourceFile)
        session.execute(
            insert.values(
                source_key=source_key,
                path=path,
                size=size,
                content_hash=content_hash,
                batch_id=batch_id,
                run_id=run_id,
                scored_at=datetime.now(UTC),
            ).on_conflict_do_nothing(index_elements=["source_key", "path", "content_hash"])
        )

    def watermark(self, source_key: str) -> str | None:
        """The last committed watermark of a SQL source (as text), or None."""
        with self.db.session() as session:
            row = session.get(SourceWatermark, source_key)
            return None if row is None else row.value

    @staticmethod
    def advance_watermark(
        session: Session, *, source_key: str, column: str, value: str, run_id: str | None
    ) -> None:
        """Move a source's watermark forward inside the caller's transaction (never back)."""
        row = session.get(SourceWatermark, source_key, with_for_update=True)
        if row is None:
            session.add(
                SourceWatermark(source_key=source_key, column=column, value=value, run_id=run_id)
            )
            return
        row.value = value
        row.column = column
        row.run_id = run_id
        row.updated_at = datetime.now(UTC)
