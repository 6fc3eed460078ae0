"""Where a scoring run's partitions are scored: in this process, or across a Dask cluster.

Scoring code hands its per-partition work to a :class:`Partitions` object as
``partitions.map(work, items)`` and gets the results back in the order of ``items``. The
in-process one is Python's ``map``; :class:`pipelines.scoring.scaleout.DaskPartitions`
submits each item as the Prefect task ``score-partition`` through ``prefect-dask``'s
``DaskTaskRunner``, so the same loop scores on one core or on a cluster and writes the
same results. (Prefect and Dask are imported only by that module: plain scoring's
start-up does not pay for them.)

What runs where (see :mod:`pipelines.scoring.chunks`): the driver reads the batch, checks
its ids in order (a duplicate split across partitions would otherwise be scored twice),
skips committed chunks and writes every chunk; workers validate and score. The workers
never touch the results store, so the store contract (one owner claims the run, commits
each chunk in one transaction under its lease, completes it) is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Partitions(Protocol):
    """Runs one function over partitions and yields the results in the items' order."""

    #: How many parts to split a batch held in memory into (sequence mode: by entity).
    parts: int

    def map(self, work: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...


class InProcess:
    """Every partition in this process, one after another (the default)."""

    parts = 1

    def map(self, work: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return map(work, items)


IN_PROCESS = InProcess()
