"""Scoring runs: claimed, written in chunks, completed, and read back.

A scoring run is *claimed* (a lease kept alive by heartbeats) before anything is written,
so two processes scoring the same batch never interleave: the second one is told the run
is already running. Each chunk's scores, flags, quarantined rows and its ``run_chunks``
record land in one transaction, so a killed process leaves whole chunks only and a re-run
skips what was committed. Scores go in with each backend's fast path: PostgreSQL ``COPY``,
SQLite ``executemany``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from pipelines.store.cases import attach_flags_to_cases, refresh_case_totals
from pipelines.store.database import Repository
from pipelines.store.errors import LeaseLost, RunAlreadyRunning, StoreUnavailable
from pipelines.store.models import (
    AuditEvent,
    Case,
    Flag,
    QuarantinedRow,
    RunChunk,
    RunClaim,
    Score,
    ScoringRun,
)
from pipelines.store.quarantine import quarantine_rows
from pipelines.store.vocabulary import FlagStatus, RunRole, RunStatus

SCORE_COLUMNS = ("run_id", "record_id", "score", "is_anomaly")


@dataclass
class RunClaimTicket:
    """What :meth:`RunRepository.claim_run` hands back."""

    run: ScoringRun
    owner: str
    already_completed: bool = False
    committed_chunks: set[int] = field(default_factory=set)


@dataclass
class ChunkWrite:
    """One chunk's results, written together or not at all."""

    chunk_number: int
    chunk_size: int
    first_row: int
    rows_in: int
    scores: pd.DataFrame  # record_id, score, is_anomaly
    flags: Sequence[dict]
    quarantined: pd.DataFrame  # QUARANTINE_COLUMNS
    rows_quarantined: int
    batch_id: str
    source: str


