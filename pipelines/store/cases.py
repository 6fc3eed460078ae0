"""Cases: what changes a queue item. Flags join cases, analysts claim them and give
verdicts, a verdict can be undone.

Rules that live here:

- one open case per entity (sequence mode) or record (tabular); new flags join it, made
  race-safe by a partial unique index and ``INSERT .. ON CONFLICT DO NOTHING``;
- every change to a case is a compare-and-set on its ``version``: a change made against an
  older version raises :class:`Conflict` instead of silently overwriting;
- a verdict is a label row per record (immutable; the latest per record counts), and every
  action a person takes is an audit entry with ``before`` and ``after``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.store.audit import record_audit
from pipelines.store.database import Repository, insert_ignoring_conflicts
from pipelines.store.errors import Conflict, NotFound, ReviewError, aware, now_utc
from pipelines.store.models import Case, Flag, Label, ScoringRun
from pipelines.store.queue import QueueFilters, filtered_cases, flag_priority
from pipelines.store.vocabulary import (
    REASON_CODES,
    WITHDRAWN,
    CaseStatus,
    FlagStatus,
    LabelSource,
    Verdict,
)

#: The verdicts an analyst may give.
VERDICTS = tuple(verdict.value for verdict in Verdict)


def case_key_expression(group_by_entity: bool):
    """A flag's case key, in SQL: ``entity:<entity>`` when flags group by entity and it
    has one, else ``record:<record id>`` (``Case.entity_key``)."""
    if not group_by_entity:
        return sa.literal("record:") + Flag.record_id
    return sa.case(
        (
            sa.and_(Flag.entity.is_not(None), Flag.entity != ""),
            sa.literal("entity:") + Flag.entity,
        ),
        else_=sa.literal("record:") + Flag.record_id,
    )


def attach_flags_to_cases(session: Session, run_id: str, *, group_by_entity: bool) -> int:
    """Put a run's flags into open cases (created as needed); returns cases touched.

    Runs inside the caller's transaction (the run's completion), so a run's flags
    reach the queue exactly when the run completes. Three set-based statements, none
    of which brings the flags into this process: memory does not grow with the
    run's flags."""
    waiting = sa.and_(Flag.run_id == run_id, Flag.case_id.is_(None))
    if session.scalar(sa.select(Flag.id).where(waiting).limit(1)) is None:
        return 0  # none, or attached already: the run's flags attach all at once
    run = session.get(ScoringRun, run_id)
    key = case_key_expression(group_by_entity)
    stamp = now_utc()
    # 1. An open case for every key that has none (the partial unique index on
    #    (dataset, entity_key) makes this race-safe against a concurrent run).
    new_cases = (
        sa.select(
            sa.literal(run.dataset, sa.String),
            key,
            sa.func.max(Flag.entity),
            sa.literal(CaseStatus.OPEN.value, sa.String),
            sa.literal(0.0, sa.Float),
            sa.literal(0.0, sa.Float),
            sa.literal(0, sa.Integer),
            sa.func.min(Flag.created_at),
            sa.literal(stamp, Case.last_flag_at.type),
            sa.literal(1, sa.Integer),
            sa.literal(stamp, Case.opened_at.type),
        )
        .where(waiting)
        .group_by(key)
    )
    columns = [
        "dataset", "entity_key", "entity", "status", "priority", "max_score",
        "flag_count", "first_flag_at", "last_flag_at", "version", "opened_at",
    ]  # fmt: skip
    session.execute(
        insert_ignoring_conflicts(session, Case.__table__)
        .from_select(columns, new_cases)
        .on_conflict_do_nothing(
            index_elements=["dataset", "entity_key"], index_where=sa.text("status = 'open'")
        )
    )
    # 2. Each flag finds its open case through that index. (Written as a join,
    #    UPDATE ... FROM, PostgreSQL chooses a nested loop over fresh, unanalysed tables,
    #    orders of magnitude slower than this form.)
    session.execute(
        sa.update(Flag)
        .where(waiting)
        .values(
            case_id=sa.select(Case.id)
            .where(
                Case.dataset == run.dataset, Case.status == CaseStatus.OPEN, Case.entity_key == key
            )
            .scalar_subquery()
        )
        .execution_options(synchronize_session=False)
    )
    # 3. The touched cases' aggregates, from all their flags (earlier runs' too).
    touched = sa.select(Flag.case_id).where(Flag.run_id == run_id)
    return refresh_case_totals(session, touched, bump_version=True)


