"""``vigil api``: real-time scoring of one record or a small batch over HTTP.

Tabular models need nothing but the record (``mlflow models serve`` does that too);
sequence models need each entity's recent history, which lives in the results store.
This app loads the entity history the batch path would, scores with the same bundle
code, and appends the scored records to the history so the next request sees them: a
record scored here gets the score batch scoring would give it (tested).

The champion is looked up again every ``refresh_seconds``, so a promotion or rollback
takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from pipelines.intake.ingest import Batch, validate_batch
from pipelines.modeling.bundle import ScoringBundle
from pipelines.scoring.history import load_entity_history, save_entity_history
from pipelines.store import ResultsStore


class ScoreRequest(BaseModel):
    """Records as the batch file would hold them (column name -> value)."""

    records: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    append_history: bool = Field(
        default=True, description="Keep these records as history for later requests."
    )


@dataclass
class LoadedModel:
    name: str
    version: str
    bundle: ScoringBundle
    checked_at: float


class Scorer:
    """Holds the champion bundle and the store; thread-safe reloads."""

    def __init__(
        self, store: ResultsStore, model: str | None, refresh_seconds: float = 30.0, load=None
    ) -> None:
        self.store = store
        self.model = model
        self.refresh_seconds = refresh_seconds
        self._load = load
        self._lock = threading.Lock()
        # The sequence detectors keep per-call window state on themselves, and history is
        # read then appended: one request scores at a time (FastAPI runs sync endpoints
        # in a thread pool).
        self._score_lock = threading.Lock()
        self._current: LoadedModel | None = None

    def current(self) -> LoadedModel:
        """The champion, re-resolved at most every ``refresh_seconds``."""
        from pipelines.modeling.registry import load_bundle, resolve_model

        now = time.monotonic()
        loaded = self._current
        if loaded is not None and now - loaded.checked_at < self.refresh_seconds:
            return loaded
        with self._lock:
            ref = resolve_model(self.model)
            if loaded is None or loaded.version != ref.version or loaded.name != ref.name:
                bundle = (self._load or load_bundle)(ref)
                loaded = LoadedModel(ref.name, ref.version, bundle, now)
            else:
                loaded.checked_at = now
            self._current = loaded
        return loaded

    def score(self, request: ScoreRequest) -> dict:
        with self._score_lock:
            return self._score(request)

    def _score(self, request: ScoreRequest) -> dict:
        loaded = self.current()
        bundle = loaded.bundle
        spec = bundle.spec
        batch = Batch(frame=pd.DataFrame(request.records), source="api", row_label="record")
        validated = validate_batch(batch, spec)
        clean = validated.clean
        rejected = [
            {"record": int(r.row_number) - 1, "column": r.column, "reason": r.reason}
            for r in validated.quarantined.itertuples(index=False)
        ]
        history_rows = 0
        if not len(clean):
            results: list[dict] = []
        elif spec.is_sequence:
            history = load_entity_history(self.store, spec, clean)
            history_rows = history.rows
            prepared = bundle.prepare(clean, history.frame)
            scored = bundle.score_prepared(prepared)
            if request.append_history:
                save_entity_history(
                    self.store,
                    spec,
                    batch_id=f"api-{_digest(clean)}",
                    source="api",
                    state=prepared.state,
                )
            results = _results(clean, scored, spec.id_column)
        else:
            results = _results(clean, bundle.score(clean), spec.id_column)
        return {
            "model": loaded.name,
            "version": loaded.version,
            "threshold": bundle.threshold,
            "history_rows": history_rows,
            "results": results,
            "rejected": rejected,
        }


def _digest(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def _results(clean: pd.DataFrame, scored: pd.DataFrame, id_column: str) -> list[dict]:
    return [
        {
            "id": str(record_id),
            "score": float(score),
            "is_anomaly": bool(flag),
            "reasons": json.loads(json.dumps(reasons, default=str)),
        }
        for record_id, score, flag, reasons in zip(
            clean[id_column],
            scored["score"],
            scored["is_anomaly"],
            scored["reasons"],
            strict=True,
        )
    ]


def create_app(
    store: ResultsStore, model: str | None = None, *, refresh_seconds: float = 30.0, load=None
):
    """The FastAPI app: ``POST /score``, ``GET /health``."""
    from fastapi import FastAPI, HTTPException

    scorer = Scorer(store, model, refresh_seconds=refresh_seconds, load=load)
    app = FastAPI(title="vigil real-time scoring")

    @app.get("/health")
    def health() -> dict:
        loaded = scorer.current()
        return {"status": "ok", "model": loaded.name, "version": loaded.version}

    @app.post("/score")
    def score(request: ScoreRequest) -> dict:
        try:
            return scorer.score(request)
        except ValueError as exc:  # missing columns, unknown model: the caller's to fix
            raise HTTPException(status_code=422, detail=str(exc)) from exc

    app.state.scorer = scorer
    return app
