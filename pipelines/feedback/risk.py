"""Verdict-driven risk features for secondary entities (terminals, merchants).

A compromised terminal shows in no card's own history: every card that pays there looks
normal to itself. What shows it is the analysts' verdicts on *other* cards' payments at the
same terminal. For each record at time t and each secondary column (e.g. ``TERMINAL_ID``)
and window w, with a delay d:

- ``risk_<col>_frauds_<w>``: confirmed frauds at the same terminal with event time in
  [t - d - w, t - d) **whose label was known before t** (``known_at < t``);
- ``risk_<col>_fraud_share_<w>``: that count over the number of the terminal's records in
  the same window (0 when there were none).

Pure numpy/pandas, the same code in training and scoring: at scoring time ``frame`` is the
kept entity history followed by the batch (``targets`` = the batch rows), exactly like the
context features. Each confirmed fraud is an interval of t over which it counts,
(max(s + d, known_at), s + d + w]; a record's count is the number of its terminal's
intervals that contain t, found with two sorted searches (no per-row Python).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from detectors.context import time_to_seconds
from detectors.context.config import _seconds, _slug

PREFIX = "risk_"


@dataclass(frozen=True)
class RiskConfig:
    """Which secondary columns, which windows, which delay (pandas durations)."""

    columns: tuple[str, ...]
    time_column: str
    id_column: str
    windows: tuple[str, ...] = ("7D", "28D")
    delay: str = "0s"
    #: also each window's number of the entity's records (the fraud share's denominator):
    #: how busy the terminal was, which a share alone does not say (off in configs saved
    #: before it existed, so their models read the columns they were trained on)
    records: bool = False

    def __post_init__(self) -> None:
        if not self.windows:
            raise ValueError("risk features need at least one window")
        for text in self.windows:
            _seconds(text)
        _ = self.delay_seconds

    @property
    def delay_seconds(self) -> float:
        """The delay; zero is allowed (the known_at rule alone then decides)."""
        if pd.Timedelta(str(self.delay).replace("d", "D")).total_seconds() == 0:
            return 0.0
        return _seconds(self.delay)

    @property
    def horizon_seconds(self) -> float:
        """How far back a record's features look (the history a scorer must keep)."""
        return self.delay_seconds + max(_seconds(w) for w in self.windows)

    def feature_names(self) -> list[str]:
        names = []
        for column in self.columns:
            for window in self.windows:
                names.append(f"{PREFIX}{_slug(column)}_frauds_{_slug(window)}")
                names.append(f"{PREFIX}{_slug(column)}_fraud_share_{_slug(window)}")
                if self.records:
                    names.append(f"{PREFIX}{_slug(column)}_records_{_slug(window)}")
        return names

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> RiskConfig:
        data = dict(data)
        data["columns"] = tuple(data["columns"])
        data["windows"] = tuple(data["windows"])
        return cls(**data)


