"""The chunk sources: each way a batch is scored, as what :func:`~pipelines.scoring.run.score_run`
needs of it (where the chunks come from, what runs on a partition, what the run keeps).

- :class:`StreamChunks`: a file or SQL table read chunk by chunk, with bounded memory.
  This process reads the chunks, checks their ids in file order (a duplicate in a later
  chunk is quarantined whichever worker gets it) and skips committed chunks before
  anything is dispatched; the partitions validate and score.
- :class:`SequenceStreamChunks`: a sequence file streamed (:mod:`.sequence_stream`): each
  chunk's context comes from the kept entity history and the earlier chunks' records
  still within reach, built here in file order; the partitions score runs of chunks.
- :class:`BatchChunks`: a batch held in memory (sequence mode, watched SQL sources), its
  quarantine stored with the first chunk. In sequence mode context features are built
  here over the whole batch first (features of a secondary entity, such as a terminal,
  span cards), then the batch is split by entity and the parts scored on the partitions.

:func:`stream_chunks` picks the source for a stream: a sequence file whose chunks are
not in time order is scored in memory instead (``in_memory_reason`` says why). Whatever
the source and the partitions, this process writes every chunk, numbered as a
single-process run numbers them, so the store contract is the same (workers need no
store).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from pipelines.intake.ingest import (
    Batch,
    IdCheck,
    SeenIds,
    ValidationResult,
    check_ids,
    read_batch,
    validate_batch,
)
from pipelines.intake.stream import BatchStream
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle
from pipelines.scoring.flags import no_quarantine, score_chunk, score_validated
from pipelines.scoring.history import HistoryParts, KeptHistory
from pipelines.scoring.partitions import IN_PROCESS, Partitions
from pipelines.scoring.run import (
    SHADOW,
    ChunkPlan,
    ChunkSource,
    RunReport,
    RunRequest,
    RunTarget,
)
from pipelines.scoring.sequence_stream import (
    SequenceGroup,
    SequencePlan,
    carried_groups,
    plan_sequence_stream,
)
from pipelines.store import ResultsStore
from pipelines.store.runs import ChunkWrite, RunClaimTicket

log = logging.getLogger(__name__)


def stream_chunks(
    store: ResultsStore, bundle: ScoringBundle, stream: BatchStream, run: RunRequest
) -> ChunkSource:
    """The chunk source for a stream: tabular chunks, carried sequence chunks, or (a
    sequence file not in time order across chunks) the whole file in memory."""
    if not bundle.spec.is_sequence:
        return StreamChunks(stream)
    plan = plan_sequence_stream(store, bundle.spec, stream, max_field_chars=run.max_field_chars)
    if plan.in_memory_reason is None:
        return SequenceStreamChunks(stream, plan)
    log.warning("%s: scored in memory, %s", stream.source, plan.in_memory_reason)
    batch = read_batch(stream.path)
    return BatchChunks(
        batch,
        validate_batch(batch, bundle.spec, max_field_chars=run.max_field_chars),
        chunk_size=stream.chunk_size,
        digest=stream.digest(),
        in_memory_reason=plan.in_memory_reason,
    )


def _rows_shown(write: ChunkWrite) -> dict:
    return {"rows": write.first_row + write.rows_in - 1}


def _flagged_shown(write: ChunkWrite) -> dict:
    return {"flagged": len(write.flags)}


class _NoCheck:
    def check(self, report: RunReport) -> None:
        """Streamed counts are the store's own: nothing to compare them with."""


# -- a tabular stream ---------------------------------------------------------------------


@dataclass
class _StreamJob:
    """A streamed chunk as read, with its ids checked (in file order) by the driver."""

    number: int
    chunk: Batch
    ids: IdCheck


