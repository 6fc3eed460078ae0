"""Streamed sequence scoring: what each chunk carries over from the chunks before it.

A record's context features look back at most the context's ``history`` (every key they
group by: the card, a merchant spanning cards), and a sequence detector's window holds
the entity's last ``sequence_length - 1`` records within its own horizon. So a file read
in time order can be scored chunk by chunk, each chunk against the *carried tail*: the
kept entity history plus the earlier chunks' records that a later record can still reach.
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

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from detectors.context import time_to_seconds
from pipelines.intake.ingest import MAX_FIELD_CHARS, SeenIds, ValidationResult, validate_batch
from pipelines.intake.spec import DatasetSpec
from pipelines.intake.stream import BatchStream
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle
from pipelines.scoring.history import (
    EntityHistory,
    context_signature,
    load_history_before,
    prune_entity_history,
)
from pipelines.store import ResultsStore


@dataclass
class SequencePlan:
    """What the read-ahead found: whether the file streams, and its kept history."""

    history: EntityHistory
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
                history=_no_history(),
                in_memory_reason=(
                    f"not in time order across chunks: chunk {number} holds a record "
                    f"{newest - first:,.0f} s earlier than one of an earlier chunk"
                ),
                chunks=chunks,
            )
        newest = max(newest, float(np.max(seconds)))
        if start is None:
            start = first
            preliminary = load_history_before(store, spec, start)
            if preliminary.frame is not None:
                kept_ids = set(preliminary.frame[spec.id_column])
        if kept_ids:
            ids = clean[spec.id_column]
            repeated.update(ids[ids.isin(kept_ids)])
    if start is None:
        return SequencePlan(history=_no_history(), chunks=chunks)
    history = (
        load_history_before(store, spec, start, exclude_ids=repeated) if repeated else preliminary
    )
    return SequencePlan(history=history, chunks=chunks)


def _no_history() -> EntityHistory:
    return EntityHistory(frame=None, rows=0, gap_seconds=None)


class CarriedTail:
    """What later records can still reach of the records before them: ``frame``, the
    rows within the bundle's look-back of the newest record so far, as the kept history
    frames them (id, raw columns, features), for context; and ``windows``, each entity's
    last records (the detector's model input), for a sequence detector's windows.

    Records must come in time order (none earlier than one already carried): then a row
    pruned here is out of reach of every later record."""

    def __init__(self, bundle: ScoringBundle, history: pd.DataFrame | None) -> None:
        self._bundle = bundle
        self._time = bundle.spec.time_column
        self._reach = float(bundle.look_back_seconds() or 0.0)
        detector = getattr(bundle, "detector", None)
        horizon = getattr(detector, "history_seconds", None)
        self._window_reach = None if horizon is None else float(horizon)
        self.frame: pd.DataFrame | None = None
        self.windows: pd.DataFrame | None = None
        self._seconds = np.empty(0)
        if history is not None and len(history):
            self.frame = history.reset_index(drop=True)
            self._seconds = time_to_seconds(self.frame[self._time], self._time)
            self.windows = bundle.window_history(self.frame, self.frame)

    @property
    def rows(self) -> int:
        return 0 if self.frame is None else len(self.frame)

    def prepare(self, clean: pd.DataFrame) -> PreparedRecords:
        """Records' features in the context of the carried rows, which then carry them
        (``history`` is left to :meth:`window_history`)."""
        prepared = self._bundle.prepare(clean, self.frame)
        prepared.history = None
        self._carry(prepared.state)
        return prepared

    def _carry(self, state: pd.DataFrame) -> None:
        if not len(state):
            return
        seconds = time_to_seconds(state[self._time], self._time)
        if self.frame is None:
            frame, all_seconds = state.reset_index(drop=True), seconds
        else:
            frame = pd.concat([self.frame, state], ignore_index=True)
            all_seconds = np.concatenate([self._seconds, seconds])
        keep = all_seconds >= float(all_seconds.max()) - self._reach
        if not keep.all():
            frame = frame.loc[keep].reset_index(drop=True)
            all_seconds = all_seconds[keep]
        self.frame, self._seconds = frame, all_seconds

    def window_history(self, features: pd.DataFrame) -> pd.DataFrame | None:
        """The carried window rows of ``features``' entities (None: no windows), then
        carry ``features``' own records for the next ones."""
        bundle = self._bundle
        windows = None if self.windows is None else bundle.window_history(self.windows, features)
        carried = features if self.windows is None else pd.concat([self.windows, features])
        self.windows = bundle.window_history(carried, carried)
        if self.windows is not None and self._window_reach is not None and len(self.windows):
            seconds = time_to_seconds(self.windows[self._time], self._time)
            self.windows = self.windows.loc[seconds >= seconds.max() - self._window_reach]
        return windows


@dataclass
class HistoryParts:
    """A streamed batch's records kept as entity history, one segment per chunk, saved
    in a background thread while later chunks are scored.

    Each part is keyed ``<batch id>/chunk<N>`` and saved once: a re-run after an
    interruption recomputes every chunk's records (it must, to carry them) and saves the
    parts that are missing. Together the parts hold what the whole-batch path keeps as
    its one segment; the prune after the run drops parts as it drops segments."""

    store: ResultsStore
    spec: DatasetSpec
    batch_id: str
    source: str
    _existing: set = field(default_factory=set)
    _pool: ThreadPoolExecutor | None = None
    _pending: deque[Future] = field(default_factory=deque)

    #: Parts queued for saving at most (each holds a chunk's records until saved).
    MAX_PENDING: ClassVar[int] = 8

    def __post_init__(self) -> None:
        prefix = f"{self.batch_id}/chunk"
        self._existing = {
            batch for _, batch, _ in self.store.history_segment_ids(self.spec.name)
            if batch.startswith(prefix)
        }  # fmt: skip
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-history")
        self._signature = context_signature(self.spec)

    def key(self, number: int) -> str:
        return f"{self.batch_id}/chunk{number}"

    def save(self, number: int, state: pd.DataFrame) -> None:
        """Keep chunk ``number``'s records (unless kept by an earlier attempt); queued
        behind at most ``MAX_PENDING`` parts, so scoring does not wait on each insert."""
        if not len(state) or self.key(number) in self._existing:
            return
        self._pending.append(self._pool.submit(self._save, number, state))
        while len(self._pending) > self.MAX_PENDING or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()  # re-raises a failed save

    def _save(self, number: int, state: pd.DataFrame) -> None:
        config = self.spec.context
        self.store.save_history(
            dataset=self.spec.name,
            batch_id=self.key(number),
            source=self.source,
            signature=self._signature,
            frame=state,
            seconds=time_to_seconds(state[config.time_column]),
        )

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def finish(self) -> None:
        """Wait for the last part, then prune what no batch can need any more."""
        self.wait()
        prune_entity_history(self.store, self.spec)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


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
    tail = CarriedTail(bundle, plan.history.frame)
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
            yield _prepared_group(tail, group)
            group, rows = [], 0
    if group:
        yield _prepared_group(tail, group)


def _prepared_group(tail: CarriedTail, group: list[ChunkSpan]) -> SequenceGroup:
    cleans = [span.validated.clean for span in group if len(span.validated.clean)]
    prepared = None
    if cleans:
        clean = pd.concat(cleans, ignore_index=True) if len(cleans) > 1 else cleans[0]
        prepared = tail.prepare(clean)
        prepared.history = tail.window_history(prepared.features)
    return SequenceGroup(chunks=group, prepared=prepared, write={s.number for s in group})
