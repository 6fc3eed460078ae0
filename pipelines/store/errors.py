"""The store's errors and the small time and hashing helpers its repositories share."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime


class ReviewError(Exception):
    """A request the store refuses; the message is meant for the person who made it."""


class Conflict(ReviewError):
    """Someone else changed the item first (optimistic locking) or holds its claim."""


class NotFound(ReviewError):
    """The case, user or record asked for does not exist."""


class RunAlreadyRunning(RuntimeError):
    """Another live process holds the run's lease: nothing was written by this one."""


class LeaseLost(RuntimeError):
    """This process's claim was taken over (its heartbeat went stale): stop writing."""


class StoreUnavailable(RuntimeError):
    """The results store could not be reached or refused a write; the chunk was not kept."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
