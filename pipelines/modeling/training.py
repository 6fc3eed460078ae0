"""Training work as plain functions: split, fit, evaluate, log, register.

The train flow strings these together; tests call them without Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from detectors import GANDetector, Threshold, VAEDetector, metrics
from detectors.context import time_to_seconds
from detectors.sequence import SequenceGANDetector, SequenceVAEDetector
from pipelines.intake.spec import DatasetSpec
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle, prepare_records
from pipelines.modeling.health import mode_collapse_problem, posterior_collapse_warning
from pipelines.modeling.registry import Registration, model_name_for, register_version
from pipelines.progress import progress

DetectorKind = Literal["vae", "gan", "seq_vae", "seq_gan"]
DETECTOR_CLASSES = {
    "vae": VAEDetector,
    "gan": GANDetector,
    "seq_vae": SequenceVAEDetector,
    "seq_gan": SequenceGANDetector,
}
#: Detectors that see each record with its entity's earlier records (sequence mode only).
SEQUENCE_KINDS = frozenset({"seq_vae", "seq_gan"})


class TrainConfig(BaseModel):
    """What a training run may change; Prefect renders it as a form."""

    detectors: list[DetectorKind] | None = Field(
        default=None,
        description="Which detectors to train; default vae+gan, or seq_vae+seq_gan for a "
        "sequence spec (vae/gan there are tabular models on raw + context features).",
    )
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
    seq_vae: dict[str, Any] = Field(
        default_factory=dict, description="SequenceVAEDetector parameters."
    )
    seq_gan: dict[str, Any] = Field(
        default_factory=dict, description="SequenceGANDetector parameters."
    )
    seed_check: bool = Field(
        default=False,
        description="Train each detector again with the next seed and compare hold-out "
        "scores: a model whose ranking does not repeat across seeds is not made champion "
        "or challenger. Doubles training time; the weekly retrain flow turns it on.",
    )
    min_labels: int | None = Field(
        default=None,
        gt=0,
        description="Frauds (and not-frauds) a labelled model needs to train; default the "
        "feedback_min_labels setting.",
    )

    def detector_kinds(self, spec: DatasetSpec) -> list[DetectorKind]:
        if self.detectors is not None:
            kinds = list(self.detectors)
        else:
            kinds = ["seq_vae", "seq_gan"] if spec.is_sequence else ["vae", "gan"]
        wrong = [k for k in kinds if k in SEQUENCE_KINDS and not spec.is_sequence]
        if wrong:
            raise ValueError(
                f"{wrong} need a sequence spec (entity_column, time_column and a context "
                f"section); spec {spec.name!r} is tabular"
            )
        return kinds


def redacted_example(clean: pd.DataFrame, spec: DatasetSpec, rows: int = 3) -> pd.DataFrame:
    """Rows shaped like a batch to score (the spec's columns, their types) holding no
    record's values: numbers are 0, texts and categories ``example``, ids, entities and
    times made up. A registered model travels with its input example, so it must not
    carry card data from training."""
    example = clean[spec.required_columns].head(rows).copy()
    for column in example.columns:
        values = example[column]
        if column == spec.id_column:
            example[column] = [f"example-{i + 1}" for i in range(len(example))]
        elif column == spec.entity_column:
            example[column] = "example-entity"
        elif column == spec.time_column:
            stamps = pd.date_range("2026-01-01", periods=len(example), freq="min", tz="UTC")
            example[column] = (
                stamps if pd.api.types.is_datetime64_any_dtype(values)
                else stamps.strftime("%Y-%m-%dT%H:%M:%SZ")
            )  # fmt: skip
        elif pd.api.types.is_bool_dtype(values):
            example[column] = False
        elif pd.api.types.is_numeric_dtype(values):
            example[column] = values.dtype.type(0)
        else:
            example[column] = "example"
    return example.reset_index(drop=True)


@dataclass
class TrainingSplit:
    """Normal records to fit on, and a hold-out (normals + labelled anomalies) to evaluate."""

    train: pd.DataFrame
    evaluation: pd.DataFrame
    y_evaluation: np.ndarray | None
    n_known_anomalies: int = 0
    #: Sequence mode: every record before the evaluation period (known anomalies too:
    #: they are part of the entities' history) with its labels, and the records to keep
    #: as entity history for scoring later batches.
    context: pd.DataFrame | None = None
    context_labels: np.ndarray | None = None
    state: pd.DataFrame | None = None
    #: The shape of a batch to score, with no real values (the registry's input example).
    raw_example: pd.DataFrame | None = None
    #: Labels known before training: confirmed frauds left out of the normal
    #: training rows, and which training rows analysts reviewed as not fraud (kept; usable
    #: for calibration).
    confirmed_frauds_dropped: int = 0
    train_reviewed_normal: np.ndarray | None = None

    @property
    def has_labels(self) -> bool:
        y = self.y_evaluation
        return y is not None and 0 < int(y.sum()) < len(y)


def split_for_training(
    clean: pd.DataFrame,
    spec: DatasetSpec,
    *,
    evaluation_fraction: float,
    seed: int,
    confirmed_frauds: np.ndarray | None = None,
    reviewed_normals: np.ndarray | None = None,
) -> TrainingSplit:
    """Hold labelled anomalies out of training entirely; they are evaluation evidence only.

    Rows with no label are treated as normal (the unsupervised case). Sequence specs are
    split by time instead (see :func:`split_sequences_for_training`).
    ``confirmed_frauds`` / ``reviewed_normals``: per-row masks of the verdicts known before
    training; confirmed frauds are treated like labelled anomalies (never trained on).
    """
    if spec.label_column and spec.label_column in clean.columns:
        labels = clean[spec.label_column].fillna(0).astype(int).to_numpy()
    else:
        labels = np.zeros(len(clean), dtype=int)
    confirmed = (
        np.zeros(len(clean), dtype=bool)
        if confirmed_frauds is None
        else np.asarray(confirmed_frauds, dtype=bool)
    )
    reviewed = (
        np.zeros(len(clean), dtype=bool)
        if reviewed_normals is None
        else np.asarray(reviewed_normals, dtype=bool) & ~confirmed
    )
    newly_excluded = confirmed & (labels == 0)
    labels = np.where(confirmed, 1, labels)
    if spec.is_sequence:
        split = split_sequences_for_training(clean, spec, labels, evaluation_fraction)
        seconds = time_to_seconds(clean[spec.time_column])
        cut = float(np.quantile(seconds, 1.0 - evaluation_fraction))
        earlier = seconds < cut
        split.confirmed_frauds_dropped = int((newly_excluded & earlier).sum())
        split.train_reviewed_normal = reviewed[earlier & (labels == 0)]
        return split
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
        raw_example=redacted_example(clean, spec),
        confirmed_frauds_dropped=int(newly_excluded.sum()),
        train_reviewed_normal=reviewed[train_idx],
    )


def split_sequences_for_training(
    clean: pd.DataFrame, spec: DatasetSpec, labels: np.ndarray, evaluation_fraction: float
) -> TrainingSplit:
    """Time split: the latest ``evaluation_fraction`` of records is the evaluation period.

    Context features are built over all records first (known anomalies included: they
    happened and belong to their entities' history). Detectors train on the normal
    records before the cut; sequence detectors see the anomalies there as context only.
    """
    prepared = prepare_records(spec, clean)
    features = prepared.features.copy()
    features[spec.id_column] = clean[spec.id_column].to_numpy()
    seconds = time_to_seconds(clean[spec.time_column])
    cut = float(np.quantile(seconds, 1.0 - evaluation_fraction))
    earlier = seconds < cut
    if not earlier.any() or earlier.all():
        raise ValueError("the data cover too short a time to hold out an evaluation period")
    train_mask = earlier & (labels == 0)
    if train_mask.sum() < 20:
        raise ValueError(f"only {int(train_mask.sum())} normal records to train on; need 20")
    has_label = spec.label_column is not None and spec.label_column in clean.columns
    return TrainingSplit(
        train=features.loc[train_mask].reset_index(drop=True),
        evaluation=features.loc[~earlier].reset_index(drop=True),
        y_evaluation=labels[~earlier] if has_label else None,
        n_known_anomalies=int((labels == 1).sum()),
        context=features.loc[earlier].reset_index(drop=True),
        context_labels=labels[earlier],
        state=prepared.state,
        raw_example=redacted_example(clean, spec),
    )


def build_detector(kind: DetectorKind, spec: DatasetSpec, config: TrainConfig):
    params: dict[str, Any] = {
        "seed": config.seed,
        "target_fpr": config.target_fpr,
        "categorical_features": list(spec.categorical_features),
        "range_features": list(spec.range_checked_features) or None,
    }
    if kind in SEQUENCE_KINDS:
        context = spec.context
        assert context is not None
        params.update(
            entity_column=spec.entity_column,
            time_column=spec.time_column,
            history_seconds=context.history_seconds,
        )
    params.update(getattr(config, kind))
    return DETECTOR_CLASSES[kind](**params)


def fit_detector(kind: DetectorKind, spec: DatasetSpec, split: TrainingSplit, config: TrainConfig):
    """Fit on normal records with an epoch progress bar."""
    detector = build_detector(kind, spec, config)
    total = int(getattr(detector, "epochs", 1))
    with progress(f"train {kind}", total=total, unit="epochs") as advance:

        def on_epoch(epoch: int, total_epochs: int, logs: dict) -> None:
            shown = {k: v for k, v in logs.items() if isinstance(v, float)}
            advance(1, **shown)

        if kind in SEQUENCE_KINDS:
            assert split.context is not None
            columns = [*spec.model_feature_columns, spec.entity_column, spec.time_column]
            detector.fit(split.context[columns], split.context_labels, on_epoch=on_epoch)
        else:
            detector.fit(split.train[spec.model_feature_columns], on_epoch=on_epoch)
    return detector


@dataclass
class Evaluation:
    metrics: dict[str, float]
    scores: np.ndarray
    labels: np.ndarray | None
    plots: list[Path] = field(default_factory=list)
    #: sentences for the person who trained it (e.g. the flag churn against the champion)
    notes: list[str] = field(default_factory=list)


def evaluate_detector(
    detector, spec: DatasetSpec, split: TrainingSplit, config: TrainConfig
) -> Evaluation:
    """Score the hold-out; with labels report AUROC/AUPRC and precision/recall at threshold."""
    bundle = ScoringBundle(spec, detector)
    prepared = PreparedRecords(features=split.evaluation, history=split.context)
    scores = bundle.score_prepared(prepared, with_reasons=False)["score"].to_numpy()
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
        "n_evaluation_normals": float(len(normal_scores)),
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


def training_problems(
    detector, evaluation: Evaluation, spec: DatasetSpec, split: TrainingSplit
) -> list[str]:
    """Why a freshly trained model must not become champion or challenger (empty: none).

    Unattended retraining registers what it trained; these checks decide whether the new
    version may serve: scores that are not numbers, a threshold that does not hold on the
    normal records kept aside (beyond what chance allows for that many records), a GAN
    whose generator collapsed (read from ``evaluation.metrics``, where the caller put
    ``generative_health``'s measures).
    """
    problems: list[str] = []
    m = evaluation.metrics
    if not np.all(np.isfinite(evaluation.scores)):
        bad = int((~np.isfinite(evaluation.scores)).sum())
        problems.append(f"{bad} hold-out scores are not finite numbers")
    n, fpr, target = m.get("n_evaluation_normals", 0.0), m["holdout_fpr"], m["target_fpr"]
    if n >= 50 and np.isfinite(fpr):
        # A gate for broken training, not a quality verdict (promotion weighs quality): a
        # threshold set on a small validation split is noisy, so the allowance is wide.
        allowed = max(5 * target, target + 0.05) + 3 * np.sqrt(target * (1 - target) / n)
        if fpr > allowed:
            problems.append(
                f"hold-out FPR {fpr:.2%} against a {target:.1%} target (at most {allowed:.2%} "
                f"on {n:.0f} normal records): the threshold does not hold on records kept "
                "aside. The data likely changes over its period (a trend, a new regime): "
                "train on a period like the one to be scored, or add the column that "
                "explains the change (time of day, machine state) to the spec"
            )
    collapse = mode_collapse_problem(m)
    if collapse:
        problems.append(collapse)
    return problems


#: Below this rank correlation between two seeds' hold-out scores, the ranking is mostly
#: the seed's: training did not find a stable notion of normal (too few rows or epochs,
#: a diverging run). Two healthy fits of the same data agree far above it.
MIN_SEED_RANK_CORRELATION = 0.5


def seed_stability(first: np.ndarray, second: np.ndarray, target_fpr: float) -> dict[str, float]:
    """How far two fits that differ only in their seed agree on the same hold-out records:
    the Spearman rank correlation of their scores and the share of the first fit's top
    ``target_fpr`` records that the second also ranks in its top."""
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.size < 3:
        raise ValueError("seed stability needs the same 3 or more hold-out records twice")
    ranks_a = pd.Series(a).rank().to_numpy()
    ranks_b = pd.Series(b).rank().to_numpy()
    rho = float(np.corrcoef(ranks_a, ranks_b)[0, 1]) if ranks_a.std() and ranks_b.std() else 0.0
    k = max(1, int(round(target_fpr * a.size)))
    top_a = set(np.argsort(-a, kind="stable")[:k])
    top_b = set(np.argsort(-b, kind="stable")[:k])
    return {"seed_rank_correlation": rho, "seed_top_overlap": len(top_a & top_b) / k}


def seed_problem(stability: dict[str, float]) -> str | None:
    """Why two seeds disagree too much for the model to serve (None: they agree)."""
    rho = stability["seed_rank_correlation"]
    if np.isfinite(rho) and rho >= MIN_SEED_RANK_CORRELATION:
        return None
    return (
        f"scores do not repeat across seeds: rank correlation {rho:.2f} between two fits "
        f"that differ only in their seed (at least {MIN_SEED_RANK_CORRELATION:.2f} "
        f"expected; {stability['seed_top_overlap']:.0%} of the top records shared). Train "
        "longer (more epochs or rows) or check the data for a column that only the seed "
        "decides how to use"
    )


def training_warnings(evaluation: Evaluation) -> list[str]:
    """What a person should know about a trained model that does not stop it serving:
    a VAE whose latent units all collapsed to the prior (``posterior_collapse_warning``
    says why that is a warning and not a gate), read from ``evaluation.metrics``."""
    return [w for w in [posterior_collapse_warning(evaluation.metrics)] if w]


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
    problems: list[str] | None = None,
    warnings: list[str] | None = None,
    notes: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One MLflow run per detector: params, metrics, plots, then a registered version
    (with no alias when ``problems`` says why it must not serve)."""
    from pipelines.modeling.plots import plot_evaluation  # deferred: matplotlib, only here

    name = model_name_for(spec.name, kind)
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
    # What the fit read (rows per epoch, the seeded samples around training): the caps
    # alone (params) do not say whether they bound on this data.
    fit_info = getattr(detector, "fit_info_", None) or {}
    params.update({f"fit_info.{k}": v for k, v in fit_info.items()})
    history = getattr(detector, "history_", []) or []

    def plots(out_dir: Path):
        return plot_evaluation(
            title=name,
            scores=evaluation.scores,
            labels=evaluation.labels,
            threshold=float(detector.threshold_.value),
            history=history,
            out_dir=out_dir,
        )

    result = register_version(
        Registration(
            name=name,
            kind=kind,
            bundle=ScoringBundle(spec, detector, max_reasons=max_reasons),
            data_source=data_source,
            params=params,
            metrics=evaluation.metrics,
            history=history,
            input_example=input_example,
            plots=plots,
            problems=problems or [],
            warnings=warnings or [],
            tags=dict(tags or {}),
        )
    )
    evaluation.plots = result.pop("plots")
    if notes:
        result["notes"] = list(notes)
    return result
