"""Building the context features: vectorised numpy/pandas, causal and bounded (see
:mod:`detectors.context`)."""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

import numpy as np
import pandas as pd

from detectors.context.config import (
    HOUR_OFFSET_CAP,
    PREFIX,
    ContextConfig,
    _seconds,
    _slug,
)

_EARTH_RADIUS_KM = 6371.0088
#: Speed is computed with at least this many hours between records (1 minute), so two
#: records with the same timestamp do not produce an infinite speed.
_MIN_HOURS_FOR_SPEED = 1.0 / 60.0


def time_to_seconds(values: Any, name: str = "time") -> np.ndarray:
    """Times as float seconds: numbers as they are, datetimes (naive = UTC) since the epoch.

    Timedeltas become their total seconds; object/string columns are parsed with
    ``pd.to_datetime``. Raises ``ValueError`` (naming ``name``) for missing or unparsable
    values.
    """
    naive = isinstance(values, pd.Series) and isinstance(values.dtype, np.dtype)
    if naive and values.dtype.kind == "M":
        # Naive datetimes (what validation gives) in one numpy step: this runs several
        # times per request on the real-time path.
        arr = values.to_numpy(dtype="datetime64[ns]")
        if np.isnat(arr).any():
            raise ValueError(f"time column {name!r} has missing values")
        return (arr - np.datetime64(0, "ns")) / np.timedelta64(1, "s")
    s = pd.Series(values).reset_index(drop=True)
    if s.isna().any():
        raise ValueError(f"time column {name!r} has missing values")
    if pd.api.types.is_bool_dtype(s):
        raise ValueError(f"time column {name!r} must hold numbers or datetimes, not booleans")
    if pd.api.types.is_timedelta64_dtype(s):
        return s.dt.total_seconds().to_numpy(dtype=np.float64)
    if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s)):
        try:
            s = pd.to_datetime(s, utc=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"time column {name!r} must hold numbers (seconds) or datetimes"
            ) from exc
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(s):
        arr = s.to_numpy(dtype="datetime64[ns]")
        return (arr - np.datetime64(0, "ns")) / np.timedelta64(1, "s")
    return s.to_numpy(dtype=np.float64)


