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
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


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
    status: Mapped[str] = mapped_column(String(16), default="running")
    rows_in: Mapped[int] = mapped_column(Integer, default=0)
    rows_scored: Mapped[int] = mapped_column(Integer, default=0)
    rows_quarantined: Mapped[int] = mapped_column(Integer, default=0)
    rows_flagged: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    flags: Mapped[list[Flag]] = relationship(back_populates="run")


class Score(Base):
    """Every scored record's score, so any threshold can be re-applied later."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("run_id", "record_id", name="uq_score_run_record"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("scoring_runs.id", ondelete="CASCADE"))
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
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("scoring_runs.id", ondelete="CASCADE"))
    record_id: Mapped[str] = mapped_column(String(256))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    record: Mapped[dict] = mapped_column(JSON)
    reasons: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    run: Mapped[ScoringRun] = relationship(back_populates="flags")
    reviews: Mapped[list[Review]] = relationship(back_populates="flag")


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Review(Base):
    """An analyst's verdict on a flag."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flag_id: Mapped[int] = mapped_column(ForeignKey("flags.id", ondelete="CASCADE"), index=True)
    analyst: Mapped[str] = mapped_column(String(128))
    verdict: Mapped[str] = mapped_column(String(16))  # confirmed | dismissed
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    flag: Mapped[Flag] = relationship(back_populates="reviews")


class AuditEvent(Base):
    """Who did what, when: runs, reviews, promotions."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(256))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# -- production path (issue 13) --


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
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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
    committed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
