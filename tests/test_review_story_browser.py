"""What an analyst sees, in a real browser (Debian's chromium through Playwright): the
card's story as a timeline chart on the case page, undo after auto-advance, text that
cannot break the layout, and no page that fetches a missing file. Screenshots of the case
page and the queue go to /tmp/review-shots/."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.accounts import hash_password
from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from tests.browser_support import (
    BROWSER_MARKS,
    PASSWORD,
    launched_browser,
    log_in,
    screenshot,
    served,
)
from tests.review_fixtures import add_snapshot_run, case_of, payment_flag

SHOTS = Path(__file__).parent / "artifacts" / "story"

pytestmark = BROWSER_MARKS


def payment(record_id: str, card: str, at: str, amount: float, score: float, **extra) -> dict:
    category = extra.pop("category", "grocery")
    return payment_flag(
        record_id, card, at, amount, score,
        columns={"merchant_category": category, "country": "BE", **extra},
        reasons=[("amount", 0.7, "amount above usual"), ("merchant_category", 0.3, None)],
    )  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """card0042 with a week of flagged payments (two judged), then tonight's large one;
    other cards' open cases behind it in the queue."""

    from review import create_app

    home = tmp_path_factory.mktemp("review-story")
    store = ResultsStore(f"sqlite:///{home / 'store.db'}")
    password_hash = hash_password(PASSWORD)
    for name in ("ana", "bob"):
        store.add_user(name, "analyst", password_hash, actor="test")
    week = [
        payment(
            f"w{i}", "card0042", f"2026-11-{24 + i:02d}T{8 + i:02d}:15:00", amount, 1.1 + i / 10
        )
        for i, amount in enumerate([12.4, 31.0, 8.99, 54.2, 23.5, 17.8])
    ]
    add_snapshot_run(store, batch_id="week", flags=week)
    earlier = store.queue_page().items[0]["id"]
    store.claim(earlier, "bob", lock=timedelta(minutes=5))
    store.give_verdict(earlier, "bob", "not_fraud", overrides={"w2": "fraud"})
    tonight = [payment("t1", "card0042", "2026-12-01T03:05:00", 9_999_999.0, 9.0)]
    tonight += [
        payment(f"o{i}", f"card{i:04d}", "2026-12-01T04:00:00", 60.0 + i, 2.0 - i / 10)
        for i in range(1, 5)
    ]
    odd = payment("x1", "card0099", "2026-12-01T05:00:00", 15.0, 1.5, category="ab" * 2500)
    odd["reasons"][1]["text"] = "merchant_category = \u202egaming (86% of the anomaly score)"
    odd["record"]["_truncated"] = {"merchant_category": 90000}
    tonight.append(odd)
    run_id = add_snapshot_run(store, batch_id="tonight", flags=tonight)
    store.save_run_health(
        run_id, {"status": "alarm", "summary": "drift " + "x" * 20000, "alarms": ["y" * 9000]}
    )
    with served(create_app(store, VigilSettings(home=home))) as url:
        yield {"url": url, "store": store}


@pytest.fixture(scope="module")
def browser():
    with launched_browser() as browser:
        yield browser


def _login(browser, url: str, name: str):
    return log_in(browser, url, name)


def _shot(page, name: str) -> None:
    screenshot(page, SHOTS, name)


def test_the_case_page_tells_the_cards_story_as_a_timeline(server, browser):
    url, store = server["url"], server["store"]
    context, page = _login(browser, url, "ana")
    _shot(page, "queue")
    page.goto(f"{url}/cases/{case_of(store, 't1')}")
    chart = page.locator("#story svg.chart")
    assert chart.count() == 1 and chart.is_visible()
    assert chart.locator("circle").count() >= 7
    labels = chart.locator("text").all_text_contents()
    assert "not fraud" in labels and "fraud" in labels
    assert chart.locator("a[href^='/cases/']").count() >= 6  # earlier flags open their case
    summary = page.locator("#story-summary").inner_text()
    assert "7 records" in summary and "9,999,999.00" in summary
    box, table = chart.bounding_box(), page.locator("#timeline-table").bounding_box()
    assert box["y"] < table["y"] and box["height"] > 150  # the chart first, the table below
    page.locator("#story").scroll_into_view_if_needed()
    _shot(page, "case")
    context.close()


def test_z_undoes_the_last_verdict_from_the_page_auto_advance_opened(server, browser):
    url, store = server["url"], server["store"]
    context, page = _login(browser, url, "ana")
    page.keyboard.press("c")  # claim the next item
    page.wait_for_url(re.compile(r"/cases/\d+"))
    judged = int(re.search(r"/cases/(\d+)", page.url).group(1))
    page.keyboard.press("n")
    page.wait_for_url(re.compile(rf"/cases/(?!{judged}\b)\d+"))  # auto-advanced
    offer = page.locator("#undo-form")
    assert offer.is_visible() and f"Undo #{judged}" in offer.inner_text()
    _shot(page, "case-after-verdict")
    with page.expect_navigation():
        page.keyboard.press("z")
    assert page.url.endswith(f"/cases/{judged}")
    assert "undone" in page.locator(".flash").inner_text()
    assert store.get_case(judged)["status"] == "open"
    assert page.locator("#undo-form").count() == 0  # nothing left to undo
    context.close()


def test_long_and_bidirectional_text_cannot_break_the_page(server, browser):
    url, store = server["url"], server["store"]
    context, page = _login(browser, url, "ana")
    width = 1360
    page.goto(f"{url}/cases/{case_of(store, 'x1')}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    reasons = page.locator("ul.reasons").inner_text()
    assert "[U+202E]gaming (86% of the anomaly score)" in reasons  # the sentence reads on
    assert "_truncated" not in page.locator("main").inner_text()
    _shot(page, "case-odd-text")
    page.goto(f"{url}/runs/{store.list_runs()[0].id}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.locator("#health").bounding_box()["height"] < 300  # shortened
    page.locator("#health details.long summary").first.click()
    assert page.locator("#health details.long .full").first.is_visible()
    page.goto(f"{url}/queue")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    context.close()


def test_no_page_asks_for_a_file_that_is_not_there(server, browser):
    url, store = server["url"], server["store"]
    context, page = _login(browser, url, "ana")
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    paths = ["/queue", f"/cases/{case_of(store, 't1')}", "/runs", "/audit", "/quality"]
    for path in paths:
        page.goto(f"{url}{path}")
        page.wait_for_load_state("networkidle")
    assert not missing, missing
    icon = page.evaluate("document.querySelector('link[rel=icon]').href")
    assert page.request.get(icon).status == 200
    page.goto(f"{url}/queue?entity=nobody")
    assert "No flags match these filters" in page.locator("#queue-empty").inner_text()
    page.goto(f"{url}/queue?status=closed")
    assert page.locator(".bulk").count() == 0
    context.close()
