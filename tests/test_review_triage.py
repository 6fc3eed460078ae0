"""The case page as an analyst reads it, through HTTP: the entity's story as a timeline
chart above its table, undo of the last verdict from the page that opens next, text that
cannot break the page, and the small things that mislead (labels, empty states, boxes)."""

from __future__ import annotations

import re

import pytest

from pipelines.accounts import hash_password
from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from review import create_app
from review.charts import entity_timeline
from review.story import entity_story, story_summary
from tests.review_client import PASSWORD, csrf_in, login
from tests.review_fixtures import add_snapshot_run, case_of, payment_flag


def payment(record_id: str, card: str, at: str, amount: float, score: float, **extra) -> dict:
    return payment_flag(
        record_id, card, at, amount, score,
        columns={"merchant_category": "grocery", **extra},
        reasons=[("amount", 0.7, "amount is high"), ("merchant_category", 0.3, None)],
    )  # fmt: skip


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def store(tmp_path, password_hash) -> ResultsStore:
    """card7: two earlier flagged payments judged fraud, then tonight's large payment."""
    store = ResultsStore(f"sqlite:///{tmp_path / 'review.db'}")
    for name, role in (("ana", "analyst"), ("bob", "analyst")):
        store.add_user(name, role, password_hash, actor="test")
    add_snapshot_run(
        store,
        batch_id="monday",
        flags=[
            payment("t1", "card7", "2026-11-30T09:12:00", 18.5, 1.4),
            payment("t2", "card7", "2026-11-30T21:40:00", 42.0, 1.2),
        ],
    )
    first = store.queue_page().items[0]["id"]
    store.claim_next("bob", lock=_minutes(10))
    store.give_verdict(first, "bob", "fraud", reason_code="card_testing")
    add_snapshot_run(
        store,
        batch_id="tuesday",
        flags=[payment("t3", "card7", "2026-12-01T03:05:00", 9_999_999.0, 6.0)],
    )
    return store


def _minutes(n: int):
    from datetime import timedelta

    return timedelta(minutes=n)


@pytest.fixture
def app(store, tmp_path):
    return create_app(store, VigilSettings(home=tmp_path))


def open_case(store) -> int:
    return next(i["id"] for i in store.queue_page().items if i["status"] == "open")


# -- the entity's story ------------------------------------------------------------------


def test_the_story_puts_records_in_time_order_with_amounts_flags_and_verdicts(store):
    case = store.get_case(open_case(store))
    timeline = store.entity_timeline("cards", "card7")
    story = entity_story(timeline, case["record_ids"])
    assert story.time_column == "timestamp" and story.value_column == "amount"
    assert [p.record_id for p in story.points] == ["t1", "t2", "t3"]
    assert [p.verdict for p in story.points] == ["fraud", "fraud", None]
    assert [p.in_case for p in story.points] == [False, False, True]
    summary = story_summary(story)
    assert summary["flagged"] == 3 and summary["verdicts"] == {"fraud": 2}
    assert round(summary["ratio"]) == round(9_999_999.0 / 30.25)
    svg = str(entity_timeline(story))
    assert svg.count("<circle") >= 3 + 1  # a dot each, and the ring of this case
    assert ">fraud</text>" in svg  # the verdict written over its dot
    assert 'href="/cases/' in svg  # earlier flags link to their case
    assert "9,999,999.00" in svg and "log scale" in svg  # the outlier does not flatten the rest


def test_the_story_falls_back_to_score_and_order_without_amount_or_time():
    timeline = [
        {"record_id": "b", "record": {"x": 1}, "score": 3.0, "flagged": True, "label": None},
        {"record_id": "a", "record": {"x": 2}, "score": 0.5, "flagged": False, "label": None},
    ]
    story = entity_story(timeline, ["b"])
    assert story.time_column is None and story.value_column is None
    assert [p.record_id for p in story.points] == ["a", "b"]  # the store lists newest first
    assert story.value_label == "score"
    assert "records in the order kept" in str(entity_timeline(story))


def test_the_case_page_shows_the_timeline_chart_above_its_table(app, store):
    client = login(app, "ana")
    page = client.get(f"/cases/{open_case(store)}").text
    story = page.index('id="story"')
    assert page.index("<svg", story) < page.index('id="timeline-table"', story)
    summary = re.sub(r"\s+", " ", page[page.index('id="story-summary"') :].split("</p>")[0])
    assert "<b>3</b> records from 2026-11-30 09:12 UTC to 2026-12-01 03:05 UTC" in summary
    assert "2 fraud" in summary and "9,999,999.00" in summary
    table = page[page.index('id="timeline-table"') :].split("</table>")[0]
    assert "2026-12-01 03:05 UTC" in table and "9,999,999.00" in table


