"""The second card generator: a seed gives the same data, and every fraud type is planted
as described."""

import pandas as pd
import pytest

from benchmarks.cardgen2 import FRAUD_TYPES, generate_cards2, haversine_km


@pytest.fixture(scope="module")
def cards() -> pd.DataFrame:
    return generate_cards2(n_cards=60, days=20, seed=3)


def test_same_seed_same_data_other_seed_other_data(cards: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(cards, generate_cards2(n_cards=60, days=20, seed=3))
    assert not cards.equals(generate_cards2(n_cards=60, days=20, seed=4))


def test_genuine_rows_do_not_depend_on_the_fraud_settings(cards: pd.DataFrame) -> None:
    more = generate_cards2(n_cards=60, days=20, seed=3, fraud_share=0.02)
    keep = ["card_id", "timestamp", "merchant_id", "amount"]
    a = cards.loc[cards.is_fraud == 0, keep].reset_index(drop=True)
    b = more.loc[more.is_fraud == 0, keep].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_every_type_is_planted_and_labelled(cards: pd.DataFrame) -> None:
    assert set(cards.fraud_type) == {"", *FRAUD_TYPES}
    assert (cards.is_fraud == (cards.fraud_type != "")).all()
    assert cards.transaction_id.is_unique
    assert list(cards.columns[:3]) == ["transaction_id", "card_id", "timestamp"]
    ts = pd.to_datetime(cards.timestamp)
    assert ts.is_monotonic_increasing
    assert (ts[cards.is_fraud == 1] >= ts.min().normalize() + pd.Timedelta(days=7)).all()


def test_each_type_looks_like_its_description(cards: pd.DataFrame) -> None:
    ts = pd.to_datetime(cards.timestamp)
    testing = cards[cards.fraud_type == "card_testing"]
    assert (testing.amount < 3.01).mean() > 0.8 and (testing.card_present == 0).all()
    takeover = cards[cards.fraud_type == "account_takeover"]
    assert (takeover.card_present == 0).all()
    merchant = cards[cards.fraud_type == "compromised_merchant"]
    assert (merchant.card_present == 0).all() and merchant.merchant_id.str.startswith("m").all()
    context = cards[cards.fraud_type == "contextual"]
    assert (context.card_present == 1).all()
    for _, r in cards[cards.fraud_type == "impossible_travel"].iterrows():
        mate = cards[
            (cards.card_id == r.card_id)
            & (cards.is_fraud == 0)
            & (cards.card_present == 1)
            & ((ts - ts[r.name]).abs() <= pd.Timedelta(hours=3))
        ]
        assert any(
            haversine_km(r.latitude, r.longitude, m.latitude, m.longitude) >= 1000
            for m in mate.itertuples()
        )


def test_too_small_a_set_is_refused() -> None:
    with pytest.raises(ValueError, match="n_cards"):
        generate_cards2(n_cards=5)


def test_the_typologies_suite_reads_it_with_the_truth_where_spec_init_ignores_it() -> None:
    from argparse import Namespace

    from benchmarks.typologies import ALL_TYPOLOGIES, VARIANTS, generate

    args = Namespace(**{**VARIANTS["gen2"], "cards": 40, "days": 12})
    frame = generate(args)
    assert "fraud_type" not in frame.columns  # else spec init would take the truth as a feature
    assert set(frame.fraud_kind) - {""} <= set(ALL_TYPOLOGIES)
