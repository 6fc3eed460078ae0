"""The payment first: the spec's display columns, their proposal by `vigil spec init`,
the payment each flag keeps, the queue weighed by the amount at stake, and the payment
in the queue and on the case page (with old flags that carry none)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipelines.accounts import hash_password
from pipelines.intake.display import (
    PAYMENT_KEY,
    DisplayColumns,
    QueuePriority,
    payment_snapshot,
    propose_display,
)
from pipelines.intake.ingest import Batch, validate_batch
from pipelines.intake.spec import DatasetSpec, SpecError, infer_spec, load_spec
from pipelines.scoring.flags import flag_records
from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from review import create_app
from review.formatting import money, payment_time, priority_reason
from tests.review_client import PASSWORD
from tests.review_fixtures import add_flagged_run, add_snapshot_run

DISPLAY = {
    "entity": "card_id",
    "time": "timestamp",
    "merchant": "merchant",
    "amount": "amount",
    "currency_column": "currency",
}


def _spec(**extra) -> DatasetSpec:
    return DatasetSpec(
        name="pay",
        id_column="tx_id",
        numeric_features=["amount"],
        categorical_features=["category"],
        **extra,
    )


# -- the spec -----------------------------------------------------------------------------


def test_display_columns_round_trip_and_are_required_columns(tmp_path):
    spec = _spec(
        display_columns=DISPLAY,
        priority={"weigh_by_amount": True, "currency": "usd", "rates": {"eur": 1.08}},
    )
    loaded = load_spec(spec.save(tmp_path / "pay.yaml"))
    assert loaded.display_columns == DisplayColumns(**DISPLAY)
    assert loaded.priority.currency == "USD" and loaded.priority.rates == {"EUR": 1.08}
    # A batch must carry what analysts are shown; the amount is a feature already.
    assert loaded.display_only_columns == ["card_id", "timestamp", "merchant", "currency"]
    assert {"card_id", "timestamp", "merchant", "currency"} <= set(loaded.required_columns)
    assert _spec().display_only_columns == []  # old specs: nothing new required


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"display_columns": {**DISPLAY, "currency": "USD"}}, "not both"),
        ({"display_columns": {"amount": "amount", "currency": "dollars"}}, "three-letter"),
        ({"priority": {"weigh_by_amount": True}}, "needs display_columns.amount"),
        (
            {"display_columns": DISPLAY, "priority": {"rates": {"EUR": 1.1}}},
            "rates need the currency",
        ),
        (
            {"display_columns": DISPLAY, "priority": {"currency": "USD", "rates": {"EUR": 0}}},
            "positive number",
        ),
    ],
)
def test_bad_display_or_priority_sections_say_why(tmp_path, extra, message):
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "name": "pay",
                "id_column": "tx_id",
                "numeric_features": ["amount"],
                **extra,
            }
        )
    )
    with pytest.raises(SpecError, match=message) as caught:
        load_spec(path)
    assert str(path) in str(caught.value)


def _sample(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "tx_id": [f"t{i}" for i in range(n)],
            "card_id": [f"c{i % 5}" for i in range(n)],
            "timestamp": pd.date_range("2026-03-01", periods=n, freq="h").astype(str),
            "merchant_name": [f"shop {i % 7}" for i in range(n)],
            "merchant_category": ["books", "grocery"] * (n // 2),
            "amount_total": rng.gamma(2.0, 20.0, n).round(2),
            "ccy": ["USD", "EUR"] * (n // 2),
            "is_fraud": [0] * n,
        }
    )


def test_spec_init_proposes_the_payment_by_name_and_type():
    sample = _sample()
    display = propose_display(sample, entity_column="card_id", time_column="timestamp")
    assert display == DisplayColumns(
        entity="card_id",
        time="timestamp",
        merchant="merchant_name",
        amount="amount_total",
        currency_column="ccy",
    )
    spec = infer_spec(
        sample,
        name="pay",
        id_column="tx_id",
        label_column="is_fraud",
        entity_column="card_id",
        time_column="timestamp",
    )
    assert spec.display_columns == display
    # A text column named like a currency whose values are not codes is not one.
    sample["ccy"] = "dollars"
    assert propose_display(sample, entity_column=None, time_column=None).currency_column is None


def test_spec_init_says_what_it_picked(tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import main

    data = tmp_path / "payments.csv"
    _sample().to_csv(data, index=False)
    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(
        main,
        [
            "spec",
            "init",
            "--data",
            str(data),
            "--id-col",
            "tx_id",
            "--label-col",
            "is_fraud",
            "--entity-col",
            "card_id",
            "--time-col",
            "timestamp",
            "--out",
            str(out),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert (
        "analysts see: entity card_id, time timestamp, merchant merchant_name, amount "
        "amount_total, currency column ccy" in result.output
    )
    assert "change it under display_columns" in result.output
    assert load_spec(out).display_columns.currency_column == "ccy"


# -- the payment a flag keeps ----------------------------------------------------------------


def test_payment_snapshot_converts_the_stake_where_the_rate_table_allows():
    display = DisplayColumns(**DISPLAY)
    rule = QueuePriority(weigh_by_amount=True, currency="USD", rates={"EUR": 1.1})
    record = {
        "card_id": "c1",
        "timestamp": "2026-03-01T10:00:00.000Z",
        "merchant": " shop ",
        "amount": 100.0,
        "currency": "eur",
    }
    payment = payment_snapshot(record, display, rule)
    assert payment["merchant"] == "shop" and payment["currency"] == "EUR"
    assert payment["stake"] == pytest.approx(110.0) and payment["stake_currency"] == "USD"
    # No rate for the currency: the stake stays in the payment's own currency, and says so.
    yen = payment_snapshot({**record, "currency": "JPY", "amount": 5000}, display, rule)
    assert yen["stake"] == pytest.approx(5000.0) and yen["stake_currency"] == "JPY"
    # A zero-amount authorisation still counts for one unit (it ranks by its score).
    assert payment_snapshot({**record, "amount": 0}, display, rule)["stake"] == 1.0
    # Without amount weighting no stake; without display columns no payment.
    assert "stake" not in payment_snapshot(record, display, None)
    assert payment_snapshot(record, None, rule) is None
    fixed = DisplayColumns(amount="amount", currency="SEK")
    assert payment_snapshot(record, fixed)["currency"] == "SEK"


def test_validation_carries_display_only_columns_and_flags_keep_the_payment():
    spec = _spec(
        display_columns=DISPLAY,
        priority={"weigh_by_amount": True, "currency": "USD", "rates": {"EUR": 1.1}},
    )
    frame = pd.DataFrame(
        {
            "tx_id": ["a", "b"],
            "amount": ["9999999", "6.99"],
            "category": ["x", "y"],
            "card_id": ["c1", "c2"],
            "timestamp": ["2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"],
            "merchant": ["m" * 40, "cafe"],
            "currency": ["USD", "EUR"],
        }
    )
    clean = validate_batch(Batch(frame=frame, source="b.csv"), spec).clean
    assert list(clean["currency"]) == ["USD", "EUR"]
    result = pd.DataFrame({"score": [1.2, 3.0], "is_anomaly": [True, True], "reasons": [[], []]})
    bundle = SimpleNamespace(spec=spec, threshold=1.0)
    flags = flag_records(clean, clean, result, bundle, max_field_chars=24)
    first, second = (f["record"][PAYMENT_KEY] for f in flags)
    assert first["amount"] == 9999999.0 and first["currency"] == "USD"
    assert first["merchant"].startswith("m" * 24 + "... [truncated")
    assert first["time"].startswith("2026-03-01T10:00:00")
    assert second["stake"] == pytest.approx(6.99 * 1.1) and second["stake_currency"] == "USD"


# -- the queue, weighed by amount ---------------------------------------------------------


def _payment_flag(record_id: str, amount: float, score: float, *, stake: bool) -> dict:
    display = DisplayColumns(**DISPLAY)
    rule = QueuePriority(weigh_by_amount=stake, currency="USD")
    values = {
        "tx_id": record_id,
        "card_id": f"card-{record_id}",
        "timestamp": "2026-03-01T10:15:00.000Z",
        "merchant": f"shop {record_id}",
        "amount": amount,
        "currency": "USD",
    }
    values[PAYMENT_KEY] = payment_snapshot(values, display, rule)
    return {
        "record_id": record_id,
        "entity": values["card_id"],
        "score": score,
        "record": values,
        "reasons": [{"feature": "amount", "contribution": 1.0, "text": "amount is unusual"}],
    }


def _example_flags(*, stake: bool) -> list[dict]:
    """The walk-through's example: a $9,999,999 payment just over the line, and $6.99
    digital-goods payments well over it."""
    small = [_payment_flag(f"dg{i}", 6.99, 3.0 + i * 0.1, stake=stake) for i in range(3)]
    return [*small, _payment_flag("big", 9_999_999.0, 1.05, stake=stake)]


@pytest.mark.parametrize("weigh", [False, True])
def test_amount_weighting_ranks_the_large_payment_first(tmp_path, weigh):
    store = ResultsStore(f"sqlite:///{tmp_path / 'q.db'}")
    add_snapshot_run(store, batch_id="b1", flags=_example_flags(stake=weigh))
    items = store.queue_page().items
    order = [item["record_ids"][0] for item in items]
    if weigh:
        assert order[0] == "big"
        reason = items[0]["priority_reason"]
        assert reason["stake"] == pytest.approx(9_999_999.0)
        assert priority_reason(reason) == "priority: score 1.05 × USD 9,999,999"
        assert items[0]["priority"] == pytest.approx(1.05 * 9_999_999.0)
    else:  # the default stays as it was: score over threshold alone
        assert order[-1] == "big"
        assert items[-1]["priority"] == pytest.approx(1.05)
        assert priority_reason(items[-1]["priority_reason"]) == (
            "priority: score 1.05 × the threshold"
        )
    assert items[0]["payment"]["merchant"].startswith("shop ")


def test_a_case_shows_the_payment_that_sets_its_priority(tmp_path):
    """In sequence mode a card's case holds several payments: the queue shows the one
    that sets the case's priority, by amount at stake when the spec weighs by it."""
    store = ResultsStore(f"sqlite:///{tmp_path / 'q.db'}")
    small = _payment_flag("small", 5.0, 3.0, stake=True)
    large = _payment_flag("large", 1000.0, 1.1, stake=True)
    for flag in (small, large):
        flag["entity"] = flag["record"]["card_id"] = "card-1"
    add_snapshot_run(store, batch_id="b1", flags=[small, large])
    (item,) = store.queue_page().items
    assert item["payment"]["amount"] == 1000.0 and item["priority"] == pytest.approx(1100.0)
    assert item["record_ids"] == ["small", "large"]  # still listed highest score first
    # Without weighting, the flag furthest over its own threshold sets the priority, even
    # when another run's flag has the higher raw score.
    plain = ResultsStore(f"sqlite:///{tmp_path / 'plain.db'}")
    high_score = _payment_flag("raw", 50.0, 4.0, stake=False)
    add_snapshot_run(plain, batch_id="b1", flags=[high_score], threshold=3.0)
    over = _payment_flag("over", 70.0, 2.5, stake=False)
    over["entity"] = over["record"]["card_id"] = high_score["entity"]
    add_snapshot_run(plain, batch_id="b2", flags=[over], threshold=1.0, model_version="2")
    (item,) = plain.queue_page().items
    assert item["payment"]["amount"] == 70.0 and item["priority"] == pytest.approx(2.5)


