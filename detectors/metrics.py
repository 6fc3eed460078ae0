"""Evaluation metrics with one score direction: higher score = more anomalous, label 1 = anomaly.

Thin wrappers on scikit-learn that fail with a clear message when the labels hold a single
class (scikit-learn would warn and return NaN, which silently poisons model comparisons).
scikit-learn is imported when a metric is computed: scoring processes never need it, and
importing it (with SciPy) was about a tenth of ``vigil score``'s start-up.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.thresholds import Threshold


def _sklearn_metrics():
    import sklearn.metrics

    return sklearn.metrics


def _check(y: Any, s: Any) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y).ravel().astype(np.int64)
    s_arr = np.asarray(s, dtype=np.float64).ravel()
    if y_arr.shape != s_arr.shape:
        raise ValueError(f"labels and scores differ in length: {y_arr.size} vs {s_arr.size}")
    if not np.isin(y_arr, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomaly)")
    if y_arr.size == 0 or y_arr.min() == y_arr.max():
        raise ValueError(
            "labels contain a single class; AUROC/AUPRC need both normal (0) and anomaly (1) rows"
        )
    return y_arr, s_arr


def _value(threshold: Threshold | float) -> float:
    return threshold.value if isinstance(threshold, Threshold) else float(threshold)


def auroc(y: Any, s: Any) -> float:
    """Area under the ROC curve (0.5 = random, 1.0 = perfect ranking)."""
    y_arr, s_arr = _check(y, s)
    return float(_sklearn_metrics().roc_auc_score(y_arr, s_arr))


def auprc(y: Any, s: Any) -> float:
    """Average precision; more informative than AUROC when anomalies are rare."""
    y_arr, s_arr = _check(y, s)
    return float(_sklearn_metrics().average_precision_score(y_arr, s_arr))


def fpr_at(threshold: Threshold | float, normal_scores: Any) -> float:
    """Fraction of normal scores flagged (``score > threshold``)."""
    s = np.asarray(normal_scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("need at least one normal score")
    return float(np.mean(s > _value(threshold)))


def precision_recall_at(threshold: Threshold | float, y: Any, s: Any) -> tuple[float, float]:
    """(precision, recall) when flagging ``score > threshold``; precision is 0.0 if none flagged."""
    y_arr, s_arr = _check(y, s)
    flagged = s_arr > _value(threshold)
    tp = float(np.sum(flagged & (y_arr == 1)))
    n_flagged = float(np.sum(flagged))
    precision = tp / n_flagged if n_flagged > 0 else 0.0
    recall = tp / float(np.sum(y_arr == 1))
    return precision, recall
