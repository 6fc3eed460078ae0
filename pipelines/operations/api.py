"""``vigil api``: real-time scoring of one record or a small batch over HTTP.

Tabular models need nothing but the record (``mlflow models serve`` does that too);
sequence models need each entity's recent history. Where the running state covers the
model (:func:`~pipelines.operations.stateful.why_not_stateful`), each card and merchant
keeps only the numbers its features read and the model's last rows
(:class:`~pipelines.operations.stateful.StatefulScorer`: in the process, or in Redis
with ``VIGIL_API_STATE_URL``), rebuilt from the store's kept history at start. Otherwise
the app loads that history into memory once
(:class:`~pipelines.scoring.history.LiveHistory`) and scores each request with the same
bundle code as batch scoring. Either way the scored records are kept for the next
request and written to the store in batches: a record scored here gets the score batch
scoring would give it (tested, across a restart too).

``POST /score`` costs what scoring costs: from the running state a payment is scored on
the event loop, its body parsed and its answer written in one call each
(:mod:`pipelines.operations.api_route`).

``GET /metrics`` answers Prometheus' text format (requests, errors, latency and score
histograms: :mod:`pipelines.operations.metrics`).

The champion is looked up again every ``refresh_seconds`` in the background, so a
promotion or rollback takes effect without a restart and no request waits for the
registry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field

from detectors.context import time_to_seconds
from pipelines.intake.ingest import Batch, ValidationResult, validate_batch
from pipelines.intake.records import validate_records
from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.registry import load_bundle, resolve_model
from pipelines.operations.api_route import ScoreAnswer, ScoreRoute
from pipelines.operations.metrics import CONTENT_TYPE, ApiMetrics
from pipelines.operations.stateful import StatefulScorer, why_not_stateful
from pipelines.scoring.history import LiveHistory, context_signature
from pipelines.scoring.history.writer import HistoryWriter
from pipelines.store import ResultsStore

log = logging.getLogger(__name__)


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
    """Holds the champion bundle, the in-memory entity history and the store."""

    def __init__(
        self,
        store: ResultsStore,
        model: str | None,
        refresh_seconds: float = 30.0,
        load=None,
        *,
        flush_seconds: float = 1.0,
        background: bool = True,
        running_state: bool = True,
        state_url: str | None = None,
    ) -> None:
        self.store = store
        self.running_state, self.state_url = running_state, state_url
        self._stateful: StatefulScorer | None = None
        #: Why the loaded sequence model is scored from kept rows (None: running state).
        self.state_note: str | None = None
        self.model = model
        self.refresh_seconds = refresh_seconds
        self.flush_seconds = flush_seconds
        self.background = background
        self._load = load
        self._lock = threading.Lock()
        # The sequence detectors keep per-call window state on themselves, and history is
        # read then appended: one request scores at a time (FastAPI runs sync endpoints
        # in a thread pool).
        self._score_lock = threading.RLock()
        self._current: LoadedModel | None = None
        self._live: LiveHistory | None = None
        self._refreshing = False
        self._queue: list[_Ticket] = []
        self._queue_lock = threading.Lock()
        #: Requests scored in a batch with others since start (for tests and /health).
        self.coalesced_requests = 0

    def current(self) -> LoadedModel:
        """The champion. Loaded on first use; afterwards re-resolved every
        ``refresh_seconds`` in a background thread while requests use the one loaded."""
        loaded = self._current
        if loaded is None:
            with self._lock:
                if self._current is None:
                    self._resolve()
                return self._current  # type: ignore[return-value]
        if time.monotonic() - loaded.checked_at >= self.refresh_seconds and not self._refreshing:
            self._refreshing = True
            if self.background:
                threading.Thread(target=self._refresh, daemon=True).start()
            else:
                self._refresh()
        return self._current  # type: ignore[return-value]

    def _refresh(self) -> None:
        try:
            with self._lock:
                self._resolve()
        except Exception as exc:  # noqa: BLE001 - keep serving the loaded model
            log.warning("champion look-up failed, still serving the loaded model: %s", exc)
            if self._current is not None:
                self._current.checked_at = time.monotonic()
        finally:
            self._refreshing = False

    def _resolve(self) -> None:

        now = time.monotonic()
        loaded = self._current
        ref = resolve_model(self.model)
        if loaded is None or loaded.version != ref.version or loaded.name != ref.name:
            bundle = (self._load or load_bundle)(ref)
            stateful = self._stateful_for(bundle)
            live = None if stateful is not None else self._live_for(bundle.spec)
            old = self._stateful
            self._current = LoadedModel(ref.name, ref.version, bundle, now)
            self._live, self._stateful = live, stateful
            if old is not None and old is not stateful:
                with self._score_lock:
                    old.close()
        else:
            loaded.checked_at = now

    def _stateful_for(self, bundle: ScoringBundle) -> StatefulScorer | None:
        """The running-state scorer of a sequence bundle it covers (else None, with the
        reason in ``state_note``)."""
        if bundle.spec.context is None:
            return None
        reason = why_not_stateful(bundle) if self.running_state else "running state is off"
        self.state_note = reason
        if reason is not None:
            log.info("%s: scoring from kept rows: %s", bundle.spec.name, reason)
            return None
        if self._live is not None:  # the kept rows' scorer goes: its records to the store
            with self._score_lock:
                self._live.close()
            self._live = None
        return StatefulScorer(
            bundle,
            self.store,
            state_url=self.state_url,
            flush_seconds=self.flush_seconds,
            background=self.background,
            previous=self._stateful,
        )

    @property
    def stateful(self) -> StatefulScorer | None:
        return self._stateful

    @property
    def history_writer(self) -> HistoryWriter | None:
        """The writer keeping what this scorer scores (None before a model with context is
        loaded)."""
        if self._stateful is not None:
            return self._stateful.writer
        return self._live.writer if self._live is not None else None

    def _live_for(self, spec) -> LiveHistory | None:
        """The in-memory history this spec needs: the one held if it is the same data set
        and context (a new version of the model), else loaded fresh."""
        live = self._live
        if spec.context is None:
            return None
        if live is not None and live.spec.name == spec.name:
            if live.signature == context_signature(spec):
                return live
        fresh = LiveHistory(
            self.store, spec, flush_seconds=self.flush_seconds, background=self.background
        )
        if live is not None:
            with self._score_lock:
                live.close()
        return fresh

    @property
    def live_history(self) -> LiveHistory | None:
        return self._live

    def close(self) -> None:
        """Write the history still pending (clean shutdown)."""
        if self._stateful is not None:
            with self._score_lock:
                self._stateful.close()
        if self._live is not None:
            with self._score_lock:
                self._live.close()

    def scores_inline(self) -> bool:
        """Whether a request is scored from the running state of the loaded model (a
        fraction of a millisecond: no reason to leave the caller's thread)."""
        loaded, stateful = self._current, self._stateful
        return loaded is not None and stateful is not None and stateful.bundle is loaded.bundle

    def score(self, request: ScoreRequest) -> dict:
        """Score one request. Requests that append to the history and arrive while
        another is being scored wait in a queue; whoever scores next takes the whole
        queue and scores it as one batch where that gives the same scores as one request
        after another (see :meth:`_groups`), so 8 clients cost little more than one."""
        loaded = self.current()
        stateful = self._stateful
        if stateful is not None and stateful.bundle is loaded.bundle:
            with self._score_lock:
                scored = stateful.score(request.records, append_history=request.append_history)
            return {
                "model": loaded.name,
                "version": loaded.version,
                "threshold": loaded.bundle.threshold,
                **scored,
            }
        if not request.append_history:
            with self._score_lock:
                return self._score(request, loaded)
        ticket = _Ticket(request)
        with self._queue_lock:
            self._queue.append(ticket)
        with self._score_lock:
            if not ticket.done:
                with self._queue_lock:
                    tickets, self._queue = self._queue, []
                self._score_queued(tickets, self.current())
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]

    def _score_queued(self, tickets: list[_Ticket], loaded: LoadedModel) -> None:
        """Score queued requests (caller holds the score lock), in groups."""
        spec = loaded.bundle.spec
        for ticket in tickets:
            ticket.validated = validate_records(ticket.request.records, spec)
        for group in self._groups(tickets, spec):
            if len(group) > 1:
                self.coalesced_requests += len(group)
            try:
                if len(group) == 1:
                    group[0].result = self._score(group[0].request, loaded, group[0].validated)
                else:
                    self._score_together(group, loaded)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                for ticket in group:
                    ticket.error = exc
            finally:
                for ticket in group:
                    ticket.done = True

    def _groups(self, tickets: list[_Ticket], spec) -> list[list[_Ticket]]:
        """Requests that can be scored as one batch, in the order they will be scored.

        Any order of concurrent requests is a valid serial order, so the queue is taken in
        time order. Requests join one batch only when that is the same as scoring them one
        after another: all validated by the fast path (nothing rejected), no id shared, and
        for sequence models each request's records no earlier than the previous request's
        and than anything already kept (a kept record later than a new one is invisible to
        it, as in batch scoring). Everything else is scored alone.
        """
        sequence = spec.is_sequence
        spans: dict[int, tuple[float, float]] = {}
        fast = [t for t in tickets if t.validated is not None and len(t.validated.clean)]
        slow = [t for t in tickets if t.validated is None or not len(t.validated.clean)]
        if sequence:
            column = spec.time_column
            for t in fast:
                seconds = time_to_seconds(t.validated.clean[column], column)
                spans[id(t)] = (float(seconds.min()), float(seconds.max()))
            fast.sort(key=lambda t: spans[id(t)])
        kept = self._live.newest_seconds if sequence and self._live is not None else -np.inf
        groups: list[list[_Ticket]] = []
        current: list[_Ticket] = []
        ids: set[str] = set()
        latest = -np.inf
        for ticket in fast:
            own = set(ticket.validated.clean[spec.id_column])
            first, last = spans.get(id(ticket), (0.0, 0.0))
            if current and not (own & ids) and (not sequence or first >= latest):
                current.append(ticket)
                ids |= own
                latest = max(latest, last)
                continue
            if current:
                groups.append(current)
                kept = max(kept, latest)
            current, ids, latest = [], set(), -np.inf
            if sequence and first < kept:  # earlier than something kept: alone
                groups.append([ticket])
                kept = max(kept, last)
                continue
            current, ids, latest = [ticket], own, last
        if current:
            groups.append(current)
        return groups + [[t] for t in slow]

    def _score_together(self, group: list[_Ticket], loaded: LoadedModel) -> None:
        clean = pd.concat([t.validated.clean for t in group], ignore_index=True)
        results, history_rows = self._score_clean(clean, loaded, append_history=True)
        start = 0
        for ticket in group:
            n = len(ticket.validated.clean)
            ticket.result = self._response(loaded, results[start : start + n], [], history_rows)
            start += n

    def _score(
        self,
        request: ScoreRequest,
        loaded: LoadedModel,
        validated: ValidationResult | None = None,
    ) -> dict:
        spec = loaded.bundle.spec
        # The common case (well-typed records) skips validate_batch's ~25 ms of pandas
        # overhead; anything unusual still goes through it.
        if validated is None:
            validated = validate_records(request.records, spec)
        if validated is None:
            batch = Batch(frame=pd.DataFrame(request.records), source="api", row_label="record")
            validated = validate_batch(batch, spec)
        rejected = [
            {"record": int(r.row_number) - 1, "column": r.column, "reason": r.reason}
            for r in validated.quarantined.itertuples(index=False)
        ]
        results, history_rows = self._score_clean(
            validated.clean, loaded, append_history=request.append_history
        )
        return self._response(loaded, results, rejected, history_rows)

    def _score_clean(
        self, clean: pd.DataFrame, loaded: LoadedModel, *, append_history: bool
    ) -> tuple[list[dict], int]:
        bundle = loaded.bundle
        spec = bundle.spec
        if not len(clean):
            return [], 0
        if not spec.is_sequence:
            return _results(clean, bundle.score(clean), spec.id_column), 0
        live = self._live
        if live is None or live.spec.name != spec.name:
            live = self._live = self._live_for(spec)
        history = live.before(clean)
        prepared = bundle.prepare(clean, history.frame)
        scored = bundle.score_prepared(prepared)
        if append_history:
            live.extend(prepared.state)
        return _results(clean, scored, spec.id_column), history.rows

    @staticmethod
    def _response(
        loaded: LoadedModel, results: list[dict], rejected: list[dict], history_rows: int
    ) -> dict:
        return {
            "model": loaded.name,
            "version": loaded.version,
            "threshold": loaded.bundle.threshold,
            "history_rows": history_rows,
            "results": results,
            "rejected": rejected,
        }


