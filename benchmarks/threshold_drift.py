"""Why a sequence detector's 1%-FPR threshold moves on later data (issue 11).

    python -m benchmarks.threshold_drift --cards 600 --epochs 5

Fits seq_gan and seq_vae on the typology set's training period with the held-out
(calibration) rows drawn at random or as the latest records, then reports: the hold-out
FPR of the threshold on the test period's normals, and how many of the calibration rows
above the threshold are "warm-up" records (their window is padded: fewer than
``sequence_length - 1`` earlier records of the card) or "ramp-up" records (made before
the data covered one context ``history``, or ``baseline_gap``, so some context features
are missing or cut short; none of the test records are) against their share of all
calibration rows.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd
import torch

from detectors import metrics as m
from detectors.sequence import SequenceGANDetector, SequenceVAEDetector
from pipelines.demo_sequences import TYPOLOGY_SPEC, generate_typology_set
from pipelines.modeling.bundle import prepare_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cards", type=int, default=600)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--test-days", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-train-rows", type=int, default=20_000)
    parser.add_argument("--out", default=None)
    parser.add_argument("--models", nargs="+", default=["seq_gan", "seq_vae"])
    parser.add_argument("--splits", nargs="+", default=["random", "latest"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    spec = TYPOLOGY_SPEC
    raw = generate_typology_set(n_cards=args.cards, days=args.days, seed=0)
    raw[spec.time_column] = pd.to_datetime(raw[spec.time_column])
    features = prepare_records(spec, raw).features
    when = raw[spec.time_column]
    cut = when.min().normalize() + pd.Timedelta(days=args.days - args.test_days)
    train = (when < cut).to_numpy()
    labels = raw[spec.label_column].to_numpy()
    columns = [*spec.model_feature_columns, spec.entity_column, spec.time_column]
    frame_train = features.loc[train, columns].reset_index(drop=True)
    frame_test = features.loc[~train, columns].reset_index(drop=True)
    y_train, y_test = labels[train], labels[~train]
    earlier = raw.groupby(spec.entity_column, sort=False).cumcount().to_numpy()
    secs = (when - when.min()).dt.total_seconds().to_numpy()
    report = []
    classes = {"seq_gan": SequenceGANDetector, "seq_vae": SequenceVAEDetector}
    config = spec.context_config()
    gap = config.baseline_gap or config.history
    for cls in (classes[k] for k in args.models):
        for split in args.splits:
            det = cls(
                entity_column=spec.entity_column,
                time_column=spec.time_column,
                history_seconds=spec.context_config().history_seconds,
                epochs=args.epochs,
                max_train_rows=args.max_train_rows,
                validation_split=split,
                categorical_features=list(spec.categorical_features),
                range_features=list(spec.range_checked_features),
                seed=0,
            ).fit(frame_train, y_train)
            target = np.flatnonzero(y_train == 0)
            _, val = det._time_split(secs[train][target])
            calib = target[val]
            scores_train = det.decision_function(frame_train)
            scores_test = det.decision_function(frame_test, history=frame_train)
            value = det.threshold_.value
            warm = earlier[train] < det.sequence_length - 1
            ramp = secs[train] < config.history_seconds
            no_baseline = secs[train] < pd.Timedelta(gap).total_seconds()
            above = calib[scores_train[calib] > value]
            row = {
                "detector": type(det).__name__,
                "validation_split": split,
                "threshold": value,
                "calibration_fpr": float(np.mean(scores_train[calib] > value)),
                "holdout_fpr": float(m.fpr_at(value, scores_test[y_test == 0])),
                "calibration_rows": len(calib),
                "warmup_share_of_calibration": float(warm[calib].mean()),
                "warmup_share_above_threshold": float(warm[above].mean()) if len(above) else 0.0,
                "warmup_share_of_test": float((earlier[~train] < det.sequence_length - 1).mean()),
                "rampup_share_of_calibration": float(ramp[calib].mean()),
                "rampup_share_above_threshold": float(ramp[above].mean()) if len(above) else 0.0,
                "no_baseline_share_of_calibration": float(no_baseline[calib].mean()),
                "no_baseline_share_above_threshold": (
                    float(no_baseline[above].mean()) if len(above) else 0.0
                ),
                "calibration_days": [
                    float(secs[train][calib].min() / 86400),
                    float(secs[train][calib].max() / 86400),
                ],
            }
            print(json.dumps(row), file=sys.stderr)
            report.append(row)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
