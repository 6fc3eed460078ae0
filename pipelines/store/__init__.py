"""Results store: scoring runs, scores, flags, quarantine, cases, entity tags and notes,
labels, the decision ledger, run health, accounts and the audit trail.

:class:`ResultsStore` is the facade: it owns one session factory
(:mod:`~pipelines.store.database`) and one repository per job over it (runs, scores,
quarantine, history, queue, cases, casework, entities, labels, quality, ledger, health,
sources, accounts, audit, retention), and exposes their methods under its own name. The
words the store persists are enums in :mod:`~pipelines.store.vocabulary`; the schema is in
:mod:`~pipelines.store.models` and changes only through Alembic migrations.

The names below are loaded on first use: the CLI imports the vocabulary when it starts,
and SQLAlchemy and pandas are not needed for that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "ResultsStore": "pipelines.store.facade",
    "ChunkWrite": "pipelines.store.runs",
    "RunClaimTicket": "pipelines.store.runs",
    "LeaseLost": "pipelines.store.errors",
    "RunAlreadyRunning": "pipelines.store.errors",
    "StoreUnavailable": "pipelines.store.errors",
    **dict.fromkeys(
        [
            "ApiToken",
            "AuditEvent",
            "Case",
            "Decision",
            "EntityHistorySegment",
            "EntityNote",
            "EntityTag",
            "Flag",
            "Label",
            "QuarantinedRow",
            "RunChunk",
            "RunClaim",
            "Score",
            "ScoringRun",
            "User",
            "WebSession",
        ],
        "pipelines.store.models",
    ),
}

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Case",
    "ChunkWrite",
    "Decision",
    "EntityHistorySegment",
    "EntityNote",
    "EntityTag",
    "Flag",
    "Label",
    "LeaseLost",
    "QuarantinedRow",
    "ResultsStore",
    "RunAlreadyRunning",
    "RunChunk",
    "RunClaim",
    "RunClaimTicket",
    "Score",
    "ScoringRun",
    "StoreUnavailable",
    "User",
    "WebSession",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


if TYPE_CHECKING:  # what type checkers and editors see
    from pipelines.store.errors import LeaseLost, RunAlreadyRunning, StoreUnavailable
    from pipelines.store.facade import ResultsStore
    from pipelines.store.models import (
        ApiToken,
        AuditEvent,
        Case,
        Decision,
        EntityHistorySegment,
        EntityNote,
        EntityTag,
        Flag,
        Label,
        QuarantinedRow,
        RunChunk,
        RunClaim,
        Score,
        ScoringRun,
        User,
        WebSession,
    )
    from pipelines.store.runs import ChunkWrite, RunClaimTicket
