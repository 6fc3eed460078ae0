"""Streamed sequence scoring: the plan of a file, and its chunks in runs, each given its
context against the chunks before it.

A record's context features look back at most the context's ``history`` (every key they
group by: the card, a merchant spanning cards), and a sequence detector's window holds
the entity's last ``sequence_length - 1`` records within its own horizon. So a file read
in time order can be scored chunk by chunk, each chunk against the *carried tail*
(:class:`~pipelines.scoring.history.CarriedHistory`): the kept entity history plus the
earlier chunks' records that a later record can still reach.
Scores, flags and the saved history then equal the whole batch scored in memory
(:func:`pipelines.scoring.batch.score_batch`), with memory bounded by what the horizon
holds rather than by the file.

Before anything is written, :func:`plan_sequence_stream` reads the file once: it finds
the batch's first clean record (where the kept history ends), checks that no chunk holds
a record earlier than one of an earlier chunk (else the file is scored in memory, as a
streamed chunk would lack part of its past), and collects which kept records the batch
repeats (left out of the history, as the whole-batch path leaves them out).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from detectors.context import time_to_seconds
from pipelines.intake.ingest import MAX_FIELD_CHARS, SeenIds, ValidationResult, validate_batch
from pipelines.intake.spec import DatasetSpec
from pipelines.intake.stream import BatchStream
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle
from pipelines.scoring.history import CarriedHistory, KeptHistory, PastRecords
from pipelines.store import ResultsStore


@dataclass
class SequencePlan:
    """What the read-ahead found: whether the file streams, and its kept history."""

    history: PastRecords
    #: None: the file streams; else why it is scored in memory instead.
    in_memory_reason: str | None = None
    chunks: int = 0


def plan_sequence_stream(
    store: ResultsStore,
    spec: DatasetSpec,
    stream: BatchStream,
    *,
    max_field_chars: int = MAX_FIELD_CHARS,
) -> SequencePlan:
    """Read the file once (validated as the scoring pass validates it) to decide how it
    is scored and with which kept history; writes nothing."""
    config = spec.context
    kept = KeptHistory(store, spec)
    seen = SeenIds()
    newest = -np.inf
    start: float | None = None
    kept_ids: set = set()
    repeated: set = set()
    chunks = 0
    for number, chunk in enumerate(stream.chunks()):
        chunks += 1
        clean = validate_batch(chunk, spec, seen_ids=seen, max_field_chars=max_field_chars).clean
        if not len(clean):
            continue
        seconds = time_to_seconds(clean[config.time_column], config.time_column)
        first = float(np.min(seconds))
        if first < newest:
            return SequencePlan(
                history=PastRecords.none(),
                in_memory_reason=(
                    f"not in time order across chunks: chunk {number} holds a record "
                    f"{newest - first:,.0f} s earlier than one of an earlier chunk"
                ),
                chunks=chunks,
            )
        newest = max(newest, float(np.max(seconds)))
        if start is None:
            start = first
            preliminary = kept.before_time(start)
            if preliminary.frame is not None:
                kept_ids = set(preliminary.frame[spec.id_column])
        if kept_ids:
            ids = clean[spec.id_column]
            repeated.update(ids[ids.isin(kept_ids)])
    if start is None:
        return SequencePlan(history=PastRecords.none(), chunks=chunks)
    history = kept.before_time(start, exclude_ids=repeated) if repeated else preliminary
    return SequencePlan(history=history, chunks=chunks)


@dataclass
class ChunkSpan:
    """One chunk of a :class:`SequenceGroup`: its validation and its clean rows' place
    among the group's prepared rows."""

    number: int
    first_row: int
    validated: ValidationResult
    rows: slice


@dataclass
class SequenceGroup:
    """A run of consecutive chunks given their context together and scored together
    (their records share the carried window rows: one ``prepared.history`` for all).

    ``prepared``: the chunks' clean rows in file order (None: none clean); ``write``:
    the chunk numbers still to write (a resumed run's committed ones are not)."""

    chunks: list[ChunkSpan]
    prepared: PreparedRecords | None
    write: set[int] = field(default_factory=set)


def carried_groups(
    bundle: ScoringBundle,
    stream: BatchStream,
    plan: SequencePlan,
    *,
    max_field_chars: int = MAX_FIELD_CHARS,
) -> Iterator[SequenceGroup]:
    """Every chunk of the file in order, validated (ids checked across chunks) and
    prepared against the carried tail, which then carries it on; in runs of chunks.

    A run holds at least as many rows as the tail: each context build also reads the
    tail, and each scoring pass encodes the carried window rows of its entities, so
    chunk by chunk the work would grow by the tail's size per chunk (the horizon's
    records, often many chunks' worth). Memory stays bounded by the horizon."""
    seen = SeenIds()
    tail = CarriedHistory(bundle, plan.history.frame)
    group: list[ChunkSpan] = []
    rows = 0
    for number, chunk in enumerate(stream.chunks()):
        validated = validate_batch(
            chunk, bundle.spec, seen_ids=seen, max_field_chars=max_field_chars
        )
        clean_rows = len(validated.clean)
        group.append(
            ChunkSpan(number, chunk.first_row_number, validated, slice(rows, rows + clean_rows))
        )
        rows += clean_rows
        if rows >= max(stream.chunk_size, tail.rows):
            yield _prepared_group(bundle, tail, group)
            group, rows = [], 0
    if group:
        yield _prepared_group(bundle, tail, group)


def _prepared_group(
    bundle: ScoringBundle, tail: CarriedHistory, group: list[ChunkSpan]
) -> SequenceGroup:
    """The group's clean rows given their context against the tail, which then carries
    them; ``prepared.history`` holds the carried window rows of their entities."""
    cleans = [span.validated.clean for span in group if len(span.validated.clean)]
    prepared = None
    if cleans:
        clean = pd.concat(cleans, ignore_index=True) if len(cleans) > 1 else cleans[0]
        prepared = bundle.prepare(clean, tail.before(clean).frame)
        tail.extend(prepared.state)
        prepared.history = tail.windows_for(prepared.features)
    return SequenceGroup(chunks=group, prepared=prepared, write={s.number for s in group})
