"""``vigil train --with-labels``: a re-ranked model per trained detector, from the labels
known when training starts.

Registered as a new version of the detector's own model ``<dataset>-<detector>`` (kind
``<detector>-reranked``), so it becomes the challenger that ``vigil promote`` weighs
against the champion, and once promoted it is what scoring and the schedules use. One
self-contained bundle: the detector it reads (the same weights as the detector version
trained in the same run, tagged ``vigil.base_version``) plus the re-ranker, so scoring
never has to fetch and match two versions. The version's tags say which labels it saw
(count and the time range they became known in).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detectors import metrics
from pipelines.feedback.lanes import link_strength
from pipelines.feedback.presumed import PROPAGATE_SHARE, presume
from pipelines.feedback.reranker import (
    RerankedBundle,
    fit_reranked_bundle,
    with_risk_features,
)
from pipelines.feedback.risk import RiskConfig, observed_delay
from pipelines.intake.spec import DatasetSpec
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle, prepare_records
from pipelines.modeling.registry import LABELLED_SUFFIX, Registration, register_version

RERANKED_SUFFIX = LABELLED_SUFFIX


class NotEnoughLabels(ValueError):
    pass


@dataclass
class RerankedModel:
    bundle: RerankedBundle
    metrics: dict[str, float]
    #: the labels that trained it: count, frauds, first and last ``known_at`` (ISO), and
    #: the frauds taken from the data's label column (``data_frauds``)
    labels_seen: dict[str, str] = field(default_factory=dict)


#: The risk windows of ``vigil train --with-labels``: a day, a week and four weeks, each
#: after the labels' observed delay (the handbook and the generated card stream).
RISK_WINDOWS = ("1D", "7D", "28D")


def risk_config_for(
    spec: DatasetSpec,
    windows: tuple[str, ...] = RISK_WINDOWS,
    delay: str = "0s",
) -> RiskConfig | None:
    """Risk features for a sequence spec's secondary entities (none otherwise)."""
    if not spec.is_sequence or not spec.secondary_entity_columns:
        return None
    return RiskConfig(
        columns=tuple(spec.secondary_entity_columns),
        time_column=spec.time_column,
        id_column=spec.id_column,
        windows=tuple(windows),
        delay=delay,
        records=True,
    )


def label_delay(spec: DatasetSpec, clean: pd.DataFrame, known: pd.DataFrame) -> str:
    """The delay the risk windows wait: how late the confirmed frauds among ``clean``'s
    records became known (``observed_delay``; "0s" when too few to tell)."""
    if not spec.time_column or spec.time_column not in clean.columns:
        return "0s"
    if not pd.api.types.is_datetime64_any_dtype(clean[spec.time_column]):
        return "0s"  # numeric times: not comparable with known_at
    frauds = fraud_labels(known)
    events = pd.Series(
        clean[spec.time_column].to_numpy(), index=clean[spec.id_column].astype(str).to_numpy()
    )
    events = events[~events.index.duplicated()]
    matched = frauds["record_id"].astype(str).map(events)
    keep = matched.notna().to_numpy()
    return observed_delay(matched[keep], frauds["known_at"][keep])


def fraud_labels(known: pd.DataFrame) -> pd.DataFrame:
    """Confirmed frauds (record_id, known_at) from :meth:`ResultsStore.known_labels`."""
    return known.loc[known["y"] == 1, ["record_id", "known_at"]].reset_index(drop=True)


