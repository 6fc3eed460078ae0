"""Cases as analysts use them, through HTTP: tags and notes on an entity kept across its
cases (and a queue filter by tag), a flagged record attached to a case, two cases merged
(nothing lost), the printable case file, the audit rows of each change, and a viewer who
can read all of it but change none of it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from pipelines.accounts import hash_password
from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from pipelines.store.entities import audit_key
from review import create_app
from tests.review_client import PASSWORD, csrf_in, login
from tests.review_fixtures import add_snapshot_run, case_of, payment_flag


def payment(record_id: str, card: str, at: str, amount: float, score: float, **extra) -> dict:
    return payment_flag(
        record_id, card, at, amount, score,
        columns={"merchant": "Corner Shop", **extra},
        reasons=[("amount", 0.7, "amount 12× this card's median over 30 days"),
                 ("merchant", 0.3, None)],
        shares=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def store(tmp_path, password_hash) -> ResultsStore:
    """Tabular mode (one case per record): card3 has two open cases, card4 one."""
    store = ResultsStore(f"sqlite:///{tmp_path / 'review.db'}")
    for name, role in (("ana", "analyst"), ("bob", "analyst"), ("vera", "viewer")):
        store.add_user(name, role, password_hash, actor="test")
    add_snapshot_run(
        store,
        batch_id="night1",
        group_by_entity=False,
        flags=[
            payment("k1", "card3", "2026-12-01T08:00:00", 15.0, 1.5),
            payment("k2", "card3", "2026-12-01T09:00:00", 4_200.0, 5.0),
            payment("m1", "card4", "2026-12-01T10:00:00", 70.0, 2.0),
        ],
    )
    return store


@pytest.fixture
def app(store, tmp_path):
    return create_app(store, VigilSettings(home=tmp_path))


def post_form(client: TestClient, path: str, case_id: int, **data):
    """A form on the case page, sent as the browser sends it (with the page's token)."""
    page = client.get(f"/cases/{case_id}").text
    return client.post(path, data={"csrf_token": csrf_in(page), **data})


def follow(client: TestClient, response) -> str:
    assert response.status_code == 303, response.text
    return client.get(response.headers["location"]).text


def entity_audit(store, dataset: str, entity: str) -> list:
    return store.audit_entries(entity="entity", entity_id=audit_key(dataset, entity))


# -- tags and notes ------------------------------------------------------------------------


def test_a_tag_put_on_one_case_shows_on_every_case_of_the_entity_and_is_audited(app, store):
    ana = login(app, "ana")
    first, second = case_of(store, "k1"), case_of(store, "k2")
    page = follow(ana, post_form(ana, f"/cases/{first}/tags", first, tag="  Watch   List "))
    assert "card3 is tagged watch list." in page
    other = ana.get(f"/cases/{second}").text
    panel = other[other.index('id="entity"') :].split("</section>")[0]
    assert "watch list" in panel and "About <bdi>card3</bdi>" in panel
    unrelated = ana.get(f"/cases/{case_of(store, 'm1')}").text
    assert "watch list" not in unrelated.split('id="entity"')[1]
    (entry,) = entity_audit(store, "cards", "card3")
    assert (entry.actor, entry.action) == ("ana", "entity.tag_added")
    assert entry.before == {"tags": None} and entry.after == {"tags": "watch list"}
    assert entry.at is not None
    # the same tag again changes nothing and writes nothing
    follow(ana, post_form(ana, f"/cases/{second}/tags", second, tag="WATCH list"))
    assert len(entity_audit(store, "cards", "card3")) == 1
    # removed from the other case: gone everywhere, audited with before -> after
    page = follow(ana, post_form(ana, f"/cases/{second}/tags", second, remove="watch list"))
    assert "Tag “watch list” removed from card3." in page
    assert store.entity_tags("cards", "card3") == []
    removed = entity_audit(store, "cards", "card3")[0]
    assert removed.action == "entity.tag_removed"
    assert removed.before == {"tags": "watch list"} and removed.after == {"tags": None}


def test_a_tag_that_could_run_as_a_formula_is_refused_with_the_rule(app, store):
    ana = login(app, "ana")
    case_id = case_of(store, "k1")
    page = follow(ana, post_form(ana, f"/cases/{case_id}/tags", case_id, tag="=HYPERLINK(1)"))
    assert "Not done: tag &#39;=HYPERLINK(1)&#39;: use 1-40 letters" in page
    assert store.entity_tags("cards", "card3") == []


def test_the_queue_filters_by_entity_tag(app, store):
    store.add_tag("cards", "card3", "watch", "ana")
    ana = login(app, "ana")
    page = ana.get("/queue?tag=watch").text
    rows = re.findall(r'data-href="/cases/(\d+)"', page)
    assert sorted(map(int, rows)) == sorted([case_of(store, "k1"), case_of(store, "k2")])
    assert 'name="tag" value="watch"' in page
    assert "No flags match these filters" in ana.get("/queue?tag=nobody").text
    api = ana.get("/api/queue", params={"tag": "WATCH"}).json()
    assert {tuple(i["record_ids"]) for i in api["items"]} == {("k1",), ("k2",)}
    assert api["counts"]["open"] == 2


def test_the_filter_form_as_a_browser_sends_it_with_empty_fields(app, store):
    """The form sends every field; an empty one is no filter, a wrong one a clear 422."""
    store.add_tag("cards", "card3", "watch", "ana")
    ana = login(app, "ana")
    fields = "model=&run=&assignee=&entity=&reason=&min_priority=&max_priority=&since=&until="
    page = ana.get(f"/queue?status=open&{fields}&tag=watch&sort=priority")
    assert page.status_code == 200
    assert len(re.findall(r'data-href="/cases/(\d+)"', page.text)) == 2
    assert ana.get("/queue?min_priority=1.6&since=2026-01-01").status_code == 200
    assert ana.get("/queue?min_priority=high").status_code == 422
    assert ana.get("/queue?since=0").status_code == 422


def test_notes_are_kept_on_the_entity_escaped_and_audited(app, store):
    ana = login(app, "ana")
    first, second = case_of(store, "k1"), case_of(store, "k2")
    note = "Called the customer: <script>alert(1)</script> travelling in AE until Friday"
    page = follow(ana, post_form(ana, f"/cases/{first}/notes", first, note=note))
    assert "Note added to card3." in page
    other = ana.get(f"/cases/{second}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; travelling in AE" in other
    assert "<script>alert(1)" not in other
    (entry,) = entity_audit(store, "cards", "card3")
    assert entry.action == "entity.note_added" and entry.after == {"note": note}
    assert entry.before is None and entry.actor == "ana"
    page = follow(ana, post_form(ana, f"/cases/{first}/notes", first, note="   "))
    assert "Not done: a note needs some text" in page


# -- attach and merge ----------------------------------------------------------------------


def test_attaching_a_record_moves_its_flag_and_marks_the_emptied_case_merged(app, store):
    ana = login(app, "ana")
    target, source = case_of(store, "k1"), case_of(store, "k2")
    version = store.get_case(target)["version"]
    page = follow(
        ana,
        post_form(ana, f"/cases/{target}/attach", target, record_id="k2", version=str(version)),
    )
    assert f"Record k2 attached to case #{target} (from #{source})." in page
    case = store.get_case(target)
    assert sorted(case["record_ids"]) == ["k1", "k2"] and case["flag_count"] == 2
    assert case["priority"] == pytest.approx(5.0)  # the attached flag's priority counts
    emptied = store.get_case(source)
    assert emptied["status"] == "merged" and emptied["merged_into"] == target
    actions = {(e.entity_id, e.action) for e in store.case_audit([target, source])}
    assert {(str(target), "case.flag_attached"), (str(source), "case.merged_into")} <= actions
    attached = next(e for e in store.case_audit([target]) if e.action == "case.flag_attached")
    assert attached.before["flag_count"] == 1 and attached.after["flag_count"] == 2
    assert attached.detail["record_id"] == "k2" and attached.actor == "ana"


def test_attach_refuses_what_it_cannot_do_and_says_why(app, store):
    ana = login(app, "ana")
    target = case_of(store, "k1")
    page = follow(ana, post_form(ana, f"/cases/{target}/attach", target, record_id="nope"))
    assert "Not attached: no flagged record &#39;nope&#39;" in page
    page = follow(ana, post_form(ana, f"/cases/{target}/attach", target, record_id="k1"))
    assert "is in case" in page and "already" in page
    other = case_of(store, "m1")
    store.claim(other, "bob", lock=timedelta(minutes=10))
    page = follow(ana, post_form(ana, f"/cases/{target}/attach", target, record_id="m1"))
    assert f"case {other} is claimed by bob" in page
    assert store.get_case(other)["record_ids"] == ["m1"]  # nothing moved


def test_merging_two_cases_keeps_both_histories_verdicts_and_audit(app, store):
    ana = login(app, "ana")
    survivor, absorbed = case_of(store, "k1"), case_of(store, "k2")
    # the absorbed case was judged once and the verdict undone: that history must survive
    store.claim(absorbed, "bob", lock=timedelta(minutes=10))
    store.give_verdict(absorbed, "bob", "fraud", reason_code="stolen_card", note="first look")
    store.undo_verdict(absorbed, "bob")
    store.release(absorbed, "bob")
    survivor_page = ana.get(f"/cases/{survivor}").text
    assert f'href="/cases/{absorbed}">#{absorbed}</a> <bdi>card3</bdi>' in survivor_page
    page = follow(
        ana,
        post_form(
            ana,
            f"/cases/{survivor}/merge",
            survivor,
            absorb=f"#{absorbed}",
            version=str(store.get_case(survivor)["version"]),
        ),
    )
    assert f"Case #{absorbed} merged into #{survivor} (1 flag moved)." in page
    assert f'Holds the flags of case <a href="/cases/{absorbed}">#{absorbed}</a>' in page
    audit = page[page.index('id="audit-table"') :]
    for action in ("case.merged", "case.merged_into", "case.undo", "case.verdict"):
        assert f"<td>{action}</td>" in audit, action  # both cases' entries, one trail
    assert "Lost or stolen card (stolen_card)" in audit
    merged = ana.get(f"/cases/{absorbed}").text
    assert 'id="merged-notice"' in merged and f'href="/cases/{survivor}">case #{survivor}' in merged
    history = store.verdict_history(store.get_case(survivor)["record_ids"])
    assert [(h["record_id"], h["verdict"]) for h in history] == [
        ("k2", "fraud"),
        ("k2", "withdrawn"),
    ]
    # the merged case cannot be worked any more; the survivor's verdict covers both records
    token = store.create_token("ana", actor="test")
    refused = ana.post(f"/api/queue/{absorbed}/claim", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 409 and f"merged into case {survivor}" in refused.json()["detail"]
    store.claim(survivor, "ana", lock=timedelta(minutes=10))
    done = store.give_verdict(survivor, "ana", "not_fraud")
    assert done["labels"] == {"k1": "not_fraud", "k2": "not_fraud"}


def test_merge_refuses_itself_a_closed_case_and_a_stale_page(app, store):
    ana = login(app, "ana")
    survivor, other, closed = case_of(store, "k1"), case_of(store, "k2"), case_of(store, "m1")
    page = follow(ana, post_form(ana, f"/cases/{survivor}/merge", survivor, absorb=survivor))
    assert "Not merged: a case cannot be merged into itself" in page
    store.claim(closed, "bob", lock=timedelta(minutes=10))
    store.give_verdict(closed, "bob", "fraud")
    page = follow(ana, post_form(ana, f"/cases/{survivor}/merge", survivor, absorb=closed))
    assert f"Not merged: case {closed} is already closed" in page
    page = follow(
        ana, post_form(ana, f"/cases/{survivor}/merge", survivor, absorb=other, version="1")
    )
    assert "Not merged: case" in page and "changed by someone else" in page
    assert store.get_case(other)["status"] == "open"


# -- the JSON API --------------------------------------------------------------------------


def test_the_api_tags_notes_attaches_and_merges(app, store):
    token = store.create_token("ana", actor="test")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    first, second, third = case_of(store, "k1"), case_of(store, "k2"), case_of(store, "m1")
    assert api.post(f"/api/queue/{first}/tags", json={"tag": "VIP"}).json() == ["vip"]
    assert api.post(f"/api/queue/{first}/tags", json={"tag": "=1+1"}).status_code == 422
    assert api.post(f"/api/queue/{first}/notes", json={"note": "known"}).status_code == 200
    wrong = api.post(f"/api/queue/{first}/tags", json={"tag": "x", "entity": "card4"})
    assert wrong.status_code == 422 and "not about 'card4'" in wrong.json()["detail"]
    (profile,) = api.get(f"/api/queue/{second}/entity").json()
    assert profile["entity"] == "card3" and [t["tag"] for t in profile["tags"]] == ["vip"]
    assert profile["notes"][0]["body"] == "known" and profile["notes"][0]["author"] == "ana"
    assert api.delete(f"/api/queue/{second}/tags/vip").json() == []
    assert api.delete(f"/api/queue/{second}/tags/vip").status_code == 404
    attached = api.post(f"/api/queue/{first}/attach", json={"record_id": "m1"}).json()
    assert attached["absorbed"] == [third] and store.get_case(third)["status"] == "merged"
    stale = api.post(f"/api/queue/{first}/merge", json={"absorb": second, "version": 1})
    assert stale.status_code == 409
    merged = api.post(f"/api/queue/{first}/merge", json={"absorb": second}).json()
    assert merged["absorbed"] == [second]
    assert sorted(store.get_case(first)["record_ids"]) == ["k1", "k2", "m1"]
    assert store.merge_family(first)["absorbed"] == sorted([second, third])


# -- who may do what -----------------------------------------------------------------------


def test_a_viewer_reads_cases_and_case_files_but_changes_nothing(app, store):
    vera = login(app, "vera")
    first, second = case_of(store, "k1"), case_of(store, "k2")
    page = vera.get(f"/cases/{first}").text
    assert 'action="/cases/' + str(first) + '/tags"' not in page
    assert 'id="merge-form"' not in page and "can read cases but not attach" in page
    token = csrf_in(page)
    for path, data in (
        (f"/cases/{first}/tags", {"tag": "watch"}),
        (f"/cases/{first}/tags", {"remove": "watch"}),
        (f"/cases/{first}/notes", {"note": "hello"}),
        (f"/cases/{first}/attach", {"record_id": "k2"}),
        (f"/cases/{first}/merge", {"absorb": str(second)}),
    ):
        answer = vera.post(path, data={"csrf_token": token, **data})
        assert answer.status_code == 403, path
    api_token = store.create_token("vera", actor="test")
    api = TestClient(app, headers={"Authorization": f"Bearer {api_token}"})
    assert api.post(f"/api/queue/{first}/tags", json={"tag": "x"}).status_code == 403
    assert api.post(f"/api/queue/{first}/merge", json={"absorb": second}).status_code == 403
    assert api.get(f"/api/queue/{first}/entity").status_code == 200
    assert vera.get(f"/cases/{first}/file").status_code == 200
    assert store.entity_tags("cards", "card3") == []
    assert store.get_case(second)["status"] == "open" and store.get_case(first)["flag_count"] == 1
    changes = [e for e in store.audit_entries(limit=500) if e.entity in ("case", "entity")]
    assert [e.action for e in changes if e.actor == "vera"] == ["case.file_exported"]


def test_every_change_needs_the_pages_csrf_token(app, store):
    ana = login(app, "ana")
    case_id = case_of(store, "k1")
    for path, data in (
        (f"/cases/{case_id}/tags", {"tag": "watch"}),
        (f"/cases/{case_id}/notes", {"note": "hello"}),
        (f"/cases/{case_id}/merge", {"absorb": str(case_of(store, "k2"))}),
    ):
        assert ana.post(path, data=data).status_code == 403
        assert ana.post(path, data={"csrf_token": "forged", **data}).status_code == 403
    assert store.entity_tags("cards", "card3") == []


# -- the case file -------------------------------------------------------------------------


def test_the_case_file_prints_the_payment_reasons_timeline_verdicts_and_audit(app, store):
    ana = login(app, "ana")
    case_id = case_of(store, "k2")
    store.add_tag("cards", "card3", "watch", "ana")
    store.add_note("cards", "card3", "@SUM(1+1) customer says it was not them", "ana")
    store.claim(case_id, "ana", lock=timedelta(minutes=10))
    formula = "=cmd|' /C calc'!A0"
    store.give_verdict(case_id, "ana", "fraud", reason_code="stolen_card", note=formula)
    answer = ana.get(f"/cases/{case_id}/file")
    assert answer.status_code == 200
    page = answer.text
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "Case #" in text and "card3" in text and "Corner Shop" in text
    assert "4,200.00" in text and "2026-12-01 09:00 UTC" in text  # the record, formatted
    assert "amount 12× this card&#39;s median over 30 days (70% of the score)" in text
    assert '<svg class="chart"' in page and "4,200.00" in page  # the timeline
    verdicts = page[page.index('id="file-verdicts"') :].split("</table>")[0]
    assert "fraud" in verdicts and "Lost or stolen card" in verdicts
    assert "&#39;=cmd|" in verdicts  # a formula note comes out quoted, never raw
    assert "&#39;@SUM(1+1) customer says" in page
    audit = page[page.index('id="file-audit"') :].split("</table>")[0]
    for action in ("case.claimed", "case.verdict", "entity.tag_added", "entity.note_added"):
        assert action in audit, action
    assert "case.file_exported" in audit  # the file records its own hand-out
    # self-contained: no file fetched, its own style and script allowed by hash only
    assert not re.search(r'<link|src="|href="/static', page)
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "style-src 'sha256-" in policy
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy
    assert "@media print" in page
    saved = ana.get(f"/cases/{case_id}/file?download=1")
    assert saved.headers["content-disposition"] == (
        f'attachment; filename="vigil-case-{case_id}.html"'
    )
    exports = [e for e in store.case_audit([case_id]) if e.action == "case.file_exported"]
    assert [(e.actor, e.detail["saved"]) for e in exports] == [("ana", True), ("ana", False)]


def test_the_case_file_says_when_retention_removed_the_snapshot(app, store):
    case_id = case_of(store, "m1")
    store.claim(case_id, "ana", lock=timedelta(minutes=10))
    store.give_verdict(case_id, "ana", "not_fraud")
    store.remove_closed_snapshots(1, actor="ops", now=datetime.now(UTC) + timedelta(days=2))
    page = login(app, "ana").get(f"/cases/{case_id}/file").text
    assert 'id="snapshot-removed"' in page and "retention period" in page
    assert "Corner Shop" not in page  # the card data is gone from the file too
    assert "retention.snapshots_removed" not in page  # a store-wide sweep, not this case's


def test_the_case_file_of_a_merged_case_points_at_its_survivor(app, store):
    survivor, absorbed = case_of(store, "k1"), case_of(store, "k2")
    store.merge_cases(survivor, absorbed, "ana")
    ana = login(app, "ana")
    page = ana.get(f"/cases/{absorbed}/file").text
    assert f"Merged into case #{survivor}" in page
    page = ana.get(f"/cases/{survivor}/file").text
    assert f"Holds the flags of case #{absorbed}" in page
    assert page.count('class="payment"') == 2


# -- the store on both backends ------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request, tmp_path) -> ResultsStore:
    if request.param == "sqlite":
        return ResultsStore(f"sqlite:///{tmp_path / 'both.db'}")
    return ResultsStore(request.getfixturevalue("postgres_url"))


def test_tags_attach_and_merge_in_the_store_on_sqlite_and_postgres(any_store):
    store = any_store
    add_snapshot_run(
        store,
        batch_id="b",
        group_by_entity=False,
        flags=[
            payment("a1", "cardA", "2026-12-01T08:00:00", 10.0, 1.5),
            payment("a2", "cardA", "2026-12-01T09:00:00", 20.0, 3.0),
            payment("b1", "cardB", "2026-12-01T10:00:00", 30.0, 2.0),
        ],
    )
    a1, a2, b1 = (case_of(store, r) for r in ("a1", "a2", "b1"))
    assert store.add_tag("cards", "cardA", "Watch", "ana") == ["watch"]
    from pipelines.store.queue import QueueFilters

    tagged = store.queue_page(QueueFilters(tag="watch")).items
    assert sorted(i["id"] for i in tagged) == sorted([a1, a2])
    assert [c["id"] for c in store.related_open_cases(a1, "cards", ["cardA"])] == [a2]
    store.attach_record(a1, "b1", "ana")
    store.merge_cases(a1, a2, "ana")
    case = store.get_case(a1)
    assert sorted(case["record_ids"]) == ["a1", "a2", "b1"] and case["flag_count"] == 3
    assert case["priority"] == pytest.approx(3.0)
    assert {store.get_case(c)["status"] for c in (a2, b1)} == {"merged"}
    assert store.merge_family(a1)["absorbed"] == sorted([a2, b1])
    assert store.merge_family(b1)["survivor"] == a1
    actions = sorted(e.action for e in store.case_audit([a1, a2, b1]))
    assert actions == ["case.flag_attached", "case.merged", "case.merged_into", "case.merged_into"]


def test_the_migration_downgrade_reads_merged_cases_as_closed_and_up_again(store):
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from pipelines.store.database import HEAD_REVISION, MIGRATIONS_DIR

    survivor, absorbed = case_of(store, "k1"), case_of(store, "k2")
    store.add_tag("cards", "card3", "watch", "ana")
    store.merge_cases(survivor, absorbed, "ana")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008_drop_legacy_reviews")
    tables = sa.inspect(store.engine).get_table_names()
    assert "entity_tags" not in tables and "entity_notes" not in tables
    with store.engine.connect() as connection:
        status = connection.execute(
            sa.text("SELECT status FROM cases WHERE id = :id"), {"id": absorbed}
        ).scalar()
    assert status == "closed"
    store.migrate()
    assert store.db.schema_revision() == HEAD_REVISION
    assert store.entity_tags("cards", "card3") == []
