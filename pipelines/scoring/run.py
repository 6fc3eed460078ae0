"""The one skeleton of a scoring run, whatever the batch is and wherever it is scored.

A run is claimed in the store before anything is written (a second process scoring the
same batch is told it is already running); each chunk's scores, flags and quarantined
rows are one transaction with its chunk record, so a killed run leaves whole chunks and
the re-run skips them. Idempotent on (batch id, model version): a completed run is never
written twice.

:func:`score_run` is that skeleton: freeze the long-lived heap, claim the run, let the
chunk source plan the chunks still to write (skipping committed ones), score them on the
run's :class:`~pipelines.scoring.partitions.Partitions`, write them in order through the
:class:`~pipelines.scoring.writer.ChunkWriter`, complete the run and report. What differs
between a streamed file, a streamed sequence file with carried context, a batch held in
memory (and Dask partitions of any of them) is a :class:`ChunkSource`
(:mod:`pipelines.scoring.chunks`).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from pipelines.intake.ingest import MAX_FIELD_CHARS
from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.registry import ModelRef
from pipelines.progress import progress
from pipelines.scoring.partitions import IN_PROCESS, Partitions
from pipelines.scoring.writer import ChunkWriter
from pipelines.store import ResultsStore
from pipelines.store.runs import ChunkWrite, RunClaimTicket
from pipelines.store.vocabulary import RunRole

#: Default lease of a claimed run: a process silent for this long is presumed dead.
DEFAULT_LEASE_SECONDS = 60.0

PRIMARY = RunRole.PRIMARY
SHADOW = RunRole.SHADOW


@dataclass(frozen=True)
class RunRequest:
    """One run to score: which model version scores the batch, in which role, and how
    the run is held and written.

    ``role``: ``primary`` (flags reach the review queue, entity history is kept) or
    ``shadow`` (a second model on the same batch: scores kept as promotion evidence,
    no flags, entity history left to the primary). ``commit_with(session, run)`` runs
    inside the run's completing transaction (a source's file manifest or watermark).
    ``partitions``: where chunks are scored (this process, or a Dask cluster)."""

    model: ModelRef
    batch_id: str | None = None
    role: str = PRIMARY
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    max_field_chars: int = MAX_FIELD_CHARS
    partitions: Partitions = IN_PROCESS
    commit_with: Callable | None = None

    def as_shadow(self, model: ModelRef, batch_id: str | None = None) -> RunRequest:
        """The same batch scored by another model in shadow (nothing commits with it)."""
        return replace(
            self, model=model, batch_id=batch_id or self.batch_id, role=SHADOW, commit_with=None
        )


@dataclass(frozen=True)
class RunTarget:
    """Which run to claim: the batch and the model version scoring it."""

    batch_id: str
    source: str
    model_name: str
    model_version: str
    model_alias: str | None
    role: str = PRIMARY


@dataclass
class RunReport:
    """What one scoring run wrote (or found written already)."""

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
    role: str = PRIMARY
    score_seconds: float | None = None
    #: A streamed sequence file scored in memory instead, and why.
    in_memory_reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChunkPlan:
    """What a claimed run scores: ``jobs`` (the chunks not committed yet, counting the
    skipped ones in ``skipped`` as they are passed over), ``work`` turning one job into
    the chunk writes the store takes (a module-level function: it may run on a Dask
    worker), and the ``partitions`` it runs on."""

    work: Callable[[Any], list[ChunkWrite]]
    partitions: Partitions
    total: int | None
    unit: str = "chunks"
    jobs: Iterable[Any] = ()
    skipped: int = 0
    #: Sequence mode: the kept entity history given as context, in words.
    history: str | None = None
    #: The progress line's fields for a written chunk.
    shown: Callable[[ChunkWrite], dict] = field(default=lambda write: {})


class ChunkSource(Protocol):
    """One way a batch is scored: where its chunks come from and what a run of it keeps.

    ``plan`` is entered once the run is claimed (and not completed): it yields the
    :class:`ChunkPlan`, and on leaving without error it keeps what the run keeps besides
    its chunks (entity history), before the run completes."""

    #: Where the batch was read from (the run's source).
    source: str
    chunk_size: int
    #: A streamed sequence file scored in memory instead, and why (None otherwise).
    in_memory_reason: str | None

    def digest(self) -> str:
        """The batch id when the request names none (a hash of the content)."""
        ...

    def plan(
        self, store: ResultsStore, bundle: ScoringBundle, run: RunRequest, target: RunTarget,
        ticket: RunClaimTicket,
    ) -> AbstractContextManager[ChunkPlan]: ...  # fmt: skip

    def check(self, report: RunReport) -> None:
        """Raise when the completed run's counts do not add up to the batch read."""
        ...


def score_run(
    store: ResultsStore,
    bundle: ScoringBundle,
    chunks: ChunkSource,
    run: RunRequest,
    *,
    started: float | None = None,
) -> RunReport:
    """Score one batch into the store: the run skeleton every way of scoring shares.

    ``started``: when the run's work began (``time.perf_counter()``), if before this call
    (reading a file ahead to plan it); the run's ``score_seconds`` count from there."""
    started = time.perf_counter() if started is None else started
    target = RunTarget(
        batch_id=run.batch_id or chunks.digest(),
        source=chunks.source,
        model_name=run.model.name,
        model_version=str(run.model.version),
        model_alias=run.model.alias,
        role=run.role,
    )
    with (
        _long_lived_heap_frozen(),
        _claimed(
            store, bundle, target, chunk_size=chunks.chunk_size, lease_seconds=run.lease_seconds
        ) as ticket,
    ):
        if ticket.already_completed:
            report = _report(ticket.run, already=True)
            report.in_memory_reason = chunks.in_memory_reason
            return report
        written = 0
        with chunks.plan(store, bundle, run, target, ticket) as plan:
            with (
                progress("score", total=plan.total, unit=plan.unit) as advance,
                ChunkWriter(store, ticket) as writer,
            ):
                for writes in plan.partitions.map(plan.work, plan.jobs):
                    for write in writes:
                        writer.submit(write)
                        written += 1
                        advance(1, **plan.shown(write))
        finished = store.complete_run(
            ticket.run.id, ticket.owner, group_by_entity=bundle.spec.is_sequence,
            score_seconds=time.perf_counter() - started, commit_with=run.commit_with,
        )  # fmt: skip
    report = _report(finished, already=False)
    chunks.check(report)
    report.chunks_written, report.chunks_skipped = written, plan.skipped
    report.history = plan.history
    report.in_memory_reason = chunks.in_memory_reason
    return report


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
    triggering full collections, and each walked the whole heap. Nothing is freed later
    than before for objects made during scoring; the frozen ones are unfrozen when the
    outermost run ends."""
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


def _report(run, *, already: bool) -> RunReport:
    return RunReport(
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
