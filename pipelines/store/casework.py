"""Cases as analysts shape them: a flag attached to another case, two cases merged into
one, and what a case file needs (its merged family, the verdict history of its records,
one audit trail over all of it).

Rules that live here:

- only open cases change shape, and only by someone who holds them or while nobody
  does (the same claim and version checks as a verdict, :class:`Conflict` otherwise);
- flags move, nothing is deleted: a case left without flags, and a case merged into
  another, keeps its row with status ``merged`` and ``merged_into`` naming its survivor;
  label rows (verdicts) stay as they were written, so the survivor shows its records'
  whole verdict history, and its audit trail includes the absorbed case's entries;
- every change writes an audit entry on each case it touched, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.store.audit import record_audit
from pipelines.store.cases import CaseRepository, _compare_and_set, refresh_case_totals
from pipelines.store.database import Repository
from pipelines.store.errors import Conflict, NotFound, ReviewError, aware
from pipelines.store.models import AuditEvent, Case, Flag, Label
from pipelines.store.vocabulary import CaseStatus


class CaseworkRepository(Repository):
    """Attach, merge, and the reads a case file needs (see the module docstring)."""

    def merge_cases(
        self, survivor_id: int, absorbed_id: int, user: str, *, version: int | None = None
    ) -> dict:
        """Move every flag of ``absorbed_id`` into ``survivor_id``; the absorbed case is
        marked merged and points at the survivor. ``version`` is the survivor's version
        the caller saw (a newer one is a conflict). Returns the survivor's new version and
        how many flags moved."""
        if survivor_id == absorbed_id:
            raise ReviewError("a case cannot be merged into itself")
        with self.db.session() as session:
            survivor = _case(session, survivor_id)
            absorbed = _case(session, absorbed_id)
            if absorbed.dataset != survivor.dataset:
                raise ReviewError(
                    f"case {absorbed_id} is in data set {absorbed.dataset!r}, case "
                    f"{survivor_id} in {survivor.dataset!r}: only cases of one data set merge"
                )
            _check_open(survivor, user, version)
            _check_open(absorbed, user, None)
            moved = _move_flags(session, Flag.case_id == absorbed.id, survivor.id)
            absorbed_version = self._mark_merged(session, absorbed, survivor.id, user, "merge")
            new_version = self._flags_changed(
                session,
                survivor,
                user,
                "case.merged",
                detail={"absorbed_case": absorbed.id, "flags_moved": moved},
                first_flag_at=min(aware(survivor.first_flag_at), aware(absorbed.first_flag_at)),
            )
            return {
                "id": survivor.id,
                "version": new_version,
                "absorbed": absorbed.id,
                "absorbed_version": absorbed_version,
                "flags_moved": moved,
            }

    def attach_record(
        self, case_id: int, record_id: str, user: str, *, version: int | None = None
    ) -> dict:
        """Attach the flags of ``record_id`` (same data set, in other open cases) to the
        case. A case left without flags is marked merged into this one."""
        record_id = str(record_id).strip()
        if not record_id:
            raise ReviewError("name the flagged record to attach (its record id)")
        with self.db.session() as session:
            target = _case(session, case_id)
            _check_open(target, user, version)
            rows = session.execute(
                sa.select(Flag.id, Flag.case_id)
                .join(Case, Case.id == Flag.case_id)
                .where(Flag.record_id == record_id, Case.dataset == target.dataset)
            ).all()
            if not rows:
                raise NotFound(f"no flagged record {record_id!r} in data set {target.dataset!r}")
            elsewhere = sorted({r.case_id for r in rows if r.case_id != target.id})
            if not elsewhere:
                raise ReviewError(f"record {record_id!r} is in case {case_id} already")
            sources = [_case(session, other) for other in elsewhere]
            for source in sources:
                _check_open(source, user, None)
            moved = _move_flags(
                session,
                sa.and_(Flag.record_id == record_id, Flag.case_id.in_(elsewhere)),
                target.id,
            )
            for source in sources:
                left = session.scalar(
                    sa.select(sa.func.count()).select_from(Flag).where(Flag.case_id == source.id)
                )
                if left:
                    self._flags_changed(
                        session,
                        source,
                        user,
                        "case.flag_detached",
                        detail={"record_id": record_id, "to_case": target.id},
                    )
                else:
                    self._mark_merged(session, source, target.id, user, "attach")
            new_version = self._flags_changed(
                session,
                target,
                user,
                "case.flag_attached",
                detail={"record_id": record_id, "from_cases": elsewhere, "flags_moved": moved},
            )
            return {"id": target.id, "version": new_version, "from_cases": elsewhere}

    def record_case_file(self, case_id: int, user: str, *, saved: bool) -> None:
        """An audit entry for a case file someone opened or saved: it carries card data
        out of the app (into a report, a PDF), so who took it and when is on record."""
        with self.db.session() as session:
            _case(session, case_id)
            record_audit(
                session,
                user,
                "case.file_exported",
                "case",
                case_id,
                detail={"saved": saved},
            )

    # -- reads ----------------------------------------------------------------------------

    def merge_family(self, case_id: int) -> dict:
        """Where the case stands among merges: ``merged_into`` (its survivor, when it was
        absorbed), ``survivor`` (the end of that chain) and ``absorbed`` (every case merged
        into it, directly or through another)."""
        with self.db.session() as session:
            case = _case(session, case_id)
            survivor, seen = case, {case.id}
            while survivor.merged_into is not None and survivor.merged_into not in seen:
                seen.add(survivor.merged_into)
                survivor = _case(session, survivor.merged_into)
            absorbed: list[int] = []
            frontier = [case.id]
            while frontier:
                frontier = [
                    i
                    for i in session.scalars(
                        sa.select(Case.id).where(Case.merged_into.in_(frontier)).order_by(Case.id)
                    )
                    if i not in absorbed and i != case.id
                ]
                absorbed += frontier
            return {
                "merged_into": case.merged_into,
                "survivor": survivor.id if survivor.id != case.id else None,
                "absorbed": absorbed,
            }

    def related_open_cases(
        self, case_id: int, dataset: str, entities: Sequence[str], limit: int = 10
    ) -> list[dict]:
        """Other open cases of the same entities (candidates to merge), highest priority
        first."""
        names = [e for e in dict.fromkeys(entities) if e]
        if not names:
            return []
        with self.db.session() as session:
            return [
                {
                    "id": c.id,
                    "entity": c.entity,
                    "entity_key": c.entity_key,
                    "priority": c.priority,
                    "flag_count": c.flag_count,
                    "last_flag_at": aware(c.last_flag_at),
                }
                for c in session.scalars(
                    sa.select(Case)
                    .where(
                        Case.entity.in_(names),
                        Case.dataset == dataset,
                        Case.status == CaseStatus.OPEN,
                        Case.id != case_id,
                    )
                    .order_by(Case.priority.desc(), Case.id.desc())
                    .limit(limit)
                )
            ]

    def case_audit(self, case_ids: Sequence[int], limit: int = 500) -> list[AuditEvent]:
        """The audit entries of these cases (a case and those merged into it), newest
        first."""
        ids = [str(i) for i in dict.fromkeys(case_ids)]
        with self.db.session() as session:
            return list(
                session.scalars(
                    sa.select(AuditEvent)
                    .where(AuditEvent.entity == "case", AuditEvent.entity_id.in_(ids))
                    .order_by(AuditEvent.id.desc())
                    .limit(limit)
                )
            )

    def verdict_history(self, record_ids: Sequence[str]) -> list[dict]:
        """Every label row of these records, oldest first: verdicts, undone verdicts
        (``withdrawn``) and imported labels, with who, why and when."""
        ids = list(dict.fromkeys(record_ids))
        if not ids:
            return []
        with self.db.session() as session:
            rows = session.scalars(
                sa.select(Label).where(Label.record_id.in_(ids)).order_by(Label.known_at, Label.id)
            )
            return [
                {
                    "record_id": r.record_id,
                    "verdict": r.verdict,
                    "source": r.source,
                    "analyst": r.analyst,
                    "reason_code": r.reason_code,
                    "note": r.note,
                    "known_at": aware(r.known_at),
                    "case_id": r.case_id,
                    "model": f"{r.model_name}/{r.model_version}" if r.model_name else None,
                }
                for r in rows
            ]

    # -- the bookkeeping of a change ------------------------------------------------------

    @staticmethod
    def _mark_merged(session: Session, case: Case, survivor_id: int, user: str, via: str) -> int:
        new_version = _compare_and_set(
            session,
            case,
            status=CaseStatus.MERGED,
            merged_into=survivor_id,
            claimed_by=None,
            claim_expires_at=None,
        )
        if new_version is None:
            raise Conflict(f"case {case.id} was changed by someone else; reload it")
        record_audit(
            session,
            user,
            "case.merged_into",
            "case",
            case.id,
            before={"status": case.status, "merged_into": None, "version": case.version},
            after={
                "status": CaseStatus.MERGED.value,
                "merged_into": survivor_id,
                "version": new_version,
            },
            detail={"via": via, "flags": case.flag_count},
        )
        return new_version

    @staticmethod
    def _flags_changed(
        session: Session, case: Case, user: str, action: str, *, detail: dict, **values
    ) -> int:
        """Bump the case's version, recount its flags and audit the count before → after."""
        new_version = _compare_and_set(session, case, **values)
        if new_version is None:
            raise Conflict(f"case {case.id} was changed by someone else; reload it")
        refresh_case_totals(session, [case.id], bump_version=False)
        flag_count = session.scalar(sa.select(Case.flag_count).where(Case.id == case.id))
        record_audit(
            session,
            user,
            action,
            "case",
            case.id,
            before={"flag_count": case.flag_count, "version": case.version},
            after={"flag_count": flag_count, "version": new_version},
            detail=detail,
        )
        return new_version


def _case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}")
    return case


def _check_open(case: Case, user: str, version: int | None) -> None:
    """An open case the user may change: not held by someone else, at ``version``."""
    CaseRepository._check(case, user, version, allow_closed=False)


def _move_flags(session: Session, which, case_id: int) -> int:
    result = session.execute(
        sa.update(Flag)
        .where(which)
        .values(case_id=case_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)
