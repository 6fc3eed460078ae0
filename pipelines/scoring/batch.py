"""Batch scoring as plain functions: a stream or a batch in memory scored into the store.

Both are the one run skeleton (:func:`pipelines.scoring.run.score_run`) with a chunk
source (:mod:`pipelines.scoring.chunks`); the :class:`~pipelines.scoring.run.RunRequest`
says which model version scores, in which role, and how the run is held and written.
"""

from __future__ import annotations

import time

from pipelines.intake.ingest import Batch, ValidationResult
from pipelines.intake.stream import BatchStream
from pipelines.modeling.bundle import ScoringBundle
from pipelines.scoring.chunks import BatchChunks, stream_chunks
from pipelines.scoring.run import RunReport, RunRequest, score_run
from pipelines.store import ResultsStore


def score_stream(
    store: ResultsStore, bundle: ScoringBundle, stream: BatchStream, run: RunRequest
) -> RunReport:
    """Scoring with bounded memory: read, validate, score and write one chunk at a time;
    ids are checked for duplicates across chunks too.

    Sequence specs stream too: each chunk's context comes from the kept entity history and
    the earlier chunks' records still within reach, so the run writes what
    :func:`score_batch` writes for the same file. A file whose chunks are not in time
    order is scored in memory instead (``in_memory_reason`` in the report says why)."""
    started = time.perf_counter()
    return score_run(store, bundle, stream_chunks(store, bundle, stream, run), run, started=started)


def score_batch(
    store: ResultsStore,
    bundle: ScoringBundle,
    batch: Batch,
    validated: ValidationResult,
    run: RunRequest,
    *,
    chunk_size: int = 5000,
) -> RunReport:
    """Score a batch already in memory (sequence mode, watched SQL sources) and write it in
    chunks of ``chunk_size`` rows; quarantined rows are stored with the first chunk."""
    return score_run(store, bundle, BatchChunks(batch, validated, chunk_size=chunk_size), run)