#: ``POST /score``'s body in the OpenAPI schema (the endpoint parses it itself).
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ScoreRequest.model_json_schema()}},
    }
}


@dataclass
class _Ticket:
    """A request waiting in the scoring queue, and what became of it."""

    request: ScoreRequest
    validated: ValidationResult | None = None
    result: dict | None = None
    error: Exception | None = None
    done: bool = False


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
    store: ResultsStore,
    model: str | None = None,
    *,
    refresh_seconds: float = 30.0,
    load=None,
    flush_seconds: float = 1.0,
    running_state: bool = True,
    state_url: str | None = None,
):
    """The FastAPI app: ``POST /score``, ``GET /health``, ``GET /metrics``. Shutting the
    app down writes the entity history still pending to the store."""

    scorer = Scorer(
        store,
        model,
        refresh_seconds=refresh_seconds,
        load=load,
        flush_seconds=flush_seconds,
        running_state=running_state,
        state_url=state_url,
    )
    metrics = ApiMetrics(history=lambda: scorer.history_writer)

    @asynccontextmanager
    async def lifespan(app):
        yield
        scorer.close()

    app = FastAPI(title="vigil real-time scoring", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict:
        loaded = scorer.current()
        out = {"status": "ok", "model": loaded.name, "version": loaded.version}
        if scorer.stateful is not None:
            out["state"] = scorer.stateful.describe()
        elif scorer.state_note:
            out["state"] = {"kind": "kept rows", "why": scorer.state_note}
        return out

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.registry.exposition(), media_type=CONTENT_TYPE)

    answer = ScoreAnswer(scorer, metrics, ScoreRequest)

    @app.post("/score", openapi_extra=_REQUEST_BODY, response_model=None)
    async def score(request: Request) -> Response:
        """Answered by :class:`ScoreRoute` in front of the router (this route gives the
        OpenAPI schema, and answers the same where the middleware is not in front)."""
        status, content = await answer(await request.body())
        return Response(content, status_code=status, media_type="application/json")

    app.add_middleware(ScoreRoute, answer=answer)
    app.state.scorer = scorer
    app.state.metrics = metrics
    return app
