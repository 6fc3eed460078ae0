"""Review quality per model version: what analysts' verdicts say about each version's
flags (precision, unsure rate, label coverage, time to decision, open backlog). What
promotion and the review app's quality page read."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from pipelines.store.database import Database, Repository
from pipelines.store.labels import LabelRepository
from pipelines.store.models import Case, Flag, ScoringRun
from pipelines.store.vocabulary import WITHDRAWN, CaseStatus, Verdict


class QualityRepository(Repository):
    """Reads flags, cases and the latest labels together."""

    def __init__(self, db: Database, labels: LabelRepository) -> None:
        super().__init__(db)
        self.labels = labels

    def quality_by_model(self) -> list[dict]:
        """Per model version: flags, reviewed flags, precision among reviewed, unsure rate,
        label coverage, median time to decision, open backlog by age. What promotion reads."""
        with self.db.connect() as conn:
            flags = pd.read_sql(
                sa.select(
                    Flag.id.label("flag_id"),
                    Flag.record_id,
                    Flag.created_at,
                    Flag.case_id,
                    ScoringRun.model_name,
                    ScoringRun.model_version,
                ).join(ScoringRun, ScoringRun.id == Flag.run_id),
                conn,
            )
            cases = pd.read_sql(sa.select(Case.id.label("case_id"), Case.status), conn)
        if flags.empty:
            return []
        latest = self.labels.latest_label_rows()[["record_id", "verdict", "known_at"]]
        latest = latest[latest["verdict"] != WITHDRAWN]
        merged = flags.merge(latest, on="record_id", how="left").merge(
            cases, on="case_id", how="left"
        )
        merged["created_at"] = pd.to_datetime(merged["created_at"], utc=True)
        merged["known_at"] = pd.to_datetime(merged["known_at"], utc=True)
        now = pd.Timestamp.now(tz="UTC")
        out = []
        for (name, version), group in merged.groupby(["model_name", "model_version"]):
            reviewed = group[group["verdict"].notna()]
            fraud = int((reviewed["verdict"] == Verdict.FRAUD).sum())
            not_fraud = int((reviewed["verdict"] == Verdict.NOT_FRAUD).sum())
            unsure = int((reviewed["verdict"] == Verdict.UNSURE).sum())
            decided = fraud + not_fraud
            hours = (reviewed["known_at"] - reviewed["created_at"]).dt.total_seconds() / 3600
            open_ = group[(group["verdict"].isna()) & (group["status"] == CaseStatus.OPEN)]
            age_days = (now - open_["created_at"]).dt.total_seconds() / 86400
            out.append(
                {
                    "model_name": name,
                    "model_version": str(version),
                    "flags": len(group),
                    "reviewed": len(reviewed),
                    "fraud": fraud,
                    "not_fraud": not_fraud,
                    "unsure": unsure,
                    "precision": fraud / decided if decided else None,
                    "unsure_rate": unsure / len(reviewed) if len(reviewed) else None,
                    "label_coverage": decided / len(group),
                    "median_hours_to_decision": float(hours.median()) if len(hours) else None,
                    "backlog_by_age": {
                        "<1d": int((age_days < 1).sum()),
                        "1-3d": int(((age_days >= 1) & (age_days < 3)).sum()),
                        "3-7d": int(((age_days >= 3) & (age_days < 7)).sum()),
                        ">=7d": int((age_days >= 7).sum()),
                    },
                }
            )
        return out
