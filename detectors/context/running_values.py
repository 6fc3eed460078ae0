"""One record's raw values as the running context state reads them: times in seconds,
the clock, numbers, missing values and flags, each as the batch build reads the column."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

# The batch build's constants: one-record and batch speeds agree by construction.
from detectors.context.features import _EARTH_RADIUS_KM, _MIN_HOURS_FOR_SPEED

MIN_HOURS_FOR_SPEED = _MIN_HOURS_FOR_SPEED

_EPOCH_NS = np.datetime64(0, "ns")
_SECOND = np.timedelta64(1, "s")
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_ZERO = timedelta(0)


def time_seconds(value: Any) -> float:
    """A time as :func:`~detectors.context.time_to_seconds` gives it (float seconds)."""
    if type(value) is datetime:
        # numpy's (value - epoch) / 1 s: the nanoseconds as a float, divided by 1e9.
        return float(_nanos(value)) / 1e9
    if isinstance(value, datetime | pd.Timestamp | np.datetime64):
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return float((np.datetime64(stamp.value, "ns") - _EPOCH_NS) / _SECOND)
    number = float(value)
    if number != number:
        raise ValueError("time has a missing value")
    return number


def clock(value: Any, seconds: float) -> tuple[float, float]:
    """(hour of day as a float, weekday) as the batch build's calendar features read them."""
    if type(value) is datetime and (value.tzinfo is None or value.utcoffset() == _ZERO):
        return (
            value.hour + value.minute / 60.0 + value.second / 3600.0,
            float(value.weekday()),
        )
    if isinstance(value, datetime | pd.Timestamp | np.datetime64):
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is None or stamp.tzinfo == UTC or str(stamp.tzinfo) == "UTC":
            if stamp.tzinfo is not None:
                stamp = stamp.tz_convert("UTC").tz_localize(None)
            days, day_nanos = divmod(stamp.value, 86_400 * 10**9)
            hour, rest = divmod(day_nanos // 10**9, 3600)
            minute, second = divmod(rest, 60)
            return hour + minute / 60.0 + second / 3600.0, float((days + 3) % 7)
        return (
            stamp.hour + stamp.minute / 60.0 + stamp.second / 3600.0,
            float(stamp.dayofweek),
        )
    return math.fmod(seconds, 86400.0) % 86400.0 / 3600.0, float(
        (math.floor(seconds / 86400.0) + 3.0) % 7.0
    )


def _nanos(value: datetime) -> int:
    """Nanoseconds since the epoch of a naive (UTC) or aware datetime."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return (value - _EPOCH) // _MICROSECOND * 1000


def relative(
    amount: float, count: int, total: float, squares: float, min_count: int
) -> tuple[float, float]:
    """As the batch build's ``_relative_to_history`` for one record."""
    if count < max(1, min_count):
        return math.nan, math.nan
    mean = total / count
    variance = max(squares / count - mean * mean, 0.0)
    spread = max(math.sqrt(variance), 0.1 * abs(mean) + 1e-9)
    ratio = amount / mean if mean > 0 else math.nan
    return ratio, (amount - mean) / spread


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dphi = p2 - p1
    dlambda = math.radians(lon2) - math.radians(lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlambda / 2) ** 2
    return 2.0 * _EARTH_RADIUS_KM * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def number(value: Any) -> float:
    if value is None or value is pd.NA:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and value != value


def key(value: Any) -> str:
    """A value as a state key (states are JSON: keys are text)."""
    return value if isinstance(value, str) else repr(value)


def truthy(value: Any) -> bool:
    """As the batch build's ``_truthy`` for one value."""
    if missing(value):
        return False
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.number):
        return float(value) > 0
    text = str(value).strip().lower()
    if text in ("true", "yes", "y", "t"):
        return True
    try:
        return float(text) > 0
    except ValueError:
        return False


def hour_bucket(value: Any, seconds: float) -> int:
    """The record's hour of day (0-23) as the batch build's hour profile buckets it."""
    return int(math.floor(clock(value, seconds)[0])) % 24
