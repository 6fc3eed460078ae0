"""Cases as an analyst works them, in a real browser (Debian's chromium through
Playwright): tag the card and leave a note, merge the card's other open case into this
one, find the case again by its tag in the queue, and open the case file (printed to PDF
too). Screenshots and the PDF go to tests/artifacts/casework/."""

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

SHOTS = Path(__file__).parent / "artifacts" / "casework"

pytestmark = BROWSER_MARKS


def payment(record_id: str, card: str, at: str, amount: float, score: float, **extra) -> dict:
    columns = {
        "currency": "EUR",
        "merchant": extra.pop("merchant", "Corner Shop"),
        "country": extra.pop("country", "BE"),
        **extra,
    }
    return payment_flag(
        record_id, card, at, amount, score, columns=columns,
        reasons=[("amount", 0.7, f"amount {amount / 25:.0f}× this card's median over 30 days"),
                 ("country", 0.3, "first payment in this country for this card")],
        shares=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """card0042 (one case per payment, tabular mode): a week of payments, one judged
    not fraud; tonight two large ones abroad, each its own open case; card0007 beside."""
    from review import create_app

    home = tmp_path_factory.mktemp("review-casework")
    store = ResultsStore(f"sqlite:///{home / 'store.db'}")
    password_hash = hash_password(PASSWORD)
    store.add_user("ana", "analyst", password_hash, actor="test")
    store.add_user("bob", "analyst", password_hash, actor="test")
    week = [
        payment(f"w{i}", "card0042", f"2026-11-{24 + i:02d}T{9 + i:02d}:10:00", amount, 1.2)
        for i, amount in enumerate([18.4, 26.0, 22.9, 31.5])
    ]
    add_snapshot_run(store, batch_id="week", flags=week[:1], group_by_entity=False)
    earlier = case_of(store, "w0")
    store.claim(earlier, "bob", lock=timedelta(minutes=5))
    store.give_verdict(earlier, "bob", "not_fraud", reason_code="known_customer_pattern")
    tonight = [
        payment("t1", "card0042", "2026-12-01T02:41:00", 2_480.0, 6.0, country="AE",
                merchant="Gold Souk Jewellers"),
        payment("t2", "card0042", "2026-12-01T02:57:00", 1_950.0, 4.5, country="AE",
                merchant="Dubai Mall Electronics"),
        payment("o1", "card0007", "2026-12-01T04:00:00", 64.0, 1.6),
    ]  # fmt: skip
    add_snapshot_run(store, batch_id="tonight", flags=tonight, group_by_entity=False)
    with served(create_app(store, VigilSettings(home=home))) as url:
        yield {"url": url, "store": store}


@pytest.fixture(scope="module")
def browser():
    with launched_browser() as browser:
        yield browser


def test_an_analyst_tags_the_card_merges_its_cases_and_opens_the_case_file(server, browser):
    url, store = server["url"], server["store"]
    survivor, absorbed = case_of(store, "t1"), case_of(store, "t2")
    context, page = log_in(browser, url, "ana")
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Refused" in m.text else None)

    # tag the card and leave a note, from tonight's largest payment
    page.goto(f"{url}/cases/{survivor}")
    panel = page.locator("#entity")
    panel.locator("input[name=tag]").fill("Watch")
    with page.expect_navigation():
        panel.locator("form.add-tag button").click()
    assert "card0042 is tagged watch." in page.locator(".flash").inner_text()
    assert page.locator("#entity .etag").inner_text().startswith("watch")
    panel.locator("textarea[name=note]").fill("Customer travelling in the UAE this week?")
    with page.expect_navigation():
        panel.locator("form.add-note button").click()
    assert "travelling in the UAE" in page.locator("#entity .entity-notes").inner_text()

    # the card's other open case is offered for a merge; merge it into this one
    related = page.locator("#related-cases li")
    assert related.count() == 1 and f"#{absorbed}" in related.inner_text()
    with page.expect_navigation():
        related.locator("button").click()
    assert f"Case #{absorbed} merged into #{survivor}" in page.locator(".flash").inner_text()
    assert f"#{absorbed}" in page.locator("#merged-from").inner_text()
    assert page.locator("section.flag").count() == 2  # both payments, one case
    assert "case.merged" in page.locator("#audit-table").inner_text()
    page.locator("#entity").scroll_into_view_if_needed()
    screenshot(page, SHOTS, "case-tagged-and-merged")

    # the absorbed case is still there, marked merged, pointing at its survivor
    page.goto(f"{url}/cases/{absorbed}")
    notice = page.locator("#merged-notice")
    assert notice.is_visible() and f"case #{survivor}" in notice.inner_text()
    assert page.locator("#entity .etag").count() == 1  # the card's tag, on every case
    screenshot(page, SHOTS, "case-merged-away")

    # the queue finds the card's cases by its tag
    page.goto(f"{url}/queue")
    page.locator("details.filters summary").click()
    page.locator("#tag-filter").fill("watch")
    with page.expect_navigation():
        page.locator(".filter-form button[type=submit]").click()
    rows = page.locator("#queue-table tr.item")
    assert rows.count() == 1 and rows.first.get_attribute("data-id") == str(survivor)
    screenshot(page, SHOTS, "queue-by-tag")

    # the verdict on the merged case, then its case file: one page, printable, nothing
    # fetched and nothing refused
    page.goto(f"{url}/cases/{survivor}")
    page.locator("#reason-code").select_option("stolen_card")
    page.locator("#note").fill("Card reported stolen; filed with the FIU")
    with page.expect_navigation():
        page.locator("button.v.fraud").click()
    page.goto(f"{url}/cases/{survivor}")
    with page.expect_navigation():
        page.locator("#case-file-link").click()
    assert re.search(rf"/cases/{survivor}/file$", page.url)
    assert page.locator("svg.chart").count() >= 1
    assert "2,480.00" in page.locator("section.story").inner_text()
    assert "Dubai Mall Electronics" in page.locator("body").inner_text()
    verdicts = page.locator("#file-verdicts").inner_text()
    assert verdicts.count("fraud") == 2 and "Lost or stolen card" in verdicts  # t1 and t2
    assert "filed with the FIU" in verdicts
    assert "not fraud" in page.locator("section.story").inner_text()  # last week's verdict
    audit = page.locator("#file-audit").inner_text()
    assert "entity.tag_added" in audit and "case.merged_into" in audit
    assert "case.verdict" in audit
    border = page.evaluate("getComputedStyle(document.querySelector('h2')).borderBottomStyle")
    assert border == "solid"  # its own style sheet applied under its policy
    assert page.locator("#print").is_visible()
    screenshot(page, SHOTS, "case-file")
    page.emulate_media(media="print")
    assert not page.locator("#print").is_visible()  # the button is not printed
    screenshot(page, SHOTS, "case-file-print")
    page.pdf(path=str(SHOTS / "case-file.pdf"), format="A4", print_background=True)
    assert (SHOTS / "case-file.pdf").stat().st_size > 10_000
    assert not refused, refused
    context.close()