def train_reranked(
    base: ScoringBundle,
    clean: pd.DataFrame,
    known: pd.DataFrame,
    *,
    evaluation_ids: set[str] | None = None,
    seed: int = 0,
    min_labels: int = 20,
    unlabelled_per_label: int = 20,
    max_unlabelled: int = 50_000,
    propagate: float = PROPAGATE_SHARE,
) -> RerankedModel:
    """Fit the re-ranker on the records of ``clean`` with a verdict in ``known`` plus a
    sample of unlabelled records (presumed normal).

    The frauds the data's own label column marks (the history's chargebacks, when the
    training file carries them) are confirmed frauds too, outside the evaluation period:
    analysts' verdicts cover only what the champion flagged, so without them the labelled
    model never sees the fraud types the champion misses. A verdict in ``known`` overrides
    the column. They do not feed the risk features (the column says not when each became
    known), so training and scoring count the same frauds there.

    ``propagate``: the share of the unlabelled records linked to a confirmed fraud that
    are presumed frauds (the rest of them are left out, never presumed normal).

    Metrics (when the spec has a label column): on the records in ``evaluation_ids`` whose
    label did NOT train the re-ranker, so they are honest.
    """
    started = time.perf_counter()
    spec = base.spec
    if spec.is_sequence:
        clean = clean.sort_values(spec.time_column, kind="stable").reset_index(drop=True)
    y_data = None
    if spec.label_column and spec.label_column in clean.columns:
        y_data = clean[spec.label_column].fillna(0).astype(int).to_numpy()
    ids = clean[spec.id_column].astype(str)
    verdict = ids.map(dict(zip(known["record_id"].astype(str), known["y"], strict=True)))
    from_data = np.zeros(len(ids), dtype=bool)
    if y_data is not None:
        from_data = (y_data == 1) & verdict.isna().to_numpy() & ~ids.isin(evaluation_ids or ())
        verdict = verdict.where(~from_data, 1)
    labelled = verdict.notna().to_numpy()
    n_fraud = int((verdict == 1).sum())
    if n_fraud < min_labels:
        raise NotEnoughLabels(
            f"{n_fraud} confirmed frauds among the training records ({int(from_data.sum())} "
            f"from the data's label column, {len(known)} labels known); the re-ranker needs "
            f"at least {min_labels}"
        )
    risk = risk_config_for(spec, delay=label_delay(spec, clean, known))
    features = prepare_records(spec, clean).features
    if risk is not None:
        features = with_risk_features(features, clean, None, risk, fraud_labels(known))
    # Presumed labels for a sample of the rest: normal, unless the record paid where a
    # fraud had been confirmed before it (see pipelines.feedback.presumed).
    rng = np.random.default_rng(seed)
    unlabelled = np.flatnonzero(~labelled)
    n_extra = min(len(unlabelled), max_unlabelled, unlabelled_per_label * int(labelled.sum()))
    presumed = presume(unlabelled, link_strength(features, risk), n_extra, rng, propagate=propagate)
    rows = np.sort(np.concatenate([np.flatnonzero(labelled), presumed.normal, presumed.fraud]))
    y = np.where(labelled[rows], verdict.to_numpy()[rows], 0).astype("int64")
    y[np.isin(rows, presumed.fraud)] = 1
    # Presumed frauds stay out of the novelty floor's reference (presumed normals only).
    bundle = fit_reranked_bundle(
        base,
        features,
        rows,
        y,
        risk=risk,
        seed=seed,
        labelled=labelled[rows] | np.isin(rows, presumed.fraud),
    )
    bundle.use_labels(fraud_labels(known))
    result: dict[str, float] = {
        "threshold": bundle.threshold,
        "target_fpr": float(getattr(base.detector, "target_fpr", float("nan"))),
        "n_train": float(len(rows)),
        "n_labelled": float(labelled[rows].sum()),
        "n_frauds": float(y.sum()),
        "fit_seconds": time.perf_counter() - started,
    }
    if y_data is not None and evaluation_ids:
        held = ids.isin(evaluation_ids).to_numpy() & ~labelled
        scored = bundle.score_prepared(PreparedRecords(features=features), with_reasons=False)
        s, yy = scored["score"].to_numpy()[held], np.asarray(y_data)[held]
        result["n_evaluation"] = float(held.sum())
        normal = s[yy == 0]
        result["holdout_fpr"] = (
            float(metrics.fpr_at(bundle.threshold, normal)) if len(normal) else float("nan")
        )
        if 0 < yy.sum() < len(yy):
            precision, recall = metrics.precision_recall_at(bundle.threshold, yy, s)
            result.update(
                auroc=float(metrics.auroc(yy, s)),
                auprc=float(metrics.auprc(yy, s)),
                precision_at_threshold=float(precision),
                recall_at_threshold=float(recall),
            )
    result.setdefault("holdout_fpr", float("nan"))
    seen = known[known["record_id"].astype(str).isin(set(ids[labelled]))]
    times = pd.to_datetime(seen["known_at"], utc=True) if len(seen) else None
    labels_seen = {
        "count": str(len(seen)),
        "frauds": str(int((seen["y"] == 1).sum())),
        "first_known": times.min().isoformat() if times is not None else "",
        "last_known": times.max().isoformat() if times is not None else "",
        "data_frauds": str(int(from_data.sum())),
    }
    return RerankedModel(bundle=bundle, metrics=result, labels_seen=labels_seen)


def register_reranked(
    model: RerankedModel,
    *,
    base_model: str,
    base_version: str,
    detector_kind: str,
    data_source: str,
    known_before: datetime,
    input_example: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Log and register the re-ranked bundle; the same shape as a detector's train result."""
    result = register_version(
        Registration(
            name=base_model,
            kind=f"{detector_kind}{RERANKED_SUFFIX}",
            bundle=model.bundle,
            data_source=data_source,
            params={
                "features": ",".join(model.bundle.config.feature_names()),
                "labels_known_before": known_before.isoformat(),
                "p_cut": model.bundle.config.p_cut,
            },
            metrics=model.metrics,
            tags={
                "vigil.base_model": base_model,
                "vigil.base_version": str(base_version),
                "vigil.labels_known_before": known_before.isoformat(),
                **{f"vigil.labels_{k}": v for k, v in model.labels_seen.items()},
            },
            input_example=input_example,
            python_model=str(Path(__file__).with_name("pyfunc_reranked.py")),
        )
    )
    result.pop("plots")
    return {**result, "base": f"{base_model}/{base_version}"}
