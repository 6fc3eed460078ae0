"""A freshly trained model serves only when its training was healthy, and a registered
model carries no training record in its input example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.health import generative_health
from pipelines.modeling.registry import (
    TAG_TRAINING_HEALTH,
    Registration,
    configure_mlflow,
    register_version,
)
from pipelines.modeling.training import (
    Evaluation,
    TrainConfig,
    TrainingSplit,
    fit_detector,
    redacted_example,
    split_for_training,
    training_problems,
    training_warnings,
)
from pipelines.settings import get_settings
from tests.golden_pipeline import GOLDEN


def _evaluation(fpr: float, normals: int = 1000) -> Evaluation:
    metrics = {"holdout_fpr": fpr, "target_fpr": 0.01, "n_evaluation_normals": float(normals)}
    return Evaluation(metrics=metrics, scores=np.zeros(normals), labels=None)


def _split(rows: int = 200) -> TrainingSplit:
    frame = generate_transactions(rows, n_anomalies=0, seed=3)
    return TrainingSplit(train=frame, evaluation=frame, y_evaluation=None)


def _fitted(kind: str, **params):
    """A small detector fitted through training's own path on demo transactions."""
    frame = generate_transactions(500, n_anomalies=10, seed=3)
    split = split_for_training(frame, DEMO_SPEC, evaluation_fraction=0.3, seed=0)
    config = TrainConfig(detectors=[kind], **{kind: params})
    return fit_detector(kind, DEMO_SPEC, split, config), split


def _last_linear(seq: torch.nn.Sequential) -> torch.nn.Linear:
    return [m for m in seq if isinstance(m, torch.nn.Linear)][-1]


def test_a_threshold_that_does_not_hold_on_the_hold_out_is_a_problem():
    split = _split()
    problems = training_problems(object(), _evaluation(0.9977), DEMO_SPEC, split)
    assert len(problems) == 1 and "hold-out FPR 99.77% against a 1.0% target" in problems[0]
    assert training_problems(object(), _evaluation(0.013), DEMO_SPEC, split) == []
    # few normal records: chance alone explains more, so no verdict is drawn
    assert training_problems(object(), _evaluation(0.2, normals=20), DEMO_SPEC, split) == []


def test_a_collapsed_gan_generator_fails_training_and_a_healthy_one_passes():
    gan, split = _fitted("gan", epochs=4)
    healthy = _evaluation(0.01)
    healthy.metrics.update(generative_health(gan, DEMO_SPEC, split))
    assert healthy.metrics["generator_diversity_ratio"] > 0.05
    assert training_problems(gan, healthy, DEMO_SPEC, split) == []
    with torch.no_grad():  # the generator's output no longer depends on its input
        _last_linear(gan.model_.generator).weight.zero_()
    collapsed = _evaluation(0.01)
    collapsed.metrics.update(generative_health(gan, DEMO_SPEC, split))
    assert collapsed.metrics["generator_diversity_ratio"] < 1e-6
    problems = training_problems(gan, collapsed, DEMO_SPEC, split)
    assert len(problems) == 1 and problems[0].startswith("GAN mode collapse: the generator")
    assert "Retrain with another seed" in problems[0] and "\n" not in problems[0]


def test_posterior_collapse_is_a_warning_and_non_finite_scores_a_problem():
    vae, split = _fitted("vae", epochs=3, beta=0.5)
    lively = _evaluation(0.01)
    lively.metrics.update(generative_health(vae, DEMO_SPEC, split))
    assert lively.metrics["latent_units_active"] >= 1
    assert training_warnings(lively) == []
    with torch.no_grad():  # every record's posterior is the prior: KL 0 in every unit
        for layer in (vae.model_.mu, vae.model_.logvar):
            layer.weight.zero_()
            layer.bias.zero_()
    collapsed = _evaluation(0.01)
    collapsed.metrics.update(generative_health(vae, DEMO_SPEC, split))
    assert collapsed.metrics["latent_units_active"] == 0
    assert collapsed.metrics["kl_per_unit_max"] == pytest.approx(0.0, abs=1e-9)
    warnings = training_warnings(collapsed)
    assert len(warnings) == 1 and warnings[0].startswith("posterior collapse: none of")
    # a warning, not a gate: the residuals still detect
    assert training_problems(vae, collapsed, DEMO_SPEC, split) == []
    evaluation = _evaluation(0.01)
    evaluation.scores[3] = np.nan
    assert any("not finite" in p for p in training_problems(object(), evaluation, DEMO_SPEC, split))


