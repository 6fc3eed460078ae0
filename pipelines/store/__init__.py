"""Results store: scoring runs, scores, flags, quarantine, cases, labels, users, audit trail."""

from pipelines.store.db import ResultsStore
from pipelines.store.models import (
    ApiToken,
    AuditEvent,
    Case,
    Decision,
    EntityHistorySegment,
    Flag,
    Label,
    QuarantinedRow,
    Review,
    RunChunk,
    RunClaim,
    Score,
    ScoringRun,
    User,
    WebSession,
)
from pipelines.store.production import LeaseLost, RunAlreadyRunning, StoreUnavailable

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Case",
    "Decision",
    "EntityHistorySegment",
    "Flag",
    "Label",
    "QuarantinedRow",
    "ResultsStore",
    "LeaseLost",
    "Review",
    "RunAlreadyRunning",
    "RunChunk",
    "RunClaim",
    "Score",
    "ScoringRun",
    "User",
    "WebSession",
    "StoreUnavailable",
]
