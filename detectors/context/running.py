"""Context features of one record at a time, from a few running numbers per entity.

:func:`~detectors.context.build_context_features` computes a batch's features from the
kept rows of the whole look-back. A real-time scorer sees one record at a time and needs
the same numbers without re-reading those rows: :class:`RunningContext` keeps, per entity
(:class:`EntityState`) and per secondary entity value (:class:`KeyState`), only what the
features read, and answers a record's features (equal to the batch build's, within float
rounding) while adding the record to them.

What a state holds: the times of the records within ``history`` with the running prefix
sums of their amounts and squared amounts (a window's count and sum are two binary
searches and a difference, as in the batch build; the median of earlier amounts reads
them too), the last time each novelty value was seen, the last located record (time,
latitude, longitude), the time of the last record, and small time arrays for what is
counted in a window: the records first at a novelty value within each novelty window
(and, for the novelty rate, within ``history / 2``), the located records of the travel
window with their implied speeds, and with a profile the times per value and per hour
of day. Appending a record is O(1) (amortised: what ages out is dropped in blocks). A
record earlier than its entity's newest one (out of order) is inserted at its place in
time; it sees what came before it in time, except that a novelty value seen later counts
as seen, its travel features compare with the newest located record only when that one
is earlier, and the marks of the records after it are not recomputed.
"""

from __future__ import annotations

import math
import statistics
from array import array
from bisect import bisect_left, bisect_right
from typing import Any

from detectors.context.config import (
    HOUR_OFFSET_CAP,
    PREFIX,
    ContextConfig,
    _seconds,
    _slug,
)
from detectors.context.running_state import (
    TRIM_BLOCK,
    EntityState,
    KeyState,
    count_between,
    insert_time,
)
from detectors.context.running_values import (
    MIN_HOURS_FOR_SPEED,
    clock,
    haversine_km,
    key,
    missing,
    number,
    relative,
    time_seconds,
    truthy,
)

__all__ = ["EntityState", "KeyState", "RunningContext", "time_seconds", "unsupported"]


def _hour_offset(entity: EntityState, left: int, right: int, angle: float) -> float:
    """How far ``angle``'s hour lies from the mean hour of the entity's records at
    [left, right), over their circular spread in hours (floored at one hour), capped, as
    the batch build computes it (``features._hour_offset``)."""
    sums = entity.hour_sums(left, right)
    if sums is None or right <= left:
        return math.nan
    s, c = sums
    to_hours = 24.0 / (2.0 * math.pi)
    mean_hour = math.atan2(s, c) * to_hours
    resultant = min(max(math.hypot(s, c) / (right - left), 1e-9), 1.0)
    spread = math.sqrt(-2.0 * math.log(resultant)) * to_hours
    distance = abs(
        math.fmod(math.fmod(angle * to_hours - mean_hour + 12.0, 24.0) + 24.0, 24.0) - 12.0
    )
    return min(distance / max(spread, 1.0), HOUR_OFFSET_CAP)


def unsupported(config: ContextConfig) -> list[str]:
    """The options of ``config`` the running state does not compute (empty: all covered)."""
    del config
    return []


