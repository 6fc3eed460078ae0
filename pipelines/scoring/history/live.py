"""Entity history in memory for real-time scoring (``vigil api``).

Batch scoring reads the kept history from the store once per batch. A real-time request
scores one record: reading (and parquet-decoding) the history for every request cost
hundreds of milliseconds. :class:`LiveHistory` loads the data set's kept history once,
indexes its rows by entity and by secondary entity (merchant, terminal: context features
count those across entities), hands each request only the rows its records can see, and
keeps the records it scores in memory at once.

Persistence: scored records go to the store as history segments in batches, by a
background thread every ``flush_seconds`` (or sooner when ``max_pending`` rows wait), and
on :meth:`LiveHistory.close`. Segments other processes write (a nightly batch run) are
picked up on the same cadence. On a crash the records scored since the last flush (at
most ``flush_seconds`` of traffic) are not kept: their scores were returned, but after
the restart later records of those entities are scored without them as context. A restart
after a clean shutdown loads exactly what the running process had, so scores go on as if
it had never stopped; both paths read only the store, like batch scoring.

Which rows a request sees is batch scoring's rule: the records of ``history`` before the
request's first record, none of the request's ids, the last copy of a re-sent id. Records
with the same time as the request's first record are included: they arrived earlier, and
in one big file they would come first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from detectors.context import time_to_seconds
from pipelines.intake.spec import DatasetSpec
from pipelines.scoring.history.base import PastRecords, with_features_of
from pipelines.scoring.history.kept import KeptHistory
from pipelines.scoring.history.writer import HistoryWriter
from pipelines.store import ResultsStore

log = logging.getLogger(__name__)

#: Column that orders kept rows by arrival (ties in time keep batch scoring's order).
_ARRIVAL = "__arrival"


@dataclass
class _KeyRows:
    """The kept rows of one entity (or one secondary-entity value), in arrival order."""

    frames: list[pd.DataFrame] = field(default_factory=list)
    seconds: list[np.ndarray] = field(default_factory=list)

    def add(self, frame: pd.DataFrame, seconds: np.ndarray) -> None:
        self.frames.append(frame)
        self.seconds.append(seconds)

    def compact(self) -> tuple[pd.DataFrame, np.ndarray]:
        if len(self.frames) > 1:
            self.frames = [pd.concat(self.frames, ignore_index=True, copy=False)]
            self.seconds = [np.concatenate(self.seconds)]
        return self.frames[0], self.seconds[0]

    def drop_before(self, cutoff: float) -> None:
        frame, seconds = self.compact()
        keep = seconds >= cutoff
        if not keep.all():
            self.frames, self.seconds = [frame.loc[keep].reset_index(drop=True)], [seconds[keep]]


class LiveHistory:
    """One data set's kept entity history, in memory, for one-record scoring (an
    :class:`EntityHistory`)."""

    def __init__(
        self,
        store: ResultsStore,
        spec: DatasetSpec,
        *,
        flush_seconds: float = 1.0,
        max_pending: int = 1000,
        source: str = "api",
        background: bool = True,
    ) -> None:
        config = spec.context
        if config is None:
            raise ValueError(f"spec {spec.name!r} has no entity context to keep")
        self.store, self.spec, self.config = store, spec, config
        self._kept = KeptHistory(store, spec)
        self.signature = self._kept.signature
        self.horizon = config.history_seconds
        self.flush_seconds, self.max_pending, self.source = flush_seconds, max_pending, source
        self._keys = [config.entity_column, *config.secondary_entity_columns]
        self._rows: dict[tuple[str, object], _KeyRows] = defaultdict(_KeyRows)
        self._arrivals = 0
        # Writes what this process scored; flushed by this object's own thread, which
        # also picks up what other processes kept.
        self._writer = HistoryWriter(
            store, spec, flush_seconds=flush_seconds, max_pending=max_pending, source=source,
            background=False,
        )  # fmt: skip
        self._lock = threading.Lock()  # the in-memory rows
        self._seen_segments: set[int] = set()
        self._newest = -np.inf
        #: Requests reaching back before this read the store (rows trimmed from memory).
        self.loaded_since = -np.inf
        self.loaded_rows = 0
        self._load()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name=f"live-history-{spec.name}", daemon=True
            )
            self._thread.start()

    # -- loading -----------------------------------------------------------------------

    def _load(self) -> None:
        """Everything the store keeps for the data set (it keeps twice ``history``)."""
        self._add_segments(self.store.history_segments(self.spec.name))
        # Everything the store keeps is in memory: nothing older to read from it, until
        # :meth:`trim` forgets rows.
        self.loaded_since = -np.inf

    def _add_segments(self, segments: list[tuple[int, str, pd.DataFrame]]) -> int:
        """Index new segments' rows (oldest first, as batch scoring concatenates them)."""
        fresh = [(i, sig, f) for i, sig, f in segments if i not in self._seen_segments]
        if not fresh:
            return 0
        frame = pd.concat([f for _, _, f in fresh], ignore_index=True)
        if any(sig != self.signature for _, sig, _ in fresh):
            log.warning(
                "%s: entity history was kept under another context config; recomputing its "
                "features", self.spec.name,
            )  # fmt: skip
            frame = frame.sort_values(self.config.time_column, kind="stable")
            frame = with_features_of(self.config, frame).reset_index(drop=True)
        with self._lock:
            self._index(frame)
            self._seen_segments.update(i for i, _, _ in fresh)
            self.loaded_rows += len(frame)
        return len(frame)

    def _index(self, state: pd.DataFrame) -> None:
        """Keep rows under each of their keys (caller holds the lock)."""
        if not len(state):
            return
        state = state.reset_index(drop=True)
        seconds = time_to_seconds(state[self.config.time_column], self.config.time_column)
        state[_ARRIVAL] = np.arange(self._arrivals, self._arrivals + len(state))
        self._arrivals += len(state)
        self._newest = max(self._newest, float(seconds.max()))
        for column in self._keys:
            # One reorder per key, then each value's rows are a slice (a view) of it:
            # slicing 15,000 keys out of a 575k-row history row by row took 40 s of start-up.
            codes, values = pd.factorize(state[column], sort=False, use_na_sentinel=True)
            order = np.argsort(codes, kind="stable")  # arrival order kept within a value
            ordered, ordered_seconds, ordered_codes = (
                state.take(order),
                seconds[order],
                codes[order],
            )
            starts = np.flatnonzero(np.diff(ordered_codes, prepend=-2))
            stops = np.append(starts[1:], len(ordered_codes))
            for start, stop in zip(starts, stops, strict=True):
                code = ordered_codes[start]
                if code < 0:  # missing key
                    continue
                self._rows[(column, values[code])].add(
                    ordered.iloc[start:stop], ordered_seconds[start:stop]
                )

    @property
    def newest_seconds(self) -> float:
        """Time (seconds) of the latest record kept in memory; -inf when none."""
        return self._newest

    # -- the request path ----------------------------------------------------------------

    def before(self, batch: pd.DataFrame) -> PastRecords:
        """The kept rows ``batch``'s records can see (see the module docstring)."""
        if not len(batch):
            return PastRecords.none()
        seconds = time_to_seconds(batch[self.config.time_column], self.config.time_column)
        start = float(np.nanmin(seconds))
        since = start - self.horizon
        if since < self.loaded_since:  # older than what is in memory: read the store
            return self._kept.before(batch)
        pieces = []
        with self._lock:
            for column in self._keys:
                for value in pd.unique(batch[column].dropna()):
                    rows = self._rows.get((column, value))
                    if rows is None:
                        continue
                    frame, kept = rows.compact()
                    visible = (kept >= since) & (kept <= start)
                    if visible.all():
                        pieces.append(frame)
                    elif visible.any():
                        pieces.append(frame.loc[visible])
            newest = self._newest
        gap = None if not np.isfinite(newest) else max(0.0, start - newest)
        if not pieces:
            return PastRecords.none(gap)
        frame = pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True)
        frame = frame.loc[~frame[self.spec.id_column].isin(batch[self.spec.id_column])]
        if len(pieces) > 1 or frame[self.spec.id_column].duplicated().any():
            frame = frame.sort_values(_ARRIVAL, kind="stable")
            frame = frame.drop_duplicates(self.spec.id_column, keep="last")
        frame = frame.sort_values([self.config.time_column, _ARRIVAL], kind="stable")
        frame = frame.drop(columns=_ARRIVAL).reset_index(drop=True)
        if not len(frame):
            return PastRecords.none(gap)
        return PastRecords(frame=frame, rows=len(frame), gap_seconds=gap)

    def extend(self, state: pd.DataFrame) -> None:
        """Keep scored records (their ``PreparedRecords.state``) for the next requests
        now, and for the store with the next flush."""
        if state is None or not len(state):
            return
        with self._lock:
            self._index(state.copy())
        if self._writer.add(state):
            self._wake.set()

    # -- persistence -----------------------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        return self._writer.pending_rows

    @property
    def writer(self) -> HistoryWriter:
        return self._writer

    def flush(self) -> int:
        """Write the records scored since the last flush as one history segment."""
        return self._writer.flush()

    def refresh(self) -> int:
        """Rows of segments other processes kept since we looked (a nightly batch, another
        ``vigil api``); our own segments are in memory already."""
        new_ids = []
        for segment_id, batch_id, _ in self.store.history_segment_ids(self.spec.name):
            if segment_id in self._seen_segments:
                continue
            if batch_id in self._writer.written_batches:
                self._seen_segments.add(segment_id)
            else:
                new_ids.append(segment_id)
        if not new_ids:
            return 0
        return self._add_segments(self.store.history_segments(self.spec.name, ids=new_ids))

    def trim(self) -> None:
        """Forget rows no request can see any more (older than twice ``history``)."""
        cutoff = self._newest - 2 * self.horizon
        with self._lock:
            for rows in self._rows.values():
                rows.drop_before(cutoff)
            self.loaded_since = max(self.loaded_since, cutoff)

    def _run(self) -> None:
        last_trim = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
                self.refresh()
                if time.monotonic() - last_trim > 600:
                    self.trim()
                    last_trim = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - keep serving; the next round retries
                log.warning("%s: keeping live history failed: %s", self.spec.name, exc)

    def close(self) -> None:
        """Stop the background thread and write what is pending (clean shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
