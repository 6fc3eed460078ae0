"""The demo's card stream and rules baseline: seeded, five fraud types, truth kept apart."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.demo_cards import (
    FRAUD_TYPES,
    card_stream,
    catches,
    rules_scores,
    split_stream,
    write_card_files,
)


def test_stream_is_seeded_and_plants_every_fraud_type():
    a = card_stream(n_cards=120, seed=5)
    b = card_stream(n_cards=120, seed=5)
    pd.testing.assert_frame_equal(a, b)
    planted = set(a.loc[a["is_fraud"] == 1, "fraud_kind"])
    assert planted == set(FRAUD_TYPES)
    # Normal behaviour that must not be flagged is there too: subscriptions and trips.
    normal = a[a["is_fraud"] == 0]
    assert (normal["merchant_category"] == "subscription").any()
    assert (normal["merchant_id"].str.contains("_t")).any()


def test_files_keep_the_truth_apart(tmp_path):
    paths = write_card_files(tmp_path, n_cards=80, seed=1)
    week = pd.read_csv(paths["week"])
    assert "is_fraud" not in week and "fraud_kind" not in week
    truth = pd.read_csv(paths["truth"], keep_default_na=False)
    assert set(week["transaction_id"]) <= set(truth["transaction_id"])
    assert "is_fraud" in pd.read_csv(paths["train"]).columns


def test_next_day_spending_is_shifted():
    frame = card_stream(n_cards=80, seed=1)
    parts = split_stream(frame)
    original = frame.set_index("transaction_id").loc[parts["next_day"]["transaction_id"]]
    assert parts["next_day"]["amount"].median() > 1.5 * original["amount"].median()


def test_rules_fire_on_velocity_and_amount_and_read_history():
    times = pd.date_range("2026-03-02 10:00", periods=12, freq="30s")
    frame = pd.DataFrame(
        {
            "card_id": ["a"] * 6 + ["b"] * 6,
            "timestamp": [*(t.strftime("%Y-%m-%d %H:%M:%S") for t in times[:6])]
            + [f"2026-03-0{d} 12:00:00" for d in range(2, 8)],
            "amount": [1.0] * 6 + [20, 21, 19, 20, 22, 400],
        }
    )
    score = rules_scores(frame)
    assert score[3] > 1000 and score[2] < 1000  # the 4th payment in 10 minutes fires
    assert score[11] > 1000 and score[10] < 1000  # 400 after ~20 fires the amount rule
    assert score[3] > score[11]  # velocity hits first


def test_catches_counts_per_type_at_the_alert_rate():
    kinds = np.array(["card_testing", "", "", "contextual", *[""] * 196])
    scores = np.zeros(len(kinds))
    scores[0], scores[3] = 5.0, 4.0
    table = catches(scores, kinds, rate=0.01)
    assert table["card_testing"] == (1, 1) and table["contextual"] == (1, 1)
    assert table["normal"] == (0, 198)
