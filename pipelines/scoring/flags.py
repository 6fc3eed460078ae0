"""One chunk's clean rows into what the store writes: its scores, and the flags with the
snapshot and reasons an analyst judges them by.

Every way a batch is scored (:mod:`pipelines.scoring.chunks`) ends here, so a record is
flagged, snapshotted and bounded the same way whether it was streamed, held in memory or
scored on a Dask worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import pandas as pd

from pipelines.intake.display import PAYMENT_KEY, payment_snapshot
from pipelines.intake.ingest import (
    MAX_FIELD_CHARS,
    QUARANTINE_COLUMNS,
    ValidationResult,
    bound_text,
)
from pipelines.modeling.bundle import ScoringBundle
from pipelines.scoring.run import RunTarget
from pipelines.store.runs import ChunkWrite
from pipelines.store.vocabulary import RunRole


def score_validated(
    bundle: ScoringBundle,
    validated: ValidationResult,
    *,
    number: int,
    first_row: int,
    chunk_size: int,
    target: RunTarget,
    max_field_chars: int,
    snapshot: pd.DataFrame | None = None,
    result: pd.DataFrame | None = None,
) -> ChunkWrite:
    """A validated chunk into what the store writes: its clean rows scored (unless
    ``result`` holds their scores already), its quarantine carried along."""
    clean = validated.clean
    return score_chunk(
        bundle,
        clean,
        clean if snapshot is None else snapshot,
        result,
        number=number,
        chunk_size=chunk_size,
        first_row=first_row,
        row_numbers=validated.clean_row_numbers,
        rows_in=validated.rows_in,
        quarantined=validated.quarantined,
        rows_quarantined=validated.rows_quarantined,
        target=target,
        max_field_chars=max_field_chars,
    )


def score_chunk(
    bundle: ScoringBundle,
    chunk: pd.DataFrame,
    snapshot: pd.DataFrame,
    result: pd.DataFrame | None,
    *,
    number: int,
    chunk_size: int,
    first_row: int,
    row_numbers: np.ndarray,
    rows_in: int,
    quarantined: pd.DataFrame,
    rows_quarantined: int,
    target: RunTarget,
    max_field_chars: int,
) -> ChunkWrite:
    """Score one chunk of clean rows (unless scored already) into what the store writes.

    A row the model gives no finite score (inputs beyond what float arithmetic holds) is
    quarantined with that reason rather than stored as a score nobody can rank."""
    if result is None and len(chunk):
        result = bundle.score(chunk)
    if len(chunk):
        finite = np.isfinite(result["score"].to_numpy(dtype="float64"))
        if not finite.all():
            unscorable = unscorable_rows(chunk, finite, bundle.spec.id_column, row_numbers)
            quarantined = pd.concat([quarantined, unscorable], ignore_index=True)
            rows_quarantined += len(unscorable)
            keep = np.flatnonzero(finite)
            chunk, snapshot, result = chunk.iloc[keep], snapshot.iloc[keep], result.iloc[keep]
    if len(chunk):
        scores = pd.DataFrame(
            {
                "record_id": chunk[bundle.spec.id_column].to_numpy(),
                "score": result["score"].to_numpy(),
                "is_anomaly": result["is_anomaly"].to_numpy(),
            }
        )
        if target.role == RunRole.SHADOW:
            # A shadow run keeps scores, plus an exploration sample of its flags: the store
            # keeps those the champion did not flag (the challenger's own catches) and
            # sends them to the queue, so they get verdicts too.
            flags = exploration_flags(chunk, snapshot, result, bundle, max_field_chars)
        else:
            flags = flag_records(chunk, snapshot, result, bundle, max_field_chars)
    else:
        scores = pd.DataFrame(columns=["record_id", "score", "is_anomaly"])
        flags = []
    return ChunkWrite(
        chunk_number=number,
        chunk_size=chunk_size,
        first_row=first_row,
        rows_in=rows_in,
        scores=scores,
        flags=flags,
        quarantined=quarantined,
        rows_quarantined=rows_quarantined,
        batch_id=target.batch_id,
        source=target.source,
    )


#: The reason that marks a flag of the exploration lane (a challenger-only flag sampled
#: for review); the review queue shows it as its own lane.
EXPLORATION_REASON = "exploration"


def exploration_share() -> float:
    from pipelines.settings import get_settings

    return float(get_settings().feedback_exploration_share)


def in_exploration_sample(record_ids: Iterable, share: float) -> np.ndarray:
    """Which records fall in the exploration sample: a stable hash of the record id below
    ``share`` (the same records whichever process, chunking or order scores them)."""
    ids = pd.Series([str(r) for r in record_ids], dtype=object)
    if share <= 0 or not len(ids):
        return np.zeros(len(ids), dtype=bool)
    hashed = pd.util.hash_pandas_object(ids, index=False).to_numpy(dtype="uint64")
    return (hashed % np.uint64(1_000_000)) < np.uint64(round(share * 1_000_000))


def exploration_flags(
    chunk: pd.DataFrame,
    snapshot: pd.DataFrame,
    result: pd.DataFrame,
    bundle: ScoringBundle,
    max_field_chars: int,
) -> list[dict]:
    """A shadow run's flags in the exploration sample, each marked with its lane."""
    share = exploration_share()
    if share <= 0:
        return []
    ids = chunk[bundle.spec.id_column].to_numpy(dtype=object)
    keep = result["is_anomaly"].to_numpy(dtype=bool) & in_exploration_sample(ids, share)
    if not keep.any():
        return []
    rows = np.flatnonzero(keep)
    picked = flag_records(
        chunk.iloc[rows], snapshot.iloc[rows], result.iloc[rows], bundle, max_field_chars
    )
    lane = {
        "feature": EXPLORATION_REASON,
        "value": None,
        "contribution": 0.0,
        "share": 0.0,
        "text": "exploration: flagged by the challenger only, sampled for review so its "
        f"own catches get verdicts ({share:.0%} of them)",
    }
    for flag in picked:
        flag["reasons"] = [lane, *flag["reasons"]]
    return picked


