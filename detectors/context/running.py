"""Context features of one record at a time, from a few running numbers per entity.

:func:`~detectors.context.build_context_features` computes a batch's features from the
kept rows of the whole look-back. A real-time scorer sees one record at a time and needs
the same numbers without re-reading those rows: :class:`RunningContext` keeps, per entity
(:class:`EntityState`) and per secondary entity value (:class:`KeyState`), only what the
features read, and answers a record's features (equal to the batch build's, within float
rounding) while adding the record to them.

What a state holds: the times of the records within ``history`` with the running prefix
sums of their amounts and squared amounts (a window's count and sum are two binary
searches and a difference, as in the batch build), the last time each novelty value was
seen, the last located record (time, latitude, longitude) and the time of the last
record. Appending a record is O(1) (amortised: the records older than ``history`` are
dropped in blocks). A record earlier than its entity's newest one (out of order) is
inserted at its place in time; it sees what came before it in time, except that a
novelty value seen later counts as seen and its travel features compare with the newest
located record only when that one is earlier.

Not every option is covered: :func:`unsupported` names those a caller must compute from
kept rows instead (medians, novelty windows and rates, profiles, the usual hour, the
travel window).
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from detectors.context.config import PREFIX, ContextConfig, _seconds, _slug

_EARTH_RADIUS_KM = 6371.0088
_MIN_HOURS_FOR_SPEED = 1.0 / 60.0
_EPOCH_NS = np.datetime64(0, "ns")
_SECOND = np.timedelta64(1, "s")
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_ZERO = timedelta(0)
#: Dropping a state's expired head waits until it holds this many records (amortises the
#: copy), or half the state.
_TRIM_BLOCK = 64


def unsupported(config: ContextConfig) -> list[str]:
    """The options of ``config`` the running state does not compute (empty: all covered)."""
    out = []
    if config.robust_baseline:
        out.append("robust_baseline")
    if config.novelty_windows:
        out.append("novelty_windows")
    if config.novelty_rate:
        out.append("novelty_rate")
    if config.profile_columns:
        out.append("profile_columns")
    if config.profile_hours:
        out.append("profile_hours")
    if config.hour_offset:
        out.append("hour_offset")
    if config.travel_window:
        out.append("travel_window")
    return out


class KeyState:
    """The records of one key (an entity or a secondary entity value) within ``history``:
    their times in order, and prefix sums of their amounts (missing = 0) and squares."""

    __slots__ = ("cum", "sq", "t")

    def __init__(self) -> None:
        self.t = array("d")
        self.cum = array("d", [0.0])
        self.sq = array("d", [0.0])

    @property
    def newest(self) -> float:
        return self.t[-1] if self.t else -math.inf

    def add(self, seconds: float, amount: float) -> int:
        """Add a record; its position among the earlier-or-equal times (arrival order
        kept among equal times)."""
        t = self.t
        if not t or seconds >= t[-1]:
            t.append(seconds)
            self.cum.append(self.cum[-1] + amount)
            self.sq.append(self.sq[-1] + amount * amount)
            return len(t) - 1
        pos = bisect_right(t, seconds)
        # A late record: the prefix sums after it are rebuilt (rare, O(records kept)).
        cum, sq = self.cum, self.sq
        amounts = [amount, *(cum[i + 1] - cum[i] for i in range(pos, len(t)))]
        squares = [amount * amount, *(sq[i + 1] - sq[i] for i in range(pos, len(t)))]
        t.insert(pos, seconds)
        new_cum, new_sq = cum[: pos + 1], sq[: pos + 1]
        total, total_sq = cum[pos], sq[pos]
        for a, q in zip(amounts, squares, strict=True):
            total += a
            total_sq += q
            new_cum.append(total)
            new_sq.append(total_sq)
        self.cum, self.sq = new_cum, new_sq
        return pos

    def span(self, start: float, end: int, *, inclusive: bool) -> tuple[int, int]:
        """Positions [left, end) of the records before position ``end`` with time > start
        (>= start with ``inclusive``)."""
        left = (
            bisect_left(self.t, start, 0, end) if inclusive else bisect_right(self.t, start, 0, end)
        )
        return left, end

    def totals(self, left: int, right: int) -> tuple[int, float, float]:
        return right - left, self.cum[right] - self.cum[left], self.sq[right] - self.sq[left]

    def trim(self, before: float) -> None:
        """Forget records older than ``before`` (in blocks)."""
        k = bisect_left(self.t, before)
        if k >= _TRIM_BLOCK or (k and 2 * k >= len(self.t)):
            del self.t[:k]
            base_cum, base_sq = self.cum[k], self.sq[k]
            self.cum = array("d", (c - base_cum for c in self.cum[k:]))
            self.sq = array("d", (s - base_sq for s in self.sq[k:]))

    def to_dict(self) -> dict:
        """Plain JSON values; the arrays as base64 of their float64 bytes (exact, and
        several times faster to write and read than lists of numbers)."""
        return {k: _packed(getattr(self, k)) for k in ("t", "cum", "sq")}

    @classmethod
    def from_dict(cls, data: dict) -> KeyState:
        state = cls()
        state.t, state.cum, state.sq = (_unpacked(data[k]) for k in ("t", "cum", "sq"))
        return state

    def nbytes(self) -> int:
        return 3 * 64 + 8 * (len(self.t) + len(self.cum) + len(self.sq))


class EntityState(KeyState):
    """An entity's records within ``history`` (a :class:`KeyState`), the last time each
    novelty value was seen, its last located record and its last record's time."""

    __slots__ = ("last", "located", "seen")

    def __init__(self, n_novelty: int = 0) -> None:
        super().__init__()
        self.last = -math.inf
        self.seen: list[dict[str, float]] = [{} for _ in range(n_novelty)]
        self.located: tuple[float, float, float] | None = None

    def to_dict(self) -> dict:
        return {
            **super().to_dict(),
            "last": self.last if math.isfinite(self.last) else None,
            "seen": self.seen,
            "located": list(self.located) if self.located else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> EntityState:
        state = cls(len(data["seen"]))
        state.t, state.cum, state.sq = (_unpacked(data[k]) for k in ("t", "cum", "sq"))
        state.last = -math.inf if data["last"] is None else float(data["last"])
        state.seen = [dict(s) for s in data["seen"]]
        state.located = tuple(data["located"]) if data["located"] else None
        return state

    def nbytes(self) -> int:
        seen = sum(48 + 100 * len(s) for s in self.seen)
        return super().nbytes() + seen + 120


class RunningContext:
    """One record's context features from running per-key states (see the module)."""

    def __init__(self, config: ContextConfig) -> None:
        missing = unsupported(config)
        if missing:
            raise ValueError(f"the running context state does not compute {missing}")
        self.config = config
        self.names = config.feature_names()
        self.horizon = config.history_seconds
        self._windows = [(w, _seconds(w), _slug(w)) for w in config.windows]
        self._levels = [(_seconds(w), _slug(w)) for w in config.level_windows]
        self._secondary_windows = [(_seconds(w), _slug(w)) for w in config.secondary_windows]
        self._gap = _seconds(config.baseline_gap) if config.baseline_gap else None
        self._novelty = [(c, _slug(c)) for c in config.novelty_columns]
        self._secondary = [(c, _slug(c)) for c in config.secondary_entity_columns]

    def new_entity(self) -> EntityState:
        return EntityState(len(self.config.novelty_columns))

    def step(
        self,
        record: dict[str, Any],
        entity: EntityState,
        secondary: dict[str, KeyState | None],
        *,
        keep: bool = True,
    ) -> dict[str, float]:
        """``record``'s features (name -> float, NaN where missing), then (``keep``)
        ``record`` joins ``entity`` and its ``secondary`` states (column -> state of its
        value, None where the value is missing)."""
        config = self.config
        time_value = record[config.time_column]
        seconds = time_seconds(time_value)
        amount = _number(record[config.amount_column]) if config.amount_column else 0.0
        if amount != amount:  # NaN: the batch build sums missing amounts as 0
            amount = 0.0
        out: dict[str, float] = {}
        horizon = self.horizon
        end = bisect_right(entity.t, seconds)
        previous = (
            entity.t[end - 1] if end else (entity.last if entity.last <= seconds else -math.inf)
        )
        gap = seconds - previous
        out[f"{PREFIX}secs_since_prev"] = gap if gap <= horizon else math.nan
        h_left, _ = entity.span(seconds - horizon, end, inclusive=True)
        h_count, h_sum, h_sq = entity.totals(h_left, end)
        cap = self.config.history_count_cap
        out[f"{PREFIX}history_count"] = float(min(h_count, cap) if cap else h_count)
        recent: dict[float, tuple[int, float]] = {}
        for _, width, slug in self._windows:
            left, _ = entity.span(seconds - width, end, inclusive=False)
            count, total, _ = entity.totals(left, end)
            recent[width] = (count, total)
            out[f"{PREFIX}count_{slug}"] = float(count + 1)
        if config.amount_column:
            for _, width, slug in self._windows:
                out[f"{PREFIX}amount_sum_{slug}"] = recent[width][1] + amount
            ratio, z = _relative(amount, h_count, h_sum, h_sq, config.min_history)
            out[f"{PREFIX}amount_ratio"], out[f"{PREFIX}amount_z"] = ratio, z
            if self._gap is not None:
                right, _ = entity.span(seconds - self._gap, end, inclusive=True)
                right = max(right, h_left)
                count, total, squares = entity.totals(h_left, right)
                ratio, z = _relative(amount, count, total, squares, config.min_history)
                out[f"{PREFIX}amount_baseline_ratio"] = ratio
                out[f"{PREFIX}amount_baseline_z"] = z
            for width, slug in self._levels:
                left, _ = entity.span(seconds - width, end, inclusive=False)
                right = max(left, h_left)
                n_recent, recent_total, _ = entity.totals(left, end)
                older, older_total, _ = entity.totals(h_left, right)
                level = math.nan
                if older >= max(1, config.min_history):
                    mean = older_total / older
                    if mean > 0:
                        level = ((recent_total + amount) / (n_recent + 1)) / mean
                out[f"{PREFIX}amount_level_{slug}"] = level
        for i, (column, slug) in enumerate(self._novelty):
            value = record.get(column)
            if _missing(value):
                out[f"{PREFIX}new_{slug}"] = math.nan
                continue
            last = entity.seen[i].get(_key(value))
            seen = last is not None and last >= seconds - horizon
            out[f"{PREFIX}new_{slug}"] = 0.0 if seen else 1.0
        if config.calendar:
            hours, weekday = _clock(time_value, seconds)
            hour_angle = 2.0 * math.pi * hours / 24.0
            day_angle = 2.0 * math.pi * weekday / 7.0
            out[f"{PREFIX}hour_sin"] = math.sin(hour_angle)
            out[f"{PREFIX}hour_cos"] = math.cos(hour_angle)
            out[f"{PREFIX}weekday_sin"] = math.sin(day_angle)
            out[f"{PREFIX}weekday_cos"] = math.cos(day_angle)
        here = self._location(record)
        if config.latitude_column:
            km = kmh = math.nan
            before = entity.located
            if here is not None and before is not None and before[0] <= seconds:
                if seconds - before[0] <= horizon:
                    km = _haversine_km(before[1], before[2], here[0], here[1])
                    kmh = km / max((seconds - before[0]) / 3600.0, _MIN_HOURS_FOR_SPEED)
            out[f"{PREFIX}km_from_prev"], out[f"{PREFIX}kmh_from_prev"] = km, kmh
        for column, slug in self._secondary:
            state = secondary.get(column)
            if state is None:
                for _, window_slug in self._secondary_windows:
                    out[f"{PREFIX}{slug}_count_{window_slug}"] = math.nan
                if config.amount_column:
                    out[f"{PREFIX}{slug}_amount_ratio"] = math.nan
                continue
            key_end = bisect_right(state.t, seconds)
            for width, window_slug in self._secondary_windows:
                left, _ = state.span(seconds - width, key_end, inclusive=False)
                out[f"{PREFIX}{slug}_count_{window_slug}"] = float(key_end - left + 1)
            if config.amount_column:
                left, _ = state.span(seconds - horizon, key_end, inclusive=True)
                count, total, squares = state.totals(left, key_end)
                ratio, _ = _relative(amount, count, total, squares, config.min_history)
                out[f"{PREFIX}{slug}_amount_ratio"] = ratio
        if keep:
            self._add(record, seconds, amount, here, entity, secondary)
        return {name: out[name] for name in self.names}

    def _add(self, record, seconds, amount, here, entity, secondary) -> None:
        entity.add(seconds, amount)
        entity.last = max(entity.last, seconds)
        cutoff = entity.newest - self.horizon
        entity.trim(cutoff)
        for i, (column, _) in enumerate(self._novelty):
            value = record.get(column)
            if not _missing(value):
                seen = entity.seen[i]
                key = _key(value)
                seen[key] = max(seen.get(key, -math.inf), seconds)
                if len(seen) > 2 * _TRIM_BLOCK and len(seen) % _TRIM_BLOCK == 0:
                    for stale in [k for k, t in seen.items() if t < cutoff]:
                        del seen[stale]
        if here is not None and (entity.located is None or seconds >= entity.located[0]):
            entity.located = (seconds, here[0], here[1])
        for column, _ in self._secondary:
            state = secondary.get(column)
            if state is not None:
                state.add(seconds, amount)
                state.trim(state.newest - self.horizon)

    def _location(self, record: dict[str, Any]) -> tuple[float, float] | None:
        config = self.config
        if not config.latitude_column:
            return None
        lat = _number(record.get(config.latitude_column))
        lon = _number(record.get(config.longitude_column))
        if lat != lat or lon != lon:
            return None
        if config.located_column and not _truthy(record.get(config.located_column)):
            return None
        return lat, lon


def _packed(values: array) -> str:
    """float64 little-endian bytes, base64 (the same text on any machine)."""
    if sys.byteorder == "big":
        values = array("d", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def _unpacked(data: str | list) -> array:
    if isinstance(data, list):
        return array("d", data)
    values = array("d")
    values.frombytes(base64.b64decode(data))
    if sys.byteorder == "big":
        values.byteswap()
    return values


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


def _clock(value: Any, seconds: float) -> tuple[float, float]:
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


def _relative(
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


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dphi = p2 - p1
    dlambda = math.radians(lon2) - math.radians(lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlambda / 2) ** 2
    return 2.0 * _EARTH_RADIUS_KM * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def _number(value: Any) -> float:
    if value is None or value is pd.NA:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and value != value


def _key(value: Any) -> str:
    """A value as a state key (states are JSON: keys are text)."""
    return value if isinstance(value, str) else repr(value)


def _truthy(value: Any) -> bool:
    """As the batch build's ``_truthy`` for one value."""
    if _missing(value):
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
