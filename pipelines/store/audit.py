"""The audit trail: who did what, when, and what it changed. Append-only.

Every repository that changes something a person cares about writes its entry with
:func:`record_audit` inside the same transaction, so the change and its entry commit
together or not at all.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.store.database import Repository
from pipelines.store.models import AuditEvent


def record_audit(
    session: Session,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    *,
    before: dict | None = None,
    after: dict | None = None,
    detail: dict | None = None,
) -> None:
    """Add one audit entry to the caller's transaction."""
    session.add(
        AuditEvent(
            actor=actor,
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            before=before,
            after=after,
            detail=detail or {},
        )
    )


class AuditRepository(Repository):
    """Reads the audit trail (writes go through :func:`record_audit`)."""

    def audit_entries(
        self, *, entity: str | None = None, entity_id: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """The newest entries first, optionally for one entity (``case``, ``user``, ...)."""
        with self.db.session() as session:
            query = sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if entity:
                query = query.where(AuditEvent.entity == entity)
            if entity_id is not None:
                query = query.where(AuditEvent.entity_id == str(entity_id))
            return list(session.scalars(query))
