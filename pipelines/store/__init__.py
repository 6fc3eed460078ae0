"""Results store: scoring runs, scores, flags, quarantine, reviews, audit trail."""

from pipelines.store.db import ResultsStore
from pipelines.store.models import (
    AuditEvent,
    EntityHistorySegment,
    Flag,
    QuarantinedRow,
    Review,
    Score,
    ScoringRun,
)

__all__ = [
    "AuditEvent",
    "EntityHistorySegment",
    "Flag",
    "QuarantinedRow",
    "ResultsStore",
    "Review",
    "Score",
    "ScoringRun",
]