def build_context_features(
    frame: pd.DataFrame, config: ContextConfig, *, targets: np.ndarray | None = None
) -> pd.DataFrame:
    """Context features for the rows of ``frame`` (index kept), each from its past only.

    ``frame`` holds at least ``config.raw_columns``; rows need not be sorted. ``targets``
    (a boolean mask or row positions) limits the rows features are computed for; the
    other rows then only serve as the targets' past (a night's batch after 30 days of
    kept history: the work scales with the batch, not the history). Missing values come
    out as NaN (the detectors' encoder adds missing indicators): e.g. the time since the
    previous record of an entity's first record in ``history``.
    """
    missing = [c for c in config.raw_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"context features need column(s) {missing} (found {list(frame.columns)})")
    n = len(frame)
    if targets is None:
        rows = np.arange(n)
    else:
        targets = np.asarray(targets)
        rows = np.flatnonzero(targets) if targets.dtype == bool else targets.astype(np.int64)
    seconds = time_to_seconds(frame[config.time_column], config.time_column)
    amount = (
        pd.to_numeric(frame[config.amount_column], errors="coerce").to_numpy(dtype="float64")
        if config.amount_column
        else None
    )
    horizon = config.history_seconds
    out: dict[str, np.ndarray] = {}

    entity = _Timeline(frame[config.entity_column], seconds, horizon, rows)
    pos = entity.pos
    prev_ok = entity.previous_within(horizon)
    gap = entity.t[pos] - entity.t[np.maximum(pos - 1, 0)]
    out[f"{PREFIX}secs_since_prev"] = np.where(prev_ok, gap, np.nan)
    left_history = entity.window_start(horizon, include_boundary=True)
    earlier = (pos - left_history).astype("float64")
    out[f"{PREFIX}history_count"] = (
        np.minimum(earlier, config.history_count_cap) if config.history_count_cap else earlier
    )
    for window in config.windows:
        left = entity.window_start(_seconds(window))
        out[f"{PREFIX}count_{_slug(window)}"] = (pos - left + 1).astype("float64")
    if amount is not None:
        a = np.nan_to_num(entity.sort(amount), nan=0.0)
        cumulative = np.concatenate([[0.0], np.cumsum(a)])
        cumulative_sq = np.concatenate([[0.0], np.cumsum(a * a)])
        for window in config.windows:
            left = entity.window_start(_seconds(window))
            out[f"{PREFIX}amount_sum_{_slug(window)}"] = cumulative[pos + 1] - cumulative[left]
        ratio, z = _relative_to_history(
            a[pos], cumulative, cumulative_sq, left_history, pos, config.min_history
        )
        out[f"{PREFIX}amount_ratio"] = ratio
        out[f"{PREFIX}amount_z"] = z
        if config.baseline_gap:
            # Baseline records: [t - history, t - gap), i.e. up to the window's right end.
            right = entity.window_start(_seconds(config.baseline_gap), include_boundary=True)
            right = np.maximum(right, left_history)
            ratio, z = _relative_to_history(
                a[pos], cumulative, cumulative_sq, left_history, right, config.min_history
            )
            out[f"{PREFIX}amount_baseline_ratio"] = ratio
            out[f"{PREFIX}amount_baseline_z"] = z
        if config.robust_baseline:
            median = _earlier_median(entity, a, horizon, config.min_history)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{PREFIX}amount_median_ratio"] = a[pos] / np.where(median > 0, median, np.nan)
        for window in config.level_windows:
            # Recent records (t - window, t] against the older ones [t - history, t - window].
            left = entity.window_start(_seconds(window))
            right = np.maximum(left, left_history)
            recent = (cumulative[pos + 1] - cumulative[left]) / (pos + 1 - left)
            older = right - left_history
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = (cumulative[right] - cumulative[left_history]) / older
                level = recent / np.where(mean > 0, mean, np.nan)
            level[older < max(1, config.min_history)] = np.nan
            out[f"{PREFIX}amount_level_{_slug(window)}"] = level

    entity_codes = entity.unsort(entity.codes).astype("int64")
    too_short = earlier < max(1, config.min_history)
    for column in config.novelty_columns:
        values = frame[column]
        pair = _pair_codes(entity_codes, values)
        timeline = _Timeline(pd.Series(pair), seconds, horizon, rows)
        new = (~timeline.previous_within(horizon)).astype("float64")
        new[values.isna().to_numpy()[rows]] = np.nan
        out[f"{PREFIX}new_{_slug(column)}"] = new
        if config.novelty_windows:
            # First-at-its-value flags of every record (history rows too), summed over the
            # entity's trailing windows like the amounts. A record up to ``window`` old
            # looks back ``history - window`` for its value, so nothing reaches further
            # than ``history`` (the bounded-history property).
            every = _Timeline(pd.Series(pair), seconds, horizon, np.arange(n))
            known = values.notna().to_numpy()
            if config.novelty_rate:
                rated = known.copy()
                if config.novelty_rate == "unlocated":
                    rated &= ~_truthy(frame[config.located_column])
                # The entity's own rate: its rated first-time records in [t - history / 2,
                # t - window], each first within history / 2 (so within history of t).
                half = horizon / 2.0
                base = (~every.previous_within(half) & rated).astype("float64")
                base_cumulative = np.concatenate([[0.0], np.cumsum(entity.sort(base))])
                left_half = entity.window_start(half, include_boundary=True)
            for window in config.novelty_windows:
                reach = horizon - _seconds(window)
                first = ~every.previous_within(reach)
                flags = (first & known).astype("float64")
                cumulative = np.concatenate([[0.0], np.cumsum(entity.sort(flags))])
                left = entity.window_start(_seconds(window))
                name = f"{PREFIX}new_{_slug(column)}_count_{_slug(window)}"
                out[name] = cumulative[pos + 1] - cumulative[left]
                if config.novelty_rate:
                    recent_flags = entity.sort((first & rated).astype("float64"))
                    recent_cumulative = np.concatenate([[0.0], np.cumsum(recent_flags)])
                    recent = recent_cumulative[pos + 1] - recent_cumulative[left]
                    earlier_count = base_cumulative[left] - base_cumulative[left_half]
                    expected = (earlier_count + 1.0) * _seconds(window) / (half - _seconds(window))
                    name = f"{PREFIX}new_{_slug(column)}_rate_{_slug(window)}"
                    out[name] = recent / expected

    for column in config.profile_columns:
        values = frame[column]
        pair = _pair_codes(entity_codes, values)
        timeline = _Timeline(pd.Series(pair), seconds, horizon, rows)
        same = (timeline.pos - timeline.window_start(horizon, include_boundary=True)).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = same / earlier
        share[too_short | values.isna().to_numpy()[rows]] = np.nan
        out[f"{PREFIX}share_{_slug(column)}"] = share

    if config.profile_hours:
        hours = hours_of_day(frame[config.time_column], seconds)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = _near_hour_counts(entity_codes, hours, seconds, horizon, rows) / earlier
        share[too_short] = np.nan
        out[f"{PREFIX}share_hour"] = share

    if config.hour_offset:
        hours = hours_of_day(frame[config.time_column], seconds)
        offset = _hour_offset(entity, hours, left_history)
        offset[too_short] = np.nan
        out[f"{PREFIX}hour_offset"] = offset

    if config.calendar:
        out.update(_calendar(frame[config.time_column].iloc[rows], seconds[rows]))

    if config.latitude_column and config.longitude_column:
        out.update(_travel(frame, config, seconds, horizon, rows))

    for column in config.secondary_entity_columns:
        timeline = _Timeline(frame[column], seconds, horizon, rows)
        known = frame[column].notna().to_numpy()[rows]
        for window in config.secondary_windows:
            left = timeline.window_start(_seconds(window))
            counts = (timeline.pos - left + 1).astype("float64")
            counts[~known] = np.nan
            out[f"{PREFIX}{_slug(column)}_count_{_slug(window)}"] = counts
        if amount is not None:
            a = np.nan_to_num(timeline.sort(amount), nan=0.0)
            cumulative = np.concatenate([[0.0], np.cumsum(a)])
            cumulative_sq = np.concatenate([[0.0], np.cumsum(a * a)])
            left = timeline.window_start(horizon, include_boundary=True)
            ratio, _ = _relative_to_history(
                a[timeline.pos], cumulative, cumulative_sq, left, timeline.pos, config.min_history
            )
            ratio[~known] = np.nan
            out[f"{PREFIX}{_slug(column)}_amount_ratio"] = ratio

    result = pd.DataFrame(out, index=frame.index[rows])
    return result[config.feature_names()]