class RunningContext:
    """One record's context features from running per-key states (see the module)."""

    def __init__(self, config: ContextConfig) -> None:
        not_covered = unsupported(config)
        if not_covered:
            raise ValueError(f"the running context state does not compute {not_covered}")
        self.config = config
        self.names = config.feature_names()
        self.horizon = config.history_seconds
        self._windows = [(w, _seconds(w), _slug(w)) for w in config.windows]
        self._levels = [(_seconds(w), _slug(w)) for w in config.level_windows]
        self._secondary_windows = [(_seconds(w), _slug(w)) for w in config.secondary_windows]
        self._gap = _seconds(config.baseline_gap) if config.baseline_gap else None
        self._novelty = [(c, _slug(c)) for c in config.novelty_columns]
        self._novelty_windows = [(_seconds(w), _slug(w)) for w in config.novelty_windows]
        self._half = self.horizon / 2.0
        self._profile = [(c, _slug(c)) for c in config.profile_columns]
        self._travel = _seconds(config.travel_window) if config.travel_window else None
        self._secondary = [(c, _slug(c)) for c in config.secondary_entity_columns]

    def new_entity(self) -> EntityState:
        return EntityState(len(self.config.novelty_columns), len(self.config.profile_columns))

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
        amount = number(record[config.amount_column]) if config.amount_column else 0.0
        if amount != amount:  # NaN: the batch build sums missing amounts as 0
            amount = 0.0
        out: dict[str, float] = {}
        #: (mark name, window) of the marks this record joins.
        marks: list[tuple[str, float]] = []
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
        too_short = h_count < max(1, config.min_history)
        recent: dict[float, tuple[int, float]] = {}
        for _, width, slug in self._windows:
            left, _ = entity.span(seconds - width, end, inclusive=False)
            count, total, _ = entity.totals(left, end)
            recent[width] = (count, total)
            out[f"{PREFIX}count_{slug}"] = float(count + 1)
        if config.amount_column:
            for _, width, slug in self._windows:
                out[f"{PREFIX}amount_sum_{slug}"] = recent[width][1] + amount
            ratio, z = relative(amount, h_count, h_sum, h_sq, config.min_history)
            out[f"{PREFIX}amount_ratio"], out[f"{PREFIX}amount_z"] = ratio, z
            if self._gap is not None:
                right, _ = entity.span(seconds - self._gap, end, inclusive=True)
                right = max(right, h_left)
                count, total, squares = entity.totals(h_left, right)
                ratio, z = relative(amount, count, total, squares, config.min_history)
                out[f"{PREFIX}amount_baseline_ratio"] = ratio
                out[f"{PREFIX}amount_baseline_z"] = z
            if config.robust_baseline:
                out[f"{PREFIX}amount_median_ratio"] = self._median_ratio(entity, seconds, amount)
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
        self._novelties(record, seconds, entity, out, marks)
        for i, (column, slug) in enumerate(self._profile):
            value = record.get(column)
            share = math.nan
            if not (too_short or missing(value)):
                times = entity.profile[i].get(key(value))
                share = count_between(times, seconds - horizon, seconds, closed=True) / h_count
            out[f"{PREFIX}share_{slug}"] = share
        hours, weekday = clock(time_value, seconds)
        if config.profile_hours:
            bucket = int(math.floor(hours)) % 24
            marks.append((f"hour:{bucket}", horizon))
            share = math.nan
            if not too_short:
                near = 0
                for b in (bucket - 1, bucket, bucket + 1):
                    times = entity.marks.get(f"hour:{b % 24}")
                    if times:
                        near += bisect_left(times, seconds) - bisect_left(times, seconds - horizon)
                share = near / h_count
            out[f"{PREFIX}share_hour"] = share
        hour_angle = 2.0 * math.pi * hours / 24.0
        if config.hour_offset:
            out[f"{PREFIX}hour_offset"] = (
                math.nan if too_short else _hour_offset(entity, h_left, end, hour_angle)
            )
        if config.calendar:
            day_angle = 2.0 * math.pi * weekday / 7.0
            out[f"{PREFIX}hour_sin"] = math.sin(hour_angle)
            out[f"{PREFIX}hour_cos"] = math.cos(hour_angle)
            out[f"{PREFIX}weekday_sin"] = math.sin(day_angle)
            out[f"{PREFIX}weekday_cos"] = math.cos(day_angle)
        here = self._location(record)
        speed = -math.inf
        if config.latitude_column:
            km = kmh = math.nan
            before = entity.located
            if here is not None and before is not None and before[0] <= seconds:
                hours_between = max((seconds - before[0]) / 3600.0, MIN_HOURS_FOR_SPEED)
                if seconds - before[0] <= horizon:
                    km = haversine_km(before[1], before[2], here[0], here[1])
                    kmh = km / hours_between
                if self._travel is not None and seconds - before[0] <= horizon - self._travel:
                    speed = kmh
            out[f"{PREFIX}km_from_prev"], out[f"{PREFIX}kmh_from_prev"] = km, kmh
            if self._travel is not None:
                out[f"{PREFIX}kmh_max_{_slug(config.travel_window)}"] = self._fastest(
                    entity, seconds, here, speed
                )
        self._secondaries(seconds, amount, secondary, out)
        if keep:
            angle = hour_angle if config.hour_offset else None
            self._add(record, seconds, amount, here, speed, marks, entity, secondary, angle)
        return {name: out[name] for name in self.names}

    def _median_ratio(self, entity: EntityState, seconds: float, amount: float) -> float:
        """Amount / median of the entity's amounts at times [t - history, t)."""
        end = bisect_left(entity.t, seconds)
        left = bisect_left(entity.t, seconds - self.horizon, 0, end)
        if end - left < max(1, self.config.min_history):
            return math.nan
        median = statistics.median(entity.amounts(left, end))
        return amount / median if median > 0 else math.nan

    def _novelties(self, record, seconds, entity, out, marks) -> None:
        """'New value' flags, their counts over the novelty windows and their rates."""
        config, horizon, half = self.config, self.horizon, self._half
        rate = config.novelty_rate
        rated_record = rate == "all" or (
            rate == "unlocated" and not truthy(record.get(config.located_column))
        )
        for i, (column, slug) in enumerate(self._novelty):
            value = record.get(column)
            known = not missing(value)
            last = entity.seen[i].get(key(value)) if known else None
            gap = math.inf if last is None else seconds - last
            out[f"{PREFIX}new_{slug}"] = (0.0 if gap <= horizon else 1.0) if known else math.nan
            if rate:
                if known and rated_record and gap > half:
                    marks.append((f"base:{i}", half))
            for j, (width, window_slug) in enumerate(self._novelty_windows):
                first = known and gap > horizon - width
                since = seconds - width
                name = f"new:{i}:{j}"
                count = count_between(entity.marks.get(name), since, seconds, closed=False)
                out[f"{PREFIX}new_{slug}_count_{window_slug}"] = float(count + first)
                if first:
                    marks.append((name, width))
                if not rate:
                    continue
                rated = first and rated_record
                name = f"rated:{i}:{j}"
                count = count_between(entity.marks.get(name), since, seconds, closed=False)
                if rated:
                    marks.append((name, width))
                earlier = count_between(
                    entity.marks.get(f"base:{i}"), seconds - half, seconds - width, closed=True
                )
                expected = (earlier + 1.0) * width / (half - width)
                out[f"{PREFIX}new_{slug}_rate_{window_slug}"] = (count + rated) / expected

    def _fastest(self, entity: EntityState, seconds: float, here, speed: float) -> float:
        """The highest speed among the located records of the travel window (this one
        included); NaN for a record not located or with no speed in the window."""
        if here is None:
            return math.nan
        best = speed
        times = entity.marks.get("travel")
        if times:
            left = bisect_left(times, seconds - self._travel)
            right = bisect_right(times, seconds)
            if right > left:
                best = max(best, max(entity.marks["speed"][left:right]))
        return best if math.isfinite(best) else math.nan

    def _secondaries(self, seconds, amount, secondary, out) -> None:
        config, horizon = self.config, self.horizon
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
                ratio, _ = relative(amount, count, total, squares, config.min_history)
                out[f"{PREFIX}{slug}_amount_ratio"] = ratio

    def _add(self, record, seconds, amount, here, speed, marks, entity, secondary, angle) -> None:
        pos = entity.add(seconds, amount)
        if angle is not None:
            entity.add_hour(pos, angle)
        entity.last = max(entity.last, seconds)
        newest = entity.newest
        cutoff = newest - self.horizon
        entity.trim(cutoff)
        for i, (column, _) in enumerate(self._novelty):
            value = record.get(column)
            if not missing(value):
                seen = entity.seen[i]
                name = key(value)
                seen[name] = max(seen.get(name, -math.inf), seconds)
                if len(seen) > 2 * TRIM_BLOCK and len(seen) % TRIM_BLOCK == 0:
                    for stale in [k for k, t in seen.items() if t < cutoff]:
                        del seen[stale]
        for name, width in marks:
            entity.mark(name, seconds, newest - width)
        for i, (column, _) in enumerate(self._profile):
            value = record.get(column)
            if not missing(value):
                values = entity.profile[i]
                name = key(value)
                times = values.get(name)
                if times is None:
                    times = values[name] = array("d")
                insert_time(times, seconds, cutoff)
                if len(values) > 2 * TRIM_BLOCK and len(values) % TRIM_BLOCK == 0:
                    for stale in [k for k, t in values.items() if t[-1] < cutoff]:
                        del values[stale]
        if here is not None and (entity.located is None or seconds >= entity.located[0]):
            entity.located = (seconds, here[0], here[1])
        if self._travel is not None and here is not None:
            entity.add_speed(seconds, speed, newest - self._travel)
        for column, _ in self._secondary:
            state = secondary.get(column)
            if state is not None:
                state.add(seconds, amount)
                state.trim(state.newest - self.horizon)

    def _location(self, record: dict[str, Any]) -> tuple[float, float] | None:
        config = self.config
        if not config.latitude_column:
            return None
        lat = number(record.get(config.latitude_column))
        lon = number(record.get(config.longitude_column))
        if lat != lat or lon != lon:
            return None
        if config.located_column and not truthy(record.get(config.located_column)):
            return None
        return lat, lon