def test_a_version_that_fails_its_checks_is_registered_without_an_alias(unique_name):
    configure_mlflow(get_settings())
    bundle = ScoringBundle.load(GOLDEN / "tabular" / "bundle", numpy_forward=False)
    problem = "hold-out FPR 99.77% against a 1.0% target"
    result = register_version(
        Registration(name=unique_name, kind="vae", bundle=bundle, data_source="t",
                     problems=[problem])
    )  # fmt: skip
    assert result["aliases"] == [] and result["problems"] == [problem]
    client = MlflowClient()
    assert client.get_registered_model(unique_name).aliases == {}
    tags = client.get_model_version(unique_name, result["version"]).tags
    assert tags[TAG_TRAINING_HEALTH] == f"failed: {problem}"


def test_the_input_example_holds_no_training_values():
    clean = generate_transactions(50, n_anomalies=5, seed=9)
    example = redacted_example(clean, DEMO_SPEC)
    assert list(example.columns) == list(DEMO_SPEC.required_columns) and len(example) == 3
    for column in example.columns:
        real = set(clean[column].astype(str))
        shown = set(example[column].astype(str))
        numeric = pd.api.types.is_numeric_dtype(clean[column])
        assert not (shown & real) or (numeric and shown <= {"0", "0.0"}), column


def test_a_new_version_reports_its_flag_churn_against_the_champion(unique_name):
    from pipelines.modeling.bundle import prepare_records
    from pipelines.modeling.churn import churn_between, flag_churn_against_champion

    configure_mlflow(get_settings())
    bundle = ScoringBundle.load(GOLDEN / "tabular" / "bundle", numpy_forward=False)
    frame = generate_transactions(400, n_anomalies=8, seed=5)
    prepared = prepare_records(bundle.spec, frame)
    flags = bundle.score_prepared(prepared, with_reasons=False)["score"].to_numpy() > float(
        bundle.threshold
    )
    assert flags.any()
    # no champion yet: nothing to compare with
    assert flag_churn_against_champion(unique_name, prepared, flags) is None
    register_version(Registration(name=unique_name, kind="vae", bundle=bundle, data_source="t"))
    same = flag_churn_against_champion(unique_name, prepared, flags)
    assert (same.changed, same.share) == (0, 0.0)
    moved = flags.copy()
    moved[np.flatnonzero(flags)[0]] = False  # one flag dropped ...
    moved[np.flatnonzero(~flags)[:2]] = True  # ... two records newly flagged
    churn = flag_churn_against_champion(unique_name, prepared, moved)
    assert churn.champion_version == "1" and churn.changed == 3
    assert churn.share == 3 / (flags.sum() + 2)
    assert "3 changed" in churn.describe() and churn.metrics()["flag_churn_changed"] == 3.0
    assert churn_between(np.zeros(3, bool), np.zeros(3, bool), "1").share == 0.0


def test_two_seeds_that_rank_alike_pass_and_a_seed_driven_ranking_is_a_problem():
    from pipelines.modeling.training import seed_problem, seed_stability

    rng = np.random.default_rng(0)
    signal = rng.normal(size=2000)
    alike = seed_stability(signal + 0.1 * rng.normal(size=2000), signal, 0.01)
    assert alike["seed_rank_correlation"] > 0.95 and alike["seed_top_overlap"] > 0.5
    assert seed_problem(alike) is None
    apart = seed_stability(rng.normal(size=2000), signal, 0.01)
    assert abs(apart["seed_rank_correlation"]) < 0.1
    problem = seed_problem(apart)
    assert problem is not None and "do not repeat across seeds" in problem
    # a constant score (a collapsed fit) carries no ranking at all
    assert seed_problem(seed_stability(np.zeros(50), signal[:50], 0.01)) is not None
