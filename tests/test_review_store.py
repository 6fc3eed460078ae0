"""Review side of the store: cases, claims, verdicts as label rows, optimistic locking,
audit entries, quality figures; on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from pipelines.store import AuditEvent, Case, Flag, Label, ResultsStore
from pipelines.store.errors import Conflict, ReviewError, now_utc
from pipelines.store.queue import QueueFilters
from tests.review_fixtures import add_flagged_run, add_snapshot_run, case_of, payment_flag

LOCK = timedelta(minutes=10)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> ResultsStore:
    if request.param == "sqlite":
        return ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    return ResultsStore(request.getfixturevalue("postgres_url"))


def _count(store, model, *where) -> int:
    with store.session() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)))


def test_tabular_flags_are_one_case_per_record_even_across_model_versions(store):
    add_flagged_run(store, batch_id="b1", flags=[("r1", "c1", 3.0), ("r2", "c1", 2.0)])
    add_flagged_run(store, batch_id="b1", model_version="2", flags=[("r1", "c1", 4.0)])
    page = store.queue_page()
    assert [item["record_ids"] for item in page.items] == [["r1"], ["r2"]]
    first = page.items[0]
    assert first["models"] == ["demo-vae/1", "demo-vae/2"]
    assert first["flag_count"] == 2 and first["score"] == 4.0
    assert page.counts["open"] == 2


def test_sequence_flags_join_the_entitys_open_case(store):
    add_flagged_run(
        store,
        batch_id="d1",
        flags=[("r1", "card7", 2.0), ("r2", "card7", 5.0)],
        group_by_entity=True,
    )
    add_flagged_run(store, batch_id="d2", flags=[("r3", "card7", 1.5)], group_by_entity=True)
    page = store.queue_page()
    assert len(page.items) == 1
    assert sorted(page.items[0]["record_ids"]) == ["r1", "r2", "r3"]
    assert page.items[0]["entity"] == "card7"
    # Once decided, a new flag for the card opens a new case instead of joining a closed one.
    case_id = page.items[0]["id"]
    store.give_verdict(case_id, "ana", "fraud")
    add_flagged_run(store, batch_id="d3", flags=[("r4", "card7", 1.2)], group_by_entity=True)
    open_items = store.queue_page().items
    assert [item["record_ids"] for item in open_items] == [["r4"]]
    assert open_items[0]["id"] != case_id


def test_case_aggregates_are_recomputed_from_all_its_flags(store):
    """Count, top score, priority (score / threshold), last flag time and version of a
    case that flags of two runs with different thresholds joined."""
    add_flagged_run(
        store, batch_id="g1", threshold=2.0, group_by_entity=True,
        flags=[("r1", "card9", 3.0), ("r2", "card9", 5.0), ("r5", "card8", 2.5)],
    )  # fmt: skip
    add_flagged_run(
        store, batch_id="g2", threshold=4.0, group_by_entity=True, flags=[("r3", "card9", 6.0)]
    )
    with store.session() as session:
        cases = {c.entity: c for c in session.scalars(sa.select(Case))}
        flags = session.scalars(sa.select(Flag).where(Flag.entity == "card9")).all()
        card9, card8 = cases["card9"], cases["card8"]
        assert {f.case_id for f in flags} == {card9.id}
        assert card9.flag_count == 3 and card9.max_score == 6.0
        assert card9.priority == pytest.approx(5.0 / 2.0)  # r2 beats r3's 6 / 4
        assert card9.last_flag_at == max(f.created_at for f in flags)
        assert card9.version == 3  # created, then bumped by each run
        assert (card8.flag_count, card8.max_score, card8.version) == (1, 2.5, 2)
        assert card8.priority == pytest.approx(1.25)


def test_concurrent_runs_create_one_open_case_per_entity(store):
    errors = []

    def run(i: int) -> None:
        try:
            add_flagged_run(
                store,
                batch_id=f"p{i}",
                flags=[(f"r{i}", "card1", 2.0 + i)],
                group_by_entity=True,
            )
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert _count(store, Case, Case.status == "open") == 1
    assert _count(store, Flag, Flag.case_id.is_(None)) == 0


def test_claim_next_locks_items_to_one_analyst(store):
    add_flagged_run(store, batch_id="b", flags=[("r1", None, 3.0), ("r2", None, 2.0)])
    first = store.claim_next("ana", lock=LOCK)
    second = store.claim_next("bob", lock=LOCK)
    assert first["id"] != second["id"]
    assert store.claim_next("ana", lock=LOCK)["id"] == first["id"]  # still hers
    assert store.claim_next("cy", lock=LOCK) is None  # everything is held
    with pytest.raises(Conflict, match="claimed by ana"):
        store.give_verdict(first["id"], "bob", "fraud")
    # An expired lock frees the item.
    with store.session() as session:
        session.execute(
            sa.update(Case)
            .where(Case.id == first["id"])
            .values(claim_expires_at=now_utc() - timedelta(minutes=1))
        )
    assert store.claim_next("cy", lock=LOCK)["id"] == first["id"]


def test_verdicts_are_label_rows_and_the_latest_counts(store):
    add_flagged_run(store, batch_id="b", flags=[("r1", "c1", 3.0)], threshold=1.5)
    case = store.claim_next("ana", lock=LOCK)
    result = store.give_verdict(
        case["id"],
        "ana",
        "fraud",
        version=case["version"],
        reason_code="stolen_card",
        note="customer called",
    )
    with pytest.raises(Conflict, match="already has the verdict"):
        store.give_verdict(case["id"], "bob", "not_fraud")
    store.give_verdict(case["id"], "ana", "not_fraud", version=result["version"])
    labels = store.labels_frame()
    assert list(labels["verdict"]) == ["fraud", "not_fraud"]
    first = labels.iloc[0]
    assert (first["model_name"], first["model_version"]) == ("demo-vae", "1")
    assert first["score"] == 3.0 and first["threshold"] == 1.5
    assert first["reason_code"] == "stolen_card" and first["analyst"] == "ana"
    assert store.get_case(case["id"])["flags"][0]["label"]["verdict"] == "not_fraud"
    audit = store.audit_entries(entity="case", entity_id=str(case["id"]))
    verdicts = [a for a in audit if a.action == "case.verdict"]
    assert verdicts[0].before["verdict"] == "fraud" and verdicts[0].after["verdict"] == "not_fraud"
    assert any(a.action == "case.claimed" and a.after["claimed_by"] == "ana" for a in audit)


def test_stale_version_is_a_conflict_not_an_overwrite(store):
    add_flagged_run(store, batch_id="b", flags=[("r1", None, 3.0)])
    item = store.queue_page().items[0]
    store.give_verdict(item["id"], "ana", "fraud", version=item["version"])
    with pytest.raises(Conflict, match="changed by someone else"):
        store.give_verdict(item["id"], "bob", "not_fraud", version=item["version"])
    assert _count(store, Label) == 1


def test_undo_appends_a_withdrawn_row_and_reopens(store):
    add_flagged_run(store, batch_id="b", flags=[("r1", None, 3.0)])
    item = store.queue_page().items[0]
    done = store.give_verdict(item["id"], "ana", "fraud")
    store.undo_verdict(item["id"], "ana", version=done["version"])
    assert store.queue_page().items[0]["id"] == item["id"]
    assert list(store.labels_frame()["verdict"]) == ["fraud", "withdrawn"]
    assert store.get_case(item["id"])["flags"][0]["label"] is None


def test_bulk_verdict_with_override_skips_what_it_must_not_touch(store):
    add_flagged_run(
        store, batch_id="b", flags=[("r1", None, 3.0), ("r2", None, 2.5), ("r3", None, 2.0)]
    )
    ids = [item["id"] for item in store.queue_page().items]
    store.claim(ids[2], "bob", lock=LOCK)
    result = store.bulk_verdict(ids, "ana", "not_fraud", overrides={ids[1]: "fraud"})
    assert result["applied"] == ids[:2]
    assert "claimed by bob" in result["skipped"][ids[2]]
    verdicts = dict(
        zip(store.labels_frame()["record_id"], store.labels_frame()["verdict"], strict=True)
    )
    assert verdicts == {"r1": "not_fraud", "r2": "fraud"}


def test_queue_filters_sorts_and_keyset_pages(store):
    add_flagged_run(store, batch_id="b1", flags=[(f"a{i}", None, 1.0 + i) for i in range(7)])
    add_flagged_run(store, batch_id="b2", model_name="other", flags=[("z1", None, 20.0)])
    seen, cursor = [], None
    while True:
        page = store.queue_page(cursor=cursor, limit=3)
        seen += [item["score"] for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == 8
    assert [i["score"] for i in store.queue_page(QueueFilters(model="other")).items] == [20.0]
    assert len(store.queue_page(QueueFilters(model="demo-vae/1", min_priority=5)).items) == 3
    assert len(store.queue_page(QueueFilters(reason="amount")).items) == 8
    assert store.queue_page(QueueFilters(reason="nothing")).items == []
    oldest = store.queue_page(sort="oldest", limit=1).items[0]
    assert oldest["record_ids"][0].startswith("a")
    with pytest.raises(ReviewError):
        store.queue_page(sort="bogus")


def test_quality_by_model_version(store):
    add_flagged_run(
        store,
        batch_id="b",
        flags=[("r1", None, 3.0), ("r2", None, 2.0), ("r3", None, 1.5), ("r4", None, 1.2)],
    )
    ids = [item["id"] for item in store.queue_page().items]
    store.give_verdict(ids[0], "ana", "fraud")
    store.give_verdict(ids[1], "ana", "not_fraud")
    store.give_verdict(ids[2], "ana", "unsure")
    (quality,) = store.quality_by_model()
    assert quality["flags"] == 4 and quality["reviewed"] == 3
    assert quality["precision"] == 0.5
    assert quality["unsure_rate"] == pytest.approx(1 / 3)
    assert quality["label_coverage"] == 0.5
    assert quality["backlog_by_age"]["<1d"] == 1


def test_users_tokens_sessions_and_their_audit(store):
    store.add_user("ana", "analyst", "hash", actor="admin")
    with pytest.raises(ReviewError, match="already exists"):
        store.add_user("ana", "viewer", None, actor="admin")
    token = store.create_token("ana", actor="admin")
    assert store.user_for_token(token).name == "ana"
    cookie, csrf = store.create_session(store.get_user("ana"), ttl=timedelta(hours=1))
    assert store.session_user(cookie)[1] == csrf
    store.update_user("ana", actor="admin", disabled=True)
    assert store.user_for_token(token) is None and store.session_user(cookie) is None
    changes = [a for a in store.audit_entries(entity="user") if a.action == "user.changed"]
    assert changes[0].before == {"role": "analyst", "disabled": False}
    assert changes[0].after == {"role": "analyst", "disabled": True}
    assert _count(store, AuditEvent, AuditEvent.action == "user.added") == 1


def test_decision_ledger_is_append_only_and_audited(store):
    first = store.record_decision(
        model_name="m",
        kind="threshold",
        decision="applied",
        actor="ana",
        from_version="1",
        to_version="1",
        before={"threshold": 1.0},
        after={"threshold": 1.2},
        evidence={"reviewed": 120},
        policy={"budget_per_day": 50},
        reason="queue too long",
    )
    second = store.record_decision(
        model_name="m",
        kind="promotion",
        decision="promoted",
        actor="vigil",
        from_version="1",
        to_version="2",
        approved_by="lead",
    )
    entries = store.decisions("m")
    assert [e.id for e in entries] == [second, first]
    assert entries[1].after == {"threshold": 1.2} and entries[0].approved_by == "lead"
    assert {a.action for a in store.audit_entries(entity="model")} == {
        "threshold.applied",
        "promotion.promoted",
    }


def test_entity_timeline_joins_kept_history_scores_flags_and_verdicts(store):
    import pandas as pd

    run_id = add_flagged_run(
        store,
        batch_id="d1",
        dataset="demo",
        flags=[("t3", "card9", 5.0)],
        group_by_entity=True,
    )
    # The batch's records as sequence mode keeps them (id and entity columns by spec name).
    history = pd.DataFrame(
        {
            "tx_id": ["t1", "t2", "t3", "x1"],
            "card_id": ["card9", "card9", "card9", "card1"],
            "amount": [10.0, 12.0, 900.0, 5.0],
        }
    )
    store.save_history(
        dataset="demo",
        batch_id="d1",
        source="d1.csv",
        signature="s",
        frame=history,
        seconds=[1.0, 2.0, 3.0, 4.0],
    )
    import sqlalchemy as sa

    from pipelines.store import Score

    with store.session() as session:
        session.execute(
            sa.insert(Score),
            [
                {"run_id": run_id, "record_id": "t1", "score": 0.2, "is_anomaly": False},
            ],
        )
    case_id = store.queue_page().items[0]["id"]
    store.give_verdict(case_id, "ana", "fraud")
    timeline = store.entity_timeline("demo", "card9", id_column="tx_id", entity_column="card_id")
    by_id = {e["record_id"]: e for e in timeline}
    assert set(by_id) == {"t1", "t2", "t3"}
    assert by_id["t3"]["flagged"] and by_id["t3"]["label"]["verdict"] == "fraud"
    assert not by_id["t1"]["flagged"] and by_id["t1"]["score"] == 0.2
    assert by_id["t2"]["score"] is None and by_id["t2"]["record"]["amount"] == 12.0


def test_a_shadow_run_reopened_as_primary_leaves_no_stale_counts_on_its_cases(store):
    """The challenger's exploration flag reached a case; promoted, the version scores the
    batch again as primary: while it does, the case counts no flag that no longer exists,
    and the new flag joins the same case."""
    flag = payment_flag("x1", "card9", "2026-12-01T10:00:00", 480.0, 3.0)
    add_snapshot_run(store, batch_id="night", flags=[flag], model_version="2", role="shadow")
    case_id = case_of(store, "x1")
    assert store.get_case(case_id)["flag_count"] == 1

    ticket = store.claim_run(
        batch_id="night", source="night.csv", dataset="cards", model_name="card-vae",
        model_version="2", model_alias="champion", threshold=1.0, chunk_size=1000,
        lease_seconds=60,
    )  # fmt: skip
    assert ticket.run.role == "primary" and not ticket.committed_chunks
    reopened = store.get_case(case_id)
    assert reopened["flag_count"] == 0 and reopened["score"] == 0.0
    assert _count(store, Flag, Flag.case_id == case_id) == 0
    store.fail_claimed_run(ticket.run.id, ticket.owner, "test: stop before scoring")

    add_snapshot_run(store, batch_id="night", flags=[flag], model_version="2")
    assert case_of(store, "x1") == case_id
    assert store.get_case(case_id)["flag_count"] == 1
