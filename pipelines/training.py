"""Training work as plain functions: split, fit, evaluate, log, register.

The train flow strings these together; tests call them without Prefect.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from detectors import GANDetector, Threshold, VAEDetector, metrics
from pipelines.bundle import ScoringBundle
from pipelines.progress import progress
from pipelines.spec import DatasetSpec

DetectorKind = Literal["vae", "gan"]
DETECTOR_CLASSES = {"vae": VAEDetector, "gan": GANDetector}


class TrainConfig(BaseModel):
    """What a training run may change; Prefect renders it as a form."""

    detectors: list[DetectorKind] = Field(default_factory=lambda: ["vae", "gan"])
    seed: int = 0
    target_fpr: float = Field(default=0.01, gt=0, lt=0.5)
    threshold_method: Literal["fpr", "f1"] = Field(
        default="fpr",
        description="fpr: calibrated on held-out normal scores; f1: best F1 on the labelled "
        "evaluation hold-out (needs labels; metrics at the threshold are then optimistic).",
    )
    evaluation_fraction: float = Field(
        default=0.2, gt=0, lt=0.9, description="Share of normal records held out for evaluation."
    )
    vae: dict[str, Any] = Field(default_factory=dict, description="VAEDetector parameters.")
    gan: dict[str, Any] = Field(default_factory=dict, description="GANDetector parameters.")


@dataclass
class TrainingSplit:
    """Normal records to fit on, and a hold-out (normals + labelled anomalies) to evaluate."""

    train: pd.DataFrame
    evaluation: pd.DataFrame
    y_evaluation: np.ndarray | None
    n_known_anomalies: int = 0

    @property
    def has_labels(self) -> bool:
        y = self.y_evaluation
        return y is not None and 0 < int(y.sum()) < len(y)


def split_for_training(
    clean: pd.DataFrame, spec: DatasetSpec, *, evaluation_fraction: float, seed: int
) -> TrainingSplit:
    """Hold labelled anomalies out of training entirely; they are evaluation evidence only.

    Rows with no label are treated as normal (the unsupervised case).
    """
    if spec.label_column and spec.label_column in clean.columns:
        labels = clean[spec.label_column].fillna(0).astype(int).to_numpy()
    else:
        labels = np.zeros(len(clean), dtype=int)
    normal_idx = np.flatnonzero(labels == 0)
    anomaly_idx = np.flatnonzero(labels == 1)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(normal_idx)
    n_eval = max(1, int(round(len(shuffled) * evaluation_fraction)))
    eval_normal, train_idx = np.sort(shuffled[:n_eval]), np.sort(shuffled[n_eval:])
    if len(train_idx) < 20:
        raise ValueError(f"only {len(train_idx)} normal records to train on; need at least 20")
    eval_idx = np.concatenate([eval_normal, anomaly_idx])
    has_label = spec.label_column is not None and spec.label_column in clean.columns
    return TrainingSplit(
        train=clean.iloc[train_idx].reset_index(drop=True),
        evaluation=clean.iloc[eval_idx].reset_index(drop=True),
        y_evaluation=labels[eval_idx] if has_label else None,
        n_known_anomalies=len(anomaly_idx),
    )


def build_detector(kind: DetectorKind, spec: DatasetSpec, config: TrainConfig):
    params = {
        "seed": config.seed,
        "target_fpr": config.target_fpr,
        "categorical_features": list(spec.categorical_features),
        **(config.vae if kind == "vae" else config.gan),
    }
    return DETECTOR_CLASSES[kind](**params)


def fit_detector(kind: DetectorKind, spec: DatasetSpec, split: TrainingSplit, config: TrainConfig):
    """Fit on normal records with an epoch progress bar."""
    detector = build_detector(kind, spec, config)
    features = split.train[spec.feature_columns]
    total = int(getattr(detector, "epochs", 1))
    with progress(f"train {kind}", total=total, unit="epochs") as advance:

        def on_epoch(epoch: int, total_epochs: int, logs: dict) -> None:
            shown = {k: v for k, v in logs.items() if isinstance(v, float)}
            advance(1, **shown)

        detector.fit(features, on_epoch=on_epoch)
    return detector


@dataclass
class Evaluation:
    metrics: dict[str, float]
    scores: np.ndarray
    labels: np.ndarray | None
    plots: list[Path] = field(default_factory=list)


def evaluate_detector(
    detector, spec: DatasetSpec, split: TrainingSplit, config: TrainConfig
) -> Evaluation:
    """Score the hold-out; with labels report AUROC/AUPRC and precision/recall at threshold."""
    scores = np.asarray(detector.decision_function(split.evaluation[spec.feature_columns]))
    labels = split.y_evaluation
    if config.threshold_method == "f1":
        if not split.has_labels:
            raise ValueError("threshold_method='f1' needs a label column with both classes")
        detector.set_threshold(Threshold.best_f1(scores, labels))
    threshold = float(detector.threshold_.value)
    normal_scores = scores if labels is None else scores[labels == 0]
    result: dict[str, float] = {
        "threshold": threshold,
        "target_fpr": config.target_fpr,
        "holdout_fpr": float(metrics.fpr_at(threshold, normal_scores)),
        "n_train": float(len(split.train)),
        "n_evaluation": float(len(split.evaluation)),
        "n_known_anomalies": float(split.n_known_anomalies),
        "fit_seconds": float(getattr(detector, "fit_seconds_", float("nan"))),
    }
    if split.has_labels:
        precision, recall = metrics.precision_recall_at(threshold, labels, scores)
        result.update(
            {
                "auroc": float(metrics.auroc(labels, scores)),
                "auprc": float(metrics.auprc(labels, scores)),
                "precision_at_threshold": float(precision),
                "recall_at_threshold": float(recall),
            }
        )
    return Evaluation(metrics=result, scores=scores, labels=labels)


def log_and_register(
    kind: DetectorKind,
    detector,
    evaluation: Evaluation,
    spec: DatasetSpec,
    config: TrainConfig,
    *,
    data_source: str,
    max_reasons: int,
    input_example: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """One MLflow run per detector: params, metrics, plots, then a registered version."""
    import mlflow

    from pipelines.plots import plot_evaluation
    from pipelines.registry import assign_new_version_aliases, log_bundle, model_name_for

    name = model_name_for(spec.name, kind)
    bundle = ScoringBundle(spec, detector, max_reasons=max_reasons)
    with mlflow.start_run(run_name=f"train-{name}") as run:
        mlflow.set_tags({"vigil.dataset": spec.name, "vigil.detector": kind, "data": data_source})
        params = (
            {k: v for k, v in detector.get_params().items() if not callable(v)}
            if hasattr(detector, "get_params")
            else {}
        )
        params.update(
            {
                "threshold_method": config.threshold_method,
                "evaluation_fraction": config.evaluation_fraction,
                "features": ",".join(spec.feature_columns),
            }
        )
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: v for k, v in evaluation.metrics.items() if np.isfinite(v)})
        for epoch, logs in enumerate(getattr(detector, "history_", []) or []):
            mlflow.log_metrics(
                {f"epoch_{k}": float(v) for k, v in logs.items() if isinstance(v, int | float)},
                step=epoch,
            )
        with tempfile.TemporaryDirectory() as tmp:
            evaluation.plots = plot_evaluation(
                title=name,
                scores=evaluation.scores,
                labels=evaluation.labels,
                threshold=float(detector.threshold_.value),
                history=getattr(detector, "history_", []) or [],
                out_dir=Path(tmp),
            )
            mlflow.log_artifacts(tmp, artifact_path="plots")
        version = log_bundle(
            bundle, registered_name=name, detector_kind=kind, input_example=input_example
        )
        aliases = assign_new_version_aliases(name, version)
    return {
        "detector": kind,
        "model": name,
        "version": version,
        "aliases": aliases,
        "mlflow_run_id": run.info.run_id,
        "metrics": evaluation.metrics,
    }
