"""VAE and GAN detectors: detection quality, persistence, thresholds, explanations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from detector_data import make_anomalies, make_normals

from detectors import (
    GANDetector,
    NotFittedError,
    Threshold,
    VAEDetector,
    load_detector,
    metrics,
)
from detectors.base import BaseDeepDetector
from detectors.layout import rule_weights
from detectors.parts import kth_distance

DETECTORS = ["fitted_vae", "fitted_gan"]


@pytest.fixture(params=DETECTORS)
def fitted(request: pytest.FixtureRequest) -> BaseDeepDetector:
    return request.getfixturevalue(request.param)


def test_detects_planted_anomalies(
    fitted: BaseDeepDetector, test_mix: tuple[pd.DataFrame, np.ndarray]
) -> None:
    X, y = test_mix
    scores = fitted.decision_function(X)
    assert scores.dtype == np.float64 and scores.shape == (len(X),)
    assert metrics.auroc(y, scores) > 0.9


def test_threshold_meets_target_fpr_on_fresh_normals(fitted: BaseDeepDetector) -> None:
    assert fitted.threshold_.method == "fpr" and fitted.threshold_.target == 0.05
    fresh = make_normals(2000, seed=11)
    fpr = float(fitted.predict(fresh).mean())
    # Calibrated on ~400 held-out normals: the sampling error of a 5% quantile is ~1%.
    assert 0.02 <= fpr <= 0.10


def test_save_load_gives_identical_scores(fitted: BaseDeepDetector, tmp_path, test_mix) -> None:
    X, _ = test_mix
    fitted.save(tmp_path / "model")
    state = torch.load(tmp_path / "model" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["class_name"] == type(fitted).__name__
    for loaded in (type(fitted).load(tmp_path / "model"), load_detector(tmp_path / "model")):
        assert type(loaded) is type(fitted)
        assert np.array_equal(loaded.decision_function(X), fitted.decision_function(X))
        assert np.array_equal(loaded.predict(X), fitted.predict(X))
        assert loaded.threshold_ == fitted.threshold_
        assert loaded.get_params() == fitted.get_params()


def test_load_detector_refuses_unknown_class(fitted: BaseDeepDetector, tmp_path) -> None:
    fitted.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["class_name"] = "os.system"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown detector class"):
        load_detector(tmp_path / "m")


def test_explain_contributions(fitted: BaseDeepDetector) -> None:
    anomalies, planted = make_anomalies(6, seed=21)
    X = pd.concat([make_normals(20, seed=22), anomalies], ignore_index=True)
    expl = fitted.explain(X)
    assert expl.shape == (len(X), fitted.n_features_in_)
    assert list(expl.columns) == list(X.columns)
    assert (expl.to_numpy() >= 0).all()
    # Both detectors document that a row's contributions sum to its score.
    np.testing.assert_allclose(expl.sum(axis=1), fitted.decision_function(X), rtol=1e-6)
    top = expl.iloc[20:].idxmax(axis=1).tolist()
    if isinstance(fitted, VAEDetector):
        assert top == planted
    else:
        # The GAN's G(E(x)) partly follows a 100x amount along the manifold, smearing its
        # input-space error over correlated columns; off-manifold and category anomalies
        # are attributed exactly.
        keep = [i for i, col in enumerate(planted) if col != "amount"]
        assert [top[i] for i in keep] == [planted[i] for i in keep]


def test_set_threshold_without_retraining(fitted: BaseDeepDetector, test_mix) -> None:
    X, y = test_mix
    scores = fitted.decision_function(X)
    old = fitted.threshold_
    try:
        fitted.set_threshold(Threshold.best_f1(scores, y))
        assert fitted.threshold_.method == "f1"
        np.testing.assert_array_equal(fitted.predict(X), (scores > fitted.threshold_.value))
    finally:
        fitted.set_threshold(old)


@pytest.mark.parametrize("cls", [VAEDetector, GANDetector])
def test_same_seed_same_scores_and_numpy_input(cls: type[BaseDeepDetector]) -> None:
    X = make_normals(400, seed=5).drop(columns=["channel"]).to_numpy()
    calls: list[tuple[int, int, dict]] = []
    a = cls(epochs=3, seed=7).fit(X, on_epoch=lambda e, n, m: calls.append((e, n, m)))
    b = cls(epochs=3, seed=7).fit(X)
    assert np.array_equal(a.decision_function(X), b.decision_function(X))
    assert a.feature_names_in_ == [f"x{i}" for i in range(X.shape[1])]
    # A DataFrame with the fitted names scores the same as the array.
    frame = pd.DataFrame(X, columns=a.feature_names_in_)
    assert np.array_equal(a.decision_function(frame), a.decision_function(X))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert {"train_loss", "val_loss"} <= set(calls[0][2])
    assert len(a.history_) == 3 and a.fit_seconds_ > 0 and a.n_features_in_ == X.shape[1]


def test_known_anomalies_are_dropped_from_training() -> None:
    normals = make_normals(300, seed=8)
    anomalies, _ = make_anomalies(30, seed=9)
    X = pd.concat([normals, anomalies], ignore_index=True)
    y = np.r_[np.zeros(300), np.ones(30)]
    a = VAEDetector(epochs=2, seed=3).fit(X, y)
    b = VAEDetector(epochs=2, seed=3).fit(normals)
    assert np.array_equal(a.decision_function(X), b.decision_function(X))


def test_not_fitted_error() -> None:
    with pytest.raises(NotFittedError):
        VAEDetector().decision_function(np.zeros((2, 3)))
    with pytest.raises(NotFittedError):
        GANDetector().explain(np.zeros((2, 3)))


def test_missing_scoring_column_is_named(fitted_vae: VAEDetector) -> None:
    X = make_normals(10, seed=3).drop(columns=["amount"])
    with pytest.raises(ValueError, match="amount"):
        fitted_vae.decision_function(X)


# ------------------------------------------------------------ VAE score rules
VAE_TEST_PARAMS = {"epochs": 40, "patience": 8, "kl_warmup_epochs": 5, "target_fpr": 0.05}
# The default ("ensemble") is covered by the ``fitted_vae`` tests above.
ELBO_VARIANTS = {
    "elbo": {"score_rule": "elbo"},
    "elbo_no_kl": {"score_rule": "elbo", "score_kl": False},
}


@pytest.mark.parametrize("variant", sorted(ELBO_VARIANTS))
def test_vae_elbo_rule_detects_explains_and_round_trips(
    variant: str, train_df: pd.DataFrame, test_mix, tmp_path
) -> None:
    params = {**VAE_TEST_PARAMS, "epochs": 15, **ELBO_VARIANTS[variant]}
    det = VAEDetector(**params).fit(train_df)
    assert det.ensemble_ == {}
    X, y = test_mix
    scores = det.decision_function(X)
    assert np.isfinite(scores).all() and metrics.auroc(y, scores) > 0.85
    expl = det.explain(X.iloc[990:])
    assert (expl.to_numpy() >= 0).all()
    np.testing.assert_allclose(expl.sum(axis=1), scores[990:], rtol=1e-5)
    det.save(tmp_path / "m")
    loaded = VAEDetector.load(tmp_path / "m")
    assert loaded.score_rule == "elbo"
    assert np.array_equal(loaded.decision_function(X), scores)


def test_vae_default_is_the_ensemble_rule(fitted_vae: VAEDetector, test_mix) -> None:
    assert fitted_vae.score_rule == "ensemble" and fitted_vae.ensemble_
    X, y = test_mix
    scores = fitted_vae.decision_function(X)
    # The ensemble score is the weighted sum of its rules and views, each in units of its
    # 99% training quantile, so a training-like row stays below the sum of the weights
    # and the planted anomalies far above it.
    total = sum(rule_weights(fitted_vae.ensemble_))
    assert np.median(scores[y == 0]) < total < np.median(scores[y == 1])
    # Switching to the ELBO rule after fitting needs no refit.
    fitted_vae.set_params(score_rule="elbo")
    try:
        assert metrics.auroc(y, fitted_vae.decision_function(X)) > 0.9
    finally:
        fitted_vae.set_params(score_rule="ensemble")


def test_vae_rejects_unknown_score_rule() -> None:
    X = make_normals(100, seed=31)
    with pytest.raises(ValueError, match="score_rule"):
        VAEDetector(epochs=1, score_rule="max").fit(X)
    fitted = VAEDetector(epochs=1, score_rule="elbo").fit(X)
    fitted.set_params(score_rule="ensemble")
    with pytest.raises(ValueError, match="ensemble"):
        fitted.decision_function(X)
    fitted.set_params(score_rule="max")
    with pytest.raises(ValueError, match="score_rule"):
        fitted.decision_function(X)


def test_vae_saved_before_score_rules_loads_with_the_elbo_score(tmp_path) -> None:
    X = make_normals(300, seed=32)
    det = VAEDetector(epochs=3, score_rule="elbo").fit(X)
    det.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    # The format before score rules: no ``score_rule`` parameter, no "ensemble" state.
    assert set(cfg["extra_state"]) == {"ensemble", "error_variance"}
    del cfg["params"]["score_rule"]
    del cfg["extra_state"]["ensemble"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    loaded = VAEDetector.load(tmp_path / "m")
    assert loaded.score_rule == "elbo" and loaded.threshold_ == det.threshold_
    assert np.array_equal(loaded.decision_function(X), det.decision_function(X))
    assert np.array_equal(loaded.predict(X), det.predict(X))


@pytest.mark.parametrize("cls", [VAEDetector, GANDetector])
def test_max_epoch_rows_caps_the_rows_each_epoch_trains_on(cls, monkeypatch) -> None:
    X = make_normals(500, seed=41)
    seen: list[int] = []
    original = cls._train_batch

    def counting(self, xb, epoch):
        seen.append(int(xb.shape[0]))
        return original(self, xb, epoch)

    monkeypatch.setattr(cls, "_train_batch", counting)
    det = cls(epochs=2, batch_size=40, max_epoch_rows=100, patience=None).fit(X)
    # 400 training rows after the 20% hold-out; each epoch visits a fresh sample of 100.
    assert sum(seen) == 2 * 100 and max(seen) == 40
    assert det.get_params()["max_epoch_rows"] == 100
    seen.clear()
    cls(epochs=1, batch_size=40, patience=None).fit(X)
    assert sum(seen) == 400
    with pytest.raises(ValueError, match="max_epoch_rows"):
        cls(epochs=1, max_epoch_rows=0).fit(X)


@pytest.mark.parametrize("cls", [VAEDetector, GANDetector])
@pytest.mark.parametrize(("prototypes", "k", "reference_rows"), [(0, 3, 300), (16, 1, 16)])
def test_knn_views_detect_explain_and_round_trip(
    cls, prototypes, k, reference_rows, train_df, test_mix, tmp_path
) -> None:
    # prototypes 0: the reference is the 300-row sample itself; 16: k-means centres of it.
    params = {"epochs": 10, "target_fpr": 0.05, "knn_reference_rows": 300}
    det = cls(**params, knn_views=("input", "latent"), knn_k=k, knn_prototypes=prototypes).fit(
        train_df
    )
    X, y = test_mix
    scores = det.decision_function(X)
    assert np.isfinite(scores).all() and metrics.auroc(y, scores) > 0.85
    expl = det.explain(X.iloc[990:])
    np.testing.assert_allclose(expl.sum(axis=1), scores[990:], rtol=1e-5)
    # The reference rows travel in weights.pt (tensors only), the rest in config.json.
    det.save(tmp_path / "m")
    state = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert state["knn_reference"].shape[0] == reference_rows
    assert state["knn_latent"].shape[0] == reference_rows
    loaded = load_detector(tmp_path / "m")
    assert loaded.get_params() == det.get_params()
    assert np.array_equal(loaded.decision_function(X), scores)
    # Without the views the score differs (the views are part of it).
    plain = cls(**params, knn_views=()).fit(train_df)
    assert "knn_reference" not in plain.model_.state_dict()
    assert not np.allclose(plain.decision_function(X), scores)
    with pytest.raises(ValueError, match="knn_views"):
        cls(epochs=1, knn_views=("graph",)).fit(make_normals(100, seed=42))


@pytest.mark.parametrize("cls", [VAEDetector, GANDetector])
def test_saved_before_knn_views_loads_without_them(cls, tmp_path) -> None:
    X = make_normals(300, seed=43)
    det = cls(epochs=3, knn_views=()).fit(X)
    det.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    # The format before kNN views: none of their parameters or state.
    for name in (
        "knn_views",
        "knn_k",
        "knn_weight",
        "knn_reference_rows",
        "knn_prototypes",
        "max_epoch_rows",
    ):
        del cfg["params"][name]
    if cls is VAEDetector:
        del cfg["extra_state"]["ensemble"]["knn_views"]
    else:
        del cfg["extra_state"]["knn"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    loaded = cls.load(tmp_path / "m")
    assert loaded.knn_views == ()
    assert np.array_equal(loaded.decision_function(X), det.decision_function(X))


@pytest.mark.parametrize("cls", [VAEDetector, GANDetector])
def test_saved_with_a_sample_reference_loads_and_scores_as_saved(cls, tmp_path) -> None:
    X = make_normals(300, seed=44)
    det = cls(epochs=3, knn_prototypes=0, knn_k=5, knn_weight=2.0).fit(X)
    det.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    # The format before prototypes: no ``knn_prototypes`` parameter or state.
    del cfg["params"]["knn_prototypes"]
    if cls is VAEDetector:
        del cfg["extra_state"]["ensemble"]["knn_prototypes"]
    else:
        del cfg["extra_state"]["knn"]["prototypes"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    loaded = cls.load(tmp_path / "m")
    assert loaded.get_params()["knn_prototypes"] == 0 and loaded.get_params()["knn_k"] == 5
    assert np.array_equal(loaded.decision_function(X), det.decision_function(X))


@pytest.mark.parametrize("k", [1, 5])
def test_kth_distance_matches_brute_force(k: int) -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(200, 7, generator=gen) * 3 + 10
    q = torch.cat([torch.randn(50, 7, generator=gen) * 3 + 10, ref[:5]])
    expected = torch.cdist(q.double(), ref.double()).sort(dim=1).values[:, k - 1]
    got = kth_distance(q, ref, k)
    assert got.dtype == torch.float64
    # float32 squared distances: ~1e-5 absolute error, ~1e-2 after the square root near 0.
    torch.testing.assert_close(got[:50], expected[:50], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(got[50:], expected[50:], atol=1e-2, rtol=1e-4)