def build_risk_features(
    frame: pd.DataFrame,
    frauds: pd.DataFrame | None,
    config: RiskConfig,
    *,
    targets: np.ndarray | None = None,
) -> pd.DataFrame:
    """Risk features for the rows of ``frame`` (or its ``targets`` positions), index kept.

    ``frauds``: confirmed frauds as ``record_id`` + ``known_at`` (tz-aware or UTC-naive
    datetimes); ids not in ``frame`` are ignored (outside the kept history).
    """
    n = len(frame)
    rows = np.arange(n) if targets is None else np.asarray(targets, dtype=np.int64)
    seconds = time_to_seconds(frame[config.time_column], config.time_column)
    delay = config.delay_seconds
    is_fraud = np.zeros(n, dtype=bool)
    known = np.full(n, np.inf)
    if frauds is not None and len(frauds):
        known_at = pd.to_datetime(frauds["known_at"], utc=True)
        label_seconds = time_to_seconds(known_at.reset_index(drop=True))
        by_id = pd.Series(label_seconds, index=frauds["record_id"].astype(str).to_numpy())
        by_id = by_id.groupby(level=0).min()
        ids = frame[config.id_column].astype(str)
        matched = ids.map(by_id).to_numpy(dtype="float64")
        is_fraud = ~np.isnan(matched)
        known[is_fraud] = matched[is_fraud]
    out: dict[str, np.ndarray] = {}
    finite = seconds[np.isfinite(seconds)]
    origin = float(finite.min()) - 1.0 if len(finite) else 0.0
    for column in config.columns:
        codes = pd.factorize(frame[column].reset_index(drop=True), use_na_sentinel=True)[0]
        missing = codes[rows] < 0
        for window in config.windows:
            w = _seconds(window)
            # Each key gets its own block of the time axis, wider than any interval.
            span = float(seconds.max() - origin) + delay + w + 10.0 if n else 1.0
            base = codes.astype("float64") * span - origin
            query = base[rows] + seconds[rows]
            # Every record is an interval (s + d, s + d + w] of times that count it.
            ok = codes >= 0
            counts = _covering(
                base[ok] + seconds[ok] + delay, base[ok] + seconds[ok] + delay + w, query
            )
            f = is_fraud & ok
            start = np.maximum(seconds[f] + delay, known[f])
            end = seconds[f] + delay + w
            live = start < end
            fraud_counts = _covering(base[f][live] + start[live], base[f][live] + end[live], query)
            share = np.divide(
                fraud_counts, counts, out=np.zeros_like(fraud_counts), where=counts > 0
            )
            fraud_counts[missing] = np.nan
            share[missing] = np.nan
            out[f"{PREFIX}{_slug(column)}_frauds_{_slug(window)}"] = fraud_counts
            out[f"{PREFIX}{_slug(column)}_fraud_share_{_slug(window)}"] = share
            if config.records:
                records = counts.copy()
                records[missing] = np.nan
                out[f"{PREFIX}{_slug(column)}_records_{_slug(window)}"] = records
    result = pd.DataFrame(out, index=frame.index[rows])
    return result[config.feature_names()]


def observed_delay(
    event_times: pd.Series,
    known_at: pd.Series,
    *,
    quantile: float = 0.9,
    min_frauds: int = 10,
) -> str:
    """How long confirmed frauds took to become known: the ``quantile`` of
    ``known_at - event time``, rounded up to whole hours, as a pandas duration.

    Risk windows that wait this long count a terminal's frauds over a span whose labels
    have (mostly) arrived, so a fraud share's numerator and denominator cover the same
    records; without the wait, a window shorter than the delay never holds a known fraud
    and a longer one reads a share diluted by payments whose chargeback is still on its
    way. ``"0s"`` (no wait; the ``known_at`` rule alone) when fewer than ``min_frauds``
    pairs are given or the lag is not positive (labels known at once).
    """
    try:
        events = pd.to_datetime(pd.Series(event_times).reset_index(drop=True), utc=True)
        known = pd.to_datetime(pd.Series(known_at).reset_index(drop=True), utc=True)
    except (ValueError, TypeError):  # times that are not datetimes: no lag to read
        return "0s"
    lag = (known - events).dt.total_seconds().to_numpy(dtype="float64")
    lag = lag[np.isfinite(lag)]
    if len(lag) < min_frauds:
        return "0s"
    seconds = float(np.quantile(lag, quantile))
    hours = int(np.ceil(seconds / 3600.0 - 1e-9))
    if hours <= 0:
        return "0s"
    return f"{hours // 24}D" if hours % 24 == 0 else f"{hours}h"


def _covering(starts: np.ndarray, ends: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Per query q: how many intervals (start, end] contain q. Intervals of other keys
    cancel out because each key's intervals lie inside its own block of the axis."""
    a = np.sort(starts)
    b = np.sort(ends)
    return (np.searchsorted(a, query, side="left") - np.searchsorted(b, query, side="left")).astype(
        "float64"
    )
