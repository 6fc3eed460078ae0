"""Drift watch's statistics on their own: control limits, PSI, FDR, and the three batches
the issue names (amounts +50%, a new merchant category, a fresh normal batch)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.operations.drift import (
    DriftPolicy,
    assess_drift,
    benjamini_hochberg,
    flag_rate_check,
    psi,
)
from pipelines.operations.reference import (
    TrainingReference,
    expected_flag_rate,
    reference_score_sample,
)


def test_flag_rate_control_limit_alarms_on_half_a_percent_to_two_percent():
    rises = flag_rate_check(flagged=40, n=2000, expected=0.005, alpha=0.001)
    assert rises["alarm"] and rises["observed_rate"] == pytest.approx(0.02)
    assert rises["upper_limit"] < 40
    usual = flag_rate_check(flagged=12, n=2000, expected=0.005, alpha=0.001)
    assert not usual["alarm"] and usual["lower_limit"] <= 12 <= usual["upper_limit"]
    # A model that stops flagging altogether is outside the limits too.
    silent = flag_rate_check(flagged=0, n=20_000, expected=0.005, alpha=0.001)
    assert silent["alarm"]


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 5000)
    assert psi(reference, rng.normal(0, 1, 5000)) < 0.02
    assert psi(reference, rng.normal(1, 1, 5000)) > 0.5


def test_benjamini_hochberg_matches_the_step_up_rule():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005, 0.01, 0.03, 0.04 -> *4/rank: 0.02, 0.02, 0.04, 0.04
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_reference_mixes_anomalies_back_to_their_training_share():
    scores = np.r_[np.zeros(100), np.ones(50)]
    labels = np.r_[np.zeros(100, int), np.ones(50, int)]
    sample = reference_score_sample(scores, labels, anomaly_share=0.02)
    assert len(sample) == 102 and sample.sum() == 2
    # 10% of normals and 80% of anomalies over 0.5, at a 2% anomaly share:
    s = np.r_[np.linspace(0, 1, 100) > 0.9, np.r_[np.ones(40), np.zeros(10)]].astype(float)
    rate = expected_flag_rate(s, labels, threshold=0.5, anomaly_share=0.02)
    assert rate == pytest.approx(0.98 * 0.10 + 0.02 * 0.80)


def _score(frame: pd.DataFrame) -> np.ndarray:
    """A stand-in detector: the larger the amount, the more anomalous."""
    return np.log1p(frame["amount"].astype(float)).to_numpy()


@pytest.fixture(scope="module")
def reference() -> TrainingReference:
    train = generate_transactions(4000, n_anomalies=0, seed=1)
    held_out = generate_transactions(1000, n_anomalies=0, seed=2)
    scores = _score(held_out)
    threshold = float(np.quantile(scores, 0.99))
    features = train[DEMO_SPEC.numeric_features].astype(float)
    return TrainingReference(
        reference_scores=scores,
        expected_flag_rate=float(np.mean(scores > threshold)),
        threshold=threshold,
        numeric=features,
        categories={
            c: train[c].value_counts(normalize=True).to_dict()
            for c in DEMO_SPEC.categorical_features
        },
    )


def _assess(reference: TrainingReference, batch: pd.DataFrame) -> dict:
    scores = _score(batch)
    return assess_drift(
        reference,
        scores=scores,
        flagged=scores > reference.threshold,
        features=batch[DEMO_SPEC.feature_columns],
        policy=DriftPolicy(),
    )


def test_fresh_normal_batch_does_not_alarm(reference):
    health = _assess(reference, generate_transactions(1500, n_anomalies=0, seed=3))
    assert health["status"] == "ok", health["alarms"]
    assert not any(f["drifted"] for f in health["features"])


def test_amounts_fifty_percent_higher_alarm_on_amount_and_scores(reference):
    batch = generate_transactions(1500, n_anomalies=0, seed=4)
    batch["amount"] = batch["amount"] * 1.5
    health = _assess(reference, batch)
    assert health["status"] == "alarm"
    drifted = {f["feature"] for f in health["features"] if f["drifted"]}
    assert drifted == {"amount"}
    assert health["score"]["psi"] > 0.2


def test_a_new_merchant_category_alarms_as_unseen(reference):
    batch = generate_transactions(1500, n_anomalies=0, seed=5)
    batch.loc[batch.index[:150], "merchant_category"] = "crypto_exchange"
    health = _assess(reference, batch)
    assert health["status"] == "alarm"
    assert health["unseen"]["share"] == pytest.approx(0.10)
    assert health["unseen"]["by_feature"]["merchant_category"]["values"] == {"crypto_exchange": 150}
    assert any("never seen in training" in a for a in health["alarms"])


def test_a_category_seen_only_on_known_anomalies_is_not_unseen(reference):
    batch = generate_transactions(1500, n_anomalies=0, seed=6)
    batch.loc[batch.index[:60], "country"] = "NG"
    assert _assess(reference, batch)["unseen"]["share"] == pytest.approx(0.04)
    reference.known_values = {"country": [*reference.categories["country"], "NG"]}
    try:
        health = _assess(reference, batch)
    finally:
        reference.known_values = {}
    assert health["unseen"]["share"] == 0.0


def test_drift_policy_comes_from_settings_env_and_env_file(monkeypatch, tmp_path):
    from pydantic import ValidationError

    from pipelines.settings import VigilSettings

    assert VigilSettings().drift == DriftPolicy()
    monkeypatch.setenv("VIGIL_DRIFT__PSI_ALARM", "0.35")
    monkeypatch.setenv("VIGIL_DRIFT__MIN_ROWS", "100")
    settings = VigilSettings()
    assert settings.drift.psi_alarm == 0.35 and settings.drift.min_rows == 100
    assert settings.drift.ks_alpha == DriftPolicy().ks_alpha  # the rest keep their defaults
    # The same from a settings (.env) file, as the house configures everything else.
    monkeypatch.delenv("VIGIL_DRIFT__PSI_ALARM")
    monkeypatch.delenv("VIGIL_DRIFT__MIN_ROWS")
    env_file = tmp_path / ".env"
    env_file.write_text('VIGIL_DRIFT={"feature_fdr": 0.05, "unseen_share_alarm": 0.2}\n')
    from_file = VigilSettings(_env_file=env_file)
    assert from_file.drift.feature_fdr == 0.05 and from_file.drift.unseen_share_alarm == 0.2
    # Out of range or misspelt: refused at start-up, never silently defaulted.
    monkeypatch.setenv("VIGIL_DRIFT__KS_ALPHA", "1.5")
    with pytest.raises(ValidationError, match="ks_alpha"):
        VigilSettings()
    monkeypatch.delenv("VIGIL_DRIFT__KS_ALPHA")
    monkeypatch.setenv("VIGIL_DRIFT", '{"psi_alarn": 0.3}')
    with pytest.raises(ValidationError, match="psi_alarn"):
        VigilSettings()


def test_watch_run_applies_the_settings_drift_policy(monkeypatch, reference):
    """A lenient unseen-category limit set in settings keeps the new-category batch's
    unseen share from alarming; the default policy alarms on it."""
    from pipelines.operations import watch
    from pipelines.settings import VigilSettings

    batch = generate_transactions(1500, n_anomalies=0, seed=3)
    batch.loc[batch.index[:150], "merchant_category"] = "crypto_exchange"
    scores = _score(batch)

    class FakeStore:
        saved: dict = {}

        def scores_frame(self, run_id):
            return pd.DataFrame({"score": scores, "is_anomaly": scores > reference.threshold})

        def save_run_health(self, run_id, health):
            self.saved[run_id] = health

    class Bundle:
        def features(self, frame):
            return frame[DEMO_SPEC.feature_columns]

    def run_health(settings: VigilSettings) -> dict:
        monkeypatch.setattr(watch, "get_settings", lambda: settings)
        return watch.watch_run(
            FakeStore(), run_id="r", bundle=Bundle(), model_name="m", model_version="1",
            clean=batch, reference=reference, log_to_mlflow=False,
        )  # fmt: skip

    strict = run_health(VigilSettings())
    assert strict["unseen"]["share"] == pytest.approx(0.1)
    assert any("never seen in training" in alarm for alarm in strict["alarms"])
    monkeypatch.setenv("VIGIL_DRIFT__UNSEEN_SHARE_ALARM", "0.5")
    lenient = run_health(VigilSettings())
    assert lenient["unseen"]["share"] == pytest.approx(0.1)
    assert not any("never seen in training" in alarm for alarm in lenient["alarms"])