def test_amount_weighting_on_postgresql(postgres_url):
    store = ResultsStore(postgres_url)
    add_snapshot_run(store, batch_id="b1", flags=_example_flags(stake=True))
    items = store.queue_page().items
    assert items[0]["record_ids"] == ["big"]
    assert items[0]["payment"]["amount"] == pytest.approx(9_999_999.0)
    assert items[0]["priority"] == pytest.approx(1.05 * 9_999_999.0)


# -- the pages ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


def _client(store, tmp_path, password_hash) -> TestClient:
    store.add_user("ana", "analyst", password_hash, actor="test")
    client = TestClient(create_app(store, VigilSettings(home=tmp_path)), follow_redirects=False)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    client.post(
        "/login", data={"username": "ana", "password": PASSWORD, "csrf_token": csrf, "next": "/"}
    )
    return client


def test_queue_and_case_show_the_payment_formatted(tmp_path, password_hash):
    store = ResultsStore(f"sqlite:///{tmp_path / 'q.db'}")
    add_snapshot_run(store, batch_id="b1", flags=_example_flags(stake=True))
    client = _client(store, tmp_path, password_hash)
    queue = client.get("/queue").text
    assert "<th>Payment</th>" in queue
    assert "USD 9,999,999.00" in queue and "USD 6.99" in queue
    assert "priority: score 1.05 × USD 9,999,999" in queue
    assert 'datetime="2026-03-01T10:15:00Z"' in queue and "2026-03-01 10:15 UTC" in queue
    top = store.queue_page().items[0]
    case = client.get(f"/cases/{top['id']}").text
    head = case.split('<div class="case-grid">')[0]
    assert 'id="case-payment"' in head
    assert "USD 9,999,999.00" in head and "shop big" in head and "card-big" in head
    assert "2026-03-01 10:15:00 UTC" in head and 'class="local-time' in head
    api = client.get("/api/queue").json()["items"][0]
    assert api["payment"]["currency"] == "USD" and api["priority_reason"]["score_ratio"] == 1.05


def test_old_flags_without_a_payment_keep_todays_view(tmp_path, password_hash):
    store = ResultsStore(f"sqlite:///{tmp_path / 'q.db'}")
    add_flagged_run(store, batch_id="b1", flags=[("r1", "card1", 4.0), ("r2", "card2", 2.0)])
    client = _client(store, tmp_path, password_hash)
    queue = client.get("/queue").text
    assert "<th>Payment</th>" not in queue and "4.00×" in queue
    case = client.get(f"/cases/{store.queue_page().items[0]['id']}").text
    assert 'id="case-payment"' not in case and "the threshold" in case


def test_money_and_time_formatting():
    assert money(9999999.0, "USD") == "USD 9,999,999.00"
    assert money("12.5", None) == "12.50" and money(None, "USD") == "–"
    shown = str(payment_time("2026-03-01T10:15:00.000"))  # no zone: UTC, as scoring reads it
    assert "2026-03-01 10:15:00 UTC" in shown and 'data-utc="2026-03-01T10:15:00Z"' in shown
    assert str(payment_time("yesterday")) == "<bdi>yesterday</bdi>"
    assert str(payment_time(None)) == "–"