class StreamChunks(_NoCheck):
    """A tabular file or table, chunk by chunk."""

    in_memory_reason = None

    def __init__(self, stream: BatchStream) -> None:
        self.stream = stream
        self.source = stream.source
        self.chunk_size = stream.chunk_size

    def digest(self) -> str:
        return self.stream.digest()

    @contextmanager
    def plan(
        self, store: ResultsStore, bundle: ScoringBundle, run: RunRequest, target: RunTarget,
        ticket: RunClaimTicket,
    ) -> Iterator[ChunkPlan]:  # fmt: skip
        work = partial(
            _validate_and_score, bundle, chunk_size=self.chunk_size, target=target,
            max_field_chars=run.max_field_chars,
        )  # fmt: skip
        plan = ChunkPlan(
            work=work, partitions=run.partitions, total=self.stream.chunk_count(),
            shown=_rows_shown,
        )  # fmt: skip
        plan.jobs = self._jobs(bundle, ticket, plan)
        yield plan

    def _jobs(
        self, bundle: ScoringBundle, ticket: RunClaimTicket, plan: ChunkPlan
    ) -> Iterator[_StreamJob]:
        seen = SeenIds()
        for number, chunk in enumerate(self.stream.chunks()):
            checked = check_ids(chunk, bundle.spec, seen)  # in file order, here
            if number in ticket.committed_chunks:
                plan.skipped += 1  # committed by an earlier, interrupted run
                continue
            yield _StreamJob(number=number, chunk=chunk, ids=checked)


def _validate_and_score(
    bundle: ScoringBundle,
    job: _StreamJob,
    *,
    chunk_size: int,
    target: RunTarget,
    max_field_chars: int,
) -> list[ChunkWrite]:
    """One streamed chunk, validated and scored into what the store writes (a partition:
    it runs wherever the run's partitions put it)."""
    validated = validate_batch(
        job.chunk, bundle.spec, ids_checked=job.ids, max_field_chars=max_field_chars
    )
    return [
        score_validated(
            bundle,
            validated,
            number=job.number,
            first_row=job.chunk.first_row_number,
            chunk_size=chunk_size,
            target=target,
            max_field_chars=max_field_chars,
        )  # fmt: skip
    ]


# -- a sequence stream, its context carried from chunk to chunk ---------------------------


class SequenceStreamChunks(_NoCheck):
    """A sequence file in time order, chunk by chunk (``plan``: what the read-ahead of
    :func:`~pipelines.scoring.sequence_stream.plan_sequence_stream` found). This process
    validates the chunks and builds their context in file order (each chunk's depends on
    the ones before it, a resumed run's committed chunks included); the partitions score
    them, a run of chunks at a time (the detector's windows and the flags)."""

    in_memory_reason = None

    def __init__(self, stream: BatchStream, plan: SequencePlan) -> None:
        self.stream, self.sequence_plan = stream, plan
        self.source = stream.source
        self.chunk_size = stream.chunk_size

    def digest(self) -> str:
        return self.stream.digest()

    @contextmanager
    def plan(
        self, store: ResultsStore, bundle: ScoringBundle, run: RunRequest, target: RunTarget,
        ticket: RunClaimTicket,
    ) -> Iterator[ChunkPlan]:  # fmt: skip
        # A shadow run leaves entity history to the primary.
        parts = None
        if target.role != SHADOW:
            parts = HistoryParts(store, bundle.spec, target.batch_id, target.source)
        work = partial(
            _score_sequence_group, bundle, chunk_size=self.chunk_size, target=target,
            max_field_chars=run.max_field_chars,
        )  # fmt: skip
        plan = ChunkPlan(
            work=work, partitions=run.partitions, total=self.sequence_plan.chunks,
            history=self.sequence_plan.history.describe(), shown=_rows_shown,
        )  # fmt: skip
        plan.jobs = self._jobs(bundle, run, ticket, parts, plan)
        try:
            yield plan
            if parts is not None:
                parts.finish()
        finally:
            if parts is not None:
                parts.close()

    def _jobs(
        self,
        bundle: ScoringBundle,
        run: RunRequest,
        ticket: RunClaimTicket,
        parts: HistoryParts | None,
        plan: ChunkPlan,
    ) -> Iterator[SequenceGroup]:
        groups = carried_groups(
            bundle, self.stream, self.sequence_plan, max_field_chars=run.max_field_chars
        )
        for group in groups:
            if group.prepared is not None:
                if parts is not None:
                    for span in group.chunks:
                        parts.save(span.number, group.prepared.state.iloc[span.rows])
                group.prepared.state = None  # kept by the parts; workers need none
            group.write -= ticket.committed_chunks  # an earlier, interrupted run's
            plan.skipped += len(group.chunks) - len(group.write)
            if group.write:
                yield group


