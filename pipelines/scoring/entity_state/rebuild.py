"""The running entity state rebuilt from the results store's kept history.

A restarted ``vigil api`` (or the first of several sharing Redis) starts from the
history segments the store keeps (what batch scoring reads, with what the api itself
flushed): per entity its records within ``history`` of the newest one, grouped with
numpy, no per-record Python. Entities whose newest record is older than ``history``
before the newest kept record are left out: they hold nothing a later record can read.
Rows are read as :class:`~pipelines.scoring.history.LiveHistory` reads them: each id's
last copy, in time order (arrival order among equal times).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator

import numpy as np
import pandas as pd

from detectors.context import time_to_seconds
from detectors.context.features import hours_of_day
from detectors.context.running import KeyState, RunningContext
from detectors.context.running_marks import frame_marks
from detectors.context.running_values import key, truthy
from pipelines.intake.spec import DatasetSpec
from pipelines.scoring.entity_state.stores import CardState, secondary_key
from pipelines.scoring.history.base import context_signature, with_features_of
from pipelines.store import ResultsStore


def kept_frame(store: ResultsStore, spec: DatasetSpec) -> pd.DataFrame | None:
    """Every kept history row of ``spec``'s data set, each id's last copy, in time order."""
    config = spec.context
    segments = store.history_segments(spec.name)
    if config is None or not segments:
        return None
    frame = pd.concat([f for _, _, f in segments], ignore_index=True)
    frame = frame.drop_duplicates(spec.id_column, keep="last")
    frame = frame.sort_values(config.time_column, kind="stable").reset_index(drop=True)
    signature = context_signature(spec)
    if any(sig != signature for _, sig, _ in segments):
        frame = with_features_of(config, frame)
    return frame


def rebuild(
    frame: pd.DataFrame | None,
    spec: DatasetSpec,
    running: RunningContext,
    *,
    model_columns: list[str],
    steps_kept: int,
) -> tuple[list[tuple[str, CardState]], list[tuple[str, KeyState]]]:
    """(entity, state) and (secondary key, state) pairs from kept rows in time order."""
    config = running.config
    if frame is None or not len(frame):
        return [], []
    seconds = time_to_seconds(frame[config.time_column], config.time_column)
    horizon = config.history_seconds
    recent = seconds >= float(seconds.max()) - horizon
    frame, seconds = frame.loc[recent].reset_index(drop=True), seconds[recent]
    amounts = np.zeros(len(frame))
    if config.amount_column:
        amounts = np.nan_to_num(
            pd.to_numeric(frame[config.amount_column], errors="coerce").to_numpy(float), nan=0.0
        )
    located = np.zeros(len(frame), dtype=bool)
    lat = lon = None
    if config.latitude_column:
        lat = pd.to_numeric(frame[config.latitude_column], errors="coerce").to_numpy(float)
        lon = pd.to_numeric(frame[config.longitude_column], errors="coerce").to_numpy(float)
        located = ~(np.isnan(lat) | np.isnan(lon))
        if config.located_column:
            located &= np.array([truthy(v) for v in frame[config.located_column]], dtype=bool)
    rows = frame[model_columns].to_numpy(dtype=object)
    novelty = [frame[c].to_numpy(dtype=object) for c in config.novelty_columns]
    profile = [frame[c].to_numpy(dtype=object) for c in config.profile_columns]
    entity_codes = pd.factorize(frame[config.entity_column])[0]
    marks = frame_marks(frame, config, seconds, entity_codes, located)
    angles = None
    if config.hour_offset:
        angles = 2.0 * math.pi * hours_of_day(frame[config.time_column], seconds) / 24.0
    cards: list[tuple[str, CardState]] = []
    for entity, idx in _groups(frame[config.entity_column]):
        t = seconds[idx]
        keep = t >= t[-1] - horizon
        state = running.new_entity()
        _fill(state, t[keep], amounts[idx][keep])
        if angles is not None:
            kept = angles[idx][keep]
            state.hour_sin = array("d", [0.0, *np.cumsum(np.sin(kept)).tolist()])
            state.hour_cos = array("d", [0.0, *np.cumsum(np.cos(kept)).tolist()])
        state.last = float(t[-1])
        for i, values in enumerate(novelty):
            seen = state.seen[i]
            for value, when in zip(values[idx][keep].tolist(), t[keep].tolist(), strict=True):
                if _known(value):
                    seen[key(value)] = when
        for i, values in enumerate(profile):
            times: dict[str, list[float]] = {}
            for value, when in zip(values[idx][keep].tolist(), t[keep].tolist(), strict=True):
                if _known(value):
                    times.setdefault(key(value), []).append(when)
            state.profile[i] = {k: array("d", v) for k, v in times.items()}
        for mark in marks:
            chosen = idx[mark.rows[idx]]
            chosen = chosen[seconds[chosen] >= t[-1] - mark.width]
            if len(chosen):
                state.marks[mark.name] = array("d", seconds[chosen].tolist())
                if mark.values is not None:
                    state.marks["speed"] = array("d", mark.values[chosen].tolist())
        where = idx[located[idx]]
        if len(where):
            last = where[-1]
            state.located = (float(seconds[last]), float(lat[last]), float(lon[last]))
        steps = [(float(seconds[i]), _plain_row(rows[i])) for i in idx[-steps_kept:]]
        cards.append((str(entity), CardState(state, steps if steps_kept else [])))
    keys: list[tuple[str, KeyState]] = []
    for column in config.secondary_entity_columns:
        for value, idx in _groups(frame[column]):
            t = seconds[idx]
            keep = t >= t[-1] - horizon
            state = KeyState()
            _fill(state, t[keep], amounts[idx][keep])
            keys.append((secondary_key(column, str(value)), state))
    return cards, keys


def _known(value: object) -> bool:
    return value is not None and value is not pd.NA and value == value


def _fill(state: KeyState, t: np.ndarray, amounts: np.ndarray) -> None:
    state.t = array("d", t.tolist())
    state.cum = array("d", [0.0, *np.cumsum(amounts).tolist()])
    state.sq = array("d", [0.0, *np.cumsum(amounts * amounts).tolist()])


def _groups(keys: pd.Series) -> Iterator[tuple[object, np.ndarray]]:
    """(value, row positions in order) of each non-missing value of ``keys``."""
    codes, values = pd.factorize(keys, use_na_sentinel=True)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.diff(sorted_codes, prepend=-2))
    stops = np.append(starts[1:], len(order))
    for start, stop in zip(starts, stops, strict=True):
        code = sorted_codes[start]
        if code >= 0:
            yield values[code], order[start:stop]


def _plain_row(values: np.ndarray) -> list:
    out = []
    for value in values.tolist():
        if value is pd.NA:
            value = None
        elif isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(value, np.generic):
            value = value.item()
        out.append(value)
    return out
