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
    Score,
    ScoringRun,
    User,
    WebSession,
)

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
    "Review",
    "Score",
    "ScoringRun",
    "User",
    "WebSession",
]
