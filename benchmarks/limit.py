"""The machine's limit for a scoring run, measured in the same process on the same file.

A rows/s figure on a shared machine says little alone: the same run is twice as fast on
a quiet machine. So the scale benchmarks also time the bare parts any scorer of the file
must pay, one after the other, right after vigil's run:

- **read**: the Parquet file into Arrow record batches (no pandas, no validation);
- **forward**: the detector's ``decision_function`` on the model input of each chunk
  (encoding, network and score rule; the input is prepared outside the timer);
- **COPY**: the scores (id, score, flag) of every row into a copy of the ``scores`` table
  (its indexes included), one ``COPY`` and commit per chunk, as the store writes them.

The limit is the rows over the sum of those wall seconds; vigil's share of it is its
end-to-end rows/s over that rate (vigil overlaps the COPY with scoring, so a share above
100% is possible). CPU seconds are this process's (the database server's own work is not
in them); per 1M rows they compare across loads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Part:
    """Wall and CPU seconds of one bare part."""

    wall: float = 0.0
    cpu: float = 0.0

    @contextmanager
    def timed(self) -> Iterator[None]:
        cpu, wall = _cpu(), time.perf_counter()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += _cpu() - cpu


@dataclass
class Limit:
    """The bare parts of scoring ``rows`` rows."""

    rows: int
    parts: dict[str, Part] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(part.wall for part in self.parts.values())

    def figures(self, vigil_rows_per_second: float, vigil_cpu_seconds: float) -> dict:
        """The parts, the limit's rows/s, vigil's share of it and CPU s per 1M rows."""
        per_million = 1e6 / max(self.rows, 1)
        limit_rate = self.rows / self.seconds if self.seconds else float("nan")
        return {
            "limit_rows": self.rows,
            "limit_parts_seconds": {k: round(p.wall, 2) for k, p in self.parts.items()},
            "limit_parts_cpu_per_1m": {
                k: round(p.cpu * per_million, 2) for k, p in self.parts.items()
            },
            "limit_rows_per_second": round(limit_rate),
            "limit_cpu_per_1m": round(sum(p.cpu for p in self.parts.values()) * per_million, 2),
            "share_of_limit": round(vigil_rows_per_second / limit_rate, 3),
            "cpu_per_1m": round(vigil_cpu_seconds * per_million, 2),
        }


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def parquet_batches(data: str, chunk_size: int):
    """The file's record batches of ``chunk_size`` rows, as the stream reads them."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(data, pre_buffer=False).iter_batches(batch_size=chunk_size)


def time_read(data: str, chunk_size: int, limit: Limit) -> None:
    """The file into Arrow, batch by batch (the batches dropped as read)."""
    part = limit.parts.setdefault("read", Part())
    with part.timed():
        for _ in parquet_batches(data, chunk_size):
            pass


def time_forward(model_inputs: Iterator, decision_function: Callable, limit: Limit) -> np.ndarray:
    """``decision_function`` on each prepared model input (only the call is timed); the
    scores of every row, in order."""
    part = limit.parts.setdefault("forward", Part())
    scores = []
    for model_input in model_inputs:
        with part.timed():
            scores.append(np.asarray(decision_function(model_input), dtype="float64"))
    return np.concatenate(scores) if scores else np.empty(0)


def time_copy(
    url: str,
    record_ids: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    chunk_size: int,
    limit: Limit,
) -> None:
    """The scores into a copy of the ``scores`` table (indexes included), one COPY and
    commit per chunk, with the store's own COPY payload; the copy is dropped after."""
    import sqlalchemy as sa

    from pipelines.store.runs import scores_copy

    part = limit.parts.setdefault("copy", Part())
    engine = sa.create_engine(url)
    dbapi = engine.raw_connection()
    try:
        with dbapi.cursor() as cursor:
            cursor.execute("CREATE TABLE limit_scores (LIKE scores INCLUDING ALL)")
        dbapi.commit()
        flagged = scores > threshold
        statement, payload = scores_copy("limit_scores")
        with part.timed():
            for start in range(0, len(scores), chunk_size):
                stop = start + chunk_size
                with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
                    copy.write(
                        payload("limit-run", record_ids[start:stop], scores[start:stop],
                                flagged[start:stop])
                    )  # fmt: skip
                dbapi.commit()
        with dbapi.cursor() as cursor:
            cursor.execute("DROP TABLE limit_scores")
        dbapi.commit()
    finally:
        dbapi.close()
        engine.dispose()
