"""Causal context features: hand-checked values, causality, the bounded-history property."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from detector_data import assert_a_day_alone_equals_the_whole_file, random_payments

from detectors.context import ContextConfig, build_context_features, describe_context

CONFIG = ContextConfig(
    entity_column="card",
    time_column="time",
    amount_column="amount",
    windows=("10min", "1h", "1d"),
    history="7d",
    novelty_columns=("merchant",),
    secondary_entity_columns=("merchant",),
    secondary_windows=("1d",),
    latitude_column="lat",
    longitude_column="lon",
    event_noun="payment",
    entity_noun="card",
    min_history=1,
)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["card", "time", "amount", "merchant", "lat", "lon"])
    frame["time"] = pd.Timestamp("2026-01-05") + pd.to_timedelta(frame["time"], unit="min")
    return frame


def test_hand_checked_values():
    frame = _frame(
        [
            ("a", 0, 10.0, "m1", 50.85, 4.35),  # Brussels
            ("b", 1, 99.0, "m1", np.nan, np.nan),
            ("a", 5, 20.0, "m2", np.nan, np.nan),  # online: no coordinates
            ("a", 30, 30.0, "m1", 48.86, 2.35),  # Paris, 30 min after Brussels
            ("a", 2 * 24 * 60, 60.0, "m1", 48.86, 2.35),
        ]
    )
    f = build_context_features(frame, CONFIG)
    assert list(f.columns) == CONFIG.feature_names()
    a = f.iloc[[0, 2, 3, 4]]
    assert np.isnan(a["ctx_secs_since_prev"].iloc[0])
    assert a["ctx_secs_since_prev"].iloc[1:].tolist() == [300.0, 1500.0, 2 * 86400 - 1800.0]
    assert a["ctx_count_10min"].tolist() == [1, 2, 1, 1]
    assert a["ctx_count_1h"].tolist() == [1, 2, 3, 1]
    assert a["ctx_amount_sum_1h"].tolist() == [10.0, 30.0, 60.0, 60.0]
    assert a["ctx_history_count"].tolist() == [0, 1, 2, 3]
    # Amount vs the card's earlier amounts: 30 / mean(10, 20) = 2; 60 / mean(10, 20, 30) = 3.
    assert np.isnan(a["ctx_amount_ratio"].iloc[0])
    assert a["ctx_amount_ratio"].iloc[2:].tolist() == pytest.approx([2.0, 3.0])
    assert a["ctx_new_merchant"].tolist() == [1.0, 1.0, 0.0, 0.0]
    # By default an amount is compared only with 3+ earlier records.
    strict = build_context_features(frame, CONFIG.replace(min_history=3))
    assert np.isnan(strict["ctx_amount_ratio"].iloc[3])
    assert strict["ctx_amount_ratio"].iloc[4] == pytest.approx(3.0)
    # Brussels -> Paris is ~264 km; 30 minutes apart, the online payment in between skipped.
    assert f["ctx_km_from_prev"].iloc[3] == pytest.approx(264, abs=3)
    assert f["ctx_kmh_from_prev"].iloc[3] == pytest.approx(528, abs=6)
    assert np.isnan(f["ctx_km_from_prev"].iloc[2])
    # Merchant m1's payments in the last day: a at 0, b at 1, a at 30 -> 3.
    assert f["ctx_merchant_count_1d"].iloc[3] == 3
    text = describe_context("ctx_km_from_prev", f.iloc[3], CONFIG)
    assert text == "264 km from the previous payment 30 min earlier (527 km/h)"
    assert describe_context("ctx_count_1h", f.iloc[3], CONFIG) == "3 payments in 1 hour"
    assert describe_context("ctx_amount_sum_1h", f.iloc[3], CONFIG) == (
        "60.00 spent in 1 hour over 3 payments"
    )
    assert describe_context("ctx_new_merchant", f.iloc[2], CONFIG) == (
        "first payment at this merchant in 7 days"
    )


def test_features_are_causal_and_order_free():
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "card": rng.choice(list("abcdef"), n),
            "time": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.uniform(0, 20 * 86400, n), "s"),
            "amount": rng.gamma(2.0, 20.0, n),
            "merchant": rng.choice(["m1", "m2", "m3", "m4"], n),
            "lat": rng.normal(50, 1, n),
            "lon": rng.normal(4, 1, n),
        }
    )
    full = build_context_features(frame, CONFIG)
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert np.allclose(
        build_context_features(shuffled, CONFIG).loc[frame.index].to_numpy(),
        full.to_numpy(),
        equal_nan=True,
    )
    # Dropping every record after day 10 leaves earlier records' features unchanged.
    cut = frame["time"] < pd.Timestamp("2026-01-11")
    past_only = build_context_features(frame[cut], CONFIG)
    assert np.allclose(past_only.to_numpy(), full[cut].to_numpy(), equal_nan=True)


def test_a_batch_with_its_history_matches_the_whole_file():
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame(
        {
            "card": rng.choice([f"c{i}" for i in range(40)], n),
            "time": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.uniform(0, 40 * 86400, n), "s"),
            "amount": rng.gamma(2.0, 20.0, n),
            "merchant": rng.choice([f"m{i}" for i in range(30)], n),
            "lat": rng.normal(50, 1, n),
            "lon": rng.normal(4, 1, n),
        }
    )
    full = build_context_features(frame, CONFIG)
    start = pd.Timestamp("2026-01-30")
    batch = frame[(frame["time"] >= start) & (frame["time"] < start + pd.Timedelta("1D"))]
    history = frame[(frame["time"] >= start - pd.Timedelta("7D")) & (frame["time"] < start)]
    alone = build_context_features(pd.concat([history, batch]), CONFIG).loc[batch.index]
    assert np.allclose(alone.to_numpy(), full.loc[batch.index].to_numpy(), equal_nan=True)
    # Computing only the batch's rows (history rows as past only) gives the same values.
    combined = pd.concat([history, batch])
    only_batch = build_context_features(
        combined, CONFIG, targets=np.arange(len(history), len(combined))
    )
    assert list(only_batch.index) == list(batch.index)
    assert np.allclose(only_batch.to_numpy(), alone.to_numpy(), equal_nan=True)
    mask = np.zeros(len(combined), dtype=bool)
    mask[len(history) :] = True
    assert np.allclose(
        build_context_features(combined, CONFIG, targets=mask).to_numpy(),
        alone.to_numpy(),
        equal_nan=True,
    )


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="not a duration"):
        ContextConfig(entity_column="c", time_column="t", windows=("soon",))
    with pytest.raises(ValueError, match="longer than history"):
        ContextConfig(entity_column="c", time_column="t", windows=("30D",), history="7D")
    with pytest.raises(ValueError, match="both latitude_column and longitude_column"):
        ContextConfig(entity_column="c", time_column="t", latitude_column="lat")
    with pytest.raises(
        ValueError, match=r"need column\(s\) \[.amount., .merchant., .lat., .lon.\]"
    ):
        build_context_features(pd.DataFrame({"card": ["a"], "time": [1.0]}), CONFIG)
    assert ContextConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_baseline_ignores_the_recent_records():
    config = ContextConfig(
        entity_column="card",
        time_column="time",
        amount_column="amount",
        windows=("1D",),
        history="30D",
        baseline_gap="14D",
        calendar=False,
        min_history=1,
    )
    day = 24 * 60
    # Baseline amounts 10 and 30 (20-25 days ago), then a takeover spending 100s recently.
    frame = _frame(
        [
            ("a", 0, 10.0, "m", np.nan, np.nan),
            ("a", 5 * day, 30.0, "m", np.nan, np.nan),
            ("a", 20 * day, 100.0, "m", np.nan, np.nan),
            ("a", 25 * day, 100.0, "m", np.nan, np.nan),
        ]
    )
    f = build_context_features(frame, config)
    # Last record: recent mean (10, 30, 100) = 46.7; baseline = records 14-30 days ago = 10, 30.
    assert f["ctx_amount_ratio"].iloc[3] == pytest.approx(100 / (140 / 3))
    assert f["ctx_amount_baseline_ratio"].iloc[3] == pytest.approx(100 / 20)
    assert np.isnan(f["ctx_amount_baseline_ratio"].iloc[1])  # nothing 14+ days before it
    assert describe_context("ctx_amount_baseline_ratio", f.iloc[3], config) == (
        "amount 5.0x this entity's usual amount (14 days to 30 days ago)"
    )


PROFILE = CONFIG.replace(
    located_column="present",
    travel_window="1h",
    profile_columns=("merchant",),
    profile_hours=True,
    novelty_windows=("1d",),
    robust_baseline=True,
    level_windows=("1d",),
    novelty_rate="unlocated",
)


def _profiled(rows: list[tuple]) -> pd.DataFrame:
    frame = _frame([row[:6] for row in rows])
    frame["present"] = [row[6] for row in rows]
    return frame


def test_only_located_records_count_for_travel():
    frame = _profiled(
        [
            ("a", 0, 10.0, "m1", 50.85, 4.35, 1),  # Brussels, card present
            ("a", 10, 20.0, "web", 38.72, -9.14, 0),  # online: the shop's Lisbon head office
            ("a", 40, 30.0, "m1", 50.85, 4.36, 1),  # Brussels again, card present
        ]
    )
    f = build_context_features(frame, PROFILE)
    assert np.isnan(f["ctx_km_from_prev"].iloc[1])
    # Measured from the card-present payment 40 min before, not from "Lisbon".
    assert f["ctx_km_from_prev"].iloc[2] == pytest.approx(0.7, abs=0.1)
    everything = build_context_features(
        frame, PROFILE.replace(located_column=None, novelty_rate="all")
    )
    assert everything["ctx_kmh_from_prev"].iloc[2] > 3000  # the online record misleads
    # Paris 20 min after Brussels (~790 km/h), then a second payment in Paris: slow from
    # the first, but the last hour holds the jump.
    far = pd.concat(
        [
            frame,
            _profiled([("a", 60, 9.0, "m9", 48.86, 2.35, 1), ("a", 75, 9.0, "m8", 48.86, 2.35, 1)]),
        ],
        ignore_index=True,
    )
    g = build_context_features(far, PROFILE)
    assert g["ctx_kmh_from_prev"].iloc[4] < 1 and g["ctx_kmh_max_1h"].iloc[4] == pytest.approx(
        g["ctx_kmh_from_prev"].iloc[3]
    )
    assert g["ctx_kmh_from_prev"].iloc[3] > 700 and np.isnan(g["ctx_kmh_max_1h"].iloc[1])
    assert "km/h between this card's located payments in the last 1 hour" in describe_context(
        "ctx_kmh_max_1h", g.iloc[4], PROFILE
    )
    truthy = frame.assign(present=["yes", "no", "True"])
    assert np.allclose(
        build_context_features(truthy, PROFILE)["ctx_km_from_prev"].to_numpy(),
        f["ctx_km_from_prev"].to_numpy(),
        equal_nan=True,
    )


def test_profile_shares_novelty_counts_and_median():
    day = 24 * 60
    frame = _profiled(
        [
            ("a", 9 * 60, 10.0, "m1", np.nan, np.nan, 0),
            ("a", day + 9 * 60 + 30, 12.0, "m1", np.nan, np.nan, 0),
            ("a", 2 * day + 10 * 60, 11.0, "m2", np.nan, np.nan, 0),
            ("a", 3 * day + 3 * 60, 500.0, "m3", np.nan, np.nan, 0),  # 03:00, new merchant
            ("a", 3 * day + 3 * 60 + 5, 9.0, "m4", np.nan, np.nan, 0),
        ]
    )
    f = build_context_features(frame, PROFILE)
    assert list(f.columns) == PROFILE.feature_names()
    # m1: 1 of 1 earlier payment; m2 new: 0 of 2; m3: 0 of 3.
    assert f["ctx_share_merchant"].tolist()[1:4] == [1.0, 0.0, 0.0]
    assert np.isnan(f["ctx_share_merchant"].iloc[0])  # nothing earlier to compare with
    # 10:00 is within an hour-bucket of 09:00 and 09:30; 03:00 is near none of them.
    assert f["ctx_share_hour"].iloc[2] == 1.0 and f["ctx_share_hour"].iloc[3] == 0.0
    assert f["ctx_share_hour"].iloc[4] == pytest.approx(1 / 4)  # the 03:00 one before it
    # Payments at new merchants in the trailing day (the days are 24.5 h and 17 h apart):
    # m1 again is not new; m2; m2 (17 h earlier) and m3; m2, m3 and m4.
    assert f["ctx_new_merchant_count_1d"].tolist() == [1.0, 0.0, 1.0, 2.0, 3.0]
    # Median of (10, 12, 11) = 11; of (10, 12, 11, 500) = 11.5: one huge payment moves it little.
    assert f["ctx_amount_median_ratio"].iloc[3] == pytest.approx(500 / 11)
    assert f["ctx_amount_median_ratio"].iloc[4] == pytest.approx(9 / 11.5)
    assert describe_context("ctx_share_hour", f.iloc[3], PROFILE) == (
        "no payment of this card within an hour of this time of day in 7 days"
    )
    assert describe_context("ctx_new_merchant_count_1d", f.iloc[4], PROFILE) == (
        "3 payments at a merchant new to this card in 1 day"
    )
    assert ContextConfig.from_dict(PROFILE.to_dict()) == PROFILE
    with pytest.raises(ValueError, match="needs coordinates"):
        ContextConfig(entity_column="c", time_column="t", located_column="present")


def test_amount_level_compares_a_recent_run_with_the_older_records():
    day = 24 * 60
    frame = _profiled(
        [
            ("a", 0, 10.0, "m1", np.nan, np.nan, 0),
            ("a", day, 10.0, "m1", np.nan, np.nan, 0),
            ("a", 2 * day, 10.0, "m1", np.nan, np.nan, 0),
            ("a", 4 * day, 50.0, "m1", np.nan, np.nan, 0),  # a compromised run starts
            ("a", 4 * day + 60, 20.0, "m1", np.nan, np.nan, 0),  # alone, within range
            ("b", 0, 5.0, "m1", np.nan, np.nan, 0),
        ]
    )
    f = build_context_features(frame, PROFILE)
    level = f["ctx_amount_level_1d"]
    # Nothing older than the last day to compare with for the first payment of each card.
    assert np.isnan(level.iloc[0]) and np.isnan(level.iloc[5])
    assert level.iloc[2] == pytest.approx(1.0)  # 10 against (10, 10)
    assert level.iloc[3] == pytest.approx(5.0)  # 50 against (10, 10, 10)
    # 20 alone is 2x; the day it belongs to averages (50 + 20) / 2 = 3.5x the older ones.
    assert level.iloc[4] == pytest.approx(3.5)
    assert describe_context("ctx_amount_level_1d", f.iloc[4], PROFILE) == (
        "payments in the last 1 day average 3.5x this card's earlier amounts (up to 7 days)"
    )
    with pytest.raises(ValueError, match="level_windows must be shorter"):
        PROFILE.replace(level_windows=("7d",))


def test_novelty_rate_compares_a_run_of_new_remote_merchants_with_the_cards_own_rate():
    day = 24 * 60
    frame = _profiled(
        [
            ("a", 9 * 60, 10.0, "m1", np.nan, np.nan, 0),  # online, first time at m1
            ("a", day + 9 * 60, 10.0, "m2", 50.8, 4.3, 1),  # a new shop, card present
            ("a", 3 * day + 9 * 60, 10.0, "m3", np.nan, np.nan, 0),  # a run of new web
            ("a", 3 * day + 10 * 60, 10.0, "m4", np.nan, np.nan, 0),  # shops starts
            ("a", 3 * day + 11 * 60, 10.0, "m1", np.nan, np.nan, 0),  # m1 is not new
        ]
    )
    f = build_context_features(frame, PROFILE)
    rate = f["ctx_new_merchant_rate_1d"]
    # Own rate: first-time online payments in [t - 3.5 d, t - 1 d] (+1) per 2.5 days.
    # Row 0: none earlier, 1 in the day -> 1 / (1 / 2.5); row 1 is card present: 0.
    # Row 2: m3 in the day, m1 earlier -> 1 / (2 / 2.5); rows 3, 4: m3 and m4 -> 2 / 0.8.
    assert rate.tolist() == pytest.approx([2.5, 0.0, 1.25, 2.5, 2.5])
    every = build_context_features(frame, PROFILE.replace(novelty_rate="all"))
    # Counting the card-present new shop too: row 1 is new (1 / 0.8, m1 earlier), and row 2's
    # own rate holds m1 and m2: 1 / (3 / 2.5).
    assert every["ctx_new_merchant_rate_1d"].tolist()[:3] == pytest.approx([2.5, 1.25, 2.5 / 3])
    assert describe_context("ctx_new_merchant_rate_1d", f.iloc[3], PROFILE) == (
        "unlocated payments at a merchant new to this card in 1 day: 2.5x its own rate of them"
    )
    with pytest.raises(ValueError, match="shorter than history / 2"):
        PROFILE.replace(novelty_windows=("4d",))
    with pytest.raises(ValueError, match="needs located_column"):
        PROFILE.replace(located_column=None, travel_window=None)
    with pytest.raises(ValueError, match="'all' or 'unlocated'"):
        PROFILE.replace(novelty_rate="remote")


def test_profile_features_keep_batch_alone_equal_to_whole_file():
    frame = random_payments(3000, cards=40, days=40, seed=4, merchants=30)
    assert_a_day_alone_equals_the_whole_file(frame, PROFILE, "2026-01-30")
    full = build_context_features(frame, PROFILE)
    shuffled = frame.sample(frac=1.0, random_state=2)
    assert np.allclose(
        build_context_features(shuffled, PROFILE).loc[frame.index].to_numpy(),
        full.to_numpy(),
        equal_nan=True,
    )


def test_clock_parts_from_nanoseconds_equal_pandas_dt_accessors():
    """The calendar features read hour/minute/second/weekday from integer nanoseconds;
    they must equal pandas' ``.dt`` values for naive and UTC times, before 1970 too."""
    from detectors.context.features import _clock

    rng = np.random.default_rng(0)
    nanos = rng.integers(-2 * 10**9, 4 * 10**9, 5000) * 10**9 + rng.integers(0, 10**9, 5000)
    naive = pd.Series(pd.to_datetime(nanos))
    for times in (naive, naive.astype("datetime64[us]"), naive.dt.tz_localize("UTC")):
        hour, minute, second, weekday = _clock(times)
        np.testing.assert_array_equal(hour, times.dt.hour.to_numpy("float64"))
        np.testing.assert_array_equal(minute, times.dt.minute.to_numpy("float64"))
        np.testing.assert_array_equal(second, times.dt.second.to_numpy("float64"))
        np.testing.assert_array_equal(weekday, times.dt.day_of_week.to_numpy("float64"))
    assert _clock(naive.dt.tz_localize("Europe/Brussels")) is None  # local hours: .dt's job
    assert _clock(pd.Series(nanos / 1e9)) is None