def unscorable_rows(
    chunk: pd.DataFrame, finite: np.ndarray, id_column: str, row_numbers: np.ndarray
) -> pd.DataFrame:
    """The chunk's rows the model gave no finite score, as quarantine rows."""
    positions = np.flatnonzero(~finite)
    return pd.DataFrame(
        {
            "row_number": [int(row_numbers[p]) for p in positions],
            "record_id": chunk[id_column].iloc[positions].astype(str).to_numpy(),
            "column": None,
            "value": None,
            "reason": "the model gave no finite score (values beyond float range)",
            "raw": [chunk.iloc[p].to_json(date_format="iso") for p in positions],
        },
        columns=QUARANTINE_COLUMNS,
    )


def no_quarantine() -> pd.DataFrame:
    """An empty quarantine (a chunk after the first of a batch held in memory)."""
    return pd.DataFrame(columns=QUARANTINE_COLUMNS)


def flag_records(
    chunk: pd.DataFrame,
    snapshot: pd.DataFrame,
    result: pd.DataFrame,
    bundle: ScoringBundle,
    max_field_chars: int = MAX_FIELD_CHARS,
) -> list[dict]:
    """Flag rows with a snapshot an analyst can judge offline: the record as scored, plus
    its context features in sequence mode, and the payment the spec's display columns
    name (``_payment``: what the queue and the case header show). Long texts are cut
    (``_truncated`` in the record says which and how long they were).

    The flagged rows' snapshots are serialised in one call per chunk (not one pandas row
    at a time): the same JSON as each row's ``to_json``."""
    marked = result["is_anomaly"].to_numpy(dtype=bool)
    if "explore" in result.columns:  # a labelled model's exploration lane joins the queue
        marked = marked | result["explore"].to_numpy(dtype=bool)
    flagged = np.flatnonzero(marked)
    if not len(flagged):
        return []
    records = _json_records(chunk.iloc[flagged])
    if snapshot is not chunk:
        extra_columns = [c for c in snapshot.columns if c not in set(chunk.columns)]
        for values, extra in zip(
            records, _json_records(snapshot.iloc[flagged][extra_columns]), strict=True
        ):
            values.update(extra)
    label_column = bundle.spec.label_column or ""
    ids = chunk[bundle.spec.id_column].iloc[flagged].to_numpy(dtype=object)
    entity_column = bundle.spec.entity_column
    entities = chunk[entity_column].iloc[flagged].to_numpy(dtype=object) if entity_column else None
    scores = result["score"].to_numpy(dtype="float64")[flagged]
    reasons = result["reasons"].to_numpy()[flagged]
    threshold = bundle.threshold
    out = []
    for n, values in enumerate(records):
        # The label (when a batch carries one) is for evaluation, never for the analyst
        # judging the record: keep it out of the snapshot shown in the review app.
        values.pop(label_column, None)
        payment = payment_snapshot(values, bundle.spec.display_columns, bundle.spec.priority)
        if payment is not None:
            values[PAYMENT_KEY] = bound_payment(payment, max_field_chars)
        out.append(
            {
                "record_id": str(ids[n]),
                "entity": str(entities[n]) if entities is not None else None,
                "score": float(scores[n]),
                "threshold": threshold,
                "record": bound_record(values, max_field_chars),
                "reasons": bound_reasons(reasons[n], max_field_chars),
            }
        )
    return out


def _json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (ISO dates, NaN as null), one serialisation per frame."""
    if not len(frame.columns):
        return [{} for _ in range(len(frame))]
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def bound_record(values: dict, limit: int) -> dict:
    """The snapshot with every text cut to ``limit`` characters; ``_truncated`` maps each
    cut field to its full length."""
    truncated = {k: len(v) for k, v in values.items() if isinstance(v, str) and len(v) > limit}
    if not truncated:
        return values
    bounded = {k: bound_text(v, limit) if k in truncated else v for k, v in values.items()}
    bounded["_truncated"] = truncated
    return bounded


def bound_payment(payment: dict, limit: int) -> dict:
    """The payment shown in the queue with its texts cut like the snapshot's."""
    return {k: bound_text(v, limit) if isinstance(v, str) else v for k, v in payment.items()}


def bound_reasons(reasons: Iterable[dict], limit: int) -> list[dict]:
    """Reasons quote the value: cut long values, the value as quoted and the texts the
    same way."""
    out = []
    for reason in reasons:
        reason = dict(reason)
        for key in ("value", "observed", "text"):
            if isinstance(reason.get(key), str) and len(reason[key]) > limit:
                reason[key] = bound_text(reason[key], limit)
                reason["truncated"] = True
        out.append(reason)
    return out
