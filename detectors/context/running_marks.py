"""The marks of :class:`~detectors.context.running_state.EntityState` for kept rows, all
at once: what each record of a frame adds to its entity's marks when the running state
is rebuilt from history (vectorised, instead of stepping every kept record).

A record's marks depend on the records before it (a value seen within a look-back, the
previous located record), so they are computed over the whole frame in time order; the
caller keeps, per entity, the marked times within each mark's window of its newest
record, as :meth:`RunningContext.step <detectors.context.running.RunningContext.step>`
keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from detectors.context.config import ContextConfig, _seconds
from detectors.context.features import _haversine_km
from detectors.context.running_values import MIN_HOURS_FOR_SPEED, hour_bucket, truthy


@dataclass
class Mark:
    """One named mark: the rows that join it, how long it keeps them, and (travel) the
    value kept beside each time."""

    name: str
    width: float
    rows: np.ndarray  # bool per frame row
    values: np.ndarray | None = None


def frame_marks(
    frame: pd.DataFrame,
    config: ContextConfig,
    seconds: np.ndarray,
    entity_codes: np.ndarray,
    located: np.ndarray,
) -> list[Mark]:
    """The marks of the rows of ``frame`` (sorted by time; ``entity_codes`` per row,
    ``located`` whether a row counts for travel)."""
    horizon = config.history_seconds
    half = horizon / 2.0
    out: list[Mark] = []
    rated_rows = None
    if config.novelty_rate == "unlocated":
        rated_rows = ~np.array([truthy(v) for v in frame[config.located_column]], dtype=bool)
    for i, column in enumerate(config.novelty_columns):
        if not config.novelty_windows:
            break
        values = frame[column]
        known = values.notna().to_numpy()
        codes = pd.factorize(values)[0]
        previous = pd.Series(seconds).groupby([entity_codes, codes], sort=False).shift()
        gap = seconds - previous.to_numpy(dtype=float)
        gap[np.isnan(gap)] = np.inf
        rated = known if rated_rows is None else known & rated_rows
        if config.novelty_rate:
            out.append(Mark(f"base:{i}", half, rated & (gap > half)))
        for j, window in enumerate(config.novelty_windows):
            width = _seconds(window)
            first = known & (gap > horizon - width)
            out.append(Mark(f"new:{i}:{j}", width, first))
            if config.novelty_rate:
                out.append(Mark(f"rated:{i}:{j}", width, first & rated))
    if config.profile_hours:
        buckets = _hour_buckets(frame[config.time_column], seconds)
        out += [Mark(f"hour:{b}", horizon, buckets == b) for b in range(24)]
    if config.travel_window and located.any():
        width = _seconds(config.travel_window)
        where = np.flatnonzero(located)
        lat = pd.to_numeric(frame[config.latitude_column], errors="coerce").to_numpy(float)
        lon = pd.to_numeric(frame[config.longitude_column], errors="coerce").to_numpy(float)
        points = pd.DataFrame({"t": seconds[where], "lat": lat[where], "lon": lon[where]})
        before = points.groupby(entity_codes[where], sort=False).shift()
        t0 = before["t"].to_numpy(float)
        hours = np.maximum((seconds[where] - t0) / 3600.0, MIN_HOURS_FOR_SPEED)
        km = _haversine_km(before["lat"].to_numpy(float), before["lon"].to_numpy(float),
                           lat[where], lon[where])  # fmt: skip
        speed = np.full(len(frame), -np.inf)
        reach = ~np.isnan(t0) & (seconds[where] - t0 <= horizon - width)
        speed[where[reach]] = km[reach] / hours[reach]
        out.append(Mark("travel", width, located, speed))
    return out


def _hour_buckets(times: pd.Series, seconds: np.ndarray) -> np.ndarray:
    if times.dtype.kind == "M" and getattr(times.dtype, "tz", None) is None:
        nanos = times.to_numpy(dtype="datetime64[ns]").view(np.int64)
        return (nanos // (3600 * 10**9)) % 24
    if pd.api.types.is_numeric_dtype(times):
        return np.floor(np.mod(seconds, 86400.0) / 3600.0).astype(np.int64) % 24
    return np.array([hour_bucket(v, s) for v, s in zip(times, seconds, strict=True)])
