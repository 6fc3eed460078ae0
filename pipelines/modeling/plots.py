"""Evaluation plots people would rather look at than read: ROC, PR, score histogram with
the threshold, and the training curve. Logged to MLflow as PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def plot_evaluation(
    *,
    title: str,
    scores: np.ndarray,
    labels: np.ndarray | None,
    threshold: float,
    history: list[dict],
    out_dir: Path,
) -> list[Path]:
    """Write the plots for one detector and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_histogram(title, scores, labels, threshold, out_dir / "score_histogram.png")]
    if labels is not None and 0 < labels.sum() < len(labels):
        paths.append(_roc(title, scores, labels, out_dir / "roc_curve.png"))
        paths.append(_pr(title, scores, labels, out_dir / "pr_curve.png"))
    if history:
        paths.append(_training_curve(title, history, out_dir / "training_curve.png"))
    return paths


def _histogram(title, scores, labels, threshold, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    positive = scores[scores > 0]
    use_log = len(positive) == len(scores) and positive.max() / max(positive.min(), 1e-12) > 100
    values = np.log10(scores) if use_log else scores
    cut = np.log10(threshold) if use_log and threshold > 0 else threshold
    bins = np.histogram_bin_edges(values, bins=60)
    if labels is None:
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.8, label="held-out records")
    else:
        ax.hist(values[labels == 0], bins=bins, color="tab:blue", alpha=0.7, label="normal")
        ax.hist(values[labels == 1], bins=bins, color="tab:red", alpha=0.7, label="anomaly")
    ax.axvline(cut, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("log10(anomaly score)" if use_log else "anomaly score")
    ax.set_ylabel("records")
    ax.set_yscale("log")
    ax.set_title(f"{title}: score distribution on the evaluation hold-out")
    ax.legend()
    return _save(fig, path)


def _roc(title, scores, labels, path: Path) -> Path:
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, color="tab:blue")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"{title}: ROC")
    return _save(fig, path)


def _pr(title, scores, labels, path: Path) -> Path:
    precision, recall, _ = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, color="tab:red")
    ax.axhline(labels.mean(), color="grey", linestyle=":", label="base rate")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{title}: precision-recall")
    ax.legend()
    return _save(fig, path)


def _training_curve(title, history: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history) + 1)
    for key in sorted({k for h in history for k in h if k.endswith("loss")}):
        values = [h.get(key, np.nan) for h in history]
        ax.plot(epochs, values, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: training")
    ax.legend()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
