"""Retention: record snapshots of closed cases are removed after a while; what was
decided stays.

A flag keeps a snapshot of the record as scored (card, merchant, amount, ...) so an
analyst can judge it offline. Once its case is closed, that copy of card data is no longer
needed: after the retention period (the ``retention_snapshot_days`` setting) the snapshot
is emptied. The flag itself (record id, score, threshold, the model's reasons), the case,
the verdict labels and the audit trail are kept, and each sweep writes one audit entry
(who, when, the cut-off, how many snapshots of how many cases). Open cases, and cases
closed more recently than the cut-off, are never touched; a reopened case is open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from pipelines.store.audit import record_audit
from pipelines.store.database import Repository
from pipelines.store.models import Case, Flag
from pipelines.store.vocabulary import CaseStatus

#: What a removed snapshot holds: nothing (the column is not nullable).
EMPTY_SNAPSHOT: dict = {}


@dataclass
class RetentionResult:
    """What a sweep removed (or, dry run, would remove)."""

    older_than_days: int
    cutoff: datetime
    cases: int
    snapshots: int
    dry_run: bool


class RetentionRepository(Repository):
    """Removes record snapshots of cases closed before a cut-off (see module docstring)."""

    def remove_closed_snapshots(
        self,
        older_than_days: int,
        *,
        actor: str,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> RetentionResult:
        """Empty the record snapshot of every flag whose case was closed more than
        ``older_than_days`` days ago; one audit entry per sweep (``dry_run``: count only,
        change nothing, no entry). Set-wise: one count and one update, whatever the size."""
        if older_than_days < 1:
            raise ValueError(f"older_than_days must be at least 1, not {older_than_days}")
        cutoff = (now or datetime.now(UTC)).astimezone(UTC) - timedelta(days=older_than_days)
        closed = sa.select(Case.id).where(Case.status == CaseStatus.CLOSED, Case.closed_at < cutoff)
        # Snapshots already emptied are left out, so a sweep counts only what it removes.
        due = sa.and_(
            Flag.case_id.in_(closed),
            sa.cast(Flag.record, sa.Text) != sa.literal(json.dumps(EMPTY_SNAPSHOT)),
        )
        with self.db.session() as session:
            snapshots, cases = session.execute(
                sa.select(sa.func.count(), sa.func.count(sa.distinct(Flag.case_id))).where(due)
            ).one()
            if not dry_run:
                session.execute(
                    sa.update(Flag).where(due).values(record=EMPTY_SNAPSHOT),
                    execution_options={"synchronize_session": False},
                )
                record_audit(
                    session,
                    actor,
                    "retention.snapshots_removed",
                    "flags",
                    "closed_cases",
                    after={"snapshots_removed": int(snapshots), "cases": int(cases)},
                    detail={
                        "older_than_days": older_than_days,
                        "closed_before": cutoff.isoformat(),
                    },
                )
        return RetentionResult(
            older_than_days=older_than_days,
            cutoff=cutoff,
            cases=int(cases),
            snapshots=int(snapshots),
            dry_run=dry_run,
        )
