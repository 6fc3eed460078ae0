"""Results store: scoring runs, scores, flags, quarantine, reviews, audit trail."""

from pipelines.store.db import ResultsStore
from pipelines.store.models import (
    AuditEvent,
    EntityHistorySegment,
    Flag,
    QuarantinedRow,
    Review,
    RunChunk,
    RunClaim,
    Score,
    ScoringRun,
)
from pipelines.store.production import LeaseLost, RunAlreadyRunning, StoreUnavailable

__all__ = [
    "AuditEvent",
    "EntityHistorySegment",
    "Flag",
    "QuarantinedRow",
    "ResultsStore",
    "LeaseLost",
    "Review",
    "RunAlreadyRunning",
    "RunChunk",
    "RunClaim",
    "Score",
    "ScoringRun",
    "StoreUnavailable",
]
