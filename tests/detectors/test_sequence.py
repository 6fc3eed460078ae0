"""Sequence detectors: windows, detection, history= equivalence, context-only rows, saving."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from detectors import (
    NotFittedError,
    SequenceGANDetector,
    SequenceVAEDetector,
    load_detector,
    metrics,
)
from detectors.base import BaseDeepDetector
from detectors.context import time_to_seconds as to_seconds
from detectors.registry import DETECTORS
from detectors.windows import build_windows

DAY = 86400.0
FEATURES = ["amount", "log_gap"]


def make_sequences(
    n_entities: int = 40, n_records: int = 30, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Card-like records: entity-specific amount levels, ~daily gaps, planted anomalies.

    Anomalies (label 1): 10 records with 10x their entity's amount, and two bursts of 6
    records two minutes apart. Rows come shuffled (the detectors must not rely on order).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(n_entities):
        level = np.exp(rng.uniform(2.5, 5.0))
        t = rng.uniform(0.0, 2 * DAY)
        for _ in range(n_records):
            rows.append((f"c{e:02d}", t, level * np.exp(0.15 * rng.normal()), 0))
            t += DAY * rng.uniform(0.8, 1.2)
    df = pd.DataFrame(rows, columns=["card", "ts", "amount", "label"])
    spikes = rng.choice(len(df), 10, replace=False)
    df.loc[spikes, "amount"] *= 10.0
    df.loc[spikes, "label"] = 1
    burst = []
    for e in rng.choice(n_entities, 2, replace=False):
        own = df[df.card == f"c{e:02d}"]
        t0, level = float(own.ts.iloc[15]), float(own.amount.median())
        for b in range(6):
            amount = level * np.exp(0.15 * rng.normal())
            burst.append((f"c{e:02d}", t0 + 120.0 * (b + 1), amount, 1))
    df = pd.concat([df, pd.DataFrame(burst, columns=df.columns)], ignore_index=True)
    df = df.sort_values(["card", "ts"])
    df["log_gap"] = np.log1p(df.groupby("card").ts.diff().fillna(DAY))
    df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    y = df.pop("label").to_numpy()
    return df, y


@pytest.fixture(scope="module")
def seq_data() -> tuple[pd.DataFrame, np.ndarray]:
    return make_sequences()


COMMON = {"entity_column": "card", "time_column": "ts", "batch_size": 128, "target_fpr": 0.05}
VAE_PARAMS = {
    **COMMON,
    # The counts these tests check are of every record (the warm-up has its own test).
    "warmup_fraction": 0.0,
    "epochs": 5,
    "kl_warmup_epochs": 2,
    "hidden_dims": (32, 16),
    "context_hidden": 16,
}
GAN_PARAMS = {
    **COMMON,
    "epochs": 5,
    "learning_rate": 1e-3,
    "hidden_dims": (32, 16),
    "disc_hidden": 32,
}


@pytest.fixture(scope="module")
def seq_vae(seq_data: tuple[pd.DataFrame, np.ndarray]) -> SequenceVAEDetector:
    df, y = seq_data
    return SequenceVAEDetector(**VAE_PARAMS).fit(df, y)


@pytest.fixture(scope="module")
def seq_gan(seq_data: tuple[pd.DataFrame, np.ndarray]) -> SequenceGANDetector:
    df, y = seq_data
    return SequenceGANDetector(**GAN_PARAMS).fit(df, y)


@pytest.fixture(params=["seq_vae", "seq_gan"])
def fitted(request: pytest.FixtureRequest) -> BaseDeepDetector:
    return request.getfixturevalue(request.param)


# ------------------------------------------------------------------ windows
def test_build_windows_by_hand() -> None:
    entities = ["a", "b", "a", "a", "b", "a"]
    times = [10.0, 5.0, 0.0, 10.0, 7.0, 100.0]
    w = build_windows(entities, times, sequence_length=3, history_seconds=50.0)
    # a: rows 2 (t=0), 0 (t=10), 3 (t=10, tie: later input position), 5 (t=100);
    # b: rows 1, 4. Oldest first, pads (= 6 = n) in front; row 5's past is > 50 s old.
    expected = [[6, 2], [6, 6], [6, 6], [2, 0], [6, 1], [6, 6]]
    np.testing.assert_array_equal(w, expected)
    assert w.dtype == np.int64
    # No horizon and a longer window: row 5 sees all three earlier "a" rows.
    w = build_windows(entities, times, sequence_length=4, history_seconds=None, pad_index=-1)
    np.testing.assert_array_equal(w[5], [2, 0, 3])
    np.testing.assert_array_equal(w[3], [-1, 2, 0])
    # The horizon is inclusive: 90 s back from t=100 reaches t=10 but not t=0.
    w = build_windows(entities, times, sequence_length=4, history_seconds=90.0, pad_index=-1)
    np.testing.assert_array_equal(w[5], [-1, 0, 3])
    assert build_windows(entities, times, sequence_length=1).shape == (6, 0)


def test_build_windows_missing_entities_and_errors() -> None:
    w = build_windows([None, None, "x", np.nan], [0.0, 1.0, 2.0, 3.0], sequence_length=2)
    np.testing.assert_array_equal(w.ravel(), [4, 4, 4, 4])
    with pytest.raises(ValueError, match="non-finite"):
        build_windows(["a", "a"], [0.0, np.nan], sequence_length=2)
    with pytest.raises(ValueError, match="sequence_length"):
        build_windows(["a"], [0.0], sequence_length=0)


def test_to_seconds() -> None:
    naive = pd.Series(pd.to_datetime(["1970-01-01 00:00:00", "1970-01-02 00:00:01"]))
    np.testing.assert_allclose(to_seconds(naive), [0.0, DAY + 1])
    np.testing.assert_allclose(
        to_seconds(naive.dt.tz_localize("Europe/Paris")), [-3600.0, DAY - 3599]
    )
    np.testing.assert_allclose(to_seconds(["1970-01-02T00:00:00Z"]), [DAY])
    np.testing.assert_allclose(to_seconds(np.array([3, 5])), [3.0, 5.0])
    with pytest.raises(ValueError, match="'when'"):
        to_seconds(["not a time"], "when")


# ------------------------------------------------------------------ detectors
def test_params_and_defaults() -> None:
    vae = SequenceVAEDetector(entity_column="card", time_column="ts")
    assert vae.get_params()["sequence_length"] == 8 and vae.max_train_rows == 200_000
    assert vae.history_seconds == 30 * DAY and vae.kl_warmup_epochs == 5 and vae.epochs == 30
    gan = SequenceGANDetector(entity_column="card", time_column="ts")
    assert gan.sequence_length == 4 and gan.max_train_rows == 100_000
    assert "entity_column" in repr(gan)
    assert DETECTORS["SequenceVAEDetector"] is SequenceVAEDetector
    assert DETECTORS["SequenceGANDetector"] is SequenceGANDetector
    with pytest.raises(NotFittedError):
        vae.decision_function(pd.DataFrame({"card": ["a"], "ts": [0.0], "amount": [1.0]}))


def test_detects_planted_anomalies(
    fitted: BaseDeepDetector, seq_data: tuple[pd.DataFrame, np.ndarray]
) -> None:
    df, y = seq_data
    scores = fitted.decision_function(df)
    assert scores.dtype == np.float64 and scores.shape == (len(df),)
    assert metrics.auroc(y, scores) > 0.8
    assert fitted.threshold_.method == "fpr" and fitted.threshold_.target == 0.05
    flags = fitted.predict(df)
    np.testing.assert_array_equal(flags, scores > fitted.threshold_.value)
    assert fitted.feature_names_in_ == FEATURES and fitted.n_features_in_ == 2
    # Window data lives on the detector only while fitting/scoring.
    assert not hasattr(fitted, "_seq_steps") and not hasattr(fitted, "_seq_windows")
    if isinstance(fitted, SequenceVAEDetector):  # spectral-norm modules (GAN) do not pickle
        assert len(pickle.dumps(fitted)) < 1_000_000


def test_known_anomalies_are_context_only(
    fitted: BaseDeepDetector, seq_data: tuple[pd.DataFrame, np.ndarray]
) -> None:
    df, y = seq_data
    n_anom = int(y.sum())
    assert fitted.n_context_rows_ == n_anom
    assert fitted.n_target_rows_ == len(df) - n_anom
    # Held-out rows with a known anomaly in their window are left out of calibration.
    held_out = fitted.n_val_rows_ + fitted.n_val_excluded_rows_
    assert fitted.n_train_rows_ + held_out == len(df) - n_anom
    assert held_out == round(0.2 * (len(df) - n_anom)) and fitted.n_val_excluded_rows_ > 0


def test_max_train_rows_subsamples_gradient_rows(seq_data) -> None:
    df, _ = seq_data
    calls: list[tuple[int, int]] = []
    det = SequenceVAEDetector(**{**VAE_PARAMS, "epochs": 2, "max_train_rows": 100})
    assert det.fit(df, on_epoch=lambda e, n, m: calls.append((e, n))) is det
    assert det.n_train_rows_ == 100 and det.n_context_rows_ == 0
    assert det.n_val_rows_ == round(0.2 * len(df))
    assert calls == [(1, 2), (2, 2)] and len(det.history_) == 2 and det.fit_seconds_ > 0
    assert det.decision_function(df.iloc[:0]).shape == (0,)
    assert det.explain(df.iloc[:0]).shape == (0, 2)
    with pytest.raises(ValueError, match="no feature columns"):
        det.decision_function(df[["card", "ts"]])


def test_history_gives_same_scores_as_whole_frame(fitted: BaseDeepDetector, seq_data) -> None:
    df, _ = seq_data
    # The newest ~5% of records, as a nightly batch would be scored.
    newest = (df.ts > df.ts.quantile(0.95)).to_numpy()
    whole = fitted.decision_function(df)
    batch, earlier = df[newest], df[~newest]
    split = fitted.decision_function(batch, history=earlier)
    np.testing.assert_allclose(split, whole[newest], rtol=1e-5)
    np.testing.assert_array_equal(
        fitted.predict(batch, history=earlier), fitted.predict(df)[newest]
    )
    expl = fitted.explain(batch, history=earlier)
    np.testing.assert_allclose(expl.to_numpy(), fitted.explain(df)[newest].to_numpy(), rtol=1e-5)
    # Without its history a record is scored differently (the window matters).
    alone = fitted.decision_function(batch)
    assert not np.allclose(alone, split, rtol=1e-3)


def test_explain_contributions(fitted: BaseDeepDetector, seq_data) -> None:
    df, y = seq_data
    X = df.set_index(df.index + 1000)
    expl = fitted.explain(X)
    assert list(expl.columns) == FEATURES and expl.index.equals(X.index)
    assert (expl.to_numpy() >= 0).all()
    scores = fitted.decision_function(X)
    # Both detectors share non-attributable terms in proportion, so rows sum to the score.
    np.testing.assert_allclose(expl.sum(axis=1), scores, rtol=1e-4)
    # Bursts are explained by the gap, 10x records by the amount.
    top = expl.idxmax(axis=1).to_numpy()[y == 1]
    bursts = (X.log_gap < 6).to_numpy()[y == 1]
    assert (top[bursts] == "log_gap").mean() >= 0.75
    assert (top[~bursts] == "amount").mean() >= 0.75


def test_save_load_round_trip(fitted: BaseDeepDetector, seq_data, tmp_path) -> None:
    df, _ = seq_data
    fitted.save(tmp_path / "model")
    state = torch.load(tmp_path / "model" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["class_name"] == type(fitted).__name__
    assert config["params"]["entity_column"] == "card"
    for loaded in (type(fitted).load(tmp_path / "model"), load_detector(tmp_path / "model")):
        assert type(loaded) is type(fitted)
        assert loaded.get_params() == fitted.get_params()
        assert loaded.threshold_ == fitted.threshold_
        assert loaded.n_context_rows_ == fitted.n_context_rows_
        np.testing.assert_array_equal(loaded.decision_function(df), fitted.decision_function(df))
        np.testing.assert_array_equal(loaded.explain(df), fitted.explain(df))


def test_sequence_vae_keeps_the_elbo_rule(seq_vae: SequenceVAEDetector, seq_data, tmp_path) -> None:
    # The ensemble rule is tabular-only: fixed ELBO rule, no parameter, no ensemble state.
    assert seq_vae.score_rule == "elbo" and not hasattr(seq_vae, "ensemble_")
    assert "score_rule" not in seq_vae.get_params()
    with pytest.raises(ValueError, match="score_rule"):
        seq_vae.set_params(score_rule="ensemble")
    df, _ = seq_data
    scores = seq_vae.decision_function(df)

    def elbo(pos: torch.Tensor) -> torch.Tensor:
        se, kl = seq_vae._errors_and_kl(pos)
        var = torch.tensor(seq_vae.error_variance_, dtype=se.dtype)
        return (se / var).double().sum(dim=1) + seq_vae.beta * kl.double()

    with seq_vae._scoring_data(df, None) as pos:
        expected = seq_vae._batched(elbo, pos).numpy()
    np.testing.assert_array_equal(scores, expected)
    seq_vae.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "ensemble" not in config["extra_state"] and "score_rule" not in config["params"]
    loaded = load_detector(tmp_path / "model")
    assert loaded.score_rule == "elbo" and not hasattr(loaded, "ensemble_")
    np.testing.assert_array_equal(loaded.decision_function(df), scores)


@pytest.mark.parametrize("column", ["card", "ts"])
def test_missing_entity_or_time_column_is_named(
    fitted: BaseDeepDetector, seq_data, column: str
) -> None:
    df, _ = seq_data
    with pytest.raises(ValueError, match=f"'{column}'"):
        fitted.decision_function(df.drop(columns=[column]))
    with pytest.raises(ValueError, match=f"'{column}' is missing from history"):
        fitted.decision_function(df, history=df.drop(columns=[column]))
    cls = type(fitted)
    with pytest.raises(ValueError, match=f"'{column}'"):
        cls(**{**fitted.get_params(), "epochs": 1}).fit(df.drop(columns=[column]))


def test_datetime_times_match_seconds(seq_vae: SequenceVAEDetector, seq_data) -> None:
    df, _ = seq_data
    dated = df.assign(ts=pd.to_datetime(df.ts, unit="s"))
    np.testing.assert_allclose(
        seq_vae.decision_function(dated), seq_vae.decision_function(df), rtol=1e-6
    )


def test_validation_split_holds_out_the_latest_records() -> None:
    det = SequenceVAEDetector(entity_column="card", time_column="ts", validation_fraction=0.25)
    assert det.validation_split == "latest"
    secs = np.array([5.0, 1.0, 7.0, 3.0, 2.0, 8.0, 4.0, 6.0])
    train, val = det._time_split(secs)
    np.testing.assert_array_equal(val, [2, 5])  # times 7 and 8
    np.testing.assert_array_equal(train, [0, 1, 3, 4, 6, 7])
    det.set_params(validation_split="random")
    train, val = det._time_split(secs)
    assert len(val) == 2 and sorted([*train, *val]) == list(range(8))
    det.set_params(validation_split="sometimes")
    with pytest.raises(ValueError, match="validation_split"):
        det._check_sequence_params()


@pytest.mark.parametrize("cls", [SequenceGANDetector, SequenceVAEDetector])
def test_threshold_is_calibrated_on_held_out_rows_without_an_anomaly_in_their_window(
    cls, seq_data
) -> None:
    df, y = seq_data
    params = dict(entity_column="card", time_column="ts", epochs=2, seed=0)
    if cls is SequenceVAEDetector:
        params["warmup_fraction"] = 0.0  # every target counts here (the warm-up: below)
    det = cls(**params).fit(df, y)
    # Rebuild the held-out rows: the latest 20% of the targets, less those with a
    # labelled anomaly among their window's earlier records.
    secs = df.ts.to_numpy()
    target = np.flatnonzero(y == 0)
    _, val = det._time_split(secs[target])
    held_out = target[val]
    prev = build_windows(df.card, secs, det.sequence_length, det.history_seconds)
    noisy = np.append(y == 1, False)[prev[held_out]].any(axis=1)
    assert noisy.any() and det.n_val_excluded_rows_ == int(noisy.sum())
    assert det.n_val_rows_ == len(held_out) - int(noisy.sum())
    scores = det.decision_function(df)
    expected = metrics.fpr_at(det.threshold_.value, scores[held_out[~noisy]])
    assert expected == pytest.approx(det.target_fpr, abs=1.0 / len(held_out))
    assert det.threshold_.value == pytest.approx(
        type(det.threshold_).for_fpr(scores[held_out[~noisy]], det.target_fpr).value, rel=1e-5
    )
    # The old behaviour stays available, and the saved config says which one was used.
    everything = cls(**params, clean_calibration=False).fit(df, y)
    assert everything.n_val_excluded_rows_ == 0 and everything.n_val_rows_ == len(held_out)
    assert everything.threshold_.value == pytest.approx(
        type(det.threshold_).for_fpr(everything.decision_function(df)[held_out], 0.01).value,
        rel=1e-5,
    )


def test_the_first_quarter_of_the_span_is_context_only():
    """Records before their entities' look-back is covered by the data all look new:
    the sequence VAE keeps them as context and trains on the later ones."""
    from detectors.sequence import SequenceVAEDetector

    frame = _frame_for_warmup()
    warm = SequenceVAEDetector(entity_column="card", time_column="ts", epochs=1, seed=0)
    warm.fit(frame)
    cold = SequenceVAEDetector(
        entity_column="card", time_column="ts", epochs=1, seed=0, warmup_fraction=0.0
    )
    cold.fit(frame)
    secs = frame["ts"].to_numpy(dtype=float)
    early = int((secs < secs.min() + 0.25 * (secs.max() - secs.min())).sum())
    assert warm.n_target_rows_ == len(frame) - early
    assert warm.n_context_rows_ == early and cold.n_context_rows_ == 0
    with pytest.raises(ValueError, match="warmup_fraction"):
        SequenceVAEDetector(
            entity_column="card", time_column="ts", epochs=1, warmup_fraction=1.0
        ).fit(frame)


def _frame_for_warmup():
    rng = np.random.default_rng(3)
    n = 400
    return pd.DataFrame(
        {
            "card": rng.integers(0, 20, n).astype(str),
            "ts": np.sort(rng.uniform(0, 10 * 86400.0, n)),
            "amount": rng.lognormal(3, 0.5, n),
        }
    )