# -- undo after auto-advance -------------------------------------------------------------


def test_the_page_after_a_verdict_offers_undo_of_it(app, store):
    add_snapshot_run(
        store,
        batch_id="wednesday",
        flags=[payment("u1", "card8", "2026-12-02T10:00:00", 12.0, 2.0)],
    )
    client = login(app, "ana")
    first = store.claim_next("ana", lock=_minutes(10))["id"]
    page = client.get(f"/cases/{first}").text
    assert 'id="undo-form"' not in page  # nothing judged yet
    done = client.post(
        f"/cases/{first}/verdict",
        data={"verdict": "fraud", "csrf_token": csrf_in(page), "version": _version(store, first)},
    )
    assert done.status_code == 303 and "/cases/" in done.headers["location"]
    following = client.get(done.headers["location"]).text
    assert f'action="/cases/{first}/undo" id="undo-form"' in following
    assert f"Undo #{first}" in following
    assert f"Undo #{first}" in client.get("/queue").text  # wherever the analyst goes next
    assert f"Undo #{first}" not in login(app, "bob").get("/queue").text  # ana's, not bob's
    undone = client.post(
        f"/cases/{first}/undo",
        data={"csrf_token": csrf_in(following), "version": _version(store, first)},
    )
    assert undone.status_code == 303 and undone.headers["location"] == f"/cases/{first}"
    assert store.get_case(first)["status"] == "open"
    assert "Undo #" not in client.get("/queue").text  # undone: nothing left to undo


def test_no_undo_is_offered_once_someone_else_changed_the_case(app, store):
    client = login(app, "ana")
    case_id = open_case(store)
    store.claim(case_id, "ana", lock=_minutes(5))
    store.give_verdict(case_id, "ana", "not_fraud")
    assert f"Undo #{case_id}" in client.get("/queue").text
    store.give_verdict(case_id, "bob", "fraud", version=_version(store, case_id))
    assert "Undo #" not in client.get("/queue").text


def _version(store, case_id: int) -> int:
    return store.get_case(case_id)["version"]


# -- text that cannot break the page -----------------------------------------------------

RLO = "\u202e"


def test_odd_text_is_shown_safely_and_internal_fields_are_hidden(app, store):
    long_word = "x" * 3000
    odd = payment(
        "odd1",
        "card9",
        "2026-12-02T11:00:00",
        20.0,
        3.0,
        category="",
        note=f"{RLO}erocs",
        _truncated={"memo": 52000},
        memo="y" * 100,
    )
    odd["record"]["merchant_category"] = long_word
    odd["reasons"][0]["text"] = f"merchant_category = {RLO}gaming (86% of the anomaly score)"
    add_snapshot_run(store, batch_id="odd", flags=[odd])
    client = login(app, "ana")
    page = client.get(f"/cases/{case_of(store, 'odd1')}").text
    assert RLO not in page and "[U+202E]" in page  # shown, never obeyed
    assert "_truncated" not in page and "52,000 characters in all" in page
    assert long_word in page and f"<bdi>{long_word[:200]}</bdi>…" in page  # cut, all on demand


def test_a_long_drift_banner_is_shortened_with_the_full_text_on_demand(app, store):
    run_id = store.list_runs()[0].id
    summary = "score drift " + "very " * 2000 + "end of the summary"
    store.save_run_health(run_id, {"status": "alarm", "summary": summary, "alarms": []})
    page = login(app, "ana").get(f"/runs/{run_id}").text
    banner = page[page.index('id="health"') :]
    assert '<details class="long">' in banner and "end of the summary" in banner
    shown = banner[banner.index("<summary>") : banner.index("</summary>")]
    assert "end of the summary" not in shown and len(shown) < 400


# -- the small things that mislead -------------------------------------------------------


def test_the_case_header_names_the_case_revision_not_a_version(app, store):
    page = login(app, "ana").get(f"/cases/{open_case(store)}").text
    head = page[page.index('class="case-head"') : page.index('class="case-grid"')]
    assert "case revision" in head and "· version" not in head


