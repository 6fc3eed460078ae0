"""Entity history between batches (sequence mode): what tonight's batch needs of the past.

Context features look back at most ``context.history`` (e.g. 30 days). After a batch is
scored (or a model trained), its records are kept in the results store with the features
they were given; the next batch loads the records of the ``history`` before its first
record and is scored exactly as if it were the tail of one big file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from detectors.context import build_context_features, time_to_seconds
from pipelines.intake.spec import DatasetSpec
from pipelines.store import ResultsStore

log = logging.getLogger(__name__)


@dataclass
class EntityHistory:
    """Earlier records for a batch, and how well they cover the time before it."""

    frame: pd.DataFrame | None
    rows: int
    #: Seconds between the newest kept record and the batch's first record (None: no history).
    gap_seconds: float | None
    stale: bool = False

    def describe(self) -> str:
        if self.gap_seconds is None:
            return "no entity history kept yet: context comes from this batch alone"
        text = f"{self.rows} earlier records as context"
        if self.gap_seconds > 86400:
            text += f"; history ends {self.gap_seconds / 86400:.1f} days before this batch"
        if self.stale:
            text += "; kept with another context config, features recomputed"
        return text


def context_signature(spec: DatasetSpec) -> str:
    """Identifies the context features a record was given (changes when the spec does)."""
    config = spec.context
    payload = {"context": config.to_dict() if config else None, "features": spec.feature_columns}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_entity_history(
    store: ResultsStore, spec: DatasetSpec, batch: pd.DataFrame
) -> EntityHistory:
    """Records of the ``history`` before the batch's first record (none of the batch's ids)."""
    config = spec.context
    if config is None or not len(batch):
        return EntityHistory(frame=None, rows=0, gap_seconds=None)
    seconds = time_to_seconds(batch[config.time_column], config.time_column)
    return load_history_before(
        store, spec, float(np.nanmin(seconds)), exclude_ids=set(batch[spec.id_column])
    )


def load_history_before(
    store: ResultsStore, spec: DatasetSpec, start: float, *, exclude_ids: Iterable = ()
) -> EntityHistory:
    """Kept records of the ``history`` before ``start`` (seconds), without ``exclude_ids``.

    A streamed batch knows its first record before it knows all its ids: it loads with
    ``start`` alone and excludes the ids it meets later (see :mod:`.carried`)."""
    config = spec.context
    if config is None:
        return EntityHistory(frame=None, rows=0, gap_seconds=None)
    since = start - config.history_seconds
    segments = store.load_history(dataset=spec.name, since=since, until=start)
    if not segments:
        return EntityHistory(frame=None, rows=0, gap_seconds=_gap_to_kept(store, spec, start))
    signature = context_signature(spec)
    stale = any(sig != signature for sig, _ in segments)
    frame = pd.concat([f for _, f in segments], ignore_index=True)
    seconds = time_to_seconds(frame[config.time_column])
    keep = (seconds >= since) & (seconds < start)
    frame = frame.loc[keep]
    kept_seconds = seconds[keep]
    frame = frame.loc[~frame[spec.id_column].isin(set(exclude_ids))]
    frame = frame.drop_duplicates(spec.id_column, keep="last")
    frame = frame.sort_values(config.time_column, kind="stable").reset_index(drop=True)
    if stale:
        log.warning(
            "%s: entity history was kept under another context config; recomputing its "
            "features (the oldest records lack part of their own history)",
            spec.name,
        )
        context = build_context_features(frame[config.raw_columns], config)
        frame = pd.concat([frame.drop(columns=context.columns, errors="ignore"), context], axis=1)
    if not len(frame):
        return EntityHistory(frame=None, rows=0, gap_seconds=_gap_to_kept(store, spec, start))
    gap = max(0.0, start - float(kept_seconds.max()))
    return EntityHistory(frame=frame, rows=len(frame), gap_seconds=gap, stale=stale)


def _gap_to_kept(store: ResultsStore, spec: DatasetSpec, start: float) -> float | None:
    """Seconds from the newest kept record of the data set to ``start`` (None: none kept)."""
    extent = store.history_extent(spec.name)
    return None if extent is None else max(0.0, start - extent[1])


def save_entity_history(
    store: ResultsStore,
    spec: DatasetSpec,
    *,
    batch_id: str,
    source: str,
    state: pd.DataFrame,
    only_recent: bool = False,
) -> bool:
    """Keep records as history (idempotent per batch) and prune what no batch can need.

    ``only_recent`` keeps just the last ``history`` of the records (training data: months
    of records of which the next batch needs only the tail).
    """
    config = spec.context
    if config is None or not len(state):
        return False
    seconds = time_to_seconds(state[config.time_column])
    if only_recent:
        recent = seconds >= np.nanmax(seconds) - config.history_seconds
        state, seconds = state.loc[recent], seconds[recent]
    written = store.save_history(
        dataset=spec.name,
        batch_id=batch_id,
        source=source,
        signature=context_signature(spec),
        frame=state,
        seconds=seconds,
    )
    prune_entity_history(store, spec)
    return written


def prune_entity_history(store: ResultsStore, spec: DatasetSpec) -> None:
    """Drop kept segments no batch can need: older than twice the horizon before the
    newest kept record (twice, so a late, backfilled batch still finds its past)."""
    config = spec.context
    extent = store.history_extent(spec.name)
    if config is not None and extent is not None:
        store.prune_history(spec.name, before=extent[1] - 2 * config.history_seconds)


@dataclass
class HistoryParts:
    """A streamed batch's records kept as entity history, one segment per chunk, saved
    in a background thread while later chunks are scored.

    Each part is keyed ``<batch id>/chunk<N>`` and saved once: a re-run after an
    interruption recomputes every chunk's records (it must, to carry them) and saves the
    parts that are missing. Together the parts hold what the whole-batch path keeps as
    its one segment; the prune after the run drops parts as it drops segments."""

    store: ResultsStore
    spec: DatasetSpec
    batch_id: str
    source: str
    _existing: set = field(default_factory=set)
    _pool: ThreadPoolExecutor | None = None
    _pending: deque[Future] = field(default_factory=deque)

    #: Parts queued for saving at most (each holds a chunk's records until saved).
    MAX_PENDING: ClassVar[int] = 8

    def __post_init__(self) -> None:
        prefix = f"{self.batch_id}/chunk"
        self._existing = {
            batch for _, batch, _ in self.store.history_segment_ids(self.spec.name)
            if batch.startswith(prefix)
        }  # fmt: skip
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-history")
        self._signature = context_signature(self.spec)

    def key(self, number: int) -> str:
        return f"{self.batch_id}/chunk{number}"

    def save(self, number: int, state: pd.DataFrame) -> None:
        """Keep chunk ``number``'s records (unless kept by an earlier attempt); queued
        behind at most ``MAX_PENDING`` parts, so scoring does not wait on each insert."""
        if not len(state) or self.key(number) in self._existing:
            return
        self._pending.append(self._pool.submit(self._save, number, state))
        while len(self._pending) > self.MAX_PENDING or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()  # re-raises a failed save

    def _save(self, number: int, state: pd.DataFrame) -> None:
        config = self.spec.context
        self.store.save_history(
            dataset=self.spec.name,
            batch_id=self.key(number),
            source=self.source,
            signature=self._signature,
            frame=state,
            seconds=time_to_seconds(state[config.time_column]),
        )

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def finish(self) -> None:
        """Wait for the last part, then prune what no batch can need any more."""
        self.wait()
        prune_entity_history(self.store, self.spec)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
