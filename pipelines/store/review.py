"""The review side of the store: cases, the queue, claims, verdicts, labels, the ledger.

Kept apart from the scoring side (``db.py``) so the two can grow without stepping on each
other; :class:`~pipelines.store.db.ResultsStore` inherits both. Rules that live here:

- one open case per entity (sequence mode) or record (tabular); new flags join it, made
  race-safe by a partial unique index and ``INSERT .. ON CONFLICT DO NOTHING``;
- every change to a case is a compare-and-set on its ``version``: a change made against an
  older version raises :class:`Conflict` instead of silently overwriting;
- verdicts are immutable label rows (the latest per record counts); every action a person
  takes is an audit entry with ``before`` and ``after``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pipelines.store.accounts import AccountStoreMixin
from pipelines.store.errors import Conflict, NotFound, ReviewError, aware, now_utc
from pipelines.store.models import (
    Case,
    Decision,
    EntityHistorySegment,
    Flag,
    Label,
    Score,
    ScoringRun,
)

VERDICTS = ("fraud", "not_fraud", "unsure")
#: Verdicts that count as a label for training and precision; ``unsure`` and an undo do not.
COUNTING_VERDICTS = ("fraud", "not_fraud")
LABEL_SOURCES = ("review", "import", "chargeback")
REASON_CODES = {
    "": "(none)",
    "confirmed_by_customer": "Confirmed with the customer",
    "card_testing": "Card testing pattern",
    "account_takeover": "Account takeover",
    "stolen_card": "Lost or stolen card",
    "merchant_compromise": "Compromised merchant / terminal",
    "known_customer_pattern": "Known customer behaviour",
    "travel": "Customer travelling",
    "false_positive_model": "Model false positive",
    "other": "Other (see note)",
}


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


@dataclass
class QueueFilters:
    """What the queue shows; every field is optional and they combine with AND."""

    status: str = "open"  # open | closed | all
    model: str | None = None  # model name, or NAME/VERSION
    run_id: str | None = None
    dataset: str | None = None
    assignee: str | None = None  # a user name, or "none" for unclaimed
    min_priority: float | None = None
    max_priority: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    reason: str | None = None  # a feature named in a flag's reasons
    verdict: str | None = None
    entity: str | None = None


SORTS = {
    # name: (column, descending)
    "priority": ("priority", True),
    "newest": ("last_flag_at", True),
    "oldest": ("last_flag_at", False),
    "entity": ("entity_key", False),
}


@dataclass
class QueuePage:
    items: list[dict]
    next_cursor: str | None
    counts: dict[str, int]
    sort: str
    filters: QueueFilters = field(default_factory=QueueFilters)


class ReviewStoreMixin(AccountStoreMixin):
    """Mixed into ``ResultsStore``; relies on its ``session()`` and ``engine``. Users,
    tokens, sessions and the audit trail come from :class:`AccountStoreMixin`."""

    # -- cases: flags join them -----------------------------------------------------------

    def _insert_ignore(self, session: Session):
        dialect = session.get_bind().dialect.name
        return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Case.__table__)

    def attach_flags_to_cases(self, session: Session, run_id: str, *, group_by_entity: bool) -> int:
        """Put a run's flags into open cases (created as needed); returns cases touched.

        Runs inside the caller's transaction (the run's completion), so a run's flags
        reach the queue exactly when the run completes. Three set-based statements, none
        of which brings the flags into this process: memory does not grow with the
        run's flags (184k flags on a 10M-row run were ~100 MB of rows and dicts here)."""
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
                sa.literal("open", sa.String),
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
            self._insert_ignore(session)
            .from_select(columns, new_cases)
            .on_conflict_do_nothing(
                index_elements=["dataset", "entity_key"], index_where=sa.text("status = 'open'")
            )
        )
        # 2. Each flag finds its open case through that index. (Written as a join,
        #    UPDATE ... FROM, PostgreSQL chose a nested loop over fresh, unanalysed tables:
        #    256 s for 18k flags against 0.9 s for this form.)
        session.execute(
            sa.update(Flag)
            .where(waiting)
            .values(
                case_id=sa.select(Case.id)
                .where(Case.dataset == run.dataset, Case.status == "open", Case.entity_key == key)
                .scalar_subquery()
            )
            .execution_options(synchronize_session=False)
        )
        # 3. The touched cases' aggregates, from all their flags (earlier runs' too).
        touched = sa.select(Flag.case_id).where(Flag.run_id == run_id)
        return self._refresh_cases(session, touched, bump_version=True)

    @staticmethod
    def _refresh_cases(session: Session, case_ids, *, bump_version: bool) -> int:
        """Recompute the aggregates of the cases ``case_ids`` (ids, or a SELECT of them)
        from their flags in one grouped pass; returns how many cases were updated.

        (One correlated subquery per aggregate cost ~0.6 s per 1,000 cases on
        PostgreSQL: 12 s of a 1M-row run's completion with 18k flags.)"""
        totals = (
            sa.select(
                Flag.case_id.label("case_id"),
                sa.func.count(Flag.id).label("flag_count"),
                sa.func.max(Flag.score).label("max_score"),
                sa.func.max(
                    sa.case((Flag.threshold > 0, Flag.score / Flag.threshold), else_=Flag.score)
                ).label("priority"),
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

    # -- the queue ------------------------------------------------------------------------

    def _filtered_cases(self, filters: QueueFilters) -> sa.Select:
        query = sa.select(Case)
        if filters.status in ("open", "closed"):
            query = query.where(Case.status == filters.status)
        if filters.dataset:
            query = query.where(Case.dataset == filters.dataset)
        if filters.assignee == "none":
            query = query.where(
                sa.or_(Case.claimed_by.is_(None), Case.claim_expires_at < now_utc())
            )
        elif filters.assignee:
            query = query.where(
                Case.claimed_by == filters.assignee, Case.claim_expires_at >= now_utc()
            )
        if filters.min_priority is not None:
            query = query.where(Case.priority >= filters.min_priority)
        if filters.max_priority is not None:
            query = query.where(Case.priority <= filters.max_priority)
        if filters.since is not None:
            query = query.where(Case.last_flag_at >= filters.since)
        if filters.until is not None:
            query = query.where(Case.last_flag_at < filters.until)
        if filters.verdict:
            query = query.where(Case.verdict == filters.verdict)
        if filters.entity:
            query = query.where(Case.entity == filters.entity)
        if filters.model or filters.run_id or filters.reason:
            flag_query = sa.select(Flag.id).where(Flag.case_id == Case.id)
            if filters.run_id:
                flag_query = flag_query.where(Flag.run_id == filters.run_id)
            if filters.model:
                name, _, version = filters.model.partition("/")
                flag_query = flag_query.join(ScoringRun, ScoringRun.id == Flag.run_id).where(
                    ScoringRun.model_name == name
                )
                if version:
                    flag_query = flag_query.where(ScoringRun.model_version == version)
            if filters.reason:
                # Reasons are JSON; a text match on the feature name is portable and exact
                # enough ('"feature": "amount"').
                flag_query = flag_query.where(
                    sa.cast(Flag.reasons, sa.Text).like(f'%"feature": "{filters.reason}"%')
                )
            query = query.where(sa.exists(flag_query))
        return query

    def queue_page(
        self,
        filters: QueueFilters | None = None,
        *,
        sort: str = "priority",
        cursor: str | None = None,
        limit: int = 50,
        with_counts: bool = True,
    ) -> QueuePage:
        """One page of queue items, keyset-paginated on (sort column, id): the cost of a
        page does not grow with how deep it is. ``with_counts=False`` leaves the counts per
        status out (they scan every matching case; callers may cache :meth:`queue_counts`)."""
        filters = filters or QueueFilters()
        if sort not in SORTS:
            raise ReviewError(f"sort must be one of {', '.join(SORTS)}")
        column_name, descending = SORTS[sort]
        column = getattr(Case, column_name)
        query = self._filtered_cases(filters)
        if cursor:
            value, case_id = _decode_cursor(cursor, column_name)
            if descending:
                query = query.where(
                    sa.or_(column < value, sa.and_(column == value, Case.id < case_id))
                )
            else:
                query = query.where(
                    sa.or_(column > value, sa.and_(column == value, Case.id > case_id))
                )
        order = (column.desc(), Case.id.desc()) if descending else (column.asc(), Case.id.asc())
        query = query.order_by(*order).limit(limit + 1)
        with self.session() as session:
            cases = list(session.scalars(query))
            more = len(cases) > limit
            cases = cases[:limit]
            items = self._queue_items(session, cases)
            counts = self._status_counts(session, filters) if with_counts else {}
        next_cursor = None
        if more and cases:
            last = cases[-1]
            next_cursor = _encode_cursor(getattr(last, column_name), last.id)
        return QueuePage(
            items=items, next_cursor=next_cursor, counts=counts, sort=sort, filters=filters
        )

    def queue_counts(self, filters: QueueFilters | None = None) -> dict[str, int]:
        """Items per status (open, claimed, closed) under the filters."""
        with self.session() as session:
            return self._status_counts(session, filters or QueueFilters())

    def _status_counts(self, session: Session, filters: QueueFilters) -> dict[str, int]:
        """Counts per status under the same filters (status itself aside)."""
        counts = {"open": 0, "closed": 0}
        base = self._filtered_cases(QueueFilters(**{**filters.__dict__, "status": "all"}))
        sub = base.with_only_columns(Case.status).subquery()
        for status, n in session.execute(
            sa.select(sub.c.status, sa.func.count()).group_by(sub.c.status)
        ):
            counts[status] = int(n)
        counts["claimed"] = int(
            session.scalar(
                sa.select(sa.func.count()).select_from(
                    base.where(Case.status == "open", Case.claim_expires_at >= now_utc())
                    .with_only_columns(Case.id)
                    .subquery()
                )
            )
        )
        return counts

    def _queue_items(self, session: Session, cases: Sequence[Case]) -> list[dict]:
        if not cases:
            return []
        ids = [c.id for c in cases]
        flags = session.execute(
            sa.select(
                Flag.case_id,
                Flag.record_id,
                Flag.reasons,
                Flag.score,
                Flag.threshold,
                ScoringRun.model_name,
                ScoringRun.model_version,
            )
            .join(ScoringRun, ScoringRun.id == Flag.run_id)
            .where(Flag.case_id.in_(ids))
            .order_by(Flag.score.desc())
        ).all()
        by_case: dict[int, list] = {}
        for row in flags:
            by_case.setdefault(row.case_id, []).append(row)
        now = now_utc()
        items = []
        for case in cases:
            rows = by_case.get(case.id, [])
            records = list(dict.fromkeys(r.record_id for r in rows))
            models = sorted({f"{r.model_name}/{r.model_version}" for r in rows})
            top = rows[0] if rows else None
            claim_live = case.claimed_by and aware(case.claim_expires_at) >= now
            items.append(
                {
                    "id": case.id,
                    "dataset": case.dataset,
                    "entity": case.entity,
                    "entity_key": case.entity_key,
                    "record_ids": records,
                    "score": case.max_score,
                    "threshold": top.threshold if top else None,
                    "priority": case.priority,
                    "flag_count": case.flag_count,
                    "models": models,
                    "top_reasons": [r.get("feature") for r in (top.reasons or [])[:3]]
                    if top
                    else [],
                    "status": case.status,
                    "verdict": case.verdict,
                    "claimed_by": case.claimed_by if claim_live else None,
                    "claim_expires_at": aware(case.claim_expires_at) if claim_live else None,
                    "last_flag_at": aware(case.last_flag_at),
                    "version": case.version,
                }
            )
        return items

    # -- one case -------------------------------------------------------------------------

    def get_case(self, case_id: int) -> dict:
        """The case with its flags (record, reasons, model, run) and its records' labels."""
        with self.session() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            flags = session.execute(
                sa.select(
                    Flag, ScoringRun.model_name, ScoringRun.model_version, ScoringRun.model_alias
                )
                .join(ScoringRun, ScoringRun.id == Flag.run_id)
                .where(Flag.case_id == case_id)
                .order_by(Flag.score.desc())
            ).all()
            record_ids = list(dict.fromkeys(f.Flag.record_id for f in flags))
            labels = self._latest_labels(session, record_ids)
            item = self._queue_items(session, [case])[0]
            item["flags"] = [
                {
                    "id": f.Flag.id,
                    "record_id": f.Flag.record_id,
                    "entity": f.Flag.entity,
                    "score": f.Flag.score,
                    "threshold": f.Flag.threshold,
                    "record": f.Flag.record,
                    "reasons": f.Flag.reasons or [],
                    "run_id": f.Flag.run_id,
                    "model_name": f.model_name,
                    "model_version": f.model_version,
                    "model_alias": f.model_alias,
                    "created_at": aware(f.Flag.created_at),
                    "label": labels.get(f.Flag.record_id),
                }
                for f in flags
            ]
            item["opened_at"] = aware(case.opened_at)
            item["closed_at"] = aware(case.closed_at)
            return item

    def case_for_record(self, record_id: str) -> int | None:
        with self.session() as session:
            return session.scalar(
                sa.select(Flag.case_id)
                .where(Flag.record_id == record_id, Flag.case_id.is_not(None))
                .order_by(Flag.id.desc())
                .limit(1)
            )

    @staticmethod
    def _latest_labels(session: Session, record_ids: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for start in range(0, len(record_ids), 1000):
            part = record_ids[start : start + 1000]
            for label in session.scalars(
                sa.select(Label).where(Label.record_id.in_(part)).order_by(Label.id)
            ):
                out[label.record_id] = {
                    "verdict": label.verdict,
                    "analyst": label.analyst,
                    "reason_code": label.reason_code,
                    "note": label.note,
                    "known_at": aware(label.known_at),
                    "source": label.source,
                }
        return {k: v for k, v in out.items() if v["verdict"] != "withdrawn"}

    def entity_timeline(
        self,
        dataset: str,
        entity: str,
        *,
        id_column: str | None = None,
        entity_column: str | None = None,
        limit: int = 50,
    ) -> list[dict]:
        """The entity's recent records, newest first: flagged ones from the flags table
        (with score, model and latest verdict), and in sequence mode the other records kept
        as entity history (joined with their scores where the store has them)."""
        with self.session() as session:
            flag_rows = session.execute(
                sa.select(Flag, ScoringRun.model_name, ScoringRun.model_version)
                .join(ScoringRun, ScoringRun.id == Flag.run_id)
                .where(ScoringRun.dataset == dataset, Flag.entity == entity)
                .order_by(Flag.id.desc())
                .limit(limit)
            ).all()
            events: dict[str, dict] = {}
            for row in flag_rows:
                flag = row.Flag
                if flag.record_id in events:
                    events[flag.record_id]["models"].append(f"{row.model_name}/{row.model_version}")
                    continue
                events[flag.record_id] = {
                    "record_id": flag.record_id,
                    "record": flag.record,
                    "score": flag.score,
                    "threshold": flag.threshold,
                    "flagged": True,
                    "case_id": flag.case_id,
                    "models": [f"{row.model_name}/{row.model_version}"],
                }
            history = (
                self._entity_history_rows(session, dataset, entity, id_column, entity_column, limit)
                if id_column and entity_column
                else []
            )
            if history:
                scores = dict(
                    session.execute(
                        sa.select(Score.record_id, Score.score)
                        .join(ScoringRun, ScoringRun.id == Score.run_id)
                        .where(
                            ScoringRun.dataset == dataset,
                            Score.record_id.in_([h["record_id"] for h in history]),
                        )
                    ).all()
                )
                for h in history:
                    if h["record_id"] not in events:
                        events[h["record_id"]] = {
                            "record_id": h["record_id"],
                            "record": h["record"],
                            "score": scores.get(h["record_id"]),
                            "threshold": None,
                            "flagged": False,
                            "case_id": None,
                            "models": [],
                        }
            labels = self._latest_labels(session, list(events))
        for record_id, event_ in events.items():
            event_["label"] = labels.get(record_id)
        return list(events.values())

    @staticmethod
    def _entity_history_rows(
        session: Session,
        dataset: str,
        entity: str,
        id_column: str,
        entity_column: str,
        limit: int,
    ) -> list[dict]:
        """Sequence mode: the entity's records in the newest kept history segments."""
        import io

        segments = session.execute(
            sa.select(EntityHistorySegment.payload)
            .where(EntityHistorySegment.dataset == dataset)
            .order_by(EntityHistorySegment.last_time.desc())
            .limit(8)
        ).all()
        found: list[dict] = []
        for (payload,) in segments:
            frame = pd.read_parquet(io.BytesIO(payload))
            if id_column not in frame.columns or entity_column not in frame.columns:
                continue
            rows = frame[frame[entity_column].astype(str) == entity]
            for _, row in rows.iloc[::-1].iterrows():
                found.append({"record_id": str(row[id_column]), "record": _jsonable(row.to_dict())})
            if len(found) >= limit:
                break
        return found[:limit]

    # -- claims ---------------------------------------------------------------------------

    def claim_next(
        self, user: str, *, lock: timedelta, filters: QueueFilters | None = None
    ) -> dict | None:
        """Hand the user the highest-priority open item nobody holds, locked to them.
        An item the user already holds comes first (a reload does not skip work)."""
        filters = filters or QueueFilters()
        for _ in range(20):  # lost races retry on the next candidate
            with self.session() as session:
                stamp = now_utc()
                mine = session.scalar(
                    self._filtered_cases(QueueFilters(**{**filters.__dict__, "status": "open"}))
                    .where(Case.claimed_by == user, Case.claim_expires_at >= stamp)
                    .order_by(Case.priority.desc(), Case.id.desc())
                    .limit(1)
                )
                if mine is not None:
                    return {"id": mine.id, "version": mine.version}
                candidate = session.scalar(
                    self._filtered_cases(QueueFilters(**{**filters.__dict__, "status": "open"}))
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
        with self.session() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            self._check(case, user, version, allow_closed=False)
            new_version = self._set_claim(session, case, user, now_utc() + lock, actor=user)
            if new_version is None:
                raise Conflict(f"case {case_id} changed meanwhile; reload it")
            return new_version

    def release(self, case_id: int, user: str) -> None:
        with self.session() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            if case.claimed_by != user:
                return
            before = {"claimed_by": case.claimed_by}
            session.execute(
                sa.update(Case)
                .where(Case.id == case_id, Case.version == case.version)
                .values(claimed_by=None, claim_expires_at=None, version=case.version + 1)
                .execution_options(synchronize_session=False)
            )
            self._audit(
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
        new_version = case.version + 1
        result = session.execute(
            sa.update(Case)
            .where(Case.id == case.id, Case.version == case.version)
            .values(claimed_by=user, claim_expires_at=until, version=new_version)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return None
        self._audit(
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
        if version is not None and version != case.version:
            raise Conflict(
                f"case {case.id} was changed by someone else since you opened it "
                f"(version {version}, now {case.version}); reload to see the change"
            )
        if _claim_live(case) and case.claimed_by != user:
            until = aware(case.claim_expires_at).strftime("%H:%M UTC")
            raise Conflict(f"case {case.id} is claimed by {case.claimed_by} until {until}")
        if not allow_closed and case.status != "open":
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
        with self.session() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            if case.status == "closed" and version is None:
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
            new_version = case.version + 1
            result = session.execute(
                sa.update(Case)
                .where(Case.id == case_id, Case.version == case.version)
                .values(
                    status="closed",
                    verdict=verdict,
                    closed_at=now_utc(),
                    claimed_by=None,
                    claim_expires_at=None,
                    version=new_version,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
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
                        source="review",
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
                sa.update(Flag).where(Flag.case_id == case_id).values(status="reviewed")
            )
            after = {"status": "closed", "verdict": verdict, "version": new_version}
            self._audit(
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
        with self.session() as session:
            case = session.get(Case, case_id)
            if case is None:
                raise NotFound(f"no case {case_id}")
            if case.status != "closed":
                raise Conflict(f"case {case_id} has no verdict to undo")
            self._check(case, user, version, allow_closed=True)
            other_open = session.scalar(
                sa.select(Case.id).where(
                    Case.dataset == case.dataset,
                    Case.entity_key == case.entity_key,
                    Case.status == "open",
                )
            )
            if other_open is not None:
                raise Conflict(
                    f"case {other_open} is now open for the same "
                    f"{'entity' if case.entity_key.startswith('entity:') else 'record'}; "
                    "give the new verdict there"
                )
            before = {"status": case.status, "verdict": case.verdict, "version": case.version}
            new_version = case.version + 1
            result = session.execute(
                sa.update(Case)
                .where(Case.id == case_id, Case.version == case.version)
                .values(
                    status="open",
                    verdict=None,
                    closed_at=None,
                    claimed_by=user,
                    claim_expires_at=now_utc() + timedelta(minutes=15),
                    version=new_version,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
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
                        verdict="withdrawn",
                        source="review",
                        analyst=user,
                        known_at=stamp,
                        case_id=case_id,
                        note="verdict undone",
                    )
                )
            session.execute(sa.update(Flag).where(Flag.case_id == case_id).values(status="open"))
            after = {"status": "open", "verdict": None, "version": new_version}
            self._audit(session, user, "case.undo", "case", case_id, before=before, after=after)
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

    # -- labels ---------------------------------------------------------------------------

    def labels_frame(self, *, known_before: datetime | None = None) -> pd.DataFrame:
        """Every label row (the latest per record counts), as a DataFrame."""
        query = sa.select(
            Label.id.label("label_id"),
            Label.record_id,
            Label.dataset,
            Label.entity,
            Label.verdict,
            Label.source,
            Label.reason_code,
            Label.note,
            Label.analyst,
            Label.known_at,
            Label.case_id,
            Label.model_name,
            Label.model_version,
            Label.score,
            Label.threshold,
        ).order_by(Label.id)
        if known_before is not None:
            query = query.where(Label.known_at < known_before)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["known_at"] = pd.to_datetime(frame["known_at"], utc=True)
        return frame

    # -- decision ledger ----------------------------------------------------------------

    def record_decision(
        self,
        *,
        model_name: str,
        kind: str,
        decision: str,
        actor: str,
        from_version: str | None = None,
        to_version: str | None = None,
        before: dict | None = None,
        after: dict | None = None,
        evidence: dict | None = None,
        policy: dict | None = None,
        approved_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Append to the decision ledger (and the audit log); returns the entry id."""
        with self.session() as session:
            entry = Decision(
                model_name=model_name,
                kind=kind,
                decision=decision,
                actor=actor,
                from_version=from_version,
                to_version=to_version,
                before=before,
                after=after,
                evidence=evidence or {},
                policy=policy or {},
                approved_by=approved_by,
                reason=reason,
            )
            session.add(entry)
            session.flush()
            self._audit(
                session,
                actor,
                f"{kind}.{decision}",
                "model",
                model_name,
                before=before,
                after=after,
                detail={"decision_id": entry.id, "reason": reason},
            )
            return entry.id

    def decisions(self, model_name: str | None = None, limit: int = 100) -> list[Decision]:
        with self.session() as session:
            query = sa.select(Decision).order_by(Decision.id.desc()).limit(limit)
            if model_name:
                query = query.where(Decision.model_name == model_name)
            return list(session.scalars(query))

    # -- runs and quality ------------------------------------------------------------------

    def score_values(self, run_id: str) -> pd.Series:
        with self.engine.connect() as conn:
            return pd.read_sql(sa.select(Score.score).where(Score.run_id == run_id), conn)["score"]

    def runs_for_model(self, model_name: str, limit: int = 30) -> list[ScoringRun]:
        with self.session() as session:
            return list(
                session.scalars(
                    sa.select(ScoringRun)
                    .where(ScoringRun.model_name == model_name)
                    .order_by(ScoringRun.started_at.desc())
                    .limit(limit)
                )
            )

    def quality_by_model(self) -> list[dict]:
        """Per model version: flags, reviewed flags, precision among reviewed, unsure rate,
        label coverage, median time to decision, open backlog by age. What promotion reads."""
        with self.engine.connect() as conn:
            flags = pd.read_sql(
                sa.select(
                    Flag.id.label("flag_id"),
                    Flag.record_id,
                    Flag.created_at,
                    Flag.case_id,
                    ScoringRun.model_name,
                    ScoringRun.model_version,
                ).join(ScoringRun, ScoringRun.id == Flag.run_id),
                conn,
            )
            labels = pd.read_sql(
                sa.select(Label.id, Label.record_id, Label.verdict, Label.known_at).order_by(
                    Label.id
                ),
                conn,
            )
            cases = pd.read_sql(sa.select(Case.id.label("case_id"), Case.status), conn)
        if flags.empty:
            return []
        latest = labels.drop_duplicates("record_id", keep="last")
        latest = latest[latest["verdict"] != "withdrawn"]
        merged = flags.merge(latest, on="record_id", how="left").merge(
            cases, on="case_id", how="left"
        )
        merged["created_at"] = pd.to_datetime(merged["created_at"], utc=True)
        merged["known_at"] = pd.to_datetime(merged["known_at"], utc=True)
        now = pd.Timestamp.now(tz="UTC")
        out = []
        for (name, version), group in merged.groupby(["model_name", "model_version"]):
            reviewed = group[group["verdict"].notna()]
            fraud = int((reviewed["verdict"] == "fraud").sum())
            not_fraud = int((reviewed["verdict"] == "not_fraud").sum())
            unsure = int((reviewed["verdict"] == "unsure").sum())
            decided = fraud + not_fraud
            hours = (reviewed["known_at"] - reviewed["created_at"]).dt.total_seconds() / 3600
            open_ = group[(group["verdict"].isna()) & (group["status"] == "open")]
            age_days = (now - open_["created_at"]).dt.total_seconds() / 86400
            out.append(
                {
                    "model_name": name,
                    "model_version": str(version),
                    "flags": len(group),
                    "reviewed": len(reviewed),
                    "fraud": fraud,
                    "not_fraud": not_fraud,
                    "unsure": unsure,
                    "precision": fraud / decided if decided else None,
                    "unsure_rate": unsure / len(reviewed) if len(reviewed) else None,
                    "label_coverage": decided / len(group),
                    "median_hours_to_decision": float(hours.median()) if len(hours) else None,
                    "backlog_by_age": {
                        "<1d": int((age_days < 1).sum()),
                        "1-3d": int(((age_days >= 1) & (age_days < 3)).sum()),
                        "3-7d": int(((age_days >= 3) & (age_days < 7)).sum()),
                        ">=7d": int((age_days >= 7).sum()),
                    },
                }
            )
        return out


def _claim_live(case: Case) -> bool:
    return bool(case.claimed_by) and aware(case.claim_expires_at) >= now_utc()


def _encode_cursor(value: object, case_id: int) -> str:
    if isinstance(value, datetime):
        value = aware(value).isoformat()
    return f"{value}|{case_id}"


def _decode_cursor(cursor: str, column_name: str) -> tuple[object, int]:
    try:
        raw, case_id = cursor.rsplit("|", 1)
        if column_name in ("priority",):
            return float(raw), int(case_id)
        if column_name == "last_flag_at":
            return datetime.fromisoformat(raw), int(case_id)
        return raw, int(case_id)
    except ValueError as exc:
        raise ReviewError(f"bad page cursor {cursor!r}") from exc


def _jsonable(values: dict) -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, pd.Timestamp):
            out[key] = value.isoformat()
        elif hasattr(value, "item"):
            out[key] = value.item()
        else:
            out[key] = value
        if isinstance(out[key], float) and out[key] != out[key]:
            out[key] = None
    return out