class _Timeline:
    """Rows sorted by (key, time, input order) with a searchable (key, time) axis.

    ``pos`` holds the sorted positions of the target rows; queries answer for those.
    """

    def __init__(
        self, keys: pd.Series, seconds: np.ndarray, horizon: float, rows: np.ndarray
    ) -> None:
        codes = pd.factorize(keys.reset_index(drop=True), use_na_sentinel=True)[0]
        # Missing keys become their own singleton groups so they never share history.
        missing = codes < 0
        if missing.any():
            codes = codes.copy()
            codes[missing] = codes.max() + 1 + np.arange(int(missing.sum()))
        n = len(codes)
        self.order = np.lexsort((np.arange(n), seconds, codes))
        self.codes = codes[self.order]
        self.t = seconds[self.order]
        if n:
            origin = float(self.t.min())
            span = float(self.t.max()) - origin + 2.0 * horizon + 1.0
            self.key = self.codes.astype("float64") * span + (self.t - origin)
        else:
            self.key = np.empty(0)
        inverse = np.empty(n, dtype=np.int64)
        inverse[self.order] = np.arange(n)
        self.pos = inverse[rows]
        # Searches run on the targets in sorted order: numpy's searchsorted is much faster
        # with sorted queries (random-order queries made the 1.75M-row build 3x slower).
        if len(rows) == n and np.array_equal(rows, np.arange(n)):
            self._by_position, self._sorted_pos = self.order, np.arange(n)
        else:
            self._by_position = np.argsort(self.pos, kind="stable")
            self._sorted_pos = self.pos[self._by_position]

    def sort(self, values: np.ndarray) -> np.ndarray:
        return values[self.order]

    def unsort(self, values: np.ndarray) -> np.ndarray:
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def window_start(self, seconds: float, *, include_boundary: bool = False) -> np.ndarray:
        """Per target: first sorted position of the same key with time > t - seconds
        (>= with the boundary)."""
        side = "left" if include_boundary else "right"
        found = np.searchsorted(self.key, self.key[self._sorted_pos] - seconds, side=side)
        out = np.empty_like(found)
        out[self._by_position] = found
        return out

    def previous_within(self, seconds: float) -> np.ndarray:
        """Per target: the previous sorted row has the same key and is within ``seconds``."""
        pos = self.pos
        prev = np.maximum(pos - 1, 0)
        return (
            (pos > 0)
            & (self.codes[prev] == self.codes[pos])
            & (self.t[pos] - self.t[prev] <= seconds)
        )


