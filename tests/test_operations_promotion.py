"""Promotion's statistics and policy on synthetic paired evidence (no registry)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.operations.evidence import (
    Evidence,
    PromotionPolicy,
    budget_metrics,
    compare_labelled,
    flag_volume,
    mcnemar,
)
from pipelines.operations.promotion import Comparison, decide


def _evidence(n: int, positives: int, challenger_noise: float, seed: int = 0) -> Evidence:
    """Champion and challenger scores for the same records: the champion separates the
    anomalies weakly, the challenger by ``challenger_noise`` (smaller = better)."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[:positives] = 1
    a = y * 1.0 + rng.normal(0, 1.2, n)
    b = y * 1.0 + rng.normal(0, challenger_noise, n)
    return Evidence("evaluation", np.arange(n).astype(str), a, b, y)


def _comparison(evidence: Evidence, policy: PromotionPolicy, threshold: float) -> Comparison:
    labelled = compare_labelled(evidence, threshold, policy)
    frame = pd.DataFrame(
        {
            "champion": evidence.a,
            "challenger": evidence.b,
            "batch_id": "b",
            "champion_flag": evidence.a > threshold,
            "challenger_flag": evidence.b > threshold,
        }
    )
    return Comparison(
        model_name="m",
        champion="1",
        challenger="2",
        previous_champion=None,
        numbers={"labelled": labelled, "volume": flag_volume(frame)},
        sizes={
            "labelled": len(evidence.y),
            "positives": int(evidence.y.sum()),
            "by_source": {"evaluation": len(evidence.y)},
            "paired_unlabelled": 0,
            "paired_batches": 0,
        },
    )


def test_budget_metrics_hold_both_models_to_the_same_number_of_flags():
    y = np.array([1, 1, 0, 0, 0, 0])
    a = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.0])
    b = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.0])
    m = budget_metrics(y, a, b, k=2)
    assert m["champion"] == {"precision_at_budget": 0.5, "recall_at_budget": 0.5}
    assert m["challenger"] == {"precision_at_budget": 1.0, "recall_at_budget": 1.0}


def test_mcnemar_counts_only_the_records_where_one_model_is_right():
    y = np.array([1, 1, 1, 0, 0])
    a = np.array([True, False, False, False, True])
    b = np.array([True, True, True, False, False])
    result = mcnemar(y, a, b)
    assert result["champion_only_right"] == 0 and result["challenger_only_right"] == 3
    assert result["p_value"] == pytest.approx(0.25)


def test_a_clearly_better_challenger_is_promoted_with_a_positive_interval():
    policy = PromotionPolicy(bootstrap=200, max_flag_volume_change=5.0)
    evidence = _evidence(1500, 150, challenger_noise=0.3)
    comparison = _comparison(evidence, policy, threshold=1.5)
    diff = comparison.numbers["labelled"]["differences"]["recall_at_budget"]
    assert diff["ci_low"] > 0 and diff["gain"] > 0.2
    assert decide(comparison, policy).outcome == "promote"


def test_an_equal_challenger_is_rejected_and_thin_evidence_is_not_enough():
    policy = PromotionPolicy(bootstrap=200, max_flag_volume_change=5.0)
    same = _evidence(1500, 150, challenger_noise=1.2, seed=3)
    decision = decide(_comparison(same, policy, threshold=1.5), policy)
    assert decision.outcome == "reject"
    assert "does not clear" in decision.reasons[0]
    thin = _evidence(60, 5, challenger_noise=0.3)
    decision = decide(_comparison(thin, policy, threshold=1.5), policy)
    assert decision.outcome == "insufficient_evidence"
    assert any("labelled anomalies" in r for r in decision.reasons)


def test_too_large_a_change_in_flag_volume_blocks_a_better_model():
    policy = PromotionPolicy(bootstrap=200, max_flag_volume_change=0.5)
    evidence = _evidence(1500, 150, challenger_noise=0.3)
    evidence.b = evidence.b + 2.0  # same ranking, far more records over the threshold
    decision = decide(_comparison(evidence, policy, threshold=1.5), policy)
    assert decision.outcome == "reject"
    assert any("flag volume" in r for r in decision.reasons)


def test_fast_auprc_matches_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score

    from pipelines.operations.evidence import _auprc

    rng = np.random.default_rng(5)
    y = (rng.random(500) < 0.1).astype(int)
    s = np.round(y + rng.normal(0, 1, 500), 1)  # rounding makes ties
    assert _auprc(y, s) == pytest.approx(average_precision_score(y, s))
