"""Verdict-driven risk features (issue 9): a label counts only once it is known, only in
its window, only for its terminal; scoring a batch after the kept history gives the same
features as computing them over one big file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.feedback.risk import RiskConfig, build_risk_features, observed_delay

DAY0 = pd.Timestamp("2026-01-01")


def _records() -> pd.DataFrame:
    rows = [  # (id, terminal, day)
        ("f1", "T1", 1.0),
        ("a", "T1", 2.0),
        ("b", "T1", 4.0),
        ("c", "T1", 10.0),
        ("d", "T2", 4.0),
        ("e", "T1", 3.5),
    ]
    return pd.DataFrame(
        {
            "tx_id": [r[0] for r in rows],
            "terminal": [r[1] for r in rows],
            "ts": [DAY0 + pd.Timedelta(days=r[2]) for r in rows],
        }
    )


def _frauds(known_day: float) -> pd.DataFrame:
    return pd.DataFrame({"record_id": ["f1"], "known_at": [DAY0 + pd.Timedelta(days=known_day)]})


CONFIG = RiskConfig(columns=("terminal",), time_column="ts", id_column="tx_id", windows=("7D",))


def _by_id(frame: pd.DataFrame, features: pd.DataFrame, name: str) -> dict:
    return dict(zip(frame["tx_id"], features[name], strict=True))


def test_a_fraud_counts_for_its_terminal_once_known_and_while_in_the_window():
    frame = _records()
    features = build_risk_features(frame, _frauds(known_day=3.0), CONFIG)
    counts = _by_id(frame, features, "risk_terminal_frauds_7d")
    # a: before the verdict was known; b, e: known and within 7 days; c: out of the window;
    # d: another terminal; f1: its own label is not known at its own time.
    assert counts == {"f1": 0, "a": 0, "b": 1, "c": 0, "d": 0, "e": 1}
    shares = _by_id(frame, features, "risk_terminal_fraud_share_7d")
    assert shares["b"] == 1 / 3  # f1, a, e in [day -3, day 4) at T1
    assert shares["a"] == 0.0


def test_a_label_known_later_changes_nothing_before_then():
    frame = _records()
    late = build_risk_features(frame, _frauds(known_day=5.0), CONFIG)
    counts = _by_id(frame, late, "risk_terminal_frauds_7d")
    assert counts["b"] == 0 and counts["e"] == 0
    none = build_risk_features(frame, None, CONFIG)
    assert (none["risk_terminal_frauds_7d"] == 0).all()


def test_delay_shifts_the_window_back():
    frame = _records()
    config = RiskConfig(
        columns=("terminal",), time_column="ts", id_column="tx_id", windows=("7D",), delay="2D"
    )
    counts = _by_id(
        frame, build_risk_features(frame, _frauds(3.0), config), "risk_terminal_frauds_7d"
    )
    # b (day 4): window [day -5, day 2) holds f1, known on day 3 < 4.
    # c (day 10): window [day 1, day 8) holds f1 (day 1) too.
    assert counts["b"] == 1 and counts["c"] == 1 and counts["a"] == 0


def test_batch_after_kept_history_equals_one_big_file():
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame(
        {
            "tx_id": [f"t{i}" for i in range(n)],
            "terminal": rng.choice([f"T{i}" for i in range(40)], n),
            "ts": DAY0 + pd.to_timedelta(np.sort(rng.uniform(0, 60, n)), unit="D"),
        }
    )
    fraud_rows = rng.choice(n, 150, replace=False)
    frauds = pd.DataFrame(
        {
            "record_id": frame["tx_id"].iloc[fraud_rows].to_numpy(),
            "known_at": frame["ts"].iloc[fraud_rows].to_numpy()
            + pd.to_timedelta(rng.uniform(0, 10, 150), unit="D"),
        }
    )
    config = RiskConfig(
        columns=("terminal",), time_column="ts", id_column="tx_id", windows=("1D", "7D")
    )
    whole = build_risk_features(frame, frauds, config)
    batch = np.arange(2500, n)
    alone = build_risk_features(frame, frauds, config, targets=batch)
    pd.testing.assert_frame_equal(alone, whole.iloc[batch])
    assert whole["risk_terminal_frauds_7d"].max() > 0
    # Brute force for a sample of records: the definition, row by row.
    ts = frame["ts"].to_numpy()
    fraud_known = dict(zip(frauds["record_id"], frauds["known_at"], strict=True))
    for i in rng.choice(n, 60, replace=False):
        t = ts[i]
        same = (frame["terminal"] == frame["terminal"].iloc[i]).to_numpy()
        in_window = same & (ts >= t - np.timedelta64(7, "D")) & (ts < t)
        expected = sum(
            1
            for j in np.flatnonzero(in_window)
            if frame["tx_id"].iloc[j] in fraud_known and fraud_known[frame["tx_id"].iloc[j]] < t
        )
        assert whole["risk_terminal_frauds_7d"].iloc[i] == expected


def test_the_observed_label_delay_is_a_high_quantile_of_known_at_minus_event_time():
    events = pd.Series(DAY0 + pd.to_timedelta(np.arange(50), unit="h"))
    lags = pd.to_timedelta(np.r_[np.full(47, 7.0), np.full(3, 30.0)], unit="D")
    assert observed_delay(events, events + lags) == "7D"  # the 90% quantile, whole days
    assert observed_delay(events, events + pd.Timedelta("61min")) == "2h"  # rounded up
    assert observed_delay(events.head(3), events.head(3) + pd.Timedelta("7D")) == "0s"  # few
    assert observed_delay(events, events) == "0s"  # known at once: no wait
    RiskConfig(columns=("t",), time_column="ts", id_column="id", delay="2h")  # valid


def test_train_with_labels_waits_for_the_imported_labels_delay():
    from pipelines.demo_cards import CARD_SPEC as spec
    from pipelines.feedback.training import label_delay, risk_config_for

    clean = pd.DataFrame(
        {
            spec.id_column: [f"r{i}" for i in range(40)],
            spec.time_column: DAY0 + pd.to_timedelta(np.arange(40), unit="D"),
        }
    )
    known = pd.DataFrame(
        {
            "record_id": clean[spec.id_column],
            "y": [1] * 30 + [0] * 10,  # normals' verdicts do not set the delay
            "known_at": pd.to_datetime(clean[spec.time_column], utc=True)
            + pd.to_timedelta([5] * 30 + [60] * 10, unit="D"),
        }
    )
    delay = label_delay(spec, clean, known)
    assert delay == "5D"
    risk = risk_config_for(spec, delay=delay)
    assert risk.delay_seconds == 5 * 86400 and risk.windows == ("1D", "7D", "28D")
    assert label_delay(spec, clean, known.head(3)) == "0s"  # too few frauds: no wait


def test_record_counts_say_how_busy_the_terminal_was_and_old_configs_keep_their_columns():
    frame = _records()
    busy = RiskConfig(
        columns=("terminal",), time_column="ts", id_column="tx_id", windows=("7D",), records=True
    )
    features = build_risk_features(frame, _frauds(known_day=3.0), busy)
    records = _by_id(frame, features, "risk_terminal_records_7d")
    # b (day 4) at T1: f1, a, e in [day -3, day 4); c (day 10): e, b in [day 3, day 10).
    assert records["b"] == 3 and records["c"] == 2 and records["d"] == 0
    assert list(features.columns) == busy.feature_names()
    saved = {k: v for k, v in busy.to_dict().items() if k != "records"}  # before the field
    assert "risk_terminal_records_7d" not in RiskConfig.from_dict(saved).feature_names()