def _relative_to_history(
    amount: np.ndarray,
    cumulative: np.ndarray,
    cumulative_sq: np.ndarray,
    left: np.ndarray,
    positions: np.ndarray,
    min_count: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Amount / mean of the amounts at sorted positions [left, positions), and its z-score
    (NaN where that range holds fewer than ``min_count`` records).

    The z-score's spread is floored at 10% of the mean so an entity whose earlier amounts
    were all identical does not produce an infinite z.
    """
    count = (positions - left).astype("float64")
    total = cumulative[positions] - cumulative[left]
    total_sq = cumulative_sq[positions] - cumulative_sq[left]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = np.maximum(total_sq / count - mean * mean, 0.0)
        spread = np.maximum(np.sqrt(variance), 0.1 * np.abs(mean) + 1e-9)
        ratio = amount / np.where(mean > 0, mean, np.nan)
        z = (amount - mean) / spread
    none = count < max(1, min_count)
    ratio[none] = np.nan
    z[none] = np.nan
    return ratio, z


def _pair_codes(entity_codes: np.ndarray, values: pd.Series) -> np.ndarray:
    """One integer per (entity, value) pair, without a slow MultiIndex."""
    value_codes = pd.factorize(values)[0].astype("int64")
    return entity_codes * (int(value_codes.max(initial=0)) + 2) + value_codes


def _earlier_median(entity: _Timeline, a: np.ndarray, horizon: float, min_count: int):
    """Per target: median of the entity's amounts at times [t - horizon, t) (sorted
    amounts ``a``), NaN with fewer than ``min_count`` of them."""
    index = pd.to_datetime(entity.t, unit="s")
    series = pd.Series(a, index=index)
    rolled = (
        series.groupby(entity.codes, sort=False)
        .rolling(pd.Timedelta(seconds=horizon), closed="left", min_periods=max(1, min_count))
        .median()
    )
    # groupby-rolling returns groups in order of appearance, each in its (sorted) order:
    # the entity timeline is sorted by entity code first, so values line up with ``a``.
    median = rolled.to_numpy(dtype="float64")
    return median[entity.pos]


def _hour_offset(entity: _Timeline, hours: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Per target: circular distance (hours) from its hour of day to the mean hour of the
    entity's earlier records at sorted positions [left, pos), over their circular standard
    deviation in hours (floored at one hour), capped at ``HOUR_OFFSET_CAP``: a usual hour
    gives ~0-1, an hour the entity never uses gives several. Sums of the hour's sine and
    cosine along the entity's timeline give every window's mean direction at once."""
    angle = entity.sort(2.0 * math.pi * hours / 24.0)
    sine = np.concatenate([[0.0], np.cumsum(np.sin(angle))])
    cosine = np.concatenate([[0.0], np.cumsum(np.cos(angle))])
    pos = entity.pos
    count = (pos - left).astype("float64")
    s, c = sine[pos] - sine[left], cosine[pos] - cosine[left]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_hour = np.arctan2(s, c) * 24.0 / (2.0 * math.pi)
        resultant = np.clip(np.hypot(s, c) / count, 1e-9, 1.0)
        spread = np.sqrt(-2.0 * np.log(resultant)) * 24.0 / (2.0 * math.pi)
    distance = np.abs(np.mod(angle[pos] * 24.0 / (2.0 * math.pi) - mean_hour + 12.0, 24.0) - 12.0)
    return np.minimum(distance / np.maximum(spread, 1.0), HOUR_OFFSET_CAP)