def refresh_case_totals(session: Session, case_ids, *, bump_version: bool) -> int:
    """Recompute the aggregates of the cases ``case_ids`` (ids, or a SELECT of them)
    from their flags in one grouped pass; returns how many cases were updated.

    (One correlated subquery per aggregate costs a query per case and aggregate: on
    PostgreSQL it was most of a large run's completion.)"""
    totals = (
        sa.select(
            Flag.case_id.label("case_id"),
            sa.func.count(Flag.id).label("flag_count"),
            sa.func.max(Flag.score).label("max_score"),
            sa.func.max(flag_priority()).label("priority"),
            sa.func.max(Flag.created_at).label("last_flag_at"),
        )
        .where(Flag.case_id.in_(case_ids))
        .group_by(Flag.case_id)
        .subquery()
    )
    values = {
        "flag_count": totals.c.flag_count,
        "max_score": totals.c.max_score,
        "priority": totals.c.priority,
        "last_flag_at": totals.c.last_flag_at,
    }
    if bump_version:
        values["version"] = Case.version + 1
    result = session.execute(
        sa.update(Case)
        .where(Case.id == totals.c.case_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)


class CaseRepository(Repository):
    """Claims and verdicts on cases; flags join cases when their run completes
    (:func:`attach_flags_to_cases`, in the run's own transaction)."""

    def claim_next(
        self, user: str, *, lock: timedelta, filters: QueueFilters | None = None
    ) -> dict | None:
        """Hand the user the highest-priority open item nobody holds, locked to them.
        An item the user already holds comes first (a reload does not skip work)."""
        filters = filters or QueueFilters()
        open_items = QueueFilters(**{**filters.__dict__, "status": CaseStatus.OPEN.value})
        for _ in range(20):  # lost races retry on the next candidate
            with self.db.session() as session:
                stamp = now_utc()
                mine = session.scalar(
                    filtered_cases(open_items)
                    .where(Case.claimed_by == user, Case.claim_expires_at >= stamp)
                    .order_by(Case.priority.desc(), Case.id.desc())
                    .limit(1)
                )
                if mine is not None:
                    return {"id": mine.id, "version": mine.version}
                candidate = session.scalar(
                    filtered_cases(open_items)
                    .where(sa.or_(Case.claimed_by.is_(None), Case.claim_expires_at < stamp))
                    .order_by(Case.priority.desc(), Case.id.desc())
                    .limit(1)
                )
                if candidate is None:
                    return None
                new_version = self._set_claim(session, candidate, user, stamp + lock, actor=user)
            if new_version is not None:
                return {"id": candidate.id, "version": new_version}
        return None

    def claim(self, case_id: int, user: str, *, lock: timedelta, version: int | None = None) -> int:
        """Claim one item; returns its new version. Refused if someone else holds it."""
        with self.db.session() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            self._check(case, user, version, allow_closed=False)
            new_version = self._set_claim(session, case, user, now_utc() + lock, actor=user)
            if new_version is None:
                raise Conflict(f"case {case_id} changed meanwhile; reload it")
            return new_version

    def release(self, case_id: int, user: str) -> None:
        with self.db.session() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            if case.claimed_by != user:
                return
            before = {"claimed_by": case.claimed_by}
            _compare_and_set(session, case, claimed_by=None, claim_expires_at=None)
            record_audit(
                session,
                user,
                "case.released",
                "case",
                case_id,
                before=before,
                after={"claimed_by": None},
            )

    def _set_claim(
        self, session: Session, case: Case, user: str, until: datetime, *, actor: str
    ) -> int | None:
        """Compare-and-set the claim; the new version, or None when the case moved on."""
        new_version = _compare_and_set(session, case, claimed_by=user, claim_expires_at=until)
        if new_version is None:
            return None
        record_audit(
            session,
            actor,
            "case.claimed",
            "case",
            case.id,
            before={"claimed_by": case.claimed_by if _claim_live(case) else None},
            after={"claimed_by": user, "until": until.isoformat()},
        )
        return new_version

    @staticmethod
    def _check(case: Case, user: str, version: int | None, *, allow_closed: bool) -> None:
        if case.status == CaseStatus.MERGED:
            raise Conflict(f"case {case.id} was merged into case {case.merged_into}; open that one")
        if version is not None and version != case.version:
            raise Conflict(
                f"case {case.id} was changed by someone else since you opened it "
                f"(version {version}, now {case.version}); reload to see the change"
            )
        if _claim_live(case) and case.claimed_by != user:
            until = aware(case.claim_expires_at).strftime("%H:%M UTC")
            raise Conflict(f"case {case.id} is claimed by {case.claimed_by} until {until}")
        if not allow_closed and case.status != CaseStatus.OPEN:
            raise Conflict(f"case {case.id} is already closed ({case.verdict})")

    # -- verdicts -------------------------------------------------------------------------

    def give_verdict(
        self,
        case_id: int,
        user: str,
        verdict: str,
        *,
        version: int | None = None,
        reason_code: str | None = None,
        note: str | None = None,
        overrides: dict[str, str] | None = None,
        action: str = "case.verdict",
    ) -> dict:
        """Record a verdict on every record of the case (``overrides`` gives single records
        another verdict) and close it. A closed case takes a new verdict only against its
        current ``version`` (a deliberate change, never a second analyst's blind click)."""
        if verdict not in VERDICTS:
            raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}")
        overrides = overrides or {}
        for record_id, other in overrides.items():
            if other not in VERDICTS:
                raise ReviewError(f"verdict for record {record_id} must be one of {VERDICTS}")
        if reason_code and reason_code not in REASON_CODES:
            raise ReviewError(f"unknown reason code {reason_code!r}")
        with self.db.session() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            if case.status == CaseStatus.CLOSED and version is None:
                raise Conflict(
                    f"case {case_id} already has the verdict {case.verdict!r}; "
                    "reload it to change the verdict"
                )
            self._check(case, user, version, allow_closed=True)
            flags = session.execute(
                sa.select(Flag, ScoringRun.model_name, ScoringRun.model_version)
                .join(ScoringRun, ScoringRun.id == Flag.run_id)
                .where(Flag.case_id == case_id)
                .order_by(Flag.score.desc())
            ).all()
            unknown = set(overrides) - {f.Flag.record_id for f in flags}
            if unknown:
                raise ReviewError(f"records not in case {case_id}: {', '.join(sorted(unknown))}")
            before = {"status": case.status, "verdict": case.verdict, "version": case.version}
            new_version = _compare_and_set(
                session,
                case,
                status=CaseStatus.CLOSED,
                verdict=verdict,
                closed_at=now_utc(),
                claimed_by=None,
                claim_expires_at=None,
            )
            if new_version is None:
                raise Conflict(f"case {case_id} was changed by someone else; reload it")
            stamp = now_utc()
            seen: set[str] = set()
            written = {}
            for row in flags:  # one label per record: the highest-scoring flag describes it
                flag = row.Flag
                if flag.record_id in seen:
                    continue
                seen.add(flag.record_id)
                record_verdict = overrides.get(flag.record_id, verdict)
                written[flag.record_id] = record_verdict
                session.add(
                    Label(
                        record_id=flag.record_id,
                        dataset=case.dataset,
                        entity=flag.entity,
                        verdict=record_verdict,
                        source=LabelSource.REVIEW,
                        reason_code=reason_code or None,
                        note=note or None,
                        analyst=user,
                        known_at=stamp,
                        case_id=case_id,
                        flag_id=flag.id,
                        model_name=row.model_name,
                        model_version=row.model_version,
                        score=flag.score,
                        threshold=flag.threshold,
                    )
                )
            session.execute(
                sa.update(Flag).where(Flag.case_id == case_id).values(status=FlagStatus.REVIEWED)
            )
            after = {"status": CaseStatus.CLOSED, "verdict": verdict, "version": new_version}
            record_audit(
                session,
                user,
                action,
                "case",
                case_id,
                before=before,
                after=after,
                detail={"records": written, "reason_code": reason_code, "note": note},
            )
            return {"id": case_id, "version": new_version, "labels": written}

    def undo_verdict(self, case_id: int, user: str, *, version: int | None = None) -> dict:
        """Take back a case's verdict: appends ``withdrawn`` label rows (history is kept)
        and reopens the case, claimed by the user who undid it."""
        with self.db.session() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            if case.status != CaseStatus.CLOSED:
                raise Conflict(f"case {case_id} has no verdict to undo")
            self._check(case, user, version, allow_closed=True)
            other_open = session.scalar(
                sa.select(Case.id).where(
                    Case.dataset == case.dataset,
                    Case.entity_key == case.entity_key,
                    Case.status == CaseStatus.OPEN,
                )
            )
            if other_open is not None:
                raise Conflict(
                    f"case {other_open} is now open for the same "
                    f"{'entity' if case.entity_key.startswith('entity:') else 'record'}; "
                    "give the new verdict there"
                )
            before = {"status": case.status, "verdict": case.verdict, "version": case.version}
            new_version = _compare_and_set(
                session,
                case,
                status=CaseStatus.OPEN,
                verdict=None,
                closed_at=None,
                claimed_by=user,
                claim_expires_at=now_utc() + timedelta(minutes=15),
            )
            if new_version is None:
                raise Conflict(f"case {case_id} was changed by someone else; reload it")
            stamp = now_utc()
            records = session.execute(
                sa.select(Flag.record_id, Flag.entity).where(Flag.case_id == case_id).distinct()
            ).all()
            for record_id, entity in records:
                session.add(
                    Label(
                        record_id=record_id,
                        dataset=case.dataset,
                        entity=entity,
                        verdict=WITHDRAWN,
                        source=LabelSource.REVIEW,
                        analyst=user,
                        known_at=stamp,
                        case_id=case_id,
                        note="verdict undone",
                    )
                )
            session.execute(
                sa.update(Flag).where(Flag.case_id == case_id).values(status=FlagStatus.OPEN)
            )
            after = {"status": CaseStatus.OPEN, "verdict": None, "version": new_version}
            record_audit(session, user, "case.undo", "case", case_id, before=before, after=after)
            return {"id": case_id, "version": new_version}

    def bulk_verdict(
        self,
        case_ids: Iterable[int],
        user: str,
        verdict: str,
        *,
        overrides: dict[int, str] | None = None,
        reason_code: str | None = None,
        note: str | None = None,
    ) -> dict:
        """The same verdict on many items (``overrides`` gives single items another).

        Side effects, per item, exactly as a single verdict: label rows for every record,
        the case closed and released, one audit entry each (action ``case.bulk_verdict``).
        Items that are closed, or held by someone else, are skipped and reported, never
        overwritten; the rest are applied.
        """
        overrides = overrides or {}
        done, skipped = [], {}
        for case_id in dict.fromkeys(case_ids):
            try:
                self.give_verdict(
                    case_id,
                    user,
                    overrides.get(case_id, verdict),
                    reason_code=reason_code,
                    note=note,
                    action="case.bulk_verdict",
                )
                done.append(case_id)
            except ReviewError as exc:
                skipped[case_id] = str(exc)
        return {"applied": done, "skipped": skipped}


def _claim_live(case: Case) -> bool:
    return bool(case.claimed_by) and aware(case.claim_expires_at) >= now_utc()


def _compare_and_set(session: Session, case: Case, **values) -> int | None:
    """Change the case only if it is still at the version it was read at, bumping the
    version; the new version, or None when someone else changed it first."""
    new_version = case.version + 1
    result = session.execute(
        sa.update(Case)
        .where(Case.id == case.id, Case.version == case.version)
        .values(**values, version=new_version)
        .execution_options(synchronize_session=False)
    )
    return new_version if result.rowcount == 1 else None
