"""The scoring job as one plain function: resolve the model, read the batch, score, store.

The CLI calls it directly when no Prefect API is configured (no temporary API server to
start, or to leave behind when the process is killed); the Prefect ``score`` flow calls
the same function, so both paths write the same runs. Both build one
:class:`ScoreRequest` and get one :class:`~pipelines.jobs.reports.ScoreReport` back.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.intake.ingest import is_sql_url, read_batch, validate_batch
from pipelines.intake.stream import open_stream
from pipelines.jobs.operate import operate_batch, operate_stream
from pipelines.jobs.reports import ScoreReport
from pipelines.modeling import local_registry
from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.registry import configure_mlflow, load_bundle, resolve_model
from pipelines.scoring.export import write_scores_file
from pipelines.scoring.partitions import IN_PROCESS, Partitions
from pipelines.scoring.run import RunRequest
from pipelines.settings import VigilSettings, get_settings
from pipelines.store import ResultsStore


class ScoreRequest(BaseModel):
    """One batch to score: what ``vigil score`` and the ``score`` flow are asked.

    Unset fields take the settings' values (``VIGIL_SCORE_RUNNER``, ``VIGIL_DASK_ADDRESS``,
    ``VIGIL_SCORE_CHUNK_SIZE``, ``VIGIL_RUN_LEASE_SECONDS``, ``VIGIL_MAX_FIELD_CHARS``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: str = Field(description="The batch: a CSV/Parquet file, or a SQLAlchemy URL.")
    model: str | None = Field(
        default=None, description="NAME@ALIAS or NAME/VERSION (default: the champion)."
    )
    batch_id: str | None = Field(default=None, description="Default: a hash of the content.")
    out: str | None = Field(default=None, description="Write every record's score here.")
    table: str | None = Field(default=None, description="SQL table, when data is a URL.")
    query: str | None = Field(default=None, description="SQL query, when data is a URL.")
    shadow: bool = Field(default=True, description="Score with the challenger in shadow too.")
    runner: Literal["local", "dask"] | None = Field(
        default=None, description="Score in this process, or across a Dask cluster."
    )
    dask_address: str | None = Field(
        default=None, description="Dask scheduler (tcp://HOST:8786) for the dask runner."
    )
    chunk_size: int | None = Field(default=None, ge=1, description="Rows per chunk.")
    lease_seconds: float | None = Field(
        default=None, gt=0, description="A run silent this long is presumed dead."
    )
    max_field_chars: int | None = Field(
        default=None, ge=1, description="Longer texts are cut in flags' snapshots."
    )


def score_source(request: ScoreRequest, settings: VigilSettings | None = None) -> ScoreReport:
    """Score one batch (file or SQL source) with a registered model; the report holds
    the run's drift-watch health and the challenger's shadow run.

    Files and SQL sources stream chunk by chunk. Sequence files too: each chunk's context
    is carried over from the chunks before it (:mod:`pipelines.scoring.sequence_stream`). A SQL
    table is read in id order through a server-side cursor; a sequence spec's SQL source
    is read whole. The dask runner scores the partitions on a Dask cluster (no address:
    a LocalCluster); it must run inside a Prefect flow run (the score flow).
    """
    settings = settings or get_settings()
    settings.apply_environment()
    if local_registry.current() is None:
        configure_mlflow(settings)  # else the registry is read from its file, MLflow unloaded
    ref = resolve_model(request.model)
    bundle = load_bundle(ref)
    store = ResultsStore(settings.resolved_database_url)
    if hasattr(bundle, "use_labels"):  # re-ranked models read the frauds confirmed so far
        from pipelines.feedback.training import fraud_labels  # deferred: imports MLflow pyfunc

        known = store.known_labels(known_before=datetime.now(UTC), dataset=bundle.spec.name)
        bundle.use_labels(fraud_labels(known))
    runner = request.runner or settings.score_runner
    with (
        scoring_threads(settings.score_threads),
        _partitions(runner, request.dask_address, settings) as partitions,
    ):
        run = RunRequest(
            model=ref,
            batch_id=request.batch_id,
            lease_seconds=request.lease_seconds or settings.run_lease_seconds,
            max_field_chars=request.max_field_chars or settings.max_field_chars,
            partitions=partitions,
        )
        report = _operate(store, bundle, request, run, settings)
    if request.out:
        report.out = str(write_scores_file(store, report.run_id, request.out))
    return report


def _operate(
    store: ResultsStore,
    bundle: ScoringBundle,
    request: ScoreRequest,
    run: RunRequest,
    settings: VigilSettings,
) -> ScoreReport:
    chunk_size = request.chunk_size or settings.score_chunk_size
    if bundle.spec.is_sequence and is_sql_url(request.data):
        batch = read_batch(request.data, table=request.table, query=request.query)
        validated = validate_batch(batch, bundle.spec, max_field_chars=run.max_field_chars)
        return operate_batch(
            store, bundle, batch, validated, run, chunk_size=chunk_size, shadow=request.shadow
        )
    return operate_stream(
        store, bundle,
        lambda: open_stream(
            request.data, chunk_size, table=request.table, query=request.query,
            order_by=bundle.spec.id_column,
        ),
        run, shadow=request.shadow,
    )  # fmt: skip


@contextmanager
def scoring_threads(threads: int | None) -> Iterator[None]:
    """Cap the threads scoring computes on (``VIGIL_SCORE_THREADS``): torch's, where the
    model loaded torch, and the BLAS pool numpy's forward multiplies on, for the run.

    On a shared machine a second thread mostly spins (see RESULTS.md); torch shows the
    same."""
    if not threads:
        yield
        return
    if "torch" in sys.modules:  # a VAE scored by its numpy forward never imports it
        import torch  # deferred: only where the model loaded it already

        torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def _partitions(
    runner: str, address: str | None, settings: VigilSettings
) -> AbstractContextManager[Partitions]:
    """The in-process partitions, or a Dask cluster's for the length of the run."""
    if runner == "local":
        return nullcontext(IN_PROCESS)
    if runner != "dask":
        raise ValueError(f"unknown scoring runner {runner!r} (local or dask)")
    from pipelines.scoring.scaleout import DaskPartitions  # deferred: prefect-dask

    return DaskPartitions(
        address or settings.dask_address,
        workers=settings.dask_workers,
        threads=settings.score_threads,
    )