def _score_sequence_group(
    bundle: ScoringBundle,
    group: SequenceGroup,
    *,
    chunk_size: int,
    target: RunTarget,
    max_field_chars: int,
) -> list[ChunkWrite]:
    """A run of streamed sequence chunks, their context built already, scored in one
    pass into what the store writes, chunk by chunk (a partition)."""
    prepared = group.prepared
    result = None if prepared is None else bundle.score_prepared(prepared)
    writes = []
    for span in group.chunks:
        if span.number not in group.write:
            continue
        scored = len(span.validated.clean) > 0
        writes.append(
            score_validated(
                bundle,
                span.validated,
                snapshot=prepared.features.iloc[span.rows] if scored else None,
                result=result.iloc[span.rows] if scored else None,
                number=span.number,
                first_row=span.first_row,
                chunk_size=chunk_size,
                target=target,
                max_field_chars=max_field_chars,
            )
        )
    return writes


# -- a batch held in memory ---------------------------------------------------------------


@dataclass
class _BatchJob:
    """A chunk of a batch held in memory: clean rows, scored already in sequence mode."""

    number: int
    chunk: pd.DataFrame
    snapshot: pd.DataFrame | None  # None: the chunk itself
    result: pd.DataFrame | None  # None: score it here
    first_row: int
    row_numbers: np.ndarray
    rows_in: int
    quarantined: pd.DataFrame
    rows_quarantined: int


class BatchChunks:
    """A batch held in memory, validated already, written in chunks of ``chunk_size``
    rows; quarantined rows are stored with the first chunk, not scored. ``digest``: the
    batch id when the request names none (default: the batch's content hash)."""

    def __init__(
        self,
        batch: Batch,
        validated: ValidationResult,
        *,
        chunk_size: int = 5000,
        digest: str | None = None,
        in_memory_reason: str | None = None,
    ) -> None:
        self.batch, self.validated = batch, validated
        self.source = batch.source
        self.chunk_size = chunk_size
        self.in_memory_reason = in_memory_reason
        self._digest = digest

    def digest(self) -> str:
        return self._digest or self.batch.content_hash

    @contextmanager
    def plan(
        self, store: ResultsStore, bundle: ScoringBundle, run: RunRequest, target: RunTarget,
        ticket: RunClaimTicket,
    ) -> Iterator[ChunkPlan]:  # fmt: skip
        sequence = bundle.spec.is_sequence
        clean = self.validated.clean
        prepared = scored = history = None
        if sequence:
            # Context needs the whole batch in time order and the kept entity history, so
            # the batch is scored in one (internally batched) pass and written in chunks.
            kept = KeptHistory(
                store, bundle.spec, batch_id=target.batch_id, source=self.batch.source
            )
            history = kept.before(clean)
            prepared = bundle.prepare(clean, history.frame)
            scored = score_by_entity(bundle, prepared, run.partitions)
        work = partial(
            _score_job, bundle, chunk_size=self.chunk_size, target=target,
            max_field_chars=run.max_field_chars,
        )  # fmt: skip
        n_chunks = max(1, math.ceil(len(clean) / self.chunk_size))
        plan = ChunkPlan(
            work=work,
            # Sequence mode was scored above, by entity: its chunks only need their flags.
            partitions=IN_PROCESS if sequence else run.partitions,
            total=n_chunks,
            unit="batches",
            history=None if history is None else history.describe(),
            shown=_flagged_shown,
        )
        plan.jobs = self._jobs(n_chunks, ticket, prepared, scored, plan)
        yield plan
        if sequence and target.role != SHADOW:
            kept.extend(prepared.state)

    def _jobs(
        self,
        n_chunks: int,
        ticket: RunClaimTicket,
        prepared: PreparedRecords | None,
        scored: pd.DataFrame | None,
        plan: ChunkPlan,
    ) -> Iterator[_BatchJob]:
        validated, size = self.validated, self.chunk_size
        for number in range(n_chunks):
            if number in ticket.committed_chunks:
                plan.skipped += 1
                continue
            start, stop = number * size, (number + 1) * size
            first = number == 0
            chunk = validated.clean.iloc[start:stop]
            yield _BatchJob(
                number=number,
                chunk=chunk,
                snapshot=None if scored is None else prepared.features.iloc[start:stop],
                result=None if scored is None else scored.iloc[start:stop],
                first_row=self.batch.first_row_number + start,
                row_numbers=validated.clean_row_numbers[start:stop],
                rows_in=len(chunk) + (validated.rows_quarantined if first else 0),
                quarantined=validated.quarantined if first else no_quarantine(),
                rows_quarantined=validated.rows_quarantined if first else 0,
            )

    def check(self, report: RunReport) -> None:
        """Every row read is scored or quarantined, none twice."""
        rows_in = self.validated.rows_in
        if rows_in != report.rows_scored + report.rows_quarantined:
            raise RuntimeError(
                f"row accounting broken: {rows_in} in, {report.rows_scored} scored, "
                f"{report.rows_quarantined} quarantined"
            )


