"""The decision ledger: every promotion, rejection, rollback and threshold change, with
the evidence and policy behind it and who approved it. Append-only; each entry is also
an audit entry, and the code that decides mirrors it into the model version's tags."""

from __future__ import annotations

import sqlalchemy as sa

from pipelines.store.audit import record_audit
from pipelines.store.database import Repository
from pipelines.store.models import Decision
from pipelines.store.vocabulary import DecisionKind


class LedgerRepository(Repository):
    """Appends to the ledger and reads it back, newest first."""

    def record_decision(
        self,
        *,
        model_name: str,
        kind: DecisionKind | str,
        decision: str,
        actor: str,
        from_version: str | None = None,
        to_version: str | None = None,
        before: dict | None = None,
        after: dict | None = None,
        evidence: dict | None = None,
        policy: dict | None = None,
        approved_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Append to the decision ledger (and the audit log); returns the entry id."""
        with self.db.session() as session:
            entry = Decision(
                model_name=model_name,
                kind=kind,
                decision=decision,
                actor=actor,
                from_version=from_version,
                to_version=to_version,
                before=before,
                after=after,
                evidence=evidence or {},
                policy=policy or {},
                approved_by=approved_by,
                reason=reason,
            )
            session.add(entry)
            session.flush()
            record_audit(
                session,
                actor,
                f"{kind}.{decision}",
                "model",
                model_name,
                before=before,
                after=after,
                detail={"decision_id": entry.id, "reason": reason},
            )
            return entry.id

    def decisions(self, model_name: str | None = None, limit: int = 100) -> list[Decision]:
        with self.db.session() as session:
            query = sa.select(Decision).order_by(Decision.id.desc()).limit(limit)
            if model_name:
                query = query.where(Decision.model_name == model_name)
            return list(session.scalars(query))
