"""Run health: each scoring run's drift watch against its model's training reference
(score PSI/KS, flag rate against its control limits, feature drift, unseen categories)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from pipelines.store.database import Repository
from pipelines.store.models import RunHealth


class HealthRepository(Repository):
    """One drift-watch result per run, replaced when the run is assessed again."""

    def save_run_health(self, run_id: str, health: dict) -> None:
        """Store (or replace, on a re-run) a run's drift-watch result."""
        score = health.get("score", {})
        rate = health.get("flag_rate", {})
        with self.db.session() as session:
            row = session.get(RunHealth, run_id) or RunHealth(run_id=run_id)
            row.status = health["status"]
            row.score_psi = score.get("psi")
            row.score_ks = score.get("ks")
            row.flag_rate = rate.get("observed_rate")
            row.expected_flag_rate = rate.get("expected_rate")
            row.unseen_share = health.get("unseen", {}).get("share")
            row.alarms = list(health.get("alarms", []))
            row.summary = health["summary"]
            row.detail = health
            row.created_at = datetime.now(UTC)
            session.add(row)

    def run_health(self, run_id: str) -> dict | None:
        """A run's health for people and the review app's run page: status, alarms, the
        one-line summary and every number behind them; None if never assessed."""
        with self.db.session() as session:
            row = session.get(RunHealth, run_id)
            if row is None:
                return None
            return {
                **row.detail,
                "run_id": row.run_id,
                "status": row.status,
                "alarms": list(row.alarms),
                "summary": row.summary,
                "assessed_at": row.created_at.isoformat() if row.created_at else None,
            }

    def run_health_status(self, run_ids: Sequence[str]) -> dict[str, dict]:
        """Status, summary and headline numbers for several runs (the runs list)."""
        if not run_ids:
            return {}
        with self.db.session() as session:
            rows = session.scalars(sa.select(RunHealth).where(RunHealth.run_id.in_(run_ids)))
            return {
                r.run_id: {
                    "status": r.status,
                    "summary": r.summary,
                    "score_psi": r.score_psi,
                    "flag_rate": r.flag_rate,
                    "expected_flag_rate": r.expected_flag_rate,
                    "unseen_share": r.unseen_share,
                }
                for r in rows
            }