def test_the_audit_reads_human_times_and_the_reason_code(app, store):
    client = login(app, "ana")
    store.claim_next("ana", lock=_minutes(10))
    page = re.sub(r"<[^>]+>", " ", client.get("/audit").text)
    assert "Card testing pattern (card_testing)" in page
    until = re.search(r"until: – → (\S+ \S+ \S+)", page).group(1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", until), until
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", page)  # no raw ISO time left


def test_an_empty_queue_says_whether_the_filters_or_the_queue_are_empty(app, store):
    client = login(app, "ana")
    assert "No flags match these filters" in client.get("/queue?entity=nobody").text
    assert "No flags match these filters" in client.get("/queue?status=all&model=zzz").text
    for case_id in [i["id"] for i in store.queue_page().items]:
        store.claim(case_id, "ana", lock=_minutes(5))
        store.give_verdict(case_id, "ana", "unsure")
    page = client.get("/queue").text
    assert "The queue is empty." in page and "No flags match" not in page


def test_the_closed_view_has_no_bulk_verdict_box(app, store):
    client = login(app, "ana")
    closed = client.get("/queue?status=closed").text
    assert 'name="case_id"' not in closed and 'class="bulk"' not in closed
    opened = client.get("/queue").text
    assert 'name="case_id"' in opened and 'class="bulk"' in opened


def test_a_record_scored_twice_the_same_way_shows_one_flag_block(app, store):
    twice = payment("d1", "card5", "2026-12-02T12:00:00", 70.0, 2.5)
    add_snapshot_run(store, batch_id="first", flags=[twice])
    add_snapshot_run(store, batch_id="again", flags=[twice])
    case_id = case_of(store, "d1")
    assert len(store.get_case(case_id)["flags"]) == 2
    page = login(app, "ana").get(f"/cases/{case_id}").text
    assert page.count('<section class="flag">') == 1
    assert "scored the same way 1 more time" in page


def test_every_page_names_a_favicon_that_exists(app, store):
    client = login(app, "ana")
    page = client.get("/queue").text
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page).group(1)
    answer = client.get(icon)
    assert answer.status_code == 200 and answer.text.startswith("<svg")
    assert '<link rel="icon"' in client.get("/login").text


def test_a_record_case_in_tabular_mode_tells_its_entitys_story_too(app, store):
    add_snapshot_run(
        store,
        batch_id="tabular",
        group_by_entity=False,
        flags=[
            payment("k1", "card3", "2026-12-02T08:00:00", 15.0, 1.5),
            payment("k2", "card3", "2026-12-02T09:00:00", 4_200.0, 5.0),
        ],
    )
    case_id = case_of(store, "k2")
    assert store.get_case(case_id)["entity_key"] == "record:k2"
    page = login(app, "ana").get(f"/cases/{case_id}").text
    assert 'id="story"' in page and '<svg class="chart"' in page[page.index('id="story"') :]
    assert "4,200.00" in page


def test_a_snapshot_removed_by_retention_says_so_on_the_case_page(store, app):
    from datetime import UTC, datetime, timedelta

    closed = case_of(store, "t1")
    login_page = login(app, "ana").get(f"/cases/{closed}")
    assert 'id="snapshot-removed"' not in login_page.text
    done = store.remove_closed_snapshots(1, actor="ops", now=datetime.now(UTC) + timedelta(days=2))
    assert done.snapshots >= 1
    page = login(app, "ana").get(f"/cases/{closed}")
    assert page.status_code == 200
    assert 'id="snapshot-removed"' in page.text and "retention period" in page.text


def test_verdicts_on_nearby_dots_do_not_print_over_each_other():
    """Two frauds minutes apart at similar amounts: their verdict labels stack."""
    import re

    timeline = [
        {"record_id": rid, "record": {"timestamp": at, "amount": value}, "score": 2.0,
         "flagged": True, "label": {"verdict": "fraud"}}
        for rid, at, value in (
            ("n1", "2026-11-24T10:00:00", 18.4),
            ("f1", "2026-12-01T10:00:00", 2480.0),
            ("f2", "2026-12-01T10:05:00", 1950.0),
        )
    ]  # fmt: skip
    svg = str(entity_timeline(entity_story(timeline, ["f1", "f2"])))
    labels = [
        (float(x), float(y))
        for x, y in re.findall(
            r'<text x="([\d.]+)" y="([\d.]+)"[^>]*font-weight="700"[^>]*>fraud</text>', svg
        )
    ]
    assert len(labels) == 3
    for i, (x1, y1) in enumerate(labels):
        for x2, y2 in labels[i + 1 :]:
            assert abs(x1 - x2) > 7 * len("fraud") or abs(y1 - y2) >= 12
