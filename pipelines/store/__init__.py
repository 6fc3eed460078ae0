"""Results store: scoring runs, scores, flags, quarantine, reviews, audit trail."""

from pipelines.store.db import ResultsStore
from pipelines.store.models import AuditEvent, Flag, QuarantinedRow, Review, Score, ScoringRun

__all__ = [
    "AuditEvent",
    "Flag",
    "QuarantinedRow",
    "ResultsStore",
    "Review",
    "Score",
    "ScoringRun",
]