def _near_hour_counts(
    entity_codes: np.ndarray, hours: np.ndarray, seconds: np.ndarray, horizon: float, rows
) -> np.ndarray:
    """Per target row: the entity's earlier records in [t - horizon, t) whose hour of day
    is within the same one-hour bucket or a neighbouring one (circular)."""
    bucket = np.floor(hours).astype("int64") % 24
    group = entity_codes * 24 + bucket
    order = np.lexsort((seconds, group))
    origin = float(seconds.min()) if len(seconds) else 0.0
    span = float(seconds.max()) - origin + 2.0 * horizon + 1.0 if len(seconds) else 1.0
    keys = group[order].astype("float64") * span + (seconds[order] - origin)
    t = seconds[rows] - origin
    total = np.zeros(len(rows))
    for offset in (-1, 0, 1):
        q = (entity_codes[rows] * 24 + (bucket[rows] + offset) % 24).astype("float64") * span
        total += np.searchsorted(keys, q + t, side="left") - np.searchsorted(
            keys, q + t - horizon, side="left"
        )
    return total


def hours_of_day(times: pd.Series, seconds: np.ndarray) -> np.ndarray:
    """Hour of day (float) of each record, as the calendar features read it."""
    parts = _clock(times)
    if parts is not None:
        hour, minute, second, _ = parts
        return hour + minute / 60.0 + second / 3600.0
    if pd.api.types.is_datetime64_any_dtype(times):
        return (times.dt.hour + times.dt.minute / 60.0 + times.dt.second / 3600.0).to_numpy(float)
    return np.mod(seconds, 86400.0) / 3600.0


def _clock(times: pd.Series) -> tuple[np.ndarray, ...] | None:
    """(hour, minute, second, weekday) as float arrays for naive or UTC datetimes, read
    from the integer nanoseconds (what ``.dt`` gives, without its per-call overhead);
    ``None`` for other kinds of time (``.dt`` handles them)."""
    dtype = times.dtype
    if dtype.kind != "M" or getattr(dtype, "tz", None) not in (None, UTC):
        return None
    if getattr(dtype, "tz", None) is not None:
        times = times.dt.tz_localize(None)
    nanos = times.to_numpy(dtype="datetime64[ns]").view(np.int64)
    days, day_nanos = np.divmod(nanos, 86_400 * 10**9)
    day_seconds = day_nanos // 10**9
    hour, rest = np.divmod(day_seconds, 3600)
    minute, second = np.divmod(rest, 60)
    weekday = np.mod(days + 3, 7)  # 1970-01-01 was a Thursday (Monday = 0)
    return (
        hour.astype(np.float64),
        minute.astype(np.float64),
        second.astype(np.float64),
        weekday.astype(np.float64),
    )


def _calendar(times: pd.Series, seconds: np.ndarray) -> dict[str, np.ndarray]:
    hours = hours_of_day(times, seconds)
    parts = _clock(times)
    if parts is not None:
        weekday = parts[3]
    elif pd.api.types.is_datetime64_any_dtype(times):
        weekday = times.dt.day_of_week.to_numpy(dtype="float64")
    else:  # numeric: seconds since the Unix epoch (a Thursday), so both forms agree
        weekday = np.mod(np.floor(seconds / 86400.0) + 3.0, 7.0)
    hour_angle = 2.0 * math.pi * hours / 24.0
    day_angle = 2.0 * math.pi * weekday / 7.0
    return {
        f"{PREFIX}hour_sin": np.sin(hour_angle),
        f"{PREFIX}hour_cos": np.cos(hour_angle),
        f"{PREFIX}weekday_sin": np.sin(day_angle),
        f"{PREFIX}weekday_cos": np.cos(day_angle),
    }