def new_owner_id() -> str:
    """host:pid:random, so a claim says which process holds it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_is_gone(owner: str) -> bool:
    """True when the claim's process ran on this host and no longer exists (killed), so
    its run is resumed at once instead of after the lease runs out."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RunRepository(Repository):
    """Scoring runs: claimed, written chunk by chunk, completed (see module docstring),
    and read back."""

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Database failures become one clear error that names the store and the step."""
        try:
            yield
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if "locked" in reason:
                reason += " (another process holds the SQLite write lock for too long)"
            raise StoreUnavailable(
                f"results store {self.db.describe_url()}: {what} failed: {reason}"
            ) from exc

    # -- claiming a run -----------------------------------------------------------------

    def claim_run(
        self,
        *,
        batch_id: str,
        source: str,
        dataset: str,
        model_name: str,
        model_version: str,
        model_alias: str | None,
        threshold: float,
        chunk_size: int,
        lease_seconds: float,
        owner: str | None = None,
        role: str = RunRole.PRIMARY,
    ) -> RunClaimTicket:
        """Find or create the run for (batch, model version) and take its lease.

        Completed: returned untouched. Held by a live process: :class:`RunAlreadyRunning`.
        Unfinished and free (a crash, a failure): claimed; chunks committed with the same
        chunk size are kept for the re-run to skip, anything else is cleared.
        """
        owner = owner or new_owner_id()
        with self._writing("claiming the scoring run"):
            run = self._get_or_create_run(
                batch_id=batch_id,
                source=source,
                dataset=dataset,
                model_name=model_name,
                model_version=str(model_version),
                model_alias=model_alias,
                threshold=threshold,
                role=role,
            )
            if (
                run.status == RunStatus.COMPLETED
                and run.role == RunRole.SHADOW
                and role == RunRole.PRIMARY
            ):
                # This version scored the batch only in shadow (it was the challenger then,
                # it is the champion now): its flags never reached the queue. Reopen the
                # run as primary; whoever reopens it scores it, once.
                self._reopen_shadow_run(run.id)
                run = self._get_or_create_run(
                    batch_id=batch_id, source=source, dataset=dataset, model_name=model_name,
                    model_version=str(model_version), model_alias=model_alias,
                    threshold=threshold, role=role,
                )  # fmt: skip
            if run.status == RunStatus.COMPLETED:
                return RunClaimTicket(run=run, owner=owner, already_completed=True)
            self._take_lease(run.id, owner, lease_seconds)
            with self.db.session() as session:
                run = session.get(ScoringRun, run.id)
                if run.status == RunStatus.COMPLETED:  # finished between our look and our claim
                    session.execute(sa.delete(RunClaim).where(RunClaim.run_id == run.id))
                    return RunClaimTicket(run=run, owner=owner, already_completed=True)
                sizes = set(
                    session.scalars(
                        sa.select(RunChunk.chunk_size).where(RunChunk.run_id == run.id).distinct()
                    )
                )
                if sizes != {chunk_size} or run.role != role:
                    # Nothing committed under this chunking (or under this role: a shadow
                    # chunk holds no flags): start the run clean.
                    _clear_run_rows(session, run.id)
                committed = set(
                    session.scalars(
                        sa.select(RunChunk.chunk_number).where(RunChunk.run_id == run.id)
                    )
                )
                run.status = RunStatus.RUNNING
                run.error = None
                run.started_at = datetime.now(UTC)
                run.finished_at = None
                run.source = source
                run.threshold = threshold
                run.model_alias = model_alias
                run.role = role
            return RunClaimTicket(run=run, owner=owner, committed_chunks=committed)

    def _reopen_shadow_run(self, run_id: str) -> bool:
        """Turn a completed shadow run into an unfinished primary run with nothing
        committed (atomic: of two processes, one reopens it; both then claim as usual)."""
        with self.db.session() as session:
            reopened = session.execute(
                sa.update(ScoringRun)
                .where(
                    ScoringRun.id == run_id,
                    ScoringRun.role == RunRole.SHADOW,
                    ScoringRun.status == RunStatus.COMPLETED,
                )
                .values(role=RunRole.PRIMARY, status=RunStatus.RUNNING, finished_at=None)
            ).rowcount
            if reopened == 1:
                _clear_run_rows(session, run_id)
        return reopened == 1

    def _get_or_create_run(self, *, batch_id: str, model_name: str, model_version: str, **fields):
        key = (
            ScoringRun.batch_id == batch_id,
            ScoringRun.model_name == model_name,
            ScoringRun.model_version == model_version,
        )
        for _ in range(2):
            with self.db.session() as session:
                run = session.scalars(sa.select(ScoringRun).where(*key)).one_or_none()
                if run is not None:
                    return run
            try:
                with self.db.session() as session:
                    run = ScoringRun(
                        id=str(uuid.uuid4()),
                        batch_id=batch_id,
                        model_name=model_name,
                        model_version=model_version,
                        status=RunStatus.RUNNING,
                        **fields,
                    )
                    session.add(run)
                return run
            except IntegrityError:
                continue  # another process created it a moment ago: read theirs
        raise RuntimeError(f"could not create or find the run for batch {batch_id}")

    def _take_lease(self, run_id: str, owner: str, lease_seconds: float) -> None:
        now = time.time()
        with self.db.session() as session:
            claim = session.get(RunClaim, run_id)
            live = claim is not None and now - claim.heartbeat_at < lease_seconds
            if live and not _owner_is_gone(claim.owner):
                raise RunAlreadyRunning(
                    f"run {run_id[:8]} is already running in {claim.owner} "
                    f"(last heartbeat {now - claim.heartbeat_at:.0f} s ago); nothing written"
                )
            stale = None if claim is None else (claim.owner, claim.generation)
        if stale is None:
            try:
                with self.db.session() as session:
                    session.add(
                        RunClaim(run_id=run_id, owner=owner, generation=1, heartbeat_at=now)
                    )
                return
            except IntegrityError as exc:
                raise RunAlreadyRunning(
                    f"run {run_id[:8]} was claimed by another process a moment ago; nothing written"
                ) from exc
        with self.db.session() as session:  # take over an abandoned run, if still abandoned
            taken = session.execute(
                sa.update(RunClaim)
                .where(RunClaim.run_id == run_id, RunClaim.generation == stale[1])
                .values(owner=owner, generation=stale[1] + 1, heartbeat_at=now)
            ).rowcount
        if taken != 1:
            raise RunAlreadyRunning(
                f"run {run_id[:8]} was taken over by another process a moment ago; nothing written"
            )

    def heartbeat(self, run_id: str, owner: str) -> bool:
        """Renew the lease; False when another process has taken the run over."""
        with self._writing("renewing the run lease"), self.db.session() as session:
            return self._renew(session, run_id, owner)

    @staticmethod
    def _renew(session: Session, run_id: str, owner: str) -> bool:
        result = session.execute(
            sa.update(RunClaim)
            .where(RunClaim.run_id == run_id, RunClaim.owner == owner)
            .values(heartbeat_at=time.time())
        )
        return result.rowcount == 1

    @contextmanager
    def keep_lease(self, run_id: str, owner: str, lease_seconds: float) -> Iterator[None]:
        """Heartbeat from a background thread while the body works (model work between
        writes can take longer than a lease)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(max(lease_seconds / 4, 0.05)):
                try:
                    if not self.heartbeat(run_id, owner):
                        return
                except StoreUnavailable:
                    continue  # the writer will report the outage with its chunk

        thread = threading.Thread(target=beat, name=f"vigil-lease-{run_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    # -- writing chunks -----------------------------------------------------------------

    def write_chunk(self, run_id: str, owner: str, chunk: ChunkWrite) -> None:
        """Scores, flags, quarantine and the chunk record in one transaction, under the
        lease; a chunk is all there or not there."""
        with self._writing(f"writing chunk {chunk.chunk_number}"), self.db.session() as session:
            if not self._renew(session, run_id, owner):
                raise LeaseLost(
                    f"run {run_id[:8]}: another process took the run over; "
                    f"chunk {chunk.chunk_number} not written"
                )
            session.add(
                RunChunk(
                    run_id=run_id,
                    chunk_number=chunk.chunk_number,
                    chunk_size=chunk.chunk_size,
                    first_row=chunk.first_row,
                    rows_in=chunk.rows_in,
                    rows_scored=len(chunk.scores),
                    rows_quarantined=chunk.rows_quarantined,
                    rows_flagged=len(chunk.flags),
                )
            )
            session.flush()
            self._bulk_scores(session, run_id, chunk.scores)
            if chunk.flags:
                session.execute(sa.insert(Flag), [{"run_id": run_id, **f} for f in chunk.flags])
            if len(chunk.quarantined):
                session.execute(
                    sa.insert(QuarantinedRow),
                    quarantine_rows(run_id, chunk.batch_id, chunk.source, chunk.quarantined),
                )

    def _bulk_scores(self, session: Session, run_id: str, scores: pd.DataFrame) -> None:
        if not len(scores):
            return
        record_ids = scores["record_id"].astype(str).to_numpy()
        values = scores["score"].astype("float64").to_numpy()
        flagged = scores["is_anomaly"].astype(bool).to_numpy()
        dbapi = session.connection().connection.driver_connection
        if self.db.is_postgres:
            statement, payload = scores_copy()
            with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(payload(run_id, record_ids, values, flagged))
            return
        rows = zip(
            [run_id] * len(record_ids),
            record_ids.tolist(),
            values.tolist(),
            flagged.tolist(),
            strict=True,
        )
        cursor = dbapi.cursor()
        try:
            cursor.executemany(
                f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) VALUES (?, ?, ?, ?)", rows
            )
        finally:
            cursor.close()

    # -- finishing ----------------------------------------------------------------------

    def complete_run(
        self,
        run_id: str,
        owner: str,
        *,
        group_by_entity: bool = False,
        score_seconds: float | None = None,
        commit_with: Callable[[Session, ScoringRun], None] | None = None,
    ) -> ScoringRun:
        """Totals come from the committed chunks and the flag rows themselves, so the run
        record cannot disagree with what was written; the lease is released. The run's
        flags join the review queue in the same transaction (``group_by_entity``: one case
        per entity, sequence mode); a shadow run's would-be flags are only counted.
        ``commit_with`` writes what must commit with the run (a file manifest, a
        watermark)."""
        with self._writing("completing the scoring run"), self.db.session() as session:
            if not self._renew(session, run_id, owner):
                raise LeaseLost(f"run {run_id[:8]}: another process took the run over")
            rows_in, rows_scored, rows_quarantined = session.execute(
                sa.select(
                    sa.func.coalesce(sa.func.sum(RunChunk.rows_in), 0),
                    sa.func.coalesce(sa.func.sum(RunChunk.rows_scored), 0),
                    sa.func.coalesce(sa.func.sum(RunChunk.rows_quarantined), 0),
                ).where(RunChunk.run_id == run_id)
            ).one()
            run = session.get(ScoringRun, run_id)
            run.rows_in = int(rows_in)
            run.rows_scored = int(rows_scored)
            run.rows_quarantined = int(rows_quarantined)
            run.score_seconds = score_seconds
            if run.role == RunRole.SHADOW:
                run.rows_flagged = int(
                    session.scalar(
                        sa.select(sa.func.count())
                        .select_from(Score)
                        .where(Score.run_id == run_id, Score.is_anomaly.is_(True))
                    )
                )
                _queue_exploration_flags(session, run, group_by_entity=group_by_entity)
            else:
                run.rows_flagged = int(
                    session.scalar(
                        sa.select(sa.func.count()).select_from(Flag).where(Flag.run_id == run_id)
                    )
                )
                attach_flags_to_cases(session, run_id, group_by_entity=group_by_entity)
            if commit_with is not None:
                commit_with(session, run)
            run.status = RunStatus.COMPLETED
            run.error = None
            run.finished_at = datetime.now(UTC)
            session.execute(sa.delete(RunClaim).where(RunClaim.run_id == run_id))
            session.add(
                AuditEvent(
                    actor="vigil",
                    action="scoring_run.completed",
                    entity="scoring_run",
                    entity_id=run_id,
                    detail={"batch_id": run.batch_id, "flagged": run.rows_flagged},
                )
            )
            return run

    def fail_claimed_run(self, run_id: str, owner: str, error: str) -> None:
        """Mark the run failed and free it for a re-run, only while this process holds it
        (a loser never overwrites the winner's run)."""
        try:
            with self.db.session() as session:
                claim = session.get(RunClaim, run_id)
                if claim is None or claim.owner != owner:
                    return
                run = session.get(ScoringRun, run_id)
                run.status = RunStatus.FAILED
                run.error = error[:4000]
                run.finished_at = datetime.now(UTC)
                session.delete(claim)
        except OperationalError:
            pass  # the store is gone: the lease expires on its own and the re-run resumes

    # -- reading ------------------------------------------------------------------------

    def list_runs(self, limit: int = 50) -> list[ScoringRun]:
        """The newest runs first."""
        with self.db.session() as session:
            return list(
                session.scalars(
                    sa.select(ScoringRun).order_by(ScoringRun.started_at.desc()).limit(limit)
                )
            )

    def get_run(self, run_id: str) -> ScoringRun | None:
        """The run with this id, or with this unambiguous id prefix (people copy short ids)."""
        with self.db.session() as session:
            run = session.get(ScoringRun, run_id)
            if run is None:
                matches = list(
                    session.scalars(sa.select(ScoringRun).where(ScoringRun.id.like(f"{run_id}%")))
                )
                run = matches[0] if len(matches) == 1 else None
            return run

    def runs_for_model(self, model_name: str, limit: int = 30) -> list[ScoringRun]:
        """A model's runs (every version), newest first."""
        with self.db.session() as session:
            return list(
                session.scalars(
                    sa.select(ScoringRun)
                    .where(ScoringRun.model_name == model_name)
                    .order_by(ScoringRun.started_at.desc())
                    .limit(limit)
                )
            )

    def list_flags(
        self, run_id: str | None = None, status: FlagStatus | str | None = None, limit: int = 100
    ) -> list[Flag]:
        """Flags, highest score first, optionally of one run or with one status."""
        with self.db.session() as session:
            query = sa.select(Flag).order_by(Flag.score.desc()).limit(limit)
            if run_id:
                query = query.where(Flag.run_id == run_id)
            if status:
                query = query.where(Flag.status == status)
            return list(session.scalars(query))

    def count(self, table: type, run_id: str | None = None) -> int:
        """Rows of a table (a mapped class), optionally those of one run."""
        with self.db.session() as session:
            query = sa.select(sa.func.count()).select_from(table)
            if run_id is not None:
                query = query.where(table.run_id == run_id)
            return int(session.scalar(query))


