"""TabularEncoder: fitted on training data only, JSON state, robust to messy scoring data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detectors import TabularEncoder
from detectors.encoding import UNKNOWN


def _frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.0, n),
            "temp": rng.normal(20.0, 5.0, n),
            "channel": rng.choice(["pos", "web", "atm"], n, p=[0.6, 0.3, 0.1]).astype(object),
            "flag": rng.random(n) < 0.3,
        }
    )


def test_log1p_chosen_for_skewed_nonnegative_column_only() -> None:
    enc = TabularEncoder().fit(_frame())
    cols = {c["name"]: c for c in enc.columns_}
    assert cols["amount"]["log1p"] is True
    assert cols["temp"]["log1p"] is False
    assert cols["channel"]["kind"] == "categorical"
    assert cols["flag"]["kind"] == "categorical"  # bool dtype counts as categorical


def test_unknown_and_missing_categories_go_to_unknown_bucket() -> None:
    df = _frame()
    enc = TabularEncoder().fit(df)
    new = df.head(3).copy()
    new["channel"] = ["crypto", None, "pos"]
    out = enc.transform(new)
    names = enc.output_names_
    unk = names.index(f"channel={UNKNOWN}")
    pos = names.index("channel=pos")
    assert out[0, unk] == 1.0 and out[1, unk] == 1.0 and out[2, unk] == 0.0
    assert out[2, pos] == 1.0
    block = [j for j, n in enumerate(names) if n.startswith("channel=")]
    assert np.all(out[:, block].sum(axis=1) == 1.0)


def test_rare_categories_are_folded_into_unknown() -> None:
    df = pd.DataFrame({"c": ["a"] * 995 + ["rare"] * 5})
    enc = TabularEncoder(min_category_frequency=0.01).fit(df)
    assert enc.columns_[0]["categories"] == ["a"]
    enc2 = TabularEncoder(max_categories=1).fit(pd.DataFrame({"c": ["a"] * 6 + ["b"] * 4}))
    assert enc2.columns_[0]["categories"] == ["a"]


def test_missing_numeric_imputed_with_median_and_indicator_added() -> None:
    df = pd.DataFrame({"v": [1.0, 2.0, np.nan, 4.0, 5.0, 3.0], "w": np.arange(6.0)})
    enc = TabularEncoder().fit(df)
    assert enc.output_names_ == ["v", "v__missing", "w"]  # no indicator for complete "w"
    out = enc.transform(pd.DataFrame({"v": [np.nan, 3.0], "w": [np.nan, 1.0]}))
    assert out[0, 0] == pytest.approx(0.0)  # the training median 3.0 encodes to 0
    assert out[0, 1] == 1.0 and out[1, 1] == 0.0
    assert np.isfinite(out).all()


def test_a_column_never_observed_in_training_stays_missing_at_scoring() -> None:
    # A baseline that needs more history than the training period holds is missing on
    # every training row; later rows have values the model never saw. Encoding them as
    # values made every later record look anomalous; they are encoded as in training.
    df = pd.DataFrame({"baseline": [np.nan] * 6, "w": np.arange(6.0)})
    enc = TabularEncoder().fit(df)
    assert enc.output_names_ == ["baseline", "baseline__missing", "w"]
    out = enc.transform(pd.DataFrame({"baseline": [7.5, np.nan], "w": [1.0, 2.0]}))
    assert out[:, 0].tolist() == [0.0, 0.0]
    assert out[:, 1].tolist() == [1.0, 1.0]
    again = TabularEncoder.from_dict(enc.to_dict())
    assert np.array_equal(again.transform(pd.DataFrame({"baseline": [7.5], "w": [1.0]})), out[:1])


def test_extreme_values_stay_visible_but_finite() -> None:
    df = _frame()
    enc = TabularEncoder().fit(df)
    new = df.head(2).copy()
    new["temp"] = [20.0, 1e9]
    out = enc.transform(new)
    j = enc.output_names_.index("temp")
    assert np.isfinite(out).all()
    assert out[1, j] > 20.0  # far outside the normal range (|z| < ~4)


def test_extra_columns_ignored_and_missing_column_named() -> None:
    df = _frame()
    enc = TabularEncoder().fit(df)
    extra = df.assign(unrelated=1.0)[["unrelated", *df.columns[::-1]]]
    np.testing.assert_array_equal(enc.transform(extra), enc.transform(df))
    with pytest.raises(ValueError, match="temp"):
        enc.transform(df.drop(columns=["temp"]))


def test_round_trip_through_json_gives_identical_transform() -> None:
    df = _frame()
    df.loc[::7, "temp"] = np.nan
    enc = TabularEncoder().fit(df)
    state = json.loads(json.dumps(enc.to_dict()))
    enc2 = TabularEncoder.from_dict(state)
    new = _frame(200, seed=5)
    np.testing.assert_array_equal(enc.transform(new), enc2.transform(new))
    assert enc2.output_groups_ == enc.output_groups_
    assert enc2.feature_names_in_ == list(df.columns)


def test_output_groups_map_back_to_original_features() -> None:
    df = _frame()
    enc = TabularEncoder().fit(df)
    groups = enc.output_groups_
    assert len(groups) == enc.transform(df).shape[1]
    for name, g in zip(enc.output_names_, groups, strict=True):
        assert name.startswith(enc.feature_names_in_[g])


def test_numpy_input_and_forced_categorical() -> None:
    X = np.column_stack([np.arange(100.0) % 3, np.random.default_rng(0).normal(size=100)])
    enc = TabularEncoder(categorical_features=["x0"]).fit(X)
    assert enc.feature_names_in_ == ["x0", "x1"]
    assert enc.columns_[0]["kind"] == "categorical"
    assert enc.transform(X).dtype == np.float32
    assert enc.transform(X).shape == (100, 4 + 1)  # 3 categories + unknown + x1


def test_range_features_flag_values_beyond_the_training_range():
    train = pd.DataFrame({"amount": [10.0, 50.0, 220.0], "n": [1.0, 2.0, 3.0]})
    enc = TabularEncoder(range_features=["amount"]).fit(train)
    assert enc.output_names_ == ["amount", "amount__beyond_range", "n"]
    out = enc.transform(pd.DataFrame({"amount": [220.0, 231.0, 5.0, np.nan], "n": [1.0] * 4}))
    assert out[:, 1].tolist() == [0.0, 1.0, 1.0, 0.0]
    again = TabularEncoder.from_dict(enc.to_dict())
    assert np.array_equal(again.transform(train), enc.transform(train))
    with pytest.raises(ValueError, match="range_features not in data"):
        TabularEncoder(range_features=["nope"]).fit(train)


def _per_column_reference(enc: TabularEncoder, df: pd.DataFrame) -> np.ndarray:
    """The encoding computed one column at a time (the implementation before the block
    version), to check the block version gives the same float32 values."""
    from detectors.encoding import SOFT_LIMIT

    out = np.empty((len(df), enc.n_features_out_), dtype=np.float32)
    j = 0
    for c in enc.columns_:
        s = df[c["name"]]
        if c["kind"] == "numeric":
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, copy=True)
            missing = ~np.isfinite(v) | bool(c.get("unobserved"))
            if c.get("range"):
                low, high = c["range"]
                beyond = ~missing & ((v < low) | (v > high))
            v[missing] = c["median_raw"]
            if c["log1p"]:
                v = np.sign(v) * np.log1p(np.abs(v))
            z = (v - c["center"]) / c["scale"]
            big = np.abs(z) > SOFT_LIMIT
            if big.any():
                z[big] = np.sign(z[big]) * (SOFT_LIMIT + np.log1p(np.abs(z[big]) - SOFT_LIMIT))
            out[:, j] = z
            j += 1
            if c["missing_indicator"]:
                out[:, j] = missing
                j += 1
            if c.get("range"):
                out[:, j] = beyond
                j += 1
        else:
            k = len(c["categories"])
            mask = s.isna().to_numpy()
            codes = pd.Categorical(s.astype(str), categories=c["categories"]).codes
            codes = np.asarray(codes, dtype=np.int64).copy()
            codes[(codes < 0) | mask] = k
            block = np.zeros((len(df), k + 1), dtype=np.float32)
            block[np.arange(len(df)), codes] = 1.0
            out[:, j : j + k + 1] = block
            j += k + 1
    return out


def test_block_encoding_equals_the_per_column_encoding_on_small_and_large_frames():
    rng = np.random.default_rng(7)
    n = 3000
    train = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1.5, n),  # skewed: log1p
            "ratio": rng.normal(0, 1, n),
            "count": rng.integers(0, 5, n),
            "gappy": np.where(rng.random(n) < 0.1, np.nan, rng.normal(5, 2, n)),  # indicator
            "shop": rng.choice(["a", "b", "c", "d"], n).astype(object),
            "flag": rng.random(n) < 0.3,
        }
    )
    enc = TabularEncoder(range_features=["amount", "ratio"]).fit(train)
    test = pd.DataFrame(
        {
            "amount": [1e9, -5.0, np.nan, 20.0, np.inf, 0.0],
            "ratio": [0.0, 1e6, -1e6, np.nan, 2.0, -np.inf],
            "count": [0, 1, 2, 3, 4, 99],
            "gappy": [np.nan, 5.0, 1e300, -3.0, np.nan, 0.0],
            "shop": ["a", "zz", None, "d", "b", "c"],
            "flag": [True, False, True, False, False, True],
        }
    )
    text_numbers = test.assign(count=["0", "1", "x", "3", None, "99"])  # parsed per column
    with_nan_shop = test.assign(shop=["a", np.nan, pd.NA, "d", "b", "c"])  # pandas' path
    for frame in (test, test.iloc[:1], text_numbers, with_nan_shop, train):
        np.testing.assert_array_equal(enc.transform(frame), _per_column_reference(enc, frame))
    # Refitting drops the cached plan.
    enc.fit(train.drop(columns=["gappy"]))
    small = test.drop(columns=["gappy"])
    np.testing.assert_array_equal(enc.transform(small), _per_column_reference(enc, small))
