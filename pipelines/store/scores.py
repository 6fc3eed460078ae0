"""Scores as evidence: a run's scores, a model version's scores over time (what
thresholds are set from), and the champion's and challenger's scores of the same batches
(what promotion compares)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from pipelines.store.database import Repository
from pipelines.store.models import Score, ScoringRun
from pipelines.store.vocabulary import RunStatus


class ScoreRepository(Repository):
    """Reads of stored scores (writes go with a run's chunks, :mod:`runs`)."""

    def scores_frame(self, run_id: str) -> pd.DataFrame:
        with self.db.connect() as conn:
            return pd.read_sql(
                sa.select(Score.record_id, Score.score, Score.is_anomaly).where(
                    Score.run_id == run_id
                ),
                conn,
            )

    def score_values(self, run_id: str) -> pd.Series:
        with self.db.connect() as conn:
            return pd.read_sql(sa.select(Score.score).where(Score.run_id == run_id), conn)["score"]

    def model_scores(
        self, model_name: str, model_version: str, *, before: datetime | None = None
    ) -> pd.DataFrame:
        """Every score a model version gave in completed runs started before ``before``:
        record_id, score, run_id, run_started_at (the evidence thresholds are set from)."""
        query = (
            sa.select(
                Score.record_id,
                Score.score,
                Score.run_id,
                ScoringRun.started_at.label("run_started_at"),
            )
            .join(ScoringRun, ScoringRun.id == Score.run_id)
            .where(
                ScoringRun.model_name == model_name,
                ScoringRun.model_version == str(model_version),
                ScoringRun.status == RunStatus.COMPLETED,
            )
        )
        if before is not None:
            query = query.where(ScoringRun.started_at < before)
        with self.db.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["run_started_at"] = pd.to_datetime(frame["run_started_at"], utc=True)
        return frame

    def paired_scores(
        self,
        model_name: str,
        champion_version: str,
        challenger_version: str,
        *,
        limit_runs: int = 30,
    ) -> pd.DataFrame:
        """Records both versions scored in the same batches (the champion's primary runs
        beside the challenger's shadow or primary runs), newest batches first.

        Columns: batch_id, record_id, champion, challenger (scores), champion_flag,
        challenger_flag, champion_threshold, challenger_threshold, started_at.
        """
        with self.db.connect() as conn:
            runs = pd.read_sql(
                sa.select(
                    ScoringRun.id,
                    ScoringRun.batch_id,
                    ScoringRun.model_version,
                    ScoringRun.role,
                    ScoringRun.threshold,
                    ScoringRun.started_at,
                ).where(
                    ScoringRun.model_name == model_name,
                    ScoringRun.status == RunStatus.COMPLETED,
                    ScoringRun.model_version.in_([str(champion_version), str(challenger_version)]),
                ),
                conn,
            )
            if runs.empty:
                return _empty_pairs()
            champ = runs[runs["model_version"] == str(champion_version)]
            chall = runs[runs["model_version"] == str(challenger_version)]
            batches = sorted(
                set(champ["batch_id"]) & set(chall["batch_id"]),
                key=lambda b: champ.loc[champ["batch_id"] == b, "started_at"].max(),
                reverse=True,
            )[:limit_runs]
            if not batches:
                return _empty_pairs()
            frames = []
            for batch in batches:
                a = champ[champ["batch_id"] == batch].iloc[0]
                b = chall[chall["batch_id"] == batch].iloc[0]
                sa_ = pd.read_sql(
                    sa.select(Score.record_id, Score.score, Score.is_anomaly).where(
                        Score.run_id == a["id"]
                    ),
                    conn,
                )
                sb = pd.read_sql(
                    sa.select(Score.record_id, Score.score, Score.is_anomaly).where(
                        Score.run_id == b["id"]
                    ),
                    conn,
                )
                both = sa_.merge(sb, on="record_id", suffixes=("_a", "_b"))
                frames.append(
                    pd.DataFrame(
                        {
                            "batch_id": batch,
                            "record_id": both["record_id"],
                            "champion": both["score_a"].astype(float),
                            "challenger": both["score_b"].astype(float),
                            "champion_flag": both["is_anomaly_a"].astype(bool),
                            "challenger_flag": both["is_anomaly_b"].astype(bool),
                            "champion_threshold": float(a["threshold"]),
                            "challenger_threshold": float(b["threshold"]),
                            "started_at": a["started_at"],
                        }
                    )
                )
        return pd.concat(frames, ignore_index=True)


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        columns=[
            "batch_id",
            "record_id",
            "champion",
            "challenger",
            "champion_flag",
            "challenger_flag",
            "champion_threshold",
            "challenger_threshold",
            "started_at",
        ]
    )
