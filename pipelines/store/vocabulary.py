"""The words the store persists, as enums: one definition for the store, the review app,
the API and the CLI.

Each member's value is the string stored in the database, and a ``StrEnum`` member *is*
that string (``Verdict.FRAUD == "fraud"``), so members go into queries, JSON and
DataFrames as they are, and rows read back compare equal to them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Verdict(StrEnum):
    """What an analyst (or an imported file) says about a record."""

    FRAUD = "fraud"
    NOT_FRAUD = "not_fraud"
    UNSURE = "unsure"


#: The verdicts that count as a label for training, thresholds and precision: ``unsure``
#: and a withdrawn verdict say nothing about the record.
COUNTING_VERDICTS: Final = (Verdict.FRAUD, Verdict.NOT_FRAUD)

#: The label row an undo appends (history is kept): it takes back the verdict before it,
#: so the record has no label. Never a verdict anyone gives.
WITHDRAWN: Final = "withdrawn"


class LabelSource(StrEnum):
    """Where a label came from."""

    REVIEW = "review"
    IMPORT = "import"
    CHARGEBACK = "chargeback"


class Role(StrEnum):
    """What a user may do: a viewer reads, an analyst also gives verdicts, an admin also
    manages users."""

    VIEWER = "viewer"
    ANALYST = "analyst"
    ADMIN = "admin"


class RunRole(StrEnum):
    """A scoring run's part: a primary run's flags reach the review queue; a shadow run
    (the challenger scoring the same batch beside the champion) keeps its scores as
    promotion evidence and raises no flags."""

    PRIMARY = "primary"
    SHADOW = "shadow"


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class CaseStatus(StrEnum):
    """A queue item is open until it has a verdict; an undo reopens it. A case merged
    into another keeps its row and audit, points at its survivor and holds no flags."""

    OPEN = "open"
    CLOSED = "closed"
    MERGED = "merged"


class FlagStatus(StrEnum):
    """A flag is open until its case gets a verdict."""

    OPEN = "open"
    REVIEWED = "reviewed"


class HealthStatus(StrEnum):
    """A run's drift watch: within limits, over them, or no training reference to
    compare with."""

    OK = "ok"
    ALARM = "alarm"
    NO_REFERENCE = "no_reference"


class DecisionKind(StrEnum):
    """What a decision-ledger entry decided about."""

    PROMOTION = "promotion"
    ROLLBACK = "rollback"
    THRESHOLD = "threshold"


class DecisionOutcome(StrEnum):
    """What a decision-ledger entry decided."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"
    #: The policy would promote; the person asked to approve said no.
    APPROVAL_REJECTED = "approval_rejected"
    ROLLED_BACK = "rolled_back"
    APPLIED = "applied"
    REFUSED = "refused"


#: Reason codes an analyst may give with a verdict, with what the review app shows.
REASON_CODES: Final = {
    "": "(none)",
    "confirmed_by_customer": "Confirmed with the customer",
    "card_testing": "Card testing pattern",
    "account_takeover": "Account takeover",
    "stolen_card": "Lost or stolen card",
    "merchant_compromise": "Compromised merchant / terminal",
    "known_customer_pattern": "Known customer behaviour",
    "travel": "Customer travelling",
    "false_positive_model": "Model false positive",
    "other": "Other (see note)",
}
