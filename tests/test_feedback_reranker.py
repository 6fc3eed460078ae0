"""The re-ranker (issue 9): its numpy trees equal scikit-learn's, and a saved and reloaded
re-ranked bundle gives identical scores (risk features included)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from detectors import VAEDetector
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.feedback.novelty import DEFAULT_FLOOR_BELOW, DEFAULT_FLOOR_GATE
from pipelines.feedback.reranker import (
    BoostedTrees,
    NoveltyFloor,
    RerankedBundle,
    fit_reranked_bundle,
    served_score,
    with_risk_features,
)
from pipelines.feedback.risk import RiskConfig
from pipelines.feedback.training import train_reranked
from pipelines.modeling.bundle import ScoringBundle, prepare_records
from tests.conftest import FAST_VAE


def test_numpy_trees_equal_sklearn_and_survive_save_load(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6))
    X[::5, 2] = np.nan
    y = ((X[:, 0] + np.nan_to_num(X[:, 2], nan=1.5) + rng.normal(0, 0.5, 3000)) > 1.2).astype(int)
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y)
    trees = BoostedTrees.from_sklearn(model)
    X_new = rng.normal(size=(500, 6))
    X_new[::3, 2] = np.nan
    np.testing.assert_allclose(
        trees.predict_proba(X_new), model.predict_proba(X_new)[:, 1], rtol=1e-10, atol=1e-12
    )
    trees.save(tmp_path)
    loaded = BoostedTrees.load(tmp_path, trees.baseline, trees.max_depth)
    assert np.array_equal(loaded.predict_proba(X_new), trees.predict_proba(X_new))


def _base_bundle(train: pd.DataFrame) -> ScoringBundle:
    spec = DEMO_SPEC
    normal = train.loc[train["is_fraud"] == 0]
    detector = VAEDetector(
        categorical_features=list(spec.categorical_features), seed=0, **FAST_VAE
    ).fit(prepare_records(spec, normal).features[spec.model_feature_columns])
    return ScoringBundle(spec, detector)


def test_reranked_bundle_save_load_gives_identical_scores(tmp_path):
    train = generate_transactions(1500, n_anomalies=60, seed=3)
    base = _base_bundle(train)
    frauds = train.loc[train["is_fraud"] == 1, "transaction_id"].astype(str)
    normals = train.loc[train["is_fraud"] == 0, "transaction_id"].astype(str).head(100)
    known = pd.DataFrame(
        {
            "record_id": [*frauds, *normals],
            "y": [1] * len(frauds) + [0] * len(normals),
            "known_at": pd.Timestamp("2026-06-01", tz="UTC"),
        }
    )
    model = train_reranked(base, train, known, min_labels=20)
    bundle = model.bundle
    assert bundle.config.latent_dim == FAST_VAE["latent_dim"]  # the VAE's codes are read
    assert bundle.config.training["frauds"] == len(frauds)

    later = generate_transactions(500, n_anomalies=15, seed=4, start_id=90_000)
    before = bundle.score(later)
    bundle.save(tmp_path / "bundle")
    loaded = RerankedBundle.load(tmp_path / "bundle", numpy_forward=False)
    after = loaded.score(later)
    assert np.array_equal(before["score"].to_numpy(), after["score"].to_numpy())
    assert np.array_equal(before["is_anomaly"].to_numpy(), after["is_anomaly"].to_numpy())
    assert before["reasons"].tolist() == after["reasons"].tolist()
    # With the numpy forward of its VAE (the default): the same within float32 rounding
    # (tolerance as tests/detectors/test_numpy_forward.py).
    from detectors.numpy_forward import NumpyVAE

    fast = RerankedBundle.load(tmp_path / "bundle", numpy_forward=True)
    assert isinstance(fast.detector, NumpyVAE)
    quick = fast.score(later)
    np.testing.assert_allclose(quick["score"], before["score"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(
        quick["unsupervised_score"], before["unsupervised_score"], rtol=1e-3, atol=1e-3
    )
    assert (quick["is_anomaly"] == before["is_anomaly"]).mean() >= 0.99
    # Flagged exactly when the re-ranker says fraud or the unsupervised model alone is over
    # its threshold and rarer than the gate among the presumed normals.
    u = before["unsupervised_score"].to_numpy() / bundle.config.base_threshold
    p = before["fraud_probability"].to_numpy()
    floor = bundle.config.novelty_floor
    line = max(floor.gate, floor.rarity(np.array([1.0]))[0])
    expected = (p / bundle.config.p_cut > 1.0) | ((u > 1.0) & (floor.rarity(u) >= line))
    assert np.array_equal(before["is_anomaly"].to_numpy(), expected)
    assert (before["score"].to_numpy() <= max(2.0, bundle.config.floor["cap"]) + 1e-12).all()


def test_risk_features_travel_with_the_bundle_and_read_the_labels_given(tmp_path):
    rng = np.random.default_rng(1)
    n = 1200
    frame = pd.DataFrame(
        {
            "tx_id": [f"t{i}" for i in range(n)],
            "card": rng.choice([f"c{i}" for i in range(60)], n),
            "terminal": rng.choice([f"T{i}" for i in range(15)], n),
            "ts": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(np.sort(rng.uniform(0, 40, n)), unit="D"),
            "amount": rng.lognormal(3, 0.5, n),
        }
    )
    spec = DEMO_SPEC.model_copy(
        update={
            "name": "risky",
            "id_column": "tx_id",
            "label_column": None,
            "numeric_features": ["amount"],
            "categorical_features": [],
            "entity_column": "card",
            "time_column": "ts",
        }
    )
    detector = VAEDetector(seed=0, **FAST_VAE).fit(frame[["amount"]])
    base = ScoringBundle(spec, detector)
    risk = RiskConfig(columns=("terminal",), time_column="ts", id_column="tx_id", windows=("7D",))
    bad = frame.index[(frame["terminal"] == "T3") & (frame["ts"] > "2026-01-10")]
    known = pd.DataFrame(
        {
            "record_id": frame.loc[bad, "tx_id"],
            "known_at": frame.loc[bad, "ts"] + pd.Timedelta("1D"),
        }
    )
    features = with_risk_features(frame[["amount"]], frame, None, risk, known)
    y = frame.index.isin(bad).astype(int)
    bundle = fit_reranked_bundle(base, features, np.arange(n), y, risk=risk)
    bundle.use_labels(known)
    history, batch = frame.iloc[:1000], frame.iloc[1000:]
    before = bundle.score(batch, history=history)
    assert before["fraud_probability"].to_numpy()[batch["terminal"].to_numpy() == "T3"].mean() > 0.5
    bundle.save(tmp_path / "b")
    loaded = RerankedBundle.load(tmp_path / "b", numpy_forward=False)  # exact: torch both sides
    loaded.use_labels(known)
    after = loaded.score(batch, history=history)
    assert np.array_equal(before["score"].to_numpy(), after["score"].to_numpy())


def test_a_feature_missing_everywhere_does_not_stop_training():
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=400), np.full(400, np.nan)])
    y = (X[:, 0] > 0.5).astype(int)
    trees = BoostedTrees.fit(X, y, max_iter=10)
    p = trees.predict_proba(X)
    assert p[y == 1].mean() > p[y == 0].mean()


def test_novelty_floor_is_bounded_monotone_and_keeps_the_line():
    rng = np.random.default_rng(5)
    normals = rng.lognormal(-1.5, 0.6, 20_000)  # u in threshold units: ~1% above 1
    floor = NoveltyFloor.fit(normals, cap=1.5, below=1.0, gate=0.0)
    u = np.concatenate([np.linspace(0, 3, 2000), [10.0, 1e3, 1e9]])
    f = floor(u)
    assert np.all(np.diff(f) >= 0)  # the unsupervised order is kept
    assert f[u <= 1.0].max() <= 1.0 < f[u > 1.0].min()  # 1 is still the flag line
    assert f.max() < 1.5  # bounded by the cap: a confident re-ranker (p/0.5 up to 2) wins
    assert f[-1] > f[-2] > f[-3]  # extreme scores still order among themselves
    # Rarity reads the reference: the 1%-exceedance quantile sits at ~2 (=-log10 0.01).
    assert abs(floor.rarity(np.quantile(normals, [0.99]))[0] - 2.0) < 0.05
    served = served_score(np.array([50.0, 0.2]), np.array([0.01, 0.95]), 0.5, floor)
    assert served[1] > served[0]  # a confident fraud outranks an extreme-but-unlabelled score


def test_the_gated_floor_leaves_the_order_to_the_reranker_above_its_no_opinion_level():
    rng = np.random.default_rng(6)
    normals = rng.lognormal(-1.5, 0.6, 50_000)  # ~1% over the detector's threshold
    floor = NoveltyFloor.fit(normals)  # defaults: gate 4 decades, 0.1 below it
    assert (floor.gate, floor.below) == (DEFAULT_FLOOR_GATE, DEFAULT_FLOOR_BELOW)
    u = np.sort(rng.lognormal(-1.5, 0.6, 50_000))
    f = floor(u)
    assert np.all(np.diff(f) >= 0)
    rarity = floor.rarity(u)
    gate, below = DEFAULT_FLOOR_GATE, DEFAULT_FLOOR_BELOW
    assert f[rarity < gate].max() <= below  # below the gate: no more than p = 5% weighs
    assert (f[rarity >= gate + 1e-9] > 1.0).all()  # the rarest 0.01% still flag on their own
    # A fraud the re-ranker puts at p = 0.2 outranks a normal merely over the detector's
    # 1% line; an unlabelled pattern past the gate outranks what the re-ranker doubts.
    over_line = float(np.quantile(normals, 0.995))
    s = served_score(np.array([over_line, 0.01, 1e3]), np.array([0.0, 0.2, 0.1]), 0.5, floor)
    assert s[1] > s[0] and s[2] > s[1]
    # With p tiny everywhere the unsupervised order is kept (a type no one labelled).
    tiny = served_score(u, np.full(len(u), 1e-4), 0.5, floor)
    assert np.all(np.diff(tiny) >= 0) and tiny[-1] > tiny[len(u) // 2]
    # A type no one labelled is learnt as normal, so the re-ranker puts it *below* ordinary
    # normals (p = 0.5% against 2%): rarer than 99.7% of normals, it still outranks them.
    novel = float(np.quantile(normals, 1 - 10**-2.5))
    s = served_score(np.array([novel, np.median(normals)]), np.array([0.005, 0.02]), 0.5, floor)
    assert s[0] > s[1]


def test_frauds_in_the_data_label_column_train_it_outside_the_evaluation_period():
    """The history's chargebacks in the training file's label column are confirmed frauds
    for the re-ranker (the verdicts alone cover only what the champion flagged); those in
    the evaluation period stay out (honest metrics), and a verdict overrides the column."""
    train = generate_transactions(1500, n_anomalies=60, seed=3)
    base = _base_bundle(train)
    ids = train["transaction_id"].astype(str)
    frauds = ids[train["is_fraud"] == 1].tolist()
    held = set(frauds[:20]) | set(ids[train["is_fraud"] == 0].head(300))
    verdict_frauds, overridden = frauds[20:30], frauds[30]
    known = pd.DataFrame(
        {
            "record_id": [*verdict_frauds, overridden],
            "y": [1] * len(verdict_frauds) + [0],
            "known_at": pd.Timestamp("2026-06-01", tz="UTC"),
        }
    )
    model = train_reranked(base, train, known, evaluation_ids=held, min_labels=20)
    assert model.bundle.config.training["frauds"] == 60 - 20 - 1
    assert model.labels_seen["data_frauds"] == str(60 - 20 - 10 - 1)
    assert model.labels_seen["frauds"] == str(len(verdict_frauds))
    assert model.metrics["auroc"] > 0.5  # the held-out period keeps its frauds to measure
