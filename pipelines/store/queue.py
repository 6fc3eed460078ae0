"""The review queue as analysts see it: filtered, sorted pages of cases, counts per
status, one case with its flags and labels, an entity's timeline.

Pages are keyset-paginated on (sort column, id), so the cost of a page does not grow with
how deep it is.

A case's priority is its flags' highest :func:`flag_priority`: how far the score is over
the threshold, times the amount at stake where the data set's spec weighs the queue by
amount (the flag's snapshot then carries ``_payment.stake``). Each queue item shows the
payment of the flag that sets its priority, and why it ranks where it does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.store.database import Repository
from pipelines.store.errors import NotFound, ReviewError, aware, now_utc
from pipelines.store.history import entity_history_rows
from pipelines.store.labels import latest_labels
from pipelines.store.models import Case, EntityTag, Flag, Score, ScoringRun
from pipelines.store.vocabulary import CaseStatus

#: Where a flag's snapshot keeps its payment (``pipelines.intake.display.PAYMENT_KEY``).
PAYMENT_KEY = "_payment"


def flag_score_ratio():
    """How far a flag's score is over its threshold, in SQL (> 1: over the line)."""
    return sa.case((Flag.threshold > 0, Flag.score / Flag.threshold), else_=Flag.score)


def flag_stake():
    """The amount at stake a flag's snapshot carries (NULL when the spec does not weigh
    the queue by amount, or the snapshot is gone), in SQL."""
    return Flag.record[(PAYMENT_KEY, "stake")].as_float()


def flag_priority():
    """A flag's priority, in SQL: its score ratio, times its amount at stake when it has
    one. Without amounts this is the score ratio alone, as it always was."""
    return flag_score_ratio() * sa.func.coalesce(flag_stake(), 1.0)


@dataclass
class QueueFilters:
    """What the queue shows; every field is optional and they combine with AND."""

    status: str = CaseStatus.OPEN.value  # open | closed | all
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
    tag: str | None = None  # a tag on the case's entity


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


def filtered_cases(filters: QueueFilters) -> sa.Select:
    """The cases the filters select (a SELECT of :class:`Case`, not yet ordered)."""
    query = sa.select(Case)
    if filters.status in (CaseStatus.OPEN, CaseStatus.CLOSED):
        query = query.where(Case.status == filters.status)
    if filters.dataset:
        query = query.where(Case.dataset == filters.dataset)
    if filters.assignee == "none":
        query = query.where(sa.or_(Case.claimed_by.is_(None), Case.claim_expires_at < now_utc()))
    elif filters.assignee:
        query = query.where(Case.claimed_by == filters.assignee, Case.claim_expires_at >= now_utc())
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
    if filters.tag:
        tag = " ".join(filters.tag.split()).lower()
        query = query.where(
            sa.exists(
                sa.select(EntityTag.id).where(
                    EntityTag.tag == tag,
                    EntityTag.dataset == Case.dataset,
                    EntityTag.entity == Case.entity,
                )
            )
        )
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


