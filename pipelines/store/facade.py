"""The results store: the one interface to the database, and the one place that decides
what a run wrote.

:class:`ResultsStore` owns the session factory (:class:`~pipelines.store.database.Database`)
and one repository per job over it: ``store.runs``, ``store.cases``, ``store.labels``, ...
The methods callers use are also the store's own, by the same name (``store.claim_run``
is ``store.runs.claim_run``), so a caller holds one object and needs no repository names.

Idempotency lives in the repositories: a scoring run is keyed by (batch id, model name,
model version) and claimed with a lease before anything is written; its chunks commit one
by one, so scoring a batch again writes nothing new and a run that stopped half-way
resumes after its last committed chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from pipelines.store.accounts import AccountRepository
from pipelines.store.audit import AuditRepository
from pipelines.store.cases import CaseRepository, attach_flags_to_cases
from pipelines.store.casework import CaseworkRepository
from pipelines.store.database import Database
from pipelines.store.entities import EntityRepository
from pipelines.store.health import HealthRepository
from pipelines.store.history import HistoryRepository
from pipelines.store.labels import LabelRepository
from pipelines.store.ledger import LedgerRepository
from pipelines.store.quality import QualityRepository
from pipelines.store.quarantine import QuarantineRepository
from pipelines.store.queue import QueueRepository
from pipelines.store.retention import RetentionRepository
from pipelines.store.runs import RunRepository
from pipelines.store.scores import ScoreRepository
from pipelines.store.sources import SourceRepository


class _Delegate:
    """A store method that is a repository's method: ``store.NAME`` is
    ``store.REPOSITORY.METHOD`` itself (same signature, same docstring)."""

    def __init__(self, repository: str, method: str | None = None) -> None:
        self.repository = repository
        self.method = method

    def __set_name__(self, owner: type, name: str) -> None:
        self.method = self.method or name

    def __get__(self, store, owner=None):
        if store is None:
            return self
        return getattr(getattr(store, self.repository), self.method)


class ResultsStore:
    """Scoring results, reviews, labels, accounts, the ledger and retention, behind one
    object; every write happens in one transaction."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.db = Database(url)
        self.runs = RunRepository(self.db)
        self.scores = ScoreRepository(self.db)
        self.quarantine = QuarantineRepository(self.db)
        self.history = HistoryRepository(self.db)
        self.queue = QueueRepository(self.db)
        self.cases = CaseRepository(self.db)
        self.casework = CaseworkRepository(self.db)
        self.entities = EntityRepository(self.db)
        self.labels = LabelRepository(self.db)
        self.quality = QualityRepository(self.db, self.labels)
        self.ledger = LedgerRepository(self.db)
        self.health = HealthRepository(self.db)
        self.sources = SourceRepository(self.db)
        self.accounts = AccountRepository(self.db)
        self.audit = AuditRepository(self.db)
        self.retention = RetentionRepository(self.db)
        if migrate:
            self.migrate()

    @property
    def url(self) -> str:
        return self.db.url

    @property
    def engine(self) -> Engine:
        return self.db.engine

    @property
    def is_postgres(self) -> bool:
        return self.db.is_postgres

    def describe_url(self) -> str:
        return self.db.describe_url()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (no-op when current)."""
        self.db.migrate()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction over the store (for code that must write several things at once)."""
        with self.db.session() as session:
            yield session

    # -- scoring runs -------------------------------------------------------------------
    claim_run = _Delegate("runs")
    heartbeat = _Delegate("runs")
    keep_lease = _Delegate("runs")
    write_chunk = _Delegate("runs")
    complete_run = _Delegate("runs")
    fail_claimed_run = _Delegate("runs")
    list_runs = _Delegate("runs")
    get_run = _Delegate("runs")
    runs_for_model = _Delegate("runs")
    list_flags = _Delegate("runs")
    count = _Delegate("runs")

    # -- scores as evidence -------------------------------------------------------------
    scores_frame = _Delegate("scores")
    score_values = _Delegate("scores")
    model_scores = _Delegate("scores")
    paired_scores = _Delegate("scores")

    # -- quarantine ---------------------------------------------------------------------
    add_quarantine = _Delegate("quarantine")
    replace_training_quarantine = _Delegate("quarantine")
    quarantine_frame = _Delegate("quarantine")

    # -- entity history (sequence mode) -------------------------------------------------
    save_history = _Delegate("history")
    load_history = _Delegate("history")
    history_segments = _Delegate("history")
    history_segment_ids = _Delegate("history")
    history_extent = _Delegate("history")
    prune_history = _Delegate("history")

    # -- the review queue and cases -----------------------------------------------------
    queue_page = _Delegate("queue")
    queue_counts = _Delegate("queue")
    get_case = _Delegate("queue")
    entity_timeline = _Delegate("queue")
    attach_flags_to_cases = staticmethod(attach_flags_to_cases)
    claim_next = _Delegate("cases")
    claim = _Delegate("cases")
    release = _Delegate("cases")
    give_verdict = _Delegate("cases")
    undo_verdict = _Delegate("cases")
    bulk_verdict = _Delegate("cases")
    merge_cases = _Delegate("casework")
    attach_record = _Delegate("casework")
    merge_family = _Delegate("casework")
    related_open_cases = _Delegate("casework")
    case_audit = _Delegate("casework")
    verdict_history = _Delegate("casework")
    record_case_file = _Delegate("casework")

    # -- what analysts know about an entity (tags, notes) -------------------------------
    entity_profiles = _Delegate("entities")
    entity_tags = _Delegate("entities")
    add_tag = _Delegate("entities")
    remove_tag = _Delegate("entities")
    add_note = _Delegate("entities")
    entity_audit = _Delegate("entities")

    # -- labels and review quality ------------------------------------------------------
    add_label_rows = _Delegate("labels")
    label_rows = _Delegate("labels")
    labels_frame = _Delegate("labels", "label_rows")
    known_labels = _Delegate("labels")
    latest_verdicts = _Delegate("labels")
    quality_by_model = _Delegate("quality")

    # -- decision ledger ----------------------------------------------------------------
    record_decision = _Delegate("ledger")
    decisions = _Delegate("ledger")

    # -- run health and scheduled sources -----------------------------------------------
    save_run_health = _Delegate("health")
    run_health = _Delegate("health")
    run_health_status = _Delegate("health")
    scored_file_sizes = _Delegate("sources")
    record_source_file = _Delegate("sources")
    watermark = _Delegate("sources")
    advance_watermark = _Delegate("sources")

    # -- accounts and the audit trail ---------------------------------------------------
    add_user = _Delegate("accounts")
    get_user = _Delegate("accounts")
    list_users = _Delegate("accounts")
    update_user = _Delegate("accounts")
    create_token = _Delegate("accounts")
    user_for_token = _Delegate("accounts")
    create_session = _Delegate("accounts")
    session_user = _Delegate("accounts")
    end_session = _Delegate("accounts")
    record_failed_login = _Delegate("accounts")
    failed_logins_since = _Delegate("accounts")
    audit_entries = _Delegate("audit")
    remove_closed_snapshots = _Delegate("retention")
