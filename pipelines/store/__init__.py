"""Results store: scoring runs, scores, flags, quarantine, cases, labels, users, audit trail.

One class, :class:`ResultsStore`, composed of a mixin per job: scoring basics (db.py),
chunked production runs (production.py), review cases and verdicts (review.py), accounts
and the audit trail (accounts.py), labels (labels.py), operations (operations.py).
"""

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
