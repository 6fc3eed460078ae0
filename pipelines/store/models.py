"""Results store schema: what a scoring run wrote, and what analysts said about it.

Schema changes go through Alembic migrations in ``migrations/``; never ``create_all`` in
production code.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sa_text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from pipelines.store.vocabulary import CaseStatus, FlagStatus, RunRole, RunStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware timestamp on every backend: SQLite hands back naive values (it
    has no time zones), which are UTC here because only aware UTC times are written."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class ScoringRun(Base):
    """One batch scored by one model version; (batch_id, model_name, model_version) is unique
    so scoring the same batch with the same model again writes nothing new."""

    __tablename__ = "scoring_runs"
    __table_args__ = (
        UniqueConstraint("batch_id", "model_name", "model_version", name="uq_run_batch_model"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(Text)
    dataset: Mapped[str] = mapped_column(String(128))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str] = mapped_column(String(32))
    model_alias: Mapped[str | None] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING.value)
    rows_in: Mapped[int] = mapped_column(Integer, default=0)
    rows_scored: Mapped[int] = mapped_column(Integer, default=0)
    rows_quarantined: Mapped[int] = mapped_column(Integer, default=0)
    rows_flagged: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: primary: its flags reach the review queue; shadow: the challenger scoring the same
    #: batch beside the champion, scores kept as promotion evidence, no flags, no cases.
    role: Mapped[str] = mapped_column(
        String(16), default=RunRole.PRIMARY.value, server_default=RunRole.PRIMARY.value
    )
    #: Wall-clock seconds spent scoring (what a shadow model costs per run).
    score_seconds: Mapped[float | None] = mapped_column(Float)

    flags: Mapped[list[Flag]] = relationship(back_populates="run")


class Score(Base):
    """Every scored record's score, so any threshold can be re-applied later."""

    __tablename__ = "scores"
    # (run_id, record_id) is the key: no surrogate id and no foreign key on run_id, whose
    # per-row checks were most of a bulk COPY's cost (migration 0007). Only write_chunk
    # writes scores, for a run it has claimed.
    __table_args__ = (PrimaryKeyConstraint("run_id", "record_id", name="pk_scores"),)

    run_id: Mapped[str] = mapped_column(String(36))
    record_id: Mapped[str] = mapped_column(String(256))
    score: Mapped[float] = mapped_column(Float)
    is_anomaly: Mapped[bool] = mapped_column(Boolean)


class Flag(Base):
    """A record over the threshold, with what an analyst needs to judge it offline:
    a snapshot of the record as scored and the reasons the model gave."""

    __tablename__ = "flags"
    __table_args__ = (
        UniqueConstraint("run_id", "record_id", name="uq_flag_run_record"),
        Index("ix_flags_status", "status"),
        Index("ix_flags_entity", "entity"),
        Index("ix_flags_record_id", "record_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("scoring_runs.id", ondelete="CASCADE"))
    record_id: Mapped[str] = mapped_column(String(256))
    #: Sequence mode: the entity (card, customer) the record belongs to; its flags form a case.
    entity: Mapped[str | None] = mapped_column(String(256))
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), index=True
    )
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    record: Mapped[dict] = mapped_column(JSON)
    reasons: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=FlagStatus.OPEN.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    run: Mapped[ScoringRun] = relationship(back_populates="flags")


class QuarantinedRow(Base):
    """A row rejected by validation, kept whole with the reason so nothing is lost."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("scoring_runs.id", ondelete="CASCADE"), index=True
    )
    batch_id: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(Text)
    row_number: Mapped[int] = mapped_column(Integer)
    record_id: Mapped[str | None] = mapped_column(String(256))
    column: Mapped[str | None] = mapped_column(String(256))
    value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEvent(Base):
    """Who did what, when, and what it changed (``before`` -> ``after``): runs, claims,
    verdicts, users, thresholds, promotions. Append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(256))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)