def _travel(
    frame: pd.DataFrame,
    config: ContextConfig,
    seconds: np.ndarray,
    horizon: float,
    rows: np.ndarray,
) -> dict[str, np.ndarray]:
    """Distance and implied speed from the entity's previous record that has coordinates.

    Records without coordinates (online payments) get NaN and are skipped as "previous".
    """
    n = len(frame)
    lat = pd.to_numeric(frame[config.latitude_column], errors="coerce").to_numpy(float)
    lon = pd.to_numeric(frame[config.longitude_column], errors="coerce").to_numpy(float)
    has_coordinates = ~(np.isnan(lat) | np.isnan(lon))
    if config.located_column:
        has_coordinates &= _truthy(frame[config.located_column])
    located = np.flatnonzero(has_coordinates)
    km = np.full(len(rows), np.nan)
    kmh = np.full(len(rows), np.nan)
    is_target = np.zeros(n, dtype=bool)
    is_target[rows] = True
    target_index = np.full(n, -1, dtype=np.int64)
    target_index[rows] = np.arange(len(rows))
    located_targets = np.flatnonzero(is_target[located])
    if len(located) > 1 and len(located_targets):
        keys = frame[config.entity_column].iloc[located]
        timeline = _Timeline(keys, seconds[located], horizon, located_targets)
        prev = timeline.previous_within(horizon)
        pos = timeline.pos[prev]
        cur = located[timeline.order[pos]]
        before = located[timeline.order[pos - 1]]
        distance = _haversine_km(lat[before], lon[before], lat[cur], lon[cur])
        hours = np.maximum((seconds[cur] - seconds[before]) / 3600.0, _MIN_HOURS_FOR_SPEED)
        km[target_index[cur]] = distance
        kmh[target_index[cur]] = distance / hours
    out = {f"{PREFIX}km_from_prev": km, f"{PREFIX}kmh_from_prev": kmh}
    if config.travel_window:
        window = _seconds(config.travel_window)
        fastest = np.full(len(rows), np.nan)
        if len(located) > 1 and len(located_targets):
            # Speeds of every located record (history rows too), each from its previous
            # located record within history - window: nothing reaches beyond history.
            every = _Timeline(keys, seconds[located], horizon, np.arange(len(located)))
            reach = every.previous_within(horizon - window)
            speed = np.full(len(located), -np.inf)  # in the timeline's sorted order
            pos = every.pos[reach]
            cur = located[every.order[pos]]
            before = located[every.order[pos - 1]]
            hours = np.maximum((seconds[cur] - seconds[before]) / 3600.0, _MIN_HOURS_FOR_SPEED)
            speed[pos] = _haversine_km(lat[before], lon[before], lat[cur], lon[cur]) / hours
            right = timeline.pos
            left = timeline.window_start(window, include_boundary=True)
            best = _range_max(speed, left, right)
            best[~np.isfinite(best)] = np.nan
            fastest[target_index[located[timeline.order[right]]]] = best
        out[f"{PREFIX}kmh_max_{_slug(config.travel_window)}"] = fastest
    return out


def _range_max(values: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """max(values[left_i .. right_i]) (inclusive) per query, by a sparse table."""
    levels = [values]
    span = 1
    while 2 * span <= len(values):
        last = levels[-1]
        levels.append(np.maximum(last[:-span], last[span:]))
        span *= 2
    length = right - left + 1
    k = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
    out = np.full(len(left), -np.inf)
    for level in np.unique(k):
        sel = k == level
        table = levels[level]
        out[sel] = np.maximum(table[left[sel]], table[right[sel] - (1 << level) + 1])
    return out


def _truthy(values: pd.Series) -> np.ndarray:
    """1/true/yes (any case) or a positive number -> True; anything else (missing) False."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).to_numpy(dtype=bool)
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    text = values.astype(str).str.strip().str.lower().isin(["true", "yes", "y", "t"]).to_numpy()
    return (np.nan_to_num(numeric, nan=0.0) > 0) | text


def _haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlambda = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlambda / 2) ** 2
    return 2.0 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
