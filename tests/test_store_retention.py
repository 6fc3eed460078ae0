"""Retention: record snapshots of cases closed long enough ago are removed; verdicts,
reasons and the audit trail stay, and each sweep is audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.store import Case, Flag, ResultsStore
from tests.review_fixtures import add_flagged_run


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> ResultsStore:
    if request.param == "sqlite":
        return ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    return ResultsStore(request.getfixturevalue("postgres_url"))


def _snapshots(store: ResultsStore) -> dict[str, dict]:
    with store.session() as session:
        return {f.record_id: (f.record, f.reasons) for f in session.scalars(sa.select(Flag))}


def test_snapshots_of_old_closed_cases_go_and_what_was_decided_stays(store):
    add_flagged_run(
        store,
        batch_id="b1",
        flags=[("r1", "card-old", 3.0), ("r2", "card-old", 2.0), ("r3", "card-new", 2.5),
               ("r4", "card-open", 4.0)],
        group_by_entity=True,
    )  # fmt: skip
    with store.session() as session:
        cases = {c.entity: c.id for c in session.scalars(sa.select(Case))}
    store.give_verdict(cases["card-old"], "ana", "fraud", reason_code="stolen_card")
    store.give_verdict(cases["card-new"], "ana", "not_fraud")
    now = datetime.now(UTC)
    with store.session() as session:  # closed 40 days ago
        session.execute(
            sa.update(Case)
            .where(Case.id == cases["card-old"])
            .values(closed_at=now - timedelta(days=40))
        )
    before = _snapshots(store)
    labels_before = store.label_rows()

    dry = store.remove_closed_snapshots(30, actor="ops", dry_run=True, now=now)
    assert (dry.snapshots, dry.cases, dry.dry_run) == (2, 1, True)
    assert _snapshots(store) == before
    assert store.audit_entries(entity="flags") == []

    done = store.remove_closed_snapshots(30, actor="ops", now=now)
    assert (done.snapshots, done.cases) == (2, 1)
    after = _snapshots(store)
    for record_id in ("r1", "r2"):
        assert after[record_id][0] == {}  # the snapshot is gone ...
        assert after[record_id][1] == before[record_id][1]  # ... the model's reasons stay
    assert {r: after[r] for r in ("r3", "r4")} == {r: before[r] for r in ("r3", "r4")}
    assert store.label_rows().equals(labels_before)  # verdicts untouched
    assert store.get_case(cases["card-old"])["verdict"] == "fraud"
    assert [e.action for e in store.audit_entries(entity="case")].count("case.verdict") == 2

    (entry,) = store.audit_entries(entity="flags")
    assert (entry.actor, entry.action) == ("ops", "retention.snapshots_removed")
    assert entry.after == {"snapshots_removed": 2, "cases": 1}
    assert entry.detail["older_than_days"] == 30 and entry.at is not None

    again = store.remove_closed_snapshots(30, actor="ops", now=now)
    assert (again.snapshots, again.cases) == (0, 0)
    assert len(store.audit_entries(entity="flags")) == 2  # every sweep is on record
    # Later, the case closed a day ago is due too.
    later = store.remove_closed_snapshots(30, actor="ops", now=now + timedelta(days=31))
    assert (later.snapshots, later.cases) == (1, 1)
    assert _snapshots(store)["r4"] == before["r4"]  # an open case is never touched


def test_retention_apply_needs_a_period_and_reports(monkeypatch):
    runner = CliRunner()
    monkeypatch.delenv("VIGIL_RETENTION_SNAPSHOT_DAYS", raising=False)
    refused = runner.invoke(main, ["retention", "apply", "--dry-run"])
    assert refused.exit_code == 2
    assert "VIGIL_RETENTION_SNAPSHOT_DAYS" in refused.output
    result = runner.invoke(main, ["retention", "apply", "--days", "30", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["older_than_days"] == 30


def test_the_nightly_job_applies_retention_only_when_set(tmp_path, monkeypatch):
    from pipelines import flows
    from pipelines.settings import VigilSettings

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = ResultsStore(url)
    add_flagged_run(store, batch_id="b1", flags=[("r1", "card", 3.0)], group_by_entity=True)
    with store.session() as session:
        (case_id,) = session.scalars(sa.select(Case.id)).all()
    store.give_verdict(case_id, "ana", "fraud")
    with store.session() as session:
        session.execute(sa.update(Case).values(closed_at=datetime.now(UTC) - timedelta(days=40)))

    monkeypatch.setattr(flows, "get_settings", lambda: VigilSettings(database_url=url))
    assert flows.apply_retention.fn() is None  # not set: nothing removed
    assert _snapshots(store)["r1"][0] != {}
    monkeypatch.setattr(
        flows,
        "get_settings",
        lambda: VigilSettings(database_url=url, retention_snapshot_days=30),
    )
    removed = flows.apply_retention.fn()
    assert (removed.snapshots, removed.cases) == (1, 1)
    assert _snapshots(store)["r1"][0] == {}
    (entry,) = store.audit_entries(entity="flags")
    assert entry.actor == "vigil nightly"
