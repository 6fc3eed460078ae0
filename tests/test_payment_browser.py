"""A scripted pass over 20 seeded cases in each mode (tabular: one payment per case;
sequence: one card per case), in a real browser (Debian's chromium through Playwright):
every case page shows the payment first (the card, the payment's time in UTC and in the
analyst's zone, the merchant, the amount with its currency), at least one reason, and the
card's timeline chart. Screenshots go to tests/artifacts/payment/."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detectors.reasons import render
from pipelines.accounts import hash_password
from pipelines.intake.display import PAYMENT_KEY, DisplayColumns, QueuePriority, payment_snapshot
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
from tests.review_fixtures import add_snapshot_run

SHOTS = Path(__file__).parent / "artifacts" / "payment"
CASES_PER_MODE = 20
#: The analyst's zone in the browser: the page must show the payment's time in it too.
ANALYST_ZONE = "America/New_York"
DISPLAY = DisplayColumns(
    entity="card_id",
    time="timestamp",
    merchant="merchant",
    amount="amount",
    currency_column="currency",
)
MONEY = re.compile(r"\b[A-Z]{3} \d{1,3}(,\d{3})*\.\d{2}\b")

pytestmark = BROWSER_MARKS


#: What a sentence against normal says: the card's usual amount, a first time for the
#: card, a share or percentile of training records, a value never seen in training.
NAMES_NORMAL = re.compile(
    r"this card's (usual|median|average)|new for this card|usually|of training|"
    r"seen in training"
)


def reason_names_what_is_normal(text: str) -> bool:
    """Whether a reason says what normal looks like for the card or the training data
    (an amount against the card's usual, a first time, a share of training payments).

    The sentences come from :mod:`detectors.reasons`: "<what the record has>: <what
    normal looks like>", the normal part naming the card's own history or the training
    data."""
    return bool(NAMES_NORMAL.search(text))


def _payment(
    record_id: str, card: str, at: datetime, amount: float, merchant: str, currency: str = "USD"
) -> dict:
    values = {
        "transaction_id": record_id,
        "card_id": card,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "merchant": merchant,
        "amount": amount,
        "currency": currency,
        "merchant_category": "digital_goods" if amount < 10 else "electronics",
    }
    values[PAYMENT_KEY] = payment_snapshot(
        values, DISPLAY, QueuePriority(weigh_by_amount=True, currency="USD", rates={"EUR": 1.1})
    )
    return values


def _flag(values: dict, score: float) -> dict:
    return {
        "record_id": values["transaction_id"],
        "entity": values["card_id"],
        "score": score,
        "record": values,
        "reasons": [
            {
                "feature": "amount",
                "contribution": score * 0.6,
                "share": 0.6,
                "normal": "7.9× this card's median over 30 days (20.00)",
                "text": render(
                    f"amount {values['amount']:,.2f}",
                    "7.9× this card's median over 30 days (20.00)",
                    0.6,
                ),
            },
            {"feature": "merchant_category", "contribution": score * 0.4, "share": 0.4},
        ],
    }


def _seed(store: ResultsStore) -> None:
    start = datetime(2026, 11, 30, 22, 40, tzinfo=UTC)
    # Tabular: one case per payment; seven cards, so each card has a story of its own.
    tabular = []
    for i in range(CASES_PER_MODE):
        amount = 9_999_999.0 if i == 0 else round(6.99 + 13.5 * i, 2)
        values = _payment(
            f"tab{i:03d}",
            f"card{i % 7:04d}",
            start + timedelta(minutes=37 * i),
            amount,
            f"shop {i % 5}",
            currency="EUR" if i % 4 == 3 else "USD",
        )
        tabular.append(_flag(values, 1.05 if i == 0 else 3.0 - i / 20))
    add_snapshot_run(
        store, batch_id="tabular", flags=tabular, dataset="payments", group_by_entity=False
    )
    # Sequence: one case per card, one to three flagged payments each.
    sequence = []
    for card in range(CASES_PER_MODE):
        for k in range(1 + card % 3):
            values = _payment(
                f"seq{card:03d}-{k}",
                f"c{card:05d}",
                start + timedelta(hours=card, minutes=9 * k),
                round(4.99 + 31.7 * k + card, 2),
                f"m_{(card + k) % 9:04d}",
            )
            sequence.append(_flag(values, 1.2 + card / 10 + k / 5))
    add_snapshot_run(
        store, batch_id="sequence", flags=sequence, dataset="cards", group_by_entity=True
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from review import create_app

    home = tmp_path_factory.mktemp("review-payment")
    store = ResultsStore(f"sqlite:///{home / 'store.db'}")
    store.add_user("ana", "analyst", hash_password(PASSWORD), actor="test")
    _seed(store)
    with served(create_app(store, VigilSettings(home=home))) as url:
        yield {"url": url, "store": store}


@pytest.fixture(scope="module")
def browser():
    with launched_browser() as browser:
        yield browser


def _cases(store: ResultsStore, dataset: str) -> list[dict]:
    items = store.queue_page(limit=500).items
    return [item for item in items if item["dataset"] == dataset]


def _check_case_page(page, item: dict) -> None:
    """What every case page must show in its header and below it."""
    payment = item["payment"]
    head = page.locator(".case-head")
    text = head.inner_text()
    assert payment["entity"] in text, (item["id"], text)
    assert payment["merchant"] in text, (item["id"], text)
    amount = head.locator("#case-payment .amount").inner_text()
    assert MONEY.fullmatch(amount) and amount.startswith(payment["currency"]), amount
    utc = head.locator("#case-payment time.utc")
    assert utc.get_attribute("datetime") == payment["time"].replace(".000Z", "Z")
    assert utc.inner_text().endswith(" UTC")
    local = head.locator("#case-payment .local-time").inner_text()
    assert ANALYST_ZONE in local and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", local), local
    reasons = page.locator("ul.reasons li").all_inner_texts()
    assert reasons and any(reason_names_what_is_normal(r) for r in reasons), item["id"]
    chart = page.locator("#story svg.chart")
    assert chart.count() == 1 and chart.is_visible(), item["id"]


@pytest.mark.parametrize(("mode", "dataset"), [("tabular", "payments"), ("sequence", "cards")])
def test_every_case_page_shows_the_payment_first(server, browser, mode, dataset):
    url, store = server["url"], server["store"]
    context, page = log_in(browser, url, "ana", timezone_id=ANALYST_ZONE)
    try:
        cases = _cases(store, dataset)
        assert len(cases) == CASES_PER_MODE
        if mode == "tabular":
            screenshot(page, SHOTS, "queue")
            first = page.locator("#queue-table tr.item").first
            assert "EUR" in page.locator("#queue-table").inner_text()
            assert "USD 9,999,999.00" in first.inner_text()
            assert "priority: score 1.05 × USD 9,999,999" in first.inner_text()
            local = first.locator(".local-time").inner_text()
            assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d \S+ \(yours\)", local), local
        for n, item in enumerate(cases):
            page.goto(f"{url}/cases/{item['id']}")
            _check_case_page(page, item)
            if n in (0, len(cases) - 1):
                screenshot(page, SHOTS, f"{mode}-case-{n}")
    finally:
        context.close()