def scores_copy(table: str = "scores") -> tuple[str, Callable[..., memoryview]]:
    """The ``COPY`` statement of scores into ``table`` and the function that turns a
    chunk's (run id, record ids, scores, flags) into its payload."""
    return f"COPY {table} ({', '.join(SCORE_COLUMNS)}) FROM STDIN (FORMAT csv)", _scores_csv


def _scores_csv(
    run_id: str, record_ids: np.ndarray, values: np.ndarray, flagged: np.ndarray
) -> memoryview:
    """The scores as CSV for ``COPY``, written by Arrow in C++ (about 10x pandas'
    ``to_csv``). Doubles are written in their shortest round-trip form, so PostgreSQL
    reads back the very same float; strings are quoted, so any id survives."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n = len(record_ids)
    table = pa.table(
        {
            "run_id": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([run_id])
            ),
            "record_id": pa.array(record_ids, type=pa.string()),
            "score": pa.array(values, type=pa.float64()),
            "is_anomaly": pa.array(flagged, type=pa.bool_()),
        }
    )
    out = pa.BufferOutputStream()
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False))
    return memoryview(out.getvalue())


def _clear_run_rows(session: Session, run_id: str) -> None:
    """Delete what a run wrote, so it can be scored again from nothing. Flags it had put
    in the queue (a shadow run's exploration lane) leave their cases, whose counts and
    scores are recounted from the flags that remain: the queue never shows a case's
    count or top score from flags that no longer exist."""
    held = sa.select(Flag.case_id).where(Flag.run_id == run_id, Flag.case_id.is_not(None))
    case_ids = list(session.scalars(held.distinct()))
    for table in (Score, Flag, QuarantinedRow, RunChunk):
        session.execute(sa.delete(table).where(table.run_id == run_id))
    if not case_ids:
        return
    refresh_case_totals(session, case_ids, bump_version=True)
    emptied = sa.select(Flag.case_id).where(Flag.case_id.in_(case_ids))
    session.execute(
        sa.update(Case)
        .where(Case.id.in_(case_ids), Case.id.not_in(emptied))
        .values(flag_count=0, max_score=0.0, priority=0.0, version=Case.version + 1)
        .execution_options(synchronize_session=False)
    )


def _queue_exploration_flags(session: Session, run: ScoringRun, *, group_by_entity: bool) -> int:
    """A shadow run's exploration flags (a sample of its flags, kept by the scorer) join
    the queue, less the records a primary run of the same batch flagged: what remains is
    the challenger's own catches, so verdicts reach them too."""
    primary_flags = (
        sa.select(Flag.record_id)
        .join(ScoringRun, ScoringRun.id == Flag.run_id)
        .where(
            ScoringRun.batch_id == run.batch_id,
            ScoringRun.role == RunRole.PRIMARY,
            ScoringRun.dataset == run.dataset,
        )
    )
    session.execute(sa.delete(Flag).where(Flag.run_id == run.id, Flag.record_id.in_(primary_flags)))
    return attach_flags_to_cases(session, run.id, group_by_entity=group_by_entity)
