"""The operations side of the store: run health (drift watch), shadow-run evidence, and
what scheduled sources have already delivered (file manifests, SQL watermarks).

Mixed into :class:`~pipelines.store.db.ResultsStore`. Manifest and watermark writes take
the caller's session: they commit in the same transaction as the run they belong to, so a
crash or a duplicate run neither skips nor double-scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pipelines.store.models import (
    Label,
    RunHealth,
    Score,
    ScoringRun,
    SourceFile,
    SourceWatermark,
)


class OperationsStoreMixin:
    """Relies on ``ResultsStore.session()`` and ``engine``."""

    engine: sa.engine.Engine

    def session(self):  # pragma: no cover - provided by ResultsStore
        raise NotImplementedError

    # -- run health -----------------------------------------------------------------------

    def save_run_health(self, run_id: str, health: dict) -> None:
        """Store (or replace, on a re-run) a run's drift-watch result."""
        score = health.get("score", {})
        rate = health.get("flag_rate", {})
        with self.session() as session:
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
        with self.session() as session:
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
        with self.session() as session:
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

    # -- shadow evidence --------------------------------------------------------------------

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
        with self.engine.connect() as conn:
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
                    ScoringRun.status == "completed",
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

    def latest_verdicts(self, record_ids: Sequence[str]) -> pd.Series:
        """The latest counting verdict per record (1 fraud, 0 not fraud); records whose
        latest label is unsure or withdrawn are left out."""
        if not len(record_ids):
            return pd.Series(dtype="int64")
        with self.engine.connect() as conn:
            labels = pd.read_sql(
                sa.select(Label.id, Label.record_id, Label.verdict).order_by(Label.id), conn
            )
        labels = labels[labels["record_id"].isin(set(map(str, record_ids)))]
        latest = labels.drop_duplicates("record_id", keep="last")
        latest = latest[latest["verdict"].isin(["fraud", "not_fraud"])]
        return pd.Series(
            (latest["verdict"] == "fraud").astype(int).to_numpy(), index=latest["record_id"]
        )

    # -- scheduled sources ------------------------------------------------------------------

    def scored_file_sizes(self, source_key: str) -> set[tuple[str, int]]:
        """(path, size) of every file this source has delivered and scored: a listing
        skips those without reading them again."""
        with self.session() as session:
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
        dialect = session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(SourceFile)
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
        with self.session() as session:
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
