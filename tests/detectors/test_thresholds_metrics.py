"""Thresholds and metrics on hand-made arrays with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors import Threshold, metrics


def test_for_fpr_uses_higher_quantile_and_respects_target() -> None:
    normal = np.arange(1, 101, dtype=float)  # 1..100
    t = Threshold.for_fpr(normal, target_fpr=0.05)
    assert t.method == "fpr" and t.target == 0.05
    assert t.value == 96.0  # quantile(0.95, "higher") of 1..100
    assert metrics.fpr_at(t, normal) == pytest.approx(0.04)  # 97..100 flagged
    assert metrics.fpr_at(t, normal) <= 0.05


def test_best_f1_known_answer() -> None:
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1])
    t = Threshold.best_f1(s, y)
    assert t.method == "f1" and t.target == pytest.approx(1.0)
    assert t.value == pytest.approx(0.55)  # half-way between 0.3 and 0.8
    np.testing.assert_array_equal(t.apply(s), y)


def test_best_f1_with_overlap() -> None:
    s = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([0, 0, 1, 0, 1, 1])
    t = Threshold.best_f1(s, y)
    # Flagging > 2 gives tp=3, fp=1 -> F1 = 6/7, the best of all cuts.
    assert t.target == pytest.approx(6 / 7)
    assert 2.0 < t.value < 3.0


def test_for_precision_picks_highest_recall_meeting_target() -> None:
    s = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([0, 0, 1, 0, 1, 1])
    t = Threshold.for_precision(s, y, target_precision=0.75)
    p, r = metrics.precision_recall_at(t, y, s)
    assert p == pytest.approx(0.75) and r == pytest.approx(1.0)
    t1 = Threshold.for_precision(s, y, target_precision=1.0)
    assert metrics.precision_recall_at(t1, y, s) == pytest.approx((1.0, 2 / 3))
    with pytest.raises(ValueError):
        Threshold.for_precision(np.array([2.0, 1.0]), np.array([0, 1]), 1.0)


def test_threshold_round_trips_through_json() -> None:
    t = Threshold.for_fpr(np.random.default_rng(0).normal(size=1000), 0.01)
    t2 = Threshold.from_dict(json.loads(json.dumps(t.to_dict())))
    assert t2 == t
    with pytest.raises(ValueError):
        Threshold(method="magic", target=0.1, value=1.0)


def test_metrics_known_values() -> None:
    y = np.array([0, 0, 1, 1])
    assert metrics.auroc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert metrics.auprc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.auroc(y, [0.0, 0.1, 0.9, 1.0]) == 1.0
    assert metrics.fpr_at(0.5, [0.1, 0.6, 0.7, 0.2]) == 0.5
    assert metrics.precision_recall_at(0.5, y, [0.1, 0.6, 0.7, 0.2]) == (0.5, 0.5)


def test_single_class_labels_raise_clearly() -> None:
    with pytest.raises(ValueError, match="single class"):
        metrics.auroc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="single class"):
        metrics.auprc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="single class"):
        Threshold.best_f1([0.1, 0.2], [0, 0])