def _score_job(
    bundle: ScoringBundle,
    job: _BatchJob,
    *,
    chunk_size: int,
    target: RunTarget,
    max_field_chars: int,
) -> list[ChunkWrite]:
    """One chunk of a batch in memory into what the store writes (a partition)."""
    result = job.result
    if result is None and len(job.chunk):
        result = bundle.score(job.chunk)
    return [
        score_chunk(
            bundle,
            job.chunk,
            job.chunk if job.snapshot is None else job.snapshot,
            result,
            number=job.number,
            chunk_size=chunk_size,
            first_row=job.first_row,
            row_numbers=job.row_numbers,
            rows_in=job.rows_in,
            quarantined=job.quarantined,
            rows_quarantined=job.rows_quarantined,
            target=target,
            max_field_chars=max_field_chars,
        )
    ]


def score_by_entity(
    bundle: ScoringBundle, prepared: PreparedRecords, partitions: Partitions = IN_PROCESS
) -> pd.DataFrame:
    """Score prepared sequence records in ``partitions.parts`` parts split by entity (each
    entity's records and its history in one part, so its windows are whole); the result
    is in the records' order, as one pass over all of them gives it."""
    parts = max(1, int(partitions.parts))
    features = prepared.features
    if parts == 1 or len(features) < 2:
        return bundle.score_prepared(prepared)
    entity = bundle.spec.entity_column
    part_of = _entity_part(features[entity], parts)
    history = prepared.history
    history_part = None if history is None else _entity_part(history[entity], parts)
    pieces = []
    for p in range(parts):
        rows = np.flatnonzero(part_of == p)
        if not len(rows):
            continue
        kept = None
        if history is not None:
            kept = history.iloc[np.flatnonzero(history_part == p)]
        pieces.append(PreparedRecords(features=features.iloc[rows], history=kept))
    results = list(partitions.map(partial(_score_prepared, bundle), pieces))
    return pd.concat(results).reindex(features.index)


def _entity_part(entities: pd.Series, parts: int) -> np.ndarray:
    """A stable part number per entity (the same on every machine and run)."""
    hashed = pd.util.hash_array(entities.astype(str).to_numpy(dtype=object))
    return (hashed % np.uint64(parts)).astype(np.int64)


def _score_prepared(bundle: ScoringBundle, prepared: PreparedRecords) -> pd.DataFrame:
    return bundle.score_prepared(prepared)
