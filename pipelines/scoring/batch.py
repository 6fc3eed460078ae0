"""Batch scoring as plain functions: score in chunks and write runs, scores and flags.

Idempotent on (batch id, model version): the store refuses to write a completed run twice
and clears a half-written one before a re-run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.intake.ingest import Batch, ValidationResult
from pipelines.modeling.bundle import ScoringBundle
from pipelines.progress import progress
from pipelines.scoring.history import EntityHistory, load_entity_history, save_entity_history
from pipelines.store import ResultsStore


@dataclass
class ScoreReport:
    run_id: str
    batch_id: str
    model: str
    model_version: str
    rows_in: int
    rows_scored: int
    rows_quarantined: int
    rows_flagged: int
    threshold: float
    already_scored: bool
    #: Sequence mode: what the kept entity history gave as context (None in tabular mode).
    history: str | None = None
    #: primary (flags reach the review queue) or shadow (scores kept as evidence only).
    role: str = "primary"
    score_seconds: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def score_batch(
    *,
    bundle: ScoringBundle,
    batch: Batch,
    validated: ValidationResult,
    store: ResultsStore,
    model_name: str,
    model_version: str,
    model_alias: str | None,
    batch_id: str | None = None,
    chunk_size: int = 5000,
    role: str = "primary",
    commit_with: Callable | None = None,
) -> ScoreReport:
    """Score the clean rows chunk by chunk; quarantined rows are stored, not scored.

    ``role="shadow"``: a second model on the same batch; scores are stored, flags are not
    (only the champion's reach the review queue), entity history is left to the primary.
    ``commit_with(session, run)`` runs inside the run's completing transaction.
    """
    batch_id = batch_id or batch.content_hash
    shadow = role == "shadow"
    started = time.perf_counter()
    run, already = store.begin_run(
        batch_id=batch_id,
        source=batch.source,
        dataset=bundle.spec.name,
        model_name=model_name,
        model_version=model_version,
        model_alias=model_alias,
        threshold=bundle.threshold,
        role=role,
    )
    if already:
        return _report(run, already=True)
    history: EntityHistory | None = None
    try:
        store.add_quarantine(run.id, batch_id, batch.source, validated.quarantined)
        clean = validated.clean
        n_chunks = max(1, math.ceil(len(clean) / chunk_size))
        if bundle.spec.is_sequence:
            # Context needs the whole batch in time order and the kept entity history, so
            # the batch is scored in one (internally batched) pass and written in chunks.
            history = load_entity_history(store, bundle.spec, clean)
            prepared = bundle.prepare(clean, history.frame)
            scored = bundle.score_prepared(prepared)
        with progress("score", total=n_chunks, unit="batches") as advance:
            for start in range(0, len(clean), chunk_size):
                chunk = clean.iloc[start : start + chunk_size]
                if bundle.spec.is_sequence:
                    result = scored.iloc[start : start + chunk_size]
                    snapshot = prepared.features.iloc[start : start + chunk_size]
                else:
                    result = bundle.score(chunk)
                    snapshot = chunk
                scores = pd.DataFrame(
                    {
                        "record_id": chunk[bundle.spec.id_column].to_numpy(),
                        "score": result["score"].to_numpy(),
                        "is_anomaly": result["is_anomaly"].to_numpy(),
                    }
                )
                flags = [] if shadow else _flags(chunk, snapshot, result, bundle)
                store.add_scores(run.id, scores, flags)
                advance(1, flagged=int(result["is_anomaly"].sum()))
        if bundle.spec.is_sequence and not shadow:
            save_entity_history(
                store, bundle.spec, batch_id=batch_id, source=batch.source, state=prepared.state
            )
        finished = store.finish_run(
            run.id,
            rows_in=validated.rows_in,
            rows_scored=len(clean),
            rows_quarantined=validated.rows_quarantined,
            group_by_entity=bundle.spec.is_sequence,
            score_seconds=time.perf_counter() - started,
            commit_with=commit_with,
        )
    except BaseException as exc:
        store.fail_run(run.id, f"{type(exc).__name__}: {exc}")
        raise
    if validated.rows_in != finished.rows_scored + finished.rows_quarantined:
        raise RuntimeError(
            f"row accounting broken: {validated.rows_in} in, {finished.rows_scored} scored, "
            f"{finished.rows_quarantined} quarantined"
        )
    report = _report(finished, already=False)
    if history is not None:
        report.history = history.describe()
    return report


def _flags(
    chunk: pd.DataFrame, snapshot: pd.DataFrame, result: pd.DataFrame, bundle: ScoringBundle
) -> list[dict]:
    """Flag rows with a snapshot an analyst can judge offline: the record as scored, plus
    its context features in sequence mode."""
    flagged = np.flatnonzero(result["is_anomaly"].to_numpy())
    entity_column = bundle.spec.entity_column
    out = []
    for i in flagged:
        record = chunk.iloc[i]
        values = json.loads(record.to_json(date_format="iso"))
        if snapshot is not chunk:
            extra = snapshot.iloc[i].drop(labels=list(record.index), errors="ignore")
            values.update(json.loads(extra.to_json(date_format="iso")))
        out.append(
            {
                "record_id": str(record[bundle.spec.id_column]),
                "entity": str(record[entity_column]) if entity_column else None,
                "score": float(result["score"].iloc[i]),
                "threshold": bundle.threshold,
                "record": values,
                "reasons": result["reasons"].iloc[i],
            }
        )
    return out


def _report(run, *, already: bool) -> ScoreReport:
    return ScoreReport(
        run_id=run.id,
        batch_id=run.batch_id,
        model=run.model_name,
        model_version=run.model_version,
        rows_in=run.rows_in,
        rows_scored=run.rows_scored,
        rows_quarantined=run.rows_quarantined,
        rows_flagged=run.rows_flagged,
        threshold=run.threshold,
        already_scored=already,
        role=run.role,
        score_seconds=run.score_seconds,
    )


def write_scores_file(store: ResultsStore, run_id: str, path: str | Path) -> Path:
    """Every record of the batch: scored ones with score and flag, quarantined ones marked."""
    path = Path(path)
    scores = store.scores_frame(run_id)
    scores["status"] = "scored"
    quarantine = store.quarantine_frame(run_id)
    if len(quarantine):
        reasons = quarantine.groupby("row_number", sort=False).agg(
            record_id=("record_id", "first"), reason=("reason", "; ".join)
        )
        rejected = pd.DataFrame(
            {
                "record_id": reasons["record_id"].to_numpy(),
                "score": np.nan,
                "is_anomaly": pd.NA,
                "status": "quarantined: " + reasons["reason"],
            }
        )
        scores = pd.concat([scores, rejected], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        scores.to_csv(path, index=False)
    else:
        scores.to_parquet(path, index=False)
    return path
