"""Entity history kept in the results store: what tonight's batch needs of the past.

Context features look back at most ``context.history`` (e.g. 30 days). After a batch is
scored (or a model trained), its records are kept in the store with the features they
were given; the next batch reads the records of the ``history`` before its first record
and is scored exactly as if it were the tail of one big file. The store holds the
segments (:meth:`ResultsStore.save_history` and its neighbours); this module decides
which rows a batch sees, which it keeps and when they are pruned.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from detectors.context import time_to_seconds
from pipelines.intake.spec import DatasetSpec
from pipelines.scoring.history.base import PastRecords, context_signature, with_features_of
from pipelines.store import ResultsStore

log = logging.getLogger(__name__)


class KeptHistory:
    """One data set's entity history in the results store (an :class:`EntityHistory`).

    ``batch_id`` and ``source`` name the segment :meth:`extend` keeps: the batch being
    scored. Reading needs neither.
    """

    def __init__(
        self,
        store: ResultsStore,
        spec: DatasetSpec,
        *,
        batch_id: str | None = None,
        source: str | None = None,
    ) -> None:
        self.store, self.spec = store, spec
        self.batch_id, self.source = batch_id, source
        self.signature = context_signature(spec)

    # -- reading -------------------------------------------------------------------------

    def before(self, records: pd.DataFrame) -> PastRecords:
        """Kept records of the ``history`` before ``records``' first one (none of their ids)."""
        config = self.spec.context
        if config is None or not len(records):
            return PastRecords.none()
        seconds = time_to_seconds(records[config.time_column], config.time_column)
        return self.before_time(
            float(np.nanmin(seconds)), exclude_ids=set(records[self.spec.id_column])
        )

    def before_time(self, start: float, *, exclude_ids: Iterable = ()) -> PastRecords:
        """Kept records of the ``history`` before ``start`` (seconds), without ``exclude_ids``.

        A streamed batch knows its first record before it knows all its ids: it reads with
        ``start`` alone and excludes the ids it meets later (see
        :mod:`pipelines.scoring.sequence_stream`)."""
        spec, config = self.spec, self.spec.context
        if config is None:
            return PastRecords.none()
        since = start - config.history_seconds
        segments = self.store.load_history(dataset=spec.name, since=since, until=start)
        if not segments:
            return PastRecords.none(self._gap_to_kept(start))
        stale = any(sig != self.signature for sig, _ in segments)
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
            frame = with_features_of(config, frame)
        if not len(frame):
            return PastRecords.none(self._gap_to_kept(start))
        gap = max(0.0, start - float(kept_seconds.max()))
        return PastRecords(frame=frame, rows=len(frame), gap_seconds=gap, stale=stale)

    def _gap_to_kept(self, start: float) -> float | None:
        """Seconds from the newest kept record of the data set to ``start`` (None: none kept)."""
        extent = self.store.history_extent(self.spec.name)
        return None if extent is None else max(0.0, start - extent[1])

    # -- keeping -------------------------------------------------------------------------

    def extend(self, state: pd.DataFrame) -> None:
        """Keep a scored batch's records as its segment (see :meth:`keep`)."""
        if self.batch_id is None or self.source is None:
            raise ValueError("keeping a batch's records needs its batch_id and source")
        self.keep(state, batch_id=self.batch_id, source=self.source)

    def keep(
        self,
        state: pd.DataFrame,
        *,
        batch_id: str,
        source: str,
        only_recent: bool = False,
        prune: bool = True,
    ) -> bool:
        """Keep records as the segment ``batch_id`` (idempotent: an existing one is not
        written again), then prune what no batch can need; True when written.

        ``only_recent`` keeps just the last ``history`` of the records (training data:
        months of records of which the next batch needs only the tail).
        """
        config = self.spec.context
        if config is None or not len(state):
            return False
        seconds = time_to_seconds(state[config.time_column])
        if only_recent:
            recent = seconds >= np.nanmax(seconds) - config.history_seconds
            state, seconds = state.loc[recent], seconds[recent]
        written = self.store.save_history(
            dataset=self.spec.name,
            batch_id=batch_id,
            source=source,
            signature=self.signature,
            frame=state,
            seconds=seconds,
        )
        if prune:
            self.prune()
        return written

    def prune(self) -> None:
        """Drop kept segments no batch can need: older than twice the horizon before the
        newest kept record (twice, so a late, backfilled batch still finds its past)."""
        config = self.spec.context
        extent = self.store.history_extent(self.spec.name)
        if config is not None and extent is not None:
            self.store.prune_history(self.spec.name, before=extent[1] - 2 * config.history_seconds)


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
        self._kept = KeptHistory(self.store, self.spec)

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
        self._kept.keep(state, batch_id=self.key(number), source=self.source, prune=False)

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def finish(self) -> None:
        """Wait for the last part, then prune what no batch can need any more."""
        self.wait()
        self._kept.prune()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
