"""The shapes the JSON API reads and answers; they make the OpenAPI document exact.

Path, query and body types that several routers share live here too, so a route names
what it accepts in one word (``CaseId``, ``VerdictName``) instead of repeating the rule.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import Path as FastPath
from pydantic import BaseModel, BeforeValidator, Field, StrictBool, StrictInt, WithJsonSchema

from pipelines.store.vocabulary import REASON_CODES, Role, Verdict

RoleName = Role
VerdictName = Verdict
ReasonCode = Literal[tuple(REASON_CODES)]  # type: ignore[valid-type]


CaseId = Annotated[int, FastPath(ge=1, le=2**31 - 1, description="Queue item (case) id.")]


class ErrorOut(BaseModel):
    detail: str


ERRORS = {
    400: {"model": ErrorOut, "description": "Malformed request body."},
    401: {"model": ErrorOut, "description": "No or unknown credentials."},
    403: {"model": ErrorOut, "description": "Role too low, or CSRF token missing (browsers)."},
    404: {"model": ErrorOut, "description": "No such item."},
    409: {"model": ErrorOut, "description": "Changed by someone else, or claimed by another."},
    422: {"model": ErrorOut, "description": "Invalid input."},
}


class PaymentOut(BaseModel):
    """The flagged payment as the spec's display columns name it (from the snapshot)."""

    entity: str | None = None
    time: str | None = Field(default=None, description="As recorded (ISO 8601, UTC).")
    merchant: str | None = None
    amount: float | None = None
    currency: str | None = None
    stake: float | None = Field(
        default=None, description="Amount at stake, when the queue weighs by amount."
    )
    stake_currency: str | None = None


class PriorityReason(BaseModel):
    """Why the item ranks where it does: priority = score_ratio × stake (stake 1 when the
    queue does not weigh by amount)."""

    score_ratio: float
    stake: float | None = None
    stake_currency: str | None = None


class QueueItem(BaseModel):
    id: int
    dataset: str
    entity: str | None
    entity_key: str
    record_ids: list[str]
    score: float
    threshold: float | None
    priority: float
    flag_count: int
    models: list[str]
    top_reasons: list[str | None]
    status: str
    verdict: str | None
    claimed_by: str | None
    claim_expires_at: datetime | None
    last_flag_at: datetime | None
    version: int
    payment: PaymentOut | None = None
    priority_reason: PriorityReason | None = None


class QueueResponse(BaseModel):
    items: list[QueueItem]
    next_cursor: str | None
    counts: dict[str, int]
    sort: str


class FlagDetail(BaseModel):
    id: int
    record_id: str
    entity: str | None
    score: float
    threshold: float
    record: dict[str, Any]
    reasons: list[dict[str, Any]]
    run_id: str
    model_name: str
    model_version: str
    model_alias: str | None
    created_at: datetime | None
    label: dict[str, Any] | None


class CaseDetail(QueueItem):
    flags: list[FlagDetail]
    opened_at: datetime | None
    closed_at: datetime | None
    timeline: list[dict[str, Any]] = Field(default_factory=list)


class VerdictIn(BaseModel):
    verdict: VerdictName
    note: str | None = Field(default=None, max_length=4000)
    reason_code: ReasonCode | None = None
    version: int | None = Field(
        default=None, description="The case version you saw; a newer one is a 409 conflict."
    )
    overrides: dict[str, VerdictName] = Field(
        default_factory=dict, description="record_id -> verdict for records that differ."
    )


class BulkVerdictIn(BaseModel):
    case_ids: list[Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1, max_length=500
    )
    verdict: VerdictName
    note: str | None = Field(default=None, max_length=4000)
    reason_code: ReasonCode | None = None
    overrides: dict[Annotated[str, Field(pattern=r"^[0-9]+$")], VerdictName] = Field(
        default_factory=dict, description="case id (as text) -> verdict for items that differ."
    )


class VerdictOut(BaseModel):
    id: int
    version: int
    labels: dict[str, str] = Field(default_factory=dict)


class BulkOut(BaseModel):
    applied: list[int]
    skipped: dict[str, str]


class ClaimOut(BaseModel):
    id: int | None
    version: int | None


class TagIn(BaseModel):
    tag: str = Field(min_length=1, max_length=64)
    entity: str | None = Field(default=None, description="One of the case's entities.")


class NoteIn(BaseModel):
    note: str = Field(min_length=1, max_length=4000)
    entity: str | None = Field(default=None, description="One of the case's entities.")


class AttachIn(BaseModel):
    record_id: str = Field(min_length=1, max_length=256)
    version: int | None = Field(default=None, description="The case version you saw.")


class MergeIn(BaseModel):
    absorb: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] = Field(
        description="The case merged into this one (it is kept, marked merged)."
    )
    version: int | None = Field(default=None, description="The case version you saw.")


class MergeOut(BaseModel):
    id: int
    version: int
    absorbed: list[int] = Field(description="The cases flags came from.")


class EntityTagOut(BaseModel):
    tag: str
    added_by: str
    added_at: datetime


class EntityNoteOut(BaseModel):
    id: int
    body: str
    author: str
    created_at: datetime


class EntityProfileOut(BaseModel):
    entity: str
    tags: list[EntityTagOut]
    notes: list[EntityNoteOut]


class RunOut(BaseModel):
    id: str
    batch_id: str
    source: str
    dataset: str
    model_name: str
    model_version: str
    model_alias: str | None
    threshold: float
    status: str
    rows_in: int
    rows_scored: int
    rows_quarantined: int
    rows_flagged: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class QualityOut(BaseModel):
    model_name: str
    model_version: str
    flags: int
    reviewed: int
    fraud: int
    not_fraud: int
    unsure: int
    precision: float | None
    unsure_rate: float | None
    label_coverage: float
    median_hours_to_decision: float | None
    backlog_by_age: dict[str, int]


class UserOut(BaseModel):
    name: str
    role: str
    disabled: bool


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    role: RoleName
    password: str | None = Field(default=None, min_length=10, max_length=256)


class UserPatch(BaseModel):
    role: RoleName | None = None
    disabled: StrictBool | None = None


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: dict[str, Any]


def _iso_only(value: object) -> object:
    """Dates as YYYY-MM-DD only (pydantic alone would read '0' as a Unix time)."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("dates are YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_only)]


def _blank_as_none(value: object) -> object:
    """An empty form field is no value (a filter form sends every field, filled or not)."""
    return None if value == "" else value


#: The OpenAPI document says so too: an empty value is accepted as "no filter".
_EMPTY = {"type": "string", "maxLength": 0}
OptionalNumber = Annotated[
    float | None,
    BeforeValidator(_blank_as_none),
    WithJsonSchema({"anyOf": [{"type": "number"}, _EMPTY, {"type": "null"}]}),
]
OptionalIsoDate = Annotated[
    IsoDate | None,
    BeforeValidator(_blank_as_none),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date"}, _EMPTY, {"type": "null"}]}),
]
QueueStatus = Literal["open", "closed", "all"]
SortName = Literal["priority", "newest", "oldest", "entity"]
