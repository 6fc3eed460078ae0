"""Batch scoring as plain functions: score in chunks and write runs, scores and flags.

A run is claimed in the store before anything is written (a second process scoring the
same batch is told it is already running); each chunk's scores, flags and quarantined
rows are one transaction with its chunk record, so a killed run leaves whole chunks and
the re-run skips them. Idempotent on (batch id, model version): a completed run is never
written twice.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.intake.ingest import (
    MAX_FIELD_CHARS,
    QUARANTINE_COLUMNS,
    Batch,
    IdCheck,
    SeenIds,
    ValidationResult,
    bound_text,
    check_ids,
    read_batch,
    validate_batch,
)
from pipelines.intake.stream import BatchStream
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle
from pipelines.progress import progress
from pipelines.scoring.history import HistoryParts, KeptHistory, PastRecords
from pipelines.scoring.partitions import IN_PROCESS, Partitions
from pipelines.scoring.sequence_stream import SequenceGroup, carried_groups, plan_sequence_stream
from pipelines.store import ResultsStore
from pipelines.store.runs import ChunkWrite, RunClaimTicket

log = logging.getLogger(__name__)

#: Default lease of a claimed run: a process silent for this long is presumed dead.
DEFAULT_LEASE_SECONDS = 60.0


@dataclass
class ScoreReport:
    run_id: str
    batch_id: str
    model: str
    model_version: str
    rows_in: int
    rows_scored: int
    rows_quarantined: int
    rows_flagged: int
    threshold: float
    already_scored: bool
    #: Sequence mode: what the kept entity history gave as context (None in tabular mode).
    history: str | None = None
    #: Chunks committed by this call, and chunks an earlier, interrupted call had committed.
    chunks_written: int = 0
    chunks_skipped: int = 0
    #: primary (flags reach the review queue) or shadow (scores kept as evidence only).
    role: str = "primary"
    score_seconds: float | None = None
    #: A streamed sequence file scored in memory instead, and why (see score_stream).
    in_memory_reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunTarget:
    """Which run to claim: the batch and the model version scoring it."""

    batch_id: str
    source: str
    model_name: str
    model_version: str
    model_alias: str | None
    #: primary: flags reach the review queue; shadow: scores only (promotion evidence).
    role: str = "primary"


@contextmanager
def _claimed(
    store: ResultsStore,
    bundle: ScoringBundle,
    target: RunTarget,
    *,
    chunk_size: int,
    lease_seconds: float,
) -> Iterator[RunClaimTicket]:
    """Claim the run, keep its lease alive while the body works, and mark it failed
    (only if still ours) when the body raises."""
    ticket = store.claim_run(
        batch_id=target.batch_id,
        source=target.source,
        dataset=bundle.spec.name,
        model_name=target.model_name,
        model_version=target.model_version,
        model_alias=target.model_alias,
        threshold=bundle.threshold,
        chunk_size=chunk_size,
        lease_seconds=lease_seconds,
        role=target.role,
    )
    if ticket.already_completed:
        yield ticket
        return
    try:
        with store.keep_lease(ticket.run.id, ticket.owner, lease_seconds):
            yield ticket
    except BaseException as exc:
        store.fail_claimed_run(ticket.run.id, ticket.owner, f"{type(exc).__name__}: {exc}")
        raise


_frozen_lock = threading.Lock()
_frozen_depth = 0


@contextmanager
def _long_lived_heap_frozen() -> Iterator[None]:
    """Keep the objects that exist before scoring (modules, the model, the store's
    mappers: millions of them after importing torch, pandas and SQLAlchemy) out of the
    garbage collector's full passes while chunks are scored.

    Each chunk makes tens of thousands of objects that live until its commit; they keep
    triggering full collections, and each walked the whole heap: 20-30% of the CPU of a
    streamed run (measured on 200k rows). Nothing is freed later than before for objects
    made during scoring; the frozen ones are unfrozen when the outermost run ends."""
    global _frozen_depth
    with _frozen_lock:
        if _frozen_depth == 0:
            gc.freeze()
        _frozen_depth += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_depth -= 1
            if _frozen_depth == 0:
                gc.unfreeze()


class _ChunkWriter:
    """Commits chunks in a background thread, one at a time and in order, so the next
    chunk is read and scored while the database takes the previous one (PostgreSQL's
    ``COPY`` runs in the server process: on two cores that is the other core).

    At most one chunk is in flight: ``submit`` first waits for the previous commit and
    re-raises its error (a lost lease, a store that went away), and leaving the block
    waits for the last one, so a chunk is committed whole or not at all as before.
    """

    def __init__(self, store: ResultsStore, ticket: RunClaimTicket) -> None:
        self._store, self._ticket = store, ticket
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-writer")
        self._pending: Future | None = None

    def submit(self, write: ChunkWrite) -> None:
        self.wait()
        self._pending = self._pool.submit(
            self._store.write_chunk, self._ticket.run.id, self._ticket.owner, write
        )

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> _ChunkWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if exc_info[0] is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)  # a commit under way finishes either way


def score_stream(
    *,
    bundle: ScoringBundle,
    stream: BatchStream,
    store: ResultsStore,
    model_name: str,
    model_version: str,
    model_alias: str | None,
    batch_id: str | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_field_chars: int = MAX_FIELD_CHARS,
    role: str = "primary",
    commit_with: Callable | None = None,
    partitions: Partitions = IN_PROCESS,
) -> ScoreReport:
    """Scoring with bounded memory: read, validate, score and write one chunk at a time.
    Ids are checked for duplicates across chunks too. ``role`` and ``commit_with`` as in
    :func:`score_batch`.

    ``partitions``: where chunks are validated and scored (:mod:`.partitions`). This
    process reads the chunks, checks their ids in file order (a duplicate in a later
    chunk is quarantined whichever worker gets it) and skips committed chunks before
    anything is dispatched; it writes every chunk itself, in chunk order, so chunk numbers
    and the store contract are those of a single-process run (workers need no store).

    Sequence specs stream too (:mod:`.carried`): each chunk's context comes from the kept
    entity history and the earlier chunks' records still within reach, so the run writes
    what :func:`score_batch` writes for the same file. A file whose chunks are not in time
    order (a record earlier than one of an earlier chunk) is scored in memory by
    :func:`score_batch` instead (``in_memory_reason`` in the report says why)."""
    started = time.perf_counter()
    target = RunTarget(
        batch_id=batch_id or stream.digest(),
        source=stream.source,
        model_name=model_name,
        model_version=str(model_version),
        model_alias=model_alias,
        role=role,
    )
    chunk_size = stream.chunk_size
    if bundle.spec.is_sequence:
        return _score_sequence_stream(
            bundle=bundle, stream=stream, store=store, target=target,
            lease_seconds=lease_seconds, max_field_chars=max_field_chars,
            commit_with=commit_with, partitions=partitions, started=started,
        )  # fmt: skip
    with (
        _long_lived_heap_frozen(),
        _claimed(
            store, bundle, target, chunk_size=chunk_size, lease_seconds=lease_seconds
        ) as ticket,
    ):
        if ticket.already_completed:
            return _report(ticket.run, already=True)
        seen = SeenIds()
        written = skipped = 0

        def jobs() -> Iterator[_StreamJob]:
            nonlocal skipped
            for number, chunk in enumerate(stream.chunks()):
                checked = check_ids(chunk, bundle.spec, seen)  # in file order, here
                if number in ticket.committed_chunks:
                    skipped += 1  # committed by an earlier, interrupted run
                    continue
                yield _StreamJob(number=number, chunk=chunk, ids=checked)

        work = partial(
            _validate_and_score,
            bundle,
            chunk_size=chunk_size,
            target=target,
            max_field_chars=max_field_chars,
        )
        with (
            progress("score", total=stream.chunk_count(), unit="chunks") as advance,
            _ChunkWriter(store, ticket) as writer,
        ):
            for write in partitions.map(work, jobs()):
                writer.submit(write)
                written += 1
                advance(1, rows=write.first_row + write.rows_in - 1)
        finished = store.complete_run(
            ticket.run.id, ticket.owner, group_by_entity=bundle.spec.is_sequence,
            score_seconds=time.perf_counter() - started, commit_with=commit_with,
        )  # fmt: skip
    report = _report(finished, already=False)
    report.chunks_written, report.chunks_skipped = written, skipped
    return report


def score_batch(
    *,
    bundle: ScoringBundle,
    batch: Batch,
    validated: ValidationResult,
    store: ResultsStore,
    model_name: str,
    model_version: str,
    model_alias: str | None,
    batch_id: str | None = None,
    chunk_size: int = 5000,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_field_chars: int = MAX_FIELD_CHARS,
    role: str = "primary",
    commit_with: Callable | None = None,
    partitions: Partitions = IN_PROCESS,
) -> ScoreReport:
    """Score a batch already in memory (sequence mode, watched SQL sources) and write it in
    chunks; quarantined rows are stored with the first chunk, not scored.

    ``partitions`` (:mod:`.partitions`): tabular chunks are scored there; in sequence mode
    the batch is split by entity (each entity's records, and its history, in one part) and
    the parts are scored there. Context features are built here over the whole batch first
    (features of a secondary entity, such as a terminal, span cards). This process writes
    every chunk, numbered as a single-process run numbers them.

    ``role="shadow"``: a second model on the same batch; scores are stored, flags are not
    (only the champion's reach the review queue), entity history is left to the primary.
    ``commit_with(session, run)`` runs inside the run's completing transaction (a
    source's file manifest or watermark)."""
    started = time.perf_counter()
    target = RunTarget(
        batch_id=batch_id or batch.content_hash,
        source=batch.source,
        model_name=model_name,
        model_version=str(model_version),
        model_alias=model_alias,
        role=role,
    )
    history: PastRecords | None = None
    with (
        _long_lived_heap_frozen(),
        _claimed(
            store, bundle, target, chunk_size=chunk_size, lease_seconds=lease_seconds
        ) as ticket,
    ):
        if ticket.already_completed:
            return _report(ticket.run, already=True)
        clean = validated.clean
        n_chunks = max(1, math.ceil(len(clean) / chunk_size))
        scored: pd.DataFrame | None = None
        if bundle.spec.is_sequence:
            # Context needs the whole batch in time order and the kept entity history, so
            # the batch is scored in one (internally batched) pass and written in chunks.
            kept = KeptHistory(store, bundle.spec, batch_id=target.batch_id, source=batch.source)
            history = kept.before(clean)
            prepared = bundle.prepare(clean, history.frame)
            scored = score_by_entity(bundle, prepared, partitions)

        written = skipped = 0

        def jobs() -> Iterator[_BatchJob]:
            nonlocal skipped
            for number in range(n_chunks):
                if number in ticket.committed_chunks:
                    skipped += 1
                    continue
                start, stop = number * chunk_size, (number + 1) * chunk_size
                first = number == 0
                chunk = clean.iloc[start:stop]
                yield _BatchJob(
                    number=number,
                    chunk=chunk,
                    snapshot=None if scored is None else prepared.features.iloc[start:stop],
                    result=None if scored is None else scored.iloc[start:stop],
                    first_row=batch.first_row_number + start,
                    row_numbers=validated.clean_row_numbers[start:stop],
                    rows_in=len(chunk) + (validated.rows_quarantined if first else 0),
                    quarantined=validated.quarantined if first else _no_quarantine(),
                    rows_quarantined=validated.rows_quarantined if first else 0,
                )

        work = partial(
            _score_job, bundle, chunk_size=chunk_size, target=target,
            max_field_chars=max_field_chars,
        )  # fmt: skip
        # Sequence mode was scored above, by entity: its chunks only need their flags.
        chunk_partitions = IN_PROCESS if scored is not None else partitions
        with (
            progress("score", total=n_chunks, unit="batches") as advance,
            _ChunkWriter(store, ticket) as writer,
        ):
            for write in chunk_partitions.map(work, jobs()):
                writer.submit(write)
                written += 1
                advance(1, flagged=len(write.flags))
        if bundle.spec.is_sequence and role != "shadow":
            kept.extend(prepared.state)
        finished = store.complete_run(
            ticket.run.id, ticket.owner, group_by_entity=bundle.spec.is_sequence,
            score_seconds=time.perf_counter() - started, commit_with=commit_with,
        )  # fmt: skip
    if validated.rows_in != finished.rows_scored + finished.rows_quarantined:
        raise RuntimeError(
            f"row accounting broken: {validated.rows_in} in, {finished.rows_scored} scored, "
            f"{finished.rows_quarantined} quarantined"
        )
    report = _report(finished, already=False)
    report.chunks_written, report.chunks_skipped = written, skipped
    if history is not None:
        report.history = history.describe()
    return report


def _score_sequence_stream(
    *,
    bundle: ScoringBundle,
    stream: BatchStream,
    store: ResultsStore,
    target: RunTarget,
    lease_seconds: float,
    max_field_chars: int,
    commit_with: Callable | None,
    partitions: Partitions,
    started: float,
) -> ScoreReport:
    """:func:`score_stream` for a sequence spec. This process validates the chunks and
    builds their context in file order (each chunk's depends on the ones before it, a
    resumed run's committed chunks included); ``partitions`` score them, a run of chunks
    at a time (the detector's windows and the flags), and this process writes them in
    order, chunk by chunk."""
    plan = plan_sequence_stream(store, bundle.spec, stream, max_field_chars=max_field_chars)
    if plan.in_memory_reason is not None:
        log.warning("%s: scored in memory, %s", stream.source, plan.in_memory_reason)
        batch = read_batch(stream.path)
        report = score_batch(
            bundle=bundle, batch=batch,
            validated=validate_batch(batch, bundle.spec, max_field_chars=max_field_chars),
            store=store, model_name=target.model_name, model_version=target.model_version,
            model_alias=target.model_alias, batch_id=target.batch_id,
            chunk_size=stream.chunk_size, lease_seconds=lease_seconds,
            max_field_chars=max_field_chars, role=target.role, commit_with=commit_with,
            partitions=partitions,
        )  # fmt: skip
        report.in_memory_reason = plan.in_memory_reason
        return report
    chunk_size = stream.chunk_size
    with (
        _long_lived_heap_frozen(),
        _claimed(
            store, bundle, target, chunk_size=chunk_size, lease_seconds=lease_seconds
        ) as ticket,
    ):
        if ticket.already_completed:
            return _report(ticket.run, already=True)
        # A shadow run leaves entity history to the primary, as score_batch does.
        parts = None
        if target.role != "shadow":
            parts = HistoryParts(store, bundle.spec, target.batch_id, target.source)
        written = skipped = 0

        def jobs() -> Iterator[SequenceGroup]:
            nonlocal skipped
            groups = carried_groups(bundle, stream, plan, max_field_chars=max_field_chars)
            for group in groups:
                if group.prepared is not None:
                    if parts is not None:
                        for span in group.chunks:
                            parts.save(span.number, group.prepared.state.iloc[span.rows])
                    group.prepared.state = None  # kept by the parts; workers need none
                group.write -= ticket.committed_chunks  # an earlier, interrupted run's
                skipped += len(group.chunks) - len(group.write)
                if group.write:
                    yield group

        work = partial(
            _score_sequence_group, bundle, chunk_size=chunk_size, target=target,
            max_field_chars=max_field_chars,
        )  # fmt: skip
        try:
            with (
                progress("score", total=plan.chunks, unit="chunks") as advance,
                _ChunkWriter(store, ticket) as writer,
            ):
                for writes in partitions.map(work, jobs()):
                    for write in writes:
                        writer.submit(write)
                        written += 1
                        advance(1, rows=write.first_row + write.rows_in - 1)
            if parts is not None:
                parts.finish()
        finally:
            if parts is not None:
                parts.close()
        finished = store.complete_run(
            ticket.run.id, ticket.owner, group_by_entity=True,
            score_seconds=time.perf_counter() - started, commit_with=commit_with,
        )  # fmt: skip
    report = _report(finished, already=False)
    report.chunks_written, report.chunks_skipped = written, skipped
    report.history = plan.history.describe()
    return report


def _score_sequence_group(
    bundle: ScoringBundle,
    group: SequenceGroup,
    *,
    chunk_size: int,
    target: RunTarget,
    max_field_chars: int,
) -> list[ChunkWrite]:
    """A run of streamed sequence chunks, their context built already, scored in one
    pass into what the store writes, chunk by chunk (a partition: it runs wherever
    ``partitions`` puts it)."""
    prepared = group.prepared
    result = None if prepared is None else bundle.score_prepared(prepared)
    writes = []
    for span in group.chunks:
        if span.number not in group.write:
            continue
        scored = len(span.validated.clean) > 0
        writes.append(
            _score_validated(
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


@dataclass
class _StreamJob:
    """A streamed chunk as read, with its ids checked (in file order) by the driver."""

    number: int
    chunk: Batch
    ids: IdCheck


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


def _validate_and_score(
    bundle: ScoringBundle,
    job: _StreamJob,
    *,
    chunk_size: int,
    target: RunTarget,
    max_field_chars: int,
) -> ChunkWrite:
    """One streamed chunk, validated and scored into what the store writes (a partition:
    it runs wherever ``partitions`` puts it)."""
    validated = validate_batch(
        job.chunk, bundle.spec, ids_checked=job.ids, max_field_chars=max_field_chars
    )
    return _score_validated(
        bundle, validated, number=job.number, first_row=job.chunk.first_row_number,
        chunk_size=chunk_size, target=target, max_field_chars=max_field_chars,
    )  # fmt: skip


def _score_validated(
    bundle: ScoringBundle,
    validated: ValidationResult,
    *,
    number: int,
    first_row: int,
    chunk_size: int,
    target: RunTarget,
    max_field_chars: int,
    snapshot: pd.DataFrame | None = None,
    result: pd.DataFrame | None = None,
) -> ChunkWrite:
    """A validated chunk into what the store writes: its clean rows scored (unless
    ``result`` holds their scores already), its quarantine carried along."""
    clean = validated.clean
    return _score_chunk(
        bundle,
        clean,
        clean if snapshot is None else snapshot,
        result,
        number=number,
        chunk_size=chunk_size,
        first_row=first_row,
        row_numbers=validated.clean_row_numbers,
        rows_in=validated.rows_in,
        quarantined=validated.quarantined,
        rows_quarantined=validated.rows_quarantined,
        target=target,
        max_field_chars=max_field_chars,
    )


def _score_job(
    bundle: ScoringBundle,
    job: _BatchJob,
    *,
    chunk_size: int,
    target: RunTarget,
    max_field_chars: int,
) -> ChunkWrite:
    """One chunk of a batch in memory into what the store writes."""
    result = job.result
    if result is None and len(job.chunk):
        result = bundle.score(job.chunk)
    return _score_chunk(
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


def _unscorable(
    chunk: pd.DataFrame, finite: np.ndarray, id_column: str, row_numbers: np.ndarray
) -> pd.DataFrame:
    positions = np.flatnonzero(~finite)
    return pd.DataFrame(
        {
            "row_number": [int(row_numbers[p]) for p in positions],
            "record_id": chunk[id_column].iloc[positions].astype(str).to_numpy(),
            "column": None,
            "value": None,
            "reason": "the model gave no finite score (values beyond float range)",
            "raw": [chunk.iloc[p].to_json(date_format="iso") for p in positions],
        },
        columns=QUARANTINE_COLUMNS,
    )


def _no_quarantine() -> pd.DataFrame:
    return pd.DataFrame(columns=QUARANTINE_COLUMNS)


def _score_chunk(
    bundle: ScoringBundle,
    chunk: pd.DataFrame,
    snapshot: pd.DataFrame,
    result: pd.DataFrame | None,
    *,
    number: int,
    chunk_size: int,
    first_row: int,
    row_numbers: np.ndarray,
    rows_in: int,
    quarantined: pd.DataFrame,
    rows_quarantined: int,
    target: RunTarget,
    max_field_chars: int,
) -> ChunkWrite:
    """Score one chunk of clean rows (unless scored already) into what the store writes.

    A row the model gives no finite score (inputs beyond what float arithmetic holds) is
    quarantined with that reason rather than stored as a score nobody can rank."""
    if result is None and len(chunk):
        result = bundle.score(chunk)
    if len(chunk):
        finite = np.isfinite(result["score"].to_numpy(dtype="float64"))
        if not finite.all():
            unscorable = _unscorable(chunk, finite, bundle.spec.id_column, row_numbers)
            quarantined = pd.concat([quarantined, unscorable], ignore_index=True)
            rows_quarantined += len(unscorable)
            keep = np.flatnonzero(finite)
            chunk, snapshot, result = chunk.iloc[keep], snapshot.iloc[keep], result.iloc[keep]
    if len(chunk):
        scores = pd.DataFrame(
            {
                "record_id": chunk[bundle.spec.id_column].to_numpy(),
                "score": result["score"].to_numpy(),
                "is_anomaly": result["is_anomaly"].to_numpy(),
            }
        )
        # A shadow run keeps scores only: its flags never reach the review queue.
        flags = (
            []
            if target.role == "shadow"
            else _flags(chunk, snapshot, result, bundle, max_field_chars)
        )
    else:
        scores = pd.DataFrame(columns=["record_id", "score", "is_anomaly"])
        flags = []
    return ChunkWrite(
        chunk_number=number,
        chunk_size=chunk_size,
        first_row=first_row,
        rows_in=rows_in,
        scores=scores,
        flags=flags,
        quarantined=quarantined,
        rows_quarantined=rows_quarantined,
        batch_id=target.batch_id,
        source=target.source,
    )


def _flags(
    chunk: pd.DataFrame,
    snapshot: pd.DataFrame,
    result: pd.DataFrame,
    bundle: ScoringBundle,
    max_field_chars: int = MAX_FIELD_CHARS,
) -> list[dict]:
    """Flag rows with a snapshot an analyst can judge offline: the record as scored, plus
    its context features in sequence mode. Long texts are cut (``_truncated`` in the
    record says which and how long they were).

    The flagged rows' snapshots are serialised in one call per chunk (not one pandas row
    at a time): the same JSON as each row's ``to_json``."""
    flagged = np.flatnonzero(result["is_anomaly"].to_numpy())
    if not len(flagged):
        return []
    records = _json_records(chunk.iloc[flagged])
    if snapshot is not chunk:
        extra_columns = [c for c in snapshot.columns if c not in set(chunk.columns)]
        for values, extra in zip(
            records, _json_records(snapshot.iloc[flagged][extra_columns]), strict=True
        ):
            values.update(extra)
    label_column = bundle.spec.label_column or ""
    ids = chunk[bundle.spec.id_column].iloc[flagged].to_numpy(dtype=object)
    entity_column = bundle.spec.entity_column
    entities = chunk[entity_column].iloc[flagged].to_numpy(dtype=object) if entity_column else None
    scores = result["score"].to_numpy(dtype="float64")[flagged]
    reasons = result["reasons"].to_numpy()[flagged]
    threshold = bundle.threshold
    out = []
    for n, values in enumerate(records):
        # The label (when a batch carries one) is for evaluation, never for the analyst
        # judging the record: keep it out of the snapshot shown in the review app.
        values.pop(label_column, None)
        out.append(
            {
                "record_id": str(ids[n]),
                "entity": str(entities[n]) if entities is not None else None,
                "score": float(scores[n]),
                "threshold": threshold,
                "record": bound_record(values, max_field_chars),
                "reasons": bound_reasons(reasons[n], max_field_chars),
            }
        )
    return out


def _json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (ISO dates, NaN as null), one serialisation per frame."""
    if not len(frame.columns):
        return [{} for _ in range(len(frame))]
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def bound_record(values: dict, limit: int) -> dict:
    """The snapshot with every text cut to ``limit`` characters; ``_truncated`` maps each
    cut field to its full length."""
    truncated = {k: len(v) for k, v in values.items() if isinstance(v, str) and len(v) > limit}
    if not truncated:
        return values
    bounded = {k: bound_text(v, limit) if k in truncated else v for k, v in values.items()}
    bounded["_truncated"] = truncated
    return bounded


def bound_reasons(reasons: Iterable[dict], limit: int) -> list[dict]:
    """Reasons quote the value: cut long values and texts the same way."""
    out = []
    for reason in reasons:
        reason = dict(reason)
        for key in ("value", "text"):
            if isinstance(reason.get(key), str) and len(reason[key]) > limit:
                reason[key] = bound_text(reason[key], limit)
                reason["truncated"] = True
        out.append(reason)
    return out


def _report(run, *, already: bool) -> ScoreReport:
    return ScoreReport(
        run_id=run.id,
        batch_id=run.batch_id,
        model=run.model_name,
        model_version=run.model_version,
        rows_in=run.rows_in,
        rows_scored=run.rows_scored,
        rows_quarantined=run.rows_quarantined,
        rows_flagged=run.rows_flagged,
        threshold=run.threshold,
        already_scored=already,
        role=run.role,
        score_seconds=run.score_seconds,
    )


def write_scores_file(store: ResultsStore, run_id: str, path: str | Path) -> Path:
    """Every record of the batch: scored ones with score and flag, quarantined ones marked."""
    path = Path(path)
    scores = store.scores_frame(run_id)
    scores["status"] = "scored"
    quarantine = store.quarantine_frame(run_id)
    if len(quarantine):
        reasons = quarantine.groupby("row_number", sort=False).agg(
            record_id=("record_id", "first"), reason=("reason", "; ".join)
        )
        rejected = pd.DataFrame(
            {
                "record_id": reasons["record_id"].to_numpy(),
                "score": np.nan,
                "is_anomaly": pd.NA,
                "status": "quarantined: " + reasons["reason"],
            }
        )
        scores = pd.concat([scores, rejected], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        scores.to_csv(path, index=False)
    else:
        scores.to_parquet(path, index=False)
    return path
