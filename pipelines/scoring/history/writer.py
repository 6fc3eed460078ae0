"""The records a real-time scorer scored, kept in the results store in batches.

Both real-time paths (the running state and :class:`LiveHistory`) answer the next record
at once; the store keeps the same records as history segments (what batch scoring and a
restarted scorer read), written every ``flush_seconds`` or sooner when ``max_pending``
wait (by the writer's own thread, or by its owner's), and on :meth:`HistoryWriter.close`.
On a crash at most ``flush_seconds`` of records are not kept.

A flush holds the interpreter for part of its time (building the frame, hashing it), so
requests answered meanwhile wait: :class:`FlushStats` counts the flushes and their time,
which ``vigil api`` exposes on ``/metrics`` beside the request latency.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass

import pandas as pd

from pipelines.intake.spec import DatasetSpec
from pipelines.scoring.history.kept import KeptHistory
from pipelines.store import ResultsStore

log = logging.getLogger(__name__)


@dataclass
class FlushStats:
    """What the writer's flushes cost: count, rows, wall seconds in all and the longest."""

    flushes: int = 0
    rows: int = 0
    seconds: float = 0.0
    longest_seconds: float = 0.0

    def add(self, rows: int, seconds: float) -> None:
        self.flushes += 1
        self.rows += rows
        self.seconds += seconds
        self.longest_seconds = max(self.longest_seconds, seconds)


class HistoryWriter:
    """Scored records (dicts: id, raw columns, features; or frames of them) to the store
    as segments; ``written_batches`` names the segments it wrote."""

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
        self._kept = KeptHistory(store, spec)
        self.flush_seconds, self.max_pending, self.source = flush_seconds, max_pending, source
        #: Single records (dicts) and frames, in arrival order; a frame is built once
        #: per flush, not per record (a one-row DataFrame costs more than scoring it).
        self._pending: list[dict | pd.DataFrame] = []
        self._pending_rows = 0
        self.written_batches: set[str] = set()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.written = 0
        self.stats = FlushStats()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name=f"history-writer-{spec.name}", daemon=True
            )
            self._thread.start()

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def add(self, rows: dict | pd.DataFrame) -> bool:
        """Queue one record (a dict) or a frame of them; True when ``max_pending`` wait
        (the writer's own thread is woken; an owner without one flushes itself)."""
        with self._lock:
            self._pending.append(rows)
            self._pending_rows += 1 if isinstance(rows, dict) else len(rows)
            full = self._pending_rows >= self.max_pending
        if full:
            self._wake.set()
        return full

    def flush(self) -> int:
        with self._flush_lock:
            with self._lock:
                pending, self._pending, self._pending_rows = self._pending, [], 0
            if not pending:
                return 0
            started = time.perf_counter()
            frame = _frame(pending)
            batch_id = f"{self.source}-{_digest(frame)}"
            try:
                self._kept.keep(frame, batch_id=batch_id, source=self.source)
            except Exception:
                with self._lock:  # keep them for the next try
                    self._pending.insert(0, frame)
                    self._pending_rows += len(frame)
                raise
            self.written_batches.add(batch_id)
            self.written += len(frame)
            self.stats.add(len(frame), time.perf_counter() - started)
            return len(frame)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - keep serving; the next round retries
                log.warning("keeping scored records as history failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()


def _digest(frame: pd.DataFrame) -> str:
    """The segment's name from its content, so a retried flush keeps it once. Columns are
    hashed as they are (numbers by their bits): turning every value into text first held
    the interpreter for most of a flush. A frame holding a value that cannot be hashed
    as it is (a dict, a list) is hashed as text."""
    try:
        hashed = pd.util.hash_pandas_object(frame, index=False)
    except TypeError:  # a value such as a dict or list
        hashed = pd.util.hash_pandas_object(frame.astype(str), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


def _frame(pending: list[dict | pd.DataFrame]) -> pd.DataFrame:
    """One frame of the pending records and frames, in order (each run of records as
    one frame)."""
    parts: list[pd.DataFrame] = []
    records: list[dict] = []
    for item in pending:
        if isinstance(item, dict):
            records.append(item)
            continue
        if records:
            parts.append(pd.DataFrame(records))
            records = []
        parts.append(item)
    if records:
        parts.append(pd.DataFrame(records))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
