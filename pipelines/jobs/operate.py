"""One scoring run as operations sees it: the champion scores and flags, drift watch
checks the run, and the challenger scores the same batch in shadow.

Plain functions: the score job and scheduled scoring call them; tests call them without
Prefect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pandas as pd

from pipelines.intake.ingest import Batch, ValidationResult, validate_batch
from pipelines.intake.stream import BatchStream
from pipelines.jobs.reports import RunHealth, ScoreReport, ShadowReport
from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.registry import CHALLENGER, CHAMPION, ModelRef, load_bundle, resolve_model
from pipelines.operations.watch import watch_run
from pipelines.scoring.chunks import BatchChunks, stream_chunks
from pipelines.scoring.run import ChunkSource, RunReport, RunRequest, score_run
from pipelines.store import ResultsStore

log = logging.getLogger(__name__)

#: A batch's chunk source for a bundle and a run (opened again for the shadow run).
Chunks = Callable[[ScoringBundle, RunRequest], ChunkSource]


def challenger_of(name: str, champion_version: str) -> ModelRef | None:
    """The challenger's ModelRef when it exists and differs from the champion, else None."""
    try:
        ref = resolve_model(f"{name}@{CHALLENGER}")
    except ValueError:
        return None
    return None if str(ref.version) == str(champion_version) else ref


def shadow_score(
    *,
    model_name: str,
    champion_version: str,
    champion_seconds: float | None,
    score: Callable[[ScoringBundle, ModelRef], RunReport],
    load: Callable | None = None,
) -> ShadowReport | None:
    """Score the batch with the challenger as a shadow run (``score(bundle, ref)`` runs it
    in the shadow role); None without a challenger."""
    ref = challenger_of(model_name, champion_version)
    if ref is None:
        return None
    started = time.perf_counter()
    bundle = (load or load_bundle)(ref)
    load_seconds = time.perf_counter() - started
    report = score(bundle, ref)
    seconds = report.score_seconds
    return ShadowReport(
        run_id=report.run_id,
        model=ref.name,
        model_version=ref.version,
        rows_scored=report.rows_scored,
        would_flag=report.rows_flagged,
        already_scored=report.already_scored,
        load_seconds=round(load_seconds, 3),
        score_seconds=None if seconds is None else round(seconds, 3),
        cost_ratio=(
            round(seconds / champion_seconds, 3)
            if seconds is not None and champion_seconds
            else None
        ),
    )


def operate(
    store: ResultsStore,
    bundle: ScoringBundle,
    chunks: Chunks,
    run: RunRequest,
    *,
    clean: Callable[[], pd.DataFrame],
    shadow: bool = True,
    watch: bool = True,
) -> ScoreReport:
    """The champion's run (``run.model``: flags to the queue, ``run.commit_with`` in its
    transaction), then drift watch on ``clean()`` (the batch's validated rows, or a
    sample of them), then the challenger in shadow on the same batch when ``run.model``
    is the champion alias."""
    ref = run.model
    report = ScoreReport.of(_score(store, bundle, chunks, run))
    if watch:
        if report.already_scored:
            report.health = RunHealth.from_dict(store.run_health(report.run_id))
        else:
            report.health = RunHealth.from_dict(
                watch_run(
                    store,
                    run_id=report.run_id,
                    bundle=bundle,
                    model_name=ref.name,
                    model_version=ref.version,
                    clean=clean(),
                )  # fmt: skip
            )
    if shadow and ref.alias == CHAMPION:

        def shadow_run(challenger: ScoringBundle, challenger_ref: ModelRef) -> RunReport:
            shadow_request = run.as_shadow(challenger_ref, batch_id=report.batch_id)
            return _score(store, challenger, chunks, shadow_request)

        try:
            report.shadow = shadow_score(
                model_name=ref.name,
                champion_version=ref.version,
                champion_seconds=report.score_seconds,
                score=shadow_run,
            )
        except Exception as exc:  # noqa: BLE001 - a broken challenger must not fail the night
            log.warning("shadow scoring with the challenger of %s failed: %s", ref.name, exc)
            report.notes.append(f"shadow scoring failed: {type(exc).__name__}: {exc}")
    return report


def _score(store: ResultsStore, bundle: ScoringBundle, chunks: Chunks, run: RunRequest):
    started = time.perf_counter()  # a stream's read-ahead counts as scoring time
    return score_run(store, bundle, chunks(bundle, run), run, started=started)


def operate_batch(
    store: ResultsStore,
    bundle: ScoringBundle,
    batch: Batch,
    validated: ValidationResult,
    run: RunRequest,
    *,
    chunk_size: int = 5000,
    shadow: bool = True,
    watch: bool = True,
) -> ScoreReport:
    """:func:`operate` on a batch held in memory, written in chunks of ``chunk_size``."""
    return operate(
        store, bundle, lambda _bundle, _run: BatchChunks(batch, validated, chunk_size=chunk_size),
        run, clean=lambda: validated.clean, shadow=shadow, watch=watch,
    )  # fmt: skip


def operate_stream(
    store: ResultsStore,
    bundle: ScoringBundle,
    open_stream: Callable[[], BatchStream],
    run: RunRequest,
    *,
    shadow: bool = True,
    watch: bool = True,
    drift_sample_rows: int = 50_000,
) -> ScoreReport:
    """:func:`operate` on a file or table read in chunks (bounded memory): the champion
    streams it, drift watch reads its first ``drift_sample_rows`` validated rows, and the
    challenger streams it again in shadow."""

    def chunks(scoring_bundle: ScoringBundle, request: RunRequest) -> ChunkSource:
        return stream_chunks(store, scoring_bundle, open_stream(), request)

    def sample() -> pd.DataFrame:
        parts, rows = [], 0
        for chunk in open_stream().chunks():
            clean = validate_batch(chunk, bundle.spec).clean
            parts.append(clean)
            rows += len(clean)
            if rows >= drift_sample_rows:
                break
        return pd.concat(parts, ignore_index=True).head(drift_sample_rows)

    return operate(store, bundle, chunks, run, clean=sample, shadow=shadow, watch=watch)
