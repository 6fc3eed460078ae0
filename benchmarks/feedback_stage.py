"""The feedback replay's first stage: the unsupervised model and what the replay reads
from it (VAE outputs, context features, the all-labels baseline's risk features), cached
on disk because it costs most of a run and does not change between queue policies."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from detectors import VAEDetector
from pipelines.feedback.reranker import detector_outputs
from pipelines.feedback.risk import build_risk_features
from pipelines.modeling.bundle import ScoringBundle, prepare_records


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cache_key(args: argparse.Namespace) -> str:
    """What the expensive first stage depends on (data, split, model settings, code)."""
    parts = {
        k: getattr(args, k)
        for k in (
            "data",
            "spec",
            "customer_fraction",
            "train_end",
            "test_end",
            "all_labels_from",
            "max_train_rows",
            "epochs",
            "seed",
            "risk_windows",
            "label_delay_days",
        )
    }
    code = [
        Path(__file__).parents[1] / f
        for f in (
            "detectors/vae.py",
            "detectors/context/features.py",
            "detectors/context/config.py",
            "pipelines/feedback/risk.py",
        )
    ]
    parts["code"] = [hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in code if f.exists()]
    parts["spec_text"] = Path(args.spec).read_text()
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_stage(args, raw, spec, risk, rng) -> dict:
    """The unsupervised model and everything the replay reads from it, cached on disk
    (``--cache DIR``) because it costs most of a run and does not change between policies."""
    cache_file = Path(args.cache) / f"feedback-{_cache_key(args)}.npz" if args.cache else None
    if cache_file is not None and cache_file.exists():
        _log(f"stage 1 from cache {cache_file}")
        with np.load(cache_file, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
        out["fit_seconds"] = float(out["fit_seconds"])
        out["threshold"] = float(out["threshold"])
        return out
    started = time.perf_counter()
    features = prepare_records(spec, raw).features
    _log(f"context features in {time.perf_counter() - started:.0f}s")
    when = raw["TX_DATETIME"]
    labels = raw["TX_FRAUD"].to_numpy()
    train_mask = (when < pd.Timestamp(args.train_end)).to_numpy()
    replay = np.flatnonzero(
        ((when >= pd.Timestamp(args.train_end)) & (when < pd.Timestamp(args.test_end))).to_numpy()
    )
    normal_idx = np.flatnonzero(train_mask & (labels == 0))
    n_normal_train = len(normal_idx)
    if len(normal_idx) > args.max_train_rows:
        normal_idx = np.sort(rng.choice(normal_idx, args.max_train_rows, replace=False))
    columns = spec.model_feature_columns
    detector = VAEDetector(
        seed=args.seed,
        target_fpr=0.01,
        range_features=list(spec.range_checked_features) or None,
        **({"epochs": args.epochs} if args.epochs else {}),
    )
    started = time.perf_counter()
    detector.fit(features.iloc[normal_idx][columns])
    fit_seconds = time.perf_counter() - started
    _log(f"VAE fit on {len(normal_idx):,} normals in {fit_seconds:.0f}s")
    bundle = ScoringBundle(spec, detector)
    started = time.perf_counter()
    u_raw, errors, latents = detector_outputs(bundle, features.iloc[replay][columns], None)
    u_normal = detector.decision_function(features.iloc[normal_idx][columns])
    _log(f"VAE outputs for {len(replay):,} replay records in {time.perf_counter() - started:.0f}s")
    # The all-labels baseline: every record's label known delay days later, from June on.
    june = np.flatnonzero(
        (when >= pd.Timestamp(args.all_labels_from)).to_numpy()
        & (when < pd.Timestamp(args.test_end)).to_numpy()
    )
    day_all = raw["TX_TIME_DAYS"].to_numpy()
    all_known_day = day_all + args.label_delay_days + 1  # absolute day index
    fraud_rows = np.flatnonzero(labels == 1)
    ids_all = raw["TRANSACTION_ID"].astype(str).to_numpy()
    started = time.perf_counter()
    full_frauds = pd.DataFrame(
        {
            "record_id": ids_all[fraud_rows],
            "known_at": pd.Timestamp("2018-04-01")
            + pd.to_timedelta(all_known_day[fraud_rows], unit="D"),
        }
    )
    all_risk = build_risk_features(
        raw[["TRANSACTION_ID", "TX_DATETIME", *risk.columns]], full_frauds, risk, targets=june
    ).to_numpy("float64")
    _log(f"all-labels risk features in {time.perf_counter() - started:.0f}s")
    out = {
        "replay": replay,
        "june": june,
        "u_raw": np.asarray(u_raw, dtype="float64"),
        "latents": np.asarray(latents, dtype="float64"),
        "errors": errors.to_numpy(dtype="float64"),
        "numeric_all": features[columns].to_numpy(dtype="float64"),
        "u_normal": np.asarray(u_normal, dtype="float64"),
        "all_risk": all_risk,
        "threshold": float(detector.threshold_.value),
        "fit_seconds": fit_seconds,
        "n_normal_train": n_normal_train,
        "n_fit": len(normal_idx),
    }
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, **out)
        _log(f"stage 1 cached in {cache_file}")
    return out
