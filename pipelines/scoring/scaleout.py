"""Scale-out: a scoring run's partitions as Prefect tasks on a Dask cluster.

``vigil score --runner dask [--dask-address tcp://HOST:8786]`` runs the score flow with
:class:`DaskPartitions`; the scoring loop is the single-process one
(:func:`pipelines.scoring.run.score_run`), so the run writes the same scores, flags and counts.

Workers validate and score; the driver (the flow run) writes. Why the driver: the store
contract stays one owner per run (``claim_run`` -> ``write_chunk`` -> ``complete_run``
under one lease, chunks in order, numbered as a local run numbers them), so a re-run
local or on Dask skips the same committed chunks; workers need no database credentials;
and a worker lost mid-partition leaves nothing half-written. The cost is that every
chunk's results travel back to the driver (scores, and flags for flagged rows only).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

T = TypeVar("T")
R = TypeVar("R")


@task(name="score-partition", cache_policy=NO_CACHE, persist_result=False)
def score_partition(work: Callable[[Any], Any], item: Any, threads: int | None = None) -> Any:
    """One partition of a scoring run, on a Dask worker (no store access: see module)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    return work(item)


def _import_scoring() -> None:
    import pipelines.scoring.batch  # noqa: F401


class DaskPartitions:
    """Partitions as Prefect tasks on a Dask cluster through ``DaskTaskRunner``.

    ``address``: a running scheduler (``tcp://host:8786``); None starts a ``LocalCluster``
    of ``workers`` processes with one thread each (6-9 s of start-up per run on an idle
    machine per ``shared/STACK.md``; 19-36 s measured here under load, workers' imports
    included). At most ``in_flight`` partitions are submitted and not yet
    collected (default: two per worker thread), so the driver's memory holds a bounded
    number of chunks however long the input. ``threads``: torch threads per task.

    Must be used inside a Prefect flow run: each partition is a task run of it, and the
    workers report to the same Prefect API.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int = 2,
        processes: bool = True,
        threads: int | None = None,
        in_flight: int | None = None,
    ) -> None:
        self.address = address
        self.workers = workers
        self.processes = processes
        # A LocalCluster's workers share this machine's cores: one torch thread each.
        self.threads = threads if threads or address else 1
        self._in_flight = in_flight
        self._runner = None
        self.parts = 2 * workers

    def __enter__(self) -> DaskPartitions:
        from prefect.context import FlowRunContext
        from prefect_dask import DaskTaskRunner

        if FlowRunContext.get() is None:
            raise RuntimeError(
                "the Dask runner scores inside a Prefect flow run (vigil score --runner dask "
                "runs the score flow); called outside one"
            )
        if self.address:
            runner = DaskTaskRunner(address=self.address)
        else:
            runner = DaskTaskRunner(
                cluster_kwargs={
                    "n_workers": self.workers,
                    "threads_per_worker": 1,
                    "processes": self.processes,
                    "dashboard_address": None,
                }
            )
        self._runner = runner.__enter__()
        try:
            threads = sum(self._runner.client.nthreads().values())
        except BaseException:
            self._runner.__exit__(None, None, None)
            raise
        if not threads:
            self._runner.__exit__(None, None, None)
            raise RuntimeError(f"Dask scheduler {self.address or 'LocalCluster'} has no workers")
        self.parts = 2 * threads
        if self._in_flight is None:
            self._in_flight = 2 * threads
        # Each worker imports the scoring code (torch, pandas, the detectors) now, all at
        # once, rather than on its first partition while the driver waits on it.
        self._runner.client.run(_import_scoring)
        return self

    def __exit__(self, *exc_info) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.__exit__(*exc_info)

    def map(self, work: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        if self._runner is None:
            raise RuntimeError("DaskPartitions.map outside its with-block")
        pending: deque = deque()
        try:
            for item in items:
                parameters = {"work": work, "item": item, "threads": self.threads}
                pending.append(self._runner.submit(score_partition, parameters))
                if len(pending) >= self._in_flight:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # a failed or abandoned run: drop what is still queued
                future.wrapped_future.cancel()
