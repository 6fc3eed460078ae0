"""The Dask side of ``benchmarks.scale`` as a Prefect flow (its own module: Prefect reads
its settings when imported, so the child imports it after the offline defaults are set)."""

from __future__ import annotations

import time

from prefect import flow

#: The child's process-tree sampler (``benchmarks.scale.TreeSampler``), set before the flow
#: runs: the flow reads the tree's CPU seconds just before and after the scoring.
SAMPLER = None


@flow(name="scale-dask")
def dask_flow(
    bundle_dir: str, data: str, url: str, chunk_size: int, threads: int, workers: int
) -> dict:
    """The Dask run as a Prefect flow (its partitions are the flow's task runs; a flow
    object travels with each task, so this one is module-level)."""
    from pipelines.intake.stream import open_stream
    from pipelines.modeling.bundle import ScoringBundle
    from pipelines.modeling.registry import ModelRef
    from pipelines.scoring.batch import score_stream
    from pipelines.scoring.run import RunRequest
    from pipelines.scoring.scaleout import DaskPartitions
    from pipelines.store import ResultsStore

    flow_started = time.perf_counter()
    bundle = ScoringBundle.load(bundle_dir)
    store = ResultsStore(url)
    from benchmarks import scale_dask as this  # not a global: the flow travels pickled

    sampler = this.SAMPLER
    with DaskPartitions(workers=workers, threads=threads or None) as partitions:
        cluster_seconds = time.perf_counter() - flow_started
        cpu_before = sampler.sample() if sampler else None
        started = time.perf_counter()
        report = score_stream(
            store,
            bundle,
            open_stream(data, chunk_size),
            RunRequest(model=ModelRef("scale-vae", "1", None), partitions=partitions),
        )
        seconds = time.perf_counter() - started
        cpu_after = sampler.sample() if sampler else None
    return {
        "runner": f"dask LocalCluster {workers} workers",
        "torch_threads": threads or "default",
        "rows_in": report.rows_in,
        "rows_scored": report.rows_scored,
        "rows_quarantined": report.rows_quarantined,
        "rows_flagged": report.rows_flagged,
        "seconds": round(seconds, 2),
        "rows_per_second": round(report.rows_in / seconds),
        "cluster_start_seconds": round(cluster_seconds, 2),
        "scoring_cpu_seconds": (None if cpu_before is None else round(cpu_after - cpu_before, 1)),
    }
