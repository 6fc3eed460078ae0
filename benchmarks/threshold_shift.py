"""Where a registered sequence model's 1%-FPR threshold lands on later data, and why (#11).

    python -m benchmarks.threshold_shift --workdir .vigil/bench/typology_cli_gan \
        --model typologies-seq_gan/1 --out benchmarks/results/threshold_shift_seq_gan.json

Reads what ``benchmarks.typology_cli`` left in ``--workdir`` (``train.csv``, ``next.csv``,
``spec.yaml`` and the registry under ``home/``), loads the model as ``vigil score`` would,
and scores every record once in time order (each with its entity's earlier records as
context, which is what scoring a batch with its kept history gives). Then it rebuilds
``vigil train``'s periods (the training file's latest ``--evaluation-fraction`` is the
evaluation period; the detector fits on the rest and calibrates on its own hold-out,
``validation_split``) and compares the score distribution of the calibration sample with
the evaluation period's and the next period's normals: the FPR of the threshold there,
quantiles, and what the calibration sample's top 1% is made of (padded windows: fewer
than ``sequence_length - 1`` earlier records of the entity; records made before the data
covered one context ``history``; records with a labelled anomaly in their window), how
concentrated its exceedances are on a few entities, and the threshold's FPR day by day.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from detectors import metrics
from detectors.context import time_to_seconds
from detectors.sequence import build_windows
from pipelines.modeling.bundle import prepare_records

QUANTILES = (0.5, 0.9, 0.99, 0.999)


def describe(scores: np.ndarray, threshold: float) -> dict:
    """FPR of ``threshold`` and score quantiles of one group of normal records."""
    return {
        "rows": int(len(scores)),
        "fpr": float(metrics.fpr_at(threshold, scores)),
        **{f"q{q * 100:g}": float(np.quantile(scores, q)) for q in QUANTILES},
    }


def run(args: argparse.Namespace) -> dict:
    workdir = Path(args.workdir).resolve()
    os.environ["VIGIL_HOME"] = str(workdir / "home")
    from pipelines.modeling.registry import configure_mlflow, load_bundle, resolve_model
    from pipelines.settings import get_settings

    configure_mlflow(get_settings())
    bundle = load_bundle(resolve_model(args.model))
    spec, detector = bundle.spec, bundle.detector
    train = pd.read_csv(workdir / "train.csv")
    later = pd.read_csv(workdir / "next.csv")
    frame = pd.concat([train, later], ignore_index=True)
    is_next = np.arange(len(frame)) >= len(train)
    features = prepare_records(spec, frame).features
    secs = time_to_seconds(frame[spec.time_column])
    labels = frame[spec.label_column].fillna(0).astype(int).to_numpy()
    columns = [*spec.model_feature_columns, spec.entity_column, spec.time_column]
    scores = detector.decision_function(features[columns])
    threshold = float(bundle.threshold)

    # vigil train's periods: the training file's latest share is its evaluation period.
    cut = float(np.quantile(secs[~is_next], 1.0 - args.evaluation_fraction))
    fit_period = ~is_next & (secs < cut)
    targets = np.flatnonzero(fit_period & (labels == 0))
    _, held_out = detector._time_split(secs[targets])
    calibration = targets[held_out]
    evaluation = np.flatnonzero(~is_next & ~fit_period & (labels == 0))
    upcoming = np.flatnonzero(is_next & (labels == 0))

    earlier = frame.groupby(spec.entity_column, sort=False).cumcount().to_numpy()
    padded = earlier < int(detector.sequence_length) - 1
    ramp = secs - secs.min() < spec.context_config().history_seconds
    prev = build_windows(
        frame[spec.entity_column], secs, int(detector.sequence_length), detector.history_seconds
    )
    after_anomaly = np.append(labels == 1, False)[prev].any(axis=1)
    top = calibration[scores[calibration] > np.quantile(scores[calibration], 0.99)]
    above = calibration[scores[calibration] > threshold]
    cards = frame[spec.entity_column].to_numpy()[above]
    per_card = pd.Series(cards).value_counts().to_numpy()
    day = ((secs - secs.min()) // 86400).astype(int)
    normal_days = pd.DataFrame({"day": day, "above": scores > threshold})[labels == 0]
    daily = normal_days.groupby("day")["above"].mean()
    daily = daily[daily.index >= int(day[calibration].min())]
    groups = {"calibration": calibration, "evaluation": evaluation, "next": upcoming}
    return {
        "model": args.model,
        "detector": type(detector).__name__,
        "validation_split": getattr(detector, "validation_split", None),
        "threshold": threshold,
        "target_fpr": float(detector.target_fpr),
        "groups": {k: describe(scores[v], threshold) for k, v in groups.items()},
        "threshold_for_target": {
            k: float(np.quantile(scores[v], 1.0 - detector.target_fpr)) for k, v in groups.items()
        },
        "padded_share": {
            "calibration": float(padded[calibration].mean()),
            "calibration_top_1pct": float(padded[top].mean()),
            "next": float(padded[upcoming].mean()),
        },
        "ramp_up_share": {
            "calibration": float(ramp[calibration].mean()),
            "calibration_top_1pct": float(ramp[top].mean()),
            "next": float(ramp[upcoming].mean()),
        },
        "anomaly_in_window_share": {
            "calibration": float(after_anomaly[calibration].mean()),
            "calibration_top_1pct": float(after_anomaly[top].mean()),
            "next": float(after_anomaly[upcoming].mean()),
        },
        "calibration_exceedances": {
            "rows": int(len(above)),
            "entities": int(len(per_card)),
            "top5_entities_share": float(per_card[:5].sum() / max(len(above), 1)),
        },
        "daily_fpr_from_calibration_start": {
            "min": float(daily.min()),
            "max": float(daily.max()),
            "by_day": {int(k): float(v) for k, v in daily.items()},
        },
        "calibration_days": [
            float((secs[calibration].min() - secs.min()) / 86400),
            float((secs[calibration].max() - secs.min()) / 86400),
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=".vigil/bench/typology_cli")
    parser.add_argument("--model", required=True, help="NAME/VERSION in the workdir's registry")
    parser.add_argument("--evaluation-fraction", type=float, default=0.2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text, file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
