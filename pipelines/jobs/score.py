"""The scoring job as one plain function: resolve the model, read the batch, score, store.

The CLI calls it directly when no Prefect API is configured (no temporary API server to
start, or to leave behind when the process is killed); the Prefect ``score`` flow calls
the same function, so both paths write the same runs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pipelines.intake.ingest import is_sql_url, read_batch, validate_batch
from pipelines.intake.stream import open_stream
from pipelines.settings import VigilSettings, get_settings


def score_source(
    data: str,
    model: str | None = None,
    batch_id: str | None = None,
    out: str | None = None,
    table: str | None = None,
    query: str | None = None,
    settings: VigilSettings | None = None,
    shadow: bool = True,
    runner: str | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Score one batch (file or SQL source) with a registered model; returns the report
    with the run's drift-watch health and the challenger's shadow run.

    Files and SQL sources stream chunk by chunk. Sequence files too: each chunk's context
    is carried over from the chunks before it (:mod:`pipelines.scoring.sequence_stream`). A SQL
    table is read in id order through a server-side cursor; a sequence spec's SQL source
    is read whole.
    ``runner="dask"`` (default: ``VIGIL_SCORE_RUNNER``) scores the partitions on a Dask
    cluster (``dask_address``, default ``VIGIL_DASK_ADDRESS``; none: a LocalCluster); it
    must run inside a Prefect flow run (the score flow).
    """
    from pipelines.modeling import local_registry
    from pipelines.modeling.registry import configure_mlflow, load_bundle, resolve_model
    from pipelines.scoring.export import write_scores_file
    from pipelines.store import ResultsStore

    settings = settings or get_settings()
    settings.apply_environment()
    if local_registry.current() is None:
        configure_mlflow(settings)  # else the registry is read from its file, MLflow unloaded
    ref = resolve_model(model)
    bundle = load_bundle(ref)
    store = ResultsStore(settings.resolved_database_url)
    if hasattr(bundle, "use_labels"):  # re-ranked models read the frauds confirmed so far
        from pipelines.feedback.training import fraud_labels

        known = store.known_labels(known_before=datetime.now(UTC), dataset=bundle.spec.name)
        bundle.use_labels(fraud_labels(known))
    with (
        scoring_threads(settings.score_threads),
        _partitions(runner or settings.score_runner, dask_address, settings) as partitions,
    ):
        options = dict(
            lease_seconds=settings.run_lease_seconds,
            max_field_chars=settings.max_field_chars,
            partitions=partitions,
        )
        operated = _operate(
            store, bundle, ref, data, table=table, query=query, batch_id=batch_id,
            settings=settings, shadow=shadow, options=options,
        )  # fmt: skip
    result = operated.to_dict()
    if out:
        result["out"] = str(write_scores_file(store, operated.report.run_id, out))
    return result


@contextmanager
def scoring_threads(threads: int | None) -> Iterator[None]:
    """Cap the threads scoring computes on (``VIGIL_SCORE_THREADS``): torch's, where the
    model loaded torch, and the BLAS pool numpy's forward multiplies on, for the run.

    On a shared machine a second thread mostly spins: 1M rows through the numpy forward
    cost 25.6-31.5 CPU s with OpenBLAS's default pool against 11.1-14.8 with one thread
    (load ~5.5), and torch showed the same."""
    if not threads:
        yield
        return
    if "torch" in sys.modules:  # a VAE scored by its numpy forward never imports it
        import torch

        torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def _partitions(runner: str, address: str | None, settings: VigilSettings):
    """The in-process partitions, or a Dask cluster's for the length of the run."""
    from contextlib import nullcontext

    from pipelines.scoring.partitions import IN_PROCESS

    if runner == "local":
        return nullcontext(IN_PROCESS)
    if runner != "dask":
        raise ValueError(f"unknown scoring runner {runner!r} (local or dask)")
    from pipelines.scoring.scaleout import DaskPartitions

    return DaskPartitions(
        address or settings.dask_address,
        workers=settings.dask_workers,
        threads=settings.score_threads,
    )


def _operate(store, bundle, ref, data, *, table, query, batch_id, settings, shadow, options):
    from pipelines.jobs.operate import operate_batch, operate_stream

    if bundle.spec.is_sequence and is_sql_url(str(data)):
        batch = read_batch(data, table=table, query=query)
        validated = validate_batch(batch, bundle.spec, max_field_chars=settings.max_field_chars)
        operated = operate_batch(
            store, bundle=bundle, ref=ref, batch=batch, validated=validated,
            batch_id=batch_id, chunk_size=settings.score_chunk_size, shadow=shadow,
            score_options=options,
        )  # fmt: skip
    else:
        operated = operate_stream(
            store, bundle=bundle, ref=ref, batch_id=batch_id, shadow=shadow,
            open_stream=lambda: open_stream(
                data, settings.score_chunk_size, table=table, query=query,
                order_by=bundle.spec.id_column,
            ),  # fmt: skip
            score_options=options,
        )  # fmt: skip
    return operated