class EntityHistorySegment(Base):
    """Sequence mode: the records of one batch, kept so later batches see each entity's
    recent past (the 'state' between batches).

    One row per (dataset, batch): the records' raw context columns plus the context
    features computed for them, as Parquet bytes. Writing is idempotent on the batch;
    segments older than the data set's history horizon are pruned.
    """

    __tablename__ = "entity_history"
    __table_args__ = (
        UniqueConstraint("dataset", "batch_id", name="uq_history_dataset_batch"),
        Index("ix_history_dataset_last_time", "dataset", "last_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(128))
    batch_id: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(Text)
    context_signature: Mapped[str] = mapped_column(String(64))
    first_time: Mapped[float] = mapped_column(Float)
    last_time: Mapped[float] = mapped_column(Float)
    rows: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# -- review and labels ---------------------------------------------------------------------


class User(Base):
    """A person (or service) using the review app and its API; never deleted, only disabled,
    so every verdict keeps naming who gave it."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # a Role
    password_hash: Mapped[str | None] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebSession(Base):
    """A logged-in browser: the cookie carries a random id whose SHA-256 is stored here,
    with the session's CSRF token."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Case(Base):
    """One queue item: an entity's open flags in sequence mode, one record in tabular mode.

    ``entity_key`` is ``entity:<value>`` or ``record:<id>``; at most one *open* case per key
    (a partial unique index makes joining race-safe). ``version`` is the optimistic lock:
    every change bumps it, and a change made against an older version is refused.
    """

    __tablename__ = "cases"
    __table_args__ = (
        Index(
            "uq_cases_open_key",
            "dataset",
            "entity_key",
            unique=True,
            sqlite_where=sa_text("status = 'open'"),
            postgresql_where=sa_text("status = 'open'"),
        ),
        Index("ix_cases_queue", "status", "priority", "id"),
        Index("ix_cases_last_flag", "status", "last_flag_at", "id"),
        Index("ix_cases_entity", "entity", "dataset"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(128))
    entity_key: Mapped[str] = mapped_column(String(300))
    entity: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.OPEN.value)
    verdict: Mapped[str | None] = mapped_column(String(16))
    #: Highest score / threshold among its flags (> 1 means over the threshold), times the
    #: amount at stake where the spec weighs the queue by amount (``store.queue.flag_priority``).
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    max_score: Mapped[float] = mapped_column(Float, default=0.0)
    flag_count: Mapped[int] = mapped_column(Integer, default=0)
    first_flag_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_flag_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64), index=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Set when the case was merged into another (status ``merged``): its survivor.
    merged_into: Mapped[int | None] = mapped_column(Integer, index=True)


class EntityTag(Base):
    """A tag an analyst put on an entity (card, customer): kept across its cases."""

    __tablename__ = "entity_tags"
    __table_args__ = (
        UniqueConstraint("dataset", "entity", "tag", name="uq_entity_tag"),
        Index("ix_entity_tags_tag", "tag", "dataset", "entity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(128))
    entity: Mapped[str] = mapped_column(String(256))
    tag: Mapped[str] = mapped_column(String(64))
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EntityNote(Base):
    """A note an analyst wrote about an entity: append-only, kept across its cases."""

    __tablename__ = "entity_notes"
    __table_args__ = (Index("ix_entity_notes_entity", "dataset", "entity", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(128))
    entity: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Label(Base):
    """What is known about a record and when it became known: immutable, append-only.

    A changed verdict is a new row; the latest row per record counts. ``withdrawn`` (an
    undo) and ``unsure`` are rows too, and neither counts as a label for training.
    Verdicts from the review app carry the model, score and threshold at flag time.
    """

    __tablename__ = "labels"
    __table_args__ = (
        Index("ix_labels_record_known", "record_id", "known_at"),
        Index("ix_labels_dataset_known", "dataset", "known_at"),
        # Imported rows have neither: partial indexes cost a bulk import nothing.
        Index(
            "ix_labels_case_id",
            "case_id",
            postgresql_where=sa_text("case_id IS NOT NULL"),
            sqlite_where=sa_text("case_id IS NOT NULL"),
        ),
        Index(
            "ix_labels_flag_id",
            "flag_id",
            postgresql_where=sa_text("flag_id IS NOT NULL"),
            sqlite_where=sa_text("flag_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(256))
    dataset: Mapped[str | None] = mapped_column(String(128))
    entity: Mapped[str | None] = mapped_column(String(256))
    verdict: Mapped[str] = mapped_column(String(16))  # a Verdict, or WITHDRAWN
    source: Mapped[str] = mapped_column(String(16))  # a LabelSource
    reason_code: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    analyst: Mapped[str | None] = mapped_column(String(64))
    known_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    flag_id: Mapped[int | None] = mapped_column(ForeignKey("flags.id", ondelete="SET NULL"))
    model_name: Mapped[str | None] = mapped_column(String(256))
    model_version: Mapped[str | None] = mapped_column(String(32))
    score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    #: Imports: a hash of (record, verdict, known_at, source) so re-importing writes nothing.
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Decision(Base):
    """The decision ledger: every promotion, rejection, rollback and threshold change, with
    the evidence and policy behind it and who approved it. Append-only; mirrored into the
    MLflow model version's tags by the code that makes the decision."""

    __tablename__ = "decision_ledger"
    __table_args__ = (Index("ix_decisions_model", "model_name", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    model_name: Mapped[str] = mapped_column(String(256))
    #: a DecisionKind
    kind: Mapped[str] = mapped_column(String(32))
    #: a DecisionOutcome
    decision: Mapped[str] = mapped_column(String(32))
    from_version: Mapped[str | None] = mapped_column(String(32))
    to_version: Mapped[str | None] = mapped_column(String(32))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)
    policy: Mapped[dict] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(128))
    approved_by: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)


# -- production path -----------------------------------------------------------------------


class RunClaim(Base):
    """Who is scoring a run right now: a lease kept alive by heartbeats.

    A live run is not an abandoned one: a second process finding a fresh heartbeat reports
    "already running" instead of wiping the run; a claim whose heartbeat is older than the
    lease is taken over (``generation`` guards the take-over against a race).
    """

    __tablename__ = "run_claims"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("scoring_runs.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(String(128))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    #: Unix seconds of the last heartbeat (a number: no time-zone round trip on SQLite).
    heartbeat_at: Mapped[float] = mapped_column(Float)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RunChunk(Base):
    """One committed chunk of a run, written in the same transaction as its scores, flags
    and quarantined rows: a re-run skips the chunks listed here."""

    __tablename__ = "run_chunks"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("scoring_runs.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    chunk_size: Mapped[int] = mapped_column(Integer)
    first_row: Mapped[int] = mapped_column(Integer)
    rows_in: Mapped[int] = mapped_column(Integer)
    rows_scored: Mapped[int] = mapped_column(Integer)
    rows_quarantined: Mapped[int] = mapped_column(Integer)
    rows_flagged: Mapped[int] = mapped_column(Integer)
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# -- operations ----------------------------------------------------------------------------


class RunHealth(Base):
    """Drift watch for one scoring run against its model's training reference: score
    PSI/KS, flag rate against its control limits, per-feature drift, unseen categories."""

    __tablename__ = "run_health"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("scoring_runs.id", ondelete="CASCADE"), primary_key=True
    )
    #: a HealthStatus
    status: Mapped[str] = mapped_column(String(16))
    score_psi: Mapped[float | None] = mapped_column(Float)
    score_ks: Mapped[float | None] = mapped_column(Float)
    flag_rate: Mapped[float | None] = mapped_column(Float)
    expected_flag_rate: Mapped[float | None] = mapped_column(Float)
    unseen_share: Mapped[float | None] = mapped_column(Float)
    alarms: Mapped[list] = mapped_column(JSON, default=list)
    summary: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SourceFile(Base):
    """A file a watched folder delivered, written in the same transaction as the run that
    scored it: present means scored, so no file is skipped or scored twice."""

    __tablename__ = "source_files"
    __table_args__ = (
        UniqueConstraint("source_key", "path", "content_hash", name="uq_source_file"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_key: Mapped[str] = mapped_column(String(300))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(128))
    batch_id: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str | None] = mapped_column(
        ForeignKey("scoring_runs.id", ondelete="SET NULL"), index=True
    )
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SourceWatermark(Base):
    """The last committed watermark of a SQL source: the next run reads rows after it."""

    __tablename__ = "source_watermarks"

    source_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    column: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("scoring_runs.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
