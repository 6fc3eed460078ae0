"""The training reference: what a model saw when it was trained, kept beside it in MLflow.

Drift watch compares each scored batch with it (score distribution, feature distributions,
the flag rate, the categories seen), and promotion re-scores its labelled evaluation set
with both champion and challenger so they are judged on the same records. It is logged
as artifacts of the training run (``reference/``), so a model trained before this existed
simply has none and drift watch says so.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.intake.spec import DatasetSpec
from pipelines.modeling import local_registry

ARTIFACT_DIR = "reference"
SUMMARY_FILE = "summary.json"
FEATURES_FILE = "features.parquet"
EVALUATION_FILE = "evaluation.parquet"
CONTEXT_FILE = "context.parquet"
#: Training rows kept for per-feature drift tests: enough for KS, small in the registry.
MAX_FEATURE_ROWS = 5000
#: Sequence mode: the last records per entity before the evaluation period, so the
#: evaluation records are re-scored with the context they were first scored with.
CONTEXT_TAIL = 64


@dataclass
class TrainingReference:
    """A model's training reference, loaded back from MLflow."""

    reference_scores: np.ndarray
    expected_flag_rate: float
    threshold: float
    numeric: pd.DataFrame
    #: Per categorical feature: each training value's share of the training rows.
    categories: dict[str, dict[str, float]]
    evaluation: pd.DataFrame | None = None
    evaluation_labels: np.ndarray | None = None
    context: pd.DataFrame | None = None
    summary: dict = field(default_factory=dict)
    #: Per categorical feature: every value in the training file, known anomalies' too
    #: (a category the model saw only on a labelled fraud is not "unseen").
    known_values: dict[str, list[str]] = field(default_factory=dict)


def reference_score_sample(
    scores: np.ndarray, labels: np.ndarray | None, anomaly_share: float, seed: int = 0
) -> np.ndarray:
    """Held-out scores mixed to the training population's anomaly share.

    The evaluation hold-out over-represents anomalies (all known ones go there); a live
    batch holds them at roughly the training file's share, so the reference does too.
    """
    scores = np.asarray(scores, dtype="float64")
    if labels is None or not (labels == 1).any() or anomaly_share <= 0:
        return scores if labels is None else scores[labels == 0]
    normal, anomalous = scores[labels == 0], scores[labels == 1]
    k = int(round(len(normal) * anomaly_share / max(1e-9, 1 - anomaly_share)))
    rng = np.random.default_rng(seed)
    picked = rng.choice(anomalous, size=k, replace=True) if k else anomalous[:0]
    return np.concatenate([normal, picked])


def expected_flag_rate(
    scores: np.ndarray, labels: np.ndarray | None, threshold: float, anomaly_share: float
) -> float:
    """Share of a training-like batch the model flags: hold-out FPR on normals, plus the
    known anomalies' detection rate at their share of the training data."""
    scores = np.asarray(scores, dtype="float64")
    flagged = scores > threshold
    if labels is None or not (labels == 1).any():
        return float(flagged.mean()) if len(flagged) else 0.0
    fpr = float(flagged[labels == 0].mean())
    tpr = float(flagged[labels == 1].mean())
    return (1 - anomaly_share) * fpr + anomaly_share * tpr