class QueueRepository(Repository):
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
        query = filtered_cases(filters)
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
        with self.db.session() as session:
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
        with self.db.session() as session:
            return self._status_counts(session, filters or QueueFilters())

    def _status_counts(self, session: Session, filters: QueueFilters) -> dict[str, int]:
        """Counts per status under the same filters (status itself aside)."""
        counts = {CaseStatus.OPEN.value: 0, CaseStatus.CLOSED.value: 0}
        base = filtered_cases(QueueFilters(**{**filters.__dict__, "status": "all"}))
        sub = base.with_only_columns(Case.status).subquery()
        for status, n in session.execute(
            sa.select(sub.c.status, sa.func.count()).group_by(sub.c.status)
        ):
            counts[status] = int(n)
        counts["claimed"] = int(
            session.scalar(
                sa.select(sa.func.count()).select_from(
                    base.where(Case.status == CaseStatus.OPEN, Case.claim_expires_at >= now_utc())
                    .with_only_columns(Case.id)
                    .subquery()
                )
            )
        )
        return counts

    def _queue_items(self, session: Session, cases: Sequence[Case]) -> list[dict]:
        """The cases as queue items, each with the payment and reasons of its top flag, the
        one that sets its priority. Reasons and payments come as text and only the top
        flag's are parsed; the top flag is picked here, as :func:`flag_priority` ranks,
        rather than by an ORDER BY that would make the database parse every snapshot."""
        if not cases:
            return []
        ids = [c.id for c in cases]
        flags = session.execute(
            sa.select(
                Flag.case_id,
                Flag.record_id,
                sa.cast(Flag.reasons, sa.Text).label("reasons"),
                Flag.score,
                Flag.threshold,
                Flag.record[PAYMENT_KEY].as_string().label("payment"),
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
            top, payment = _top_flag(rows)
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
                    "top_reasons": _top_reasons(top),
                    "status": case.status,
                    "verdict": case.verdict,
                    "claimed_by": case.claimed_by if claim_live else None,
                    "claim_expires_at": aware(case.claim_expires_at) if claim_live else None,
                    "last_flag_at": aware(case.last_flag_at),
                    "version": case.version,
                    "payment": payment,
                    "priority_reason": _priority_reason(top, payment) if top else None,
                }
            )
        return items

    def get_case(self, case_id: int) -> dict:
        """The case with its flags (record, reasons, model, run) and its records' labels."""
        with self.db.session() as session:
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
            labels = latest_labels(session, record_ids)
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
            item["merged_into"] = case.merged_into
            return item

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
        with self.db.session() as session:
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
                entity_history_rows(session, dataset, entity, id_column, entity_column, limit)
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
            labels = latest_labels(session, list(events))
        for record_id, event_ in events.items():
            event_["label"] = labels.get(record_id)
        return list(events.values())


def _top_flag(rows: list) -> tuple[object | None, dict | None]:
    """The flag that sets the case's priority (highest :func:`flag_priority`, then score;
    ``rows`` come highest score first) and its payment, parsed from the snapshot's text.
    Most cases need no ranking: one flag, or one threshold and no amounts at stake."""
    if not rows:
        return None, None
    top = rows[0]
    if len(rows) > 1:
        staked = any(r.payment and '"stake"' in r.payment for r in rows)
        if staked or len({r.threshold for r in rows}) > 1:
            top = max(rows, key=_row_priority)  # the first of equals: the higher score
    return top, _payment(json.loads(top.payment) if top.payment else None)


def _top_reasons(top) -> list:
    """The features of the top flag's first three reasons (its reasons read as text)."""
    reasons = json.loads(top.reasons) if top is not None and top.reasons else None
    return [r.get("feature") for r in (reasons or [])[:3]]


def _row_priority(row) -> float:
    """:func:`flag_priority` of a flag row read with its payment as text."""
    ratio = row.score / row.threshold if row.threshold and row.threshold > 0 else row.score
    stake = json.loads(row.payment).get("stake") if row.payment else None
    return ratio * (stake if isinstance(stake, int | float) else 1.0)


def _payment(value: object) -> dict | None:
    """The payment a snapshot carries, as the queue shows it (None when it has none)."""
    if not isinstance(value, dict):
        return None
    keys = ("entity", "time", "merchant", "amount", "currency", "stake", "stake_currency")
    return {key: value.get(key) for key in keys}


def _priority_reason(top, payment: dict | None) -> dict:
    """Why the case ranks where it does: the score ratio of the flag that sets its
    priority, times the amount at stake when the spec weighs by amount."""
    ratio = top.score / top.threshold if top.threshold and top.threshold > 0 else top.score
    stake = (payment or {}).get("stake")
    return {
        "score_ratio": float(ratio),
        "stake": float(stake) if isinstance(stake, int | float) else None,
        "stake_currency": (payment or {}).get("stake_currency") if stake is not None else None,
    }


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