def build_reference(
    *,
    spec: DatasetSpec,
    train: pd.DataFrame,
    evaluation: pd.DataFrame,
    evaluation_labels: np.ndarray | None,
    evaluation_scores: np.ndarray,
    threshold: float,
    n_known_anomalies: int,
    context: pd.DataFrame | None,
    out_dir: Path,
    seed: int = 0,
) -> Path:
    """Write the reference files into ``out_dir`` (then logged as MLflow artifacts)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Tabular: train + evaluation is every record; sequence: context + evaluation is.
    n_total = len(evaluation) + (len(train) if context is None else len(context))
    anomaly_share = n_known_anomalies / max(1, n_total)
    labels = None if evaluation_labels is None else np.asarray(evaluation_labels, dtype=int)
    ref_scores = reference_score_sample(evaluation_scores, labels, anomaly_share, seed)
    numeric_columns = [c for c in spec.model_feature_columns if c not in spec.categorical_features]
    numeric = train[[c for c in numeric_columns if c in train.columns]]
    if len(numeric) > MAX_FEATURE_ROWS:
        numeric = numeric.sample(MAX_FEATURE_ROWS, random_state=seed)
    numeric.reset_index(drop=True).to_parquet(out_dir / FEATURES_FILE, index=False)
    categories = {
        c: {
            str(k): float(v)
            for k, v in train[c].dropna().astype(str).value_counts(normalize=True).items()
        }
        for c in spec.categorical_features
        if c in train.columns
    }
    known_values = {
        c: sorted(
            set(train[c].dropna().astype(str))
            | (set(evaluation[c].dropna().astype(str)) if c in evaluation.columns else set())
            | (
                set(context[c].dropna().astype(str))
                if context is not None and c in context
                else set()
            )
        )
        for c in categories
    }
    summary = {
        "reference_scores": [float(x) for x in ref_scores],
        "known_values": known_values,
        "expected_flag_rate": expected_flag_rate(
            evaluation_scores, labels, threshold, anomaly_share
        ),
        "threshold": float(threshold),
        "anomaly_share": anomaly_share,
        "categories": categories,
        "n_train": len(train),
        "n_evaluation": len(evaluation),
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary))
    evaluation_frame = evaluation.reset_index(drop=True).copy()
    if labels is not None:
        evaluation_frame["__label__"] = labels
    evaluation_frame.to_parquet(out_dir / EVALUATION_FILE, index=False)
    if context is not None and spec.entity_column and spec.time_column:
        ordered = context.sort_values(spec.time_column, kind="stable")
        tail = ordered.groupby(spec.entity_column, sort=False).tail(CONTEXT_TAIL)
        tail.reset_index(drop=True).to_parquet(out_dir / CONTEXT_FILE, index=False)
    return out_dir


def log_reference(run_id: str, **kwargs) -> None:
    """Build the reference and attach it to the (finished) MLflow training run."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_reference(out_dir=Path(tmp) / ARTIFACT_DIR, **kwargs)
        MlflowClient().log_artifacts(run_id, str(folder), artifact_path=ARTIFACT_DIR)


_CACHE: dict[str, TrainingReference | None] = {}


def load_reference(run_id: str | None) -> TrainingReference | None:
    """The reference logged with a training run, or None when it has none (cached)."""
    if not run_id:
        return None
    if run_id in _CACHE:
        return _CACHE[run_id]
    folder = _local_reference_folder(run_id)
    if folder is None:
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            folder = Path(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT_DIR)
            )
        except (MlflowException, OSError):
            _CACHE[run_id] = None
            return None
    if not (folder / SUMMARY_FILE).exists():
        _CACHE[run_id] = None
        return None
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    evaluation = labels = context = None
    if (folder / EVALUATION_FILE).exists():
        evaluation = pd.read_parquet(folder / EVALUATION_FILE)
        if "__label__" in evaluation.columns:
            labels = evaluation.pop("__label__").to_numpy(dtype=int)
    if (folder / CONTEXT_FILE).exists():
        context = pd.read_parquet(folder / CONTEXT_FILE)
    reference = TrainingReference(
        reference_scores=np.asarray(summary["reference_scores"], dtype="float64"),
        expected_flag_rate=float(summary["expected_flag_rate"]),
        threshold=float(summary["threshold"]),
        numeric=pd.read_parquet(folder / FEATURES_FILE),
        categories={k: dict(v) for k, v in summary["categories"].items()},
        known_values={k: list(v) for k, v in summary.get("known_values", {}).items()},
        evaluation=evaluation,
        evaluation_labels=labels,
        context=context,
        summary=summary,
    )
    _CACHE[run_id] = reference
    return reference


def _local_reference_folder(run_id: str) -> Path | None:
    """The run's reference folder in a local artifact store, read without MLflow (the
    embedded default); None where MLflow must fetch it."""

    registry = local_registry.current()
    artifacts = registry.run_artifacts(run_id) if registry is not None else None
    return artifacts / ARTIFACT_DIR if artifacts is not None else None


def reference_for_version(name: str, version: str) -> TrainingReference | None:
    """The reference of a registered model version (via its training run)."""

    registry = local_registry.current()
    if registry is not None:
        return load_reference(registry.get_model_version(name, str(version)).run_id)
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(name, str(version))
    return load_reference(mv.run_id)


def log_training_reference(run_id: str, *, spec: DatasetSpec, split, evaluation, threshold: float):
    """Train-flow hook: the reference from a fitted detector's split and evaluation."""
    log_reference(
        run_id,
        spec=spec,
        train=split.train,
        evaluation=split.evaluation,
        evaluation_labels=split.y_evaluation,
        evaluation_scores=evaluation.scores,
        threshold=threshold,
        n_known_anomalies=split.n_known_anomalies,
        context=split.context,
    )
