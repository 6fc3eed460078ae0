"""Sequence benchmark on the Fraud-Detection-Handbook simulated transactions.

    python -m benchmarks.sequences --out benchmarks/results/sequences.json \
        --markdown benchmarks/RESULTS.md

Protocol: context features are built once over the whole file (causal, so a record only
sees its past; the batch-alone == whole-file equality is a unit test). Models train on the
*normal* records of the training months (known frauds stay in the data as the entities'
history, never as training targets; no other use of labels) and are tested on a later
month. ``TX_FRAUD_SCENARIO`` is used only to report figures per scenario.

Metrics on the test month: AUROC, AUPRC and Card Precision@100 per day (the handbook's
metric: each day, rank customers by their highest score; the share of the top 100 that
had a fraud that day, averaged over days), overall and per fraud scenario (normals plus
that scenario's frauds). Speed: the full feature build, and building + scoring one day
(~10k records) given the stored state of the days before.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import IsolationForest

from benchmarks.datasets import datasets_dir
from benchmarks.tabular import package_versions
from detectors import GANDetector, SequenceGANDetector, SequenceVAEDetector, VAEDetector
from detectors import metrics as m
from detectors.encoding import TabularEncoder
from pipelines.intake.spec import load_spec
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle, prepare_records

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDBOOK_FILE = "fraud_handbook_simulated_transactions.csv.gz"
SPEC_FILE = REPO_ROOT / "data" / "specs" / "fraud_handbook.yaml"
MODELS = ["vae_raw", "vae_context", "seq_vae", "seq_gan", "iforest_context"]
SCENARIOS = {1: "amount > 220", 2: "compromised terminal", 3: "compromised customer"}
MARKER_START = "<!-- sequences:start -->"
MARKER_END = "<!-- sequences:end -->"


def load_handbook(path: Path | None = None) -> pd.DataFrame:
    path = path or datasets_dir() / HANDBOOK_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: handbook data not found (set VIGIL_DATASETS_DIR)")
    frame = pd.read_csv(path, parse_dates=["TX_DATETIME"])
    return frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"], kind="stable").reset_index(
        drop=True
    )


def card_precision_at_k(
    days: np.ndarray, customers: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = 100
) -> float:
    """Mean over days of the fraud share among the k customers with the highest score."""
    frame = pd.DataFrame({"day": days, "customer": customers, "y": labels, "s": scores})
    per_card = frame.groupby(["day", "customer"], sort=False).agg(s=("s", "max"), y=("y", "max"))
    top = per_card.sort_values("s", ascending=False).groupby(level="day", sort=False).head(k)
    return float(top.groupby(level="day")["y"].mean().mean())


def quality(test: pd.DataFrame, scores: np.ndarray) -> dict:
    """Overall and per-scenario AUROC, AUPRC and Card Precision@100."""
    y = test["TX_FRAUD"].to_numpy()
    scenario = test["TX_FRAUD_SCENARIO"].to_numpy()
    days = test["TX_TIME_DAYS"].to_numpy()
    customers = test["CUSTOMER_ID"].to_numpy()
    out = {
        "all": {
            "auroc": m.auroc(y, scores),
            "auprc": m.auprc(y, scores),
            "cp100": card_precision_at_k(days, customers, y, scores),
            "frauds": int(y.sum()),
        }
    }
    for s in SCENARIOS:
        keep = (scenario == 0) | (scenario == s)
        ys = (scenario[keep] == s).astype(int)
        out[f"scenario_{s}"] = {
            "auroc": m.auroc(ys, scores[keep]),
            "auprc": m.auprc(ys, scores[keep]),
            "cp100": card_precision_at_k(days[keep], customers[keep], ys, scores[keep]),
            "frauds": int(ys.sum()),
        }
    return out


def build_detector(kind: str, spec, *, seed: int, overrides: dict):
    context = spec.context_config()
    common = {
        "seed": seed,
        "target_fpr": 0.01,
        "range_features": list(spec.range_checked_features) or None,
        **overrides.get(kind, {}),
    }
    if kind in ("vae_raw", "vae_context"):
        return VAEDetector(**common)
    sequence = {
        "entity_column": spec.entity_column,
        "time_column": spec.time_column,
        "history_seconds": context.history_seconds,
    }
    if kind == "seq_vae":
        return SequenceVAEDetector(**sequence, **common)
    if kind == "seq_gan":
        return SequenceGANDetector(**sequence, **common)
    if kind == "gan_context":
        return GANDetector(**common)
    raise ValueError(f"unknown model {kind!r}; known: {MODELS}")


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    spec = load_spec(args.spec)
    started = time.perf_counter()
    raw = load_handbook(Path(args.data) if args.data else None)
    read_seconds = time.perf_counter() - started
    print(f"read {len(raw):,} records in {read_seconds:.1f}s", file=sys.stderr)

    started = time.perf_counter()
    prepared = prepare_records(spec, raw)
    build_seconds = time.perf_counter() - started
    print(f"context features for {len(raw):,} records in {build_seconds:.1f}s", file=sys.stderr)

    features = prepared.features
    when = raw["TX_DATETIME"]
    train_mask = (when < pd.Timestamp(args.train_end)).to_numpy()
    test_start, test_end = pd.Timestamp(args.test_start), pd.Timestamp(args.test_end)
    test_mask = ((when >= test_start) & (when < test_end)).to_numpy()
    labels = raw["TX_FRAUD"].to_numpy()
    normal_train = train_mask & (labels == 0)
    rng = np.random.default_rng(args.seed)
    normal_idx = np.flatnonzero(normal_train)
    if args.max_train_rows and len(normal_idx) > args.max_train_rows:
        normal_idx = np.sort(rng.choice(normal_idx, args.max_train_rows, replace=False))
    test = raw.loc[test_mask].reset_index(drop=True)
    model_columns = spec.model_feature_columns
    keys = [spec.entity_column, spec.time_column]
    overrides = json.loads(args.overrides) if args.overrides else {}
    if args.epochs:
        for kind in MODELS:
            if kind != "iforest_context":
                overrides.setdefault(kind, {})["epochs"] = args.epochs

    results: dict = {}
    speed: dict = {}
    for kind in args.models:
        print(f"{kind}: fitting", file=sys.stderr)
        started = time.perf_counter()
        if kind == "iforest_context":
            encoder = TabularEncoder()
            x_train = encoder.fit_transform(features.iloc[normal_idx][model_columns])
            forest = IsolationForest(random_state=args.seed, n_jobs=1).fit(x_train)
            fit_seconds = time.perf_counter() - started
            started = time.perf_counter()
            x_test = encoder.transform(features.loc[test_mask, model_columns])
            scores = -forest.score_samples(x_test)
            score_seconds = time.perf_counter() - started
        else:
            detector = build_detector(kind, spec, seed=args.seed, overrides=overrides)
            if kind == "vae_raw":
                columns = list(spec.feature_columns)
                detector.fit(features.iloc[normal_idx][columns])
                started_score = time.perf_counter()
                scores = detector.decision_function(features.loc[test_mask, columns])
            elif kind in ("seq_vae", "seq_gan"):
                # Every training-month record is context; labelled frauds are never targets.
                detector.fit(features.loc[train_mask, [*model_columns, *keys]], labels[train_mask])
                started_score = time.perf_counter()
                bundle = ScoringBundle(spec, detector)
                scores = bundle.score_prepared(
                    PreparedRecords(
                        features=features.loc[test_mask].reset_index(drop=True),
                        history=features.loc[train_mask].reset_index(drop=True),
                    ),
                    with_reasons=False,
                )["score"].to_numpy()
            else:
                detector.fit(features.iloc[normal_idx][model_columns])
                started_score = time.perf_counter()
                scores = detector.decision_function(features.loc[test_mask, model_columns])
            fit_seconds = started_score - started
            score_seconds = time.perf_counter() - started_score
            if kind in ("vae_context", "seq_vae"):
                speed[kind] = one_day_seconds(spec, raw, prepared.state, detector, args)
        scores = np.asarray(scores, dtype="float64")
        results[kind] = {
            **quality(test, scores),
            "fit_seconds": fit_seconds,
            "score_seconds": score_seconds,
        }
        summary = results[kind]
        print(
            f"{kind}: AUROC {summary['all']['auroc']:.4f} AUPRC {summary['all']['auprc']:.3f} "
            f"CP@100 {summary['all']['cp100']:.3f}; s1 {summary['scenario_1']['auprc']:.3f} "
            f"s3 {summary['scenario_3']['auroc']:.3f}/{summary['scenario_3']['auprc']:.3f} "
            f"fit {fit_seconds:.0f}s",
            file=sys.stderr,
        )
    return {
        "meta": _meta(args, len(raw), int(normal_train.sum()), len(normal_idx), len(test)),
        "feature_build_seconds": build_seconds,
        "one_day_seconds": speed,
        "results": results,
        "overrides": overrides,
    }


def one_day_seconds(spec, raw: pd.DataFrame, state: pd.DataFrame, detector, args) -> dict:
    """Build features for one test day from its raw records plus the stored state of the
    days before, then score it: the nightly job's work (median of 3 runs)."""
    day_start = pd.Timestamp(args.test_start) + pd.Timedelta(days=7)
    day_end = day_start + pd.Timedelta(days=1)
    when = raw["TX_DATETIME"]
    day = raw.loc[(when >= day_start) & (when < day_end)]
    history_start = day_start - pd.Timedelta(spec.context.history)
    kept = state.loc[((when >= history_start) & (when < day_start)).to_numpy()]
    bundle = ScoringBundle(spec, detector)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        prepared = bundle.prepare(day, kept)
        built = time.perf_counter() - started
        bundle.score_prepared(prepared)
        timings.append((built, time.perf_counter() - started))
    built, total = sorted(timings, key=lambda t: t[1])[1]
    return {"records": len(day), "history_records": len(kept), "build": built, "total": total}


def _meta(args, n_rows: int, n_normal_train: int, n_fit: int, n_test: int) -> dict:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "python": sys.version.split()[0],
        "versions": package_versions(("torch", "numpy", "pandas", "scikit-learn", "vigil")),
        "rows": n_rows,
        "train": f"records before {args.train_end}: {n_normal_train:,} normal "
        f"({n_fit:,} sampled as training targets)",
        "test": f"{args.test_start} to {args.test_end} (exclusive): {n_test:,} records",
        "seed": args.seed,
        "models": args.models,
    }


def write_markdown(report: dict, path: Path) -> None:
    """Write the sequence section of RESULTS.md between markers (the rest is kept)."""
    meta = report["meta"]
    lines = [
        MARKER_START,
        "# Benchmark results: sequences (Fraud-Detection-Handbook data)",
        "",
        f"Run {meta['date']} on {meta['machine']}, Python {meta['python']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
        + f". Seed {meta['seed']}. Train: {meta['train']}. Test: {meta['test']}.",
        "",
        "Unsupervised: labels only exclude known frauds from the training targets. "
        "Scenario columns: normals + that scenario's frauds. CP@100 = Card Precision@100 "
        "per day, averaged over the test days.",
        "",
    ]
    header = "| model | all AUROC | all AUPRC | all CP@100 |"
    rule = "|---|---:|---:|---:|"
    for s in SCENARIOS:
        header += f" s{s} AUROC | s{s} AUPRC | s{s} CP@100 |"
        rule += "---:|---:|---:|"
    lines += [header + " fit s |", rule + "---:|"]
    for model, r in report["results"].items():
        cells = [f"{r['all']['auroc']:.4f}", f"{r['all']['auprc']:.3f}", f"{r['all']['cp100']:.3f}"]
        for s in SCENARIOS:
            part = r[f"scenario_{s}"]
            cells += [f"{part['auroc']:.4f}", f"{part['auprc']:.3f}", f"{part['cp100']:.3f}"]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {r['fit_seconds']:.0f} |")
    lines += [
        "",
        "Scenarios: " + "; ".join(f"{k} = {v}" for k, v in SCENARIOS.items()) + ".",
        "",
        f"Speed: context features for all {meta['rows']:,} records in "
        f"{report['feature_build_seconds']:.1f} s.",
    ]
    for model, day in report["one_day_seconds"].items():
        lines.append(
            f"One day with {model}: {day['records']:,} records + {day['history_records']:,} "
            f"kept history records: features {day['build']:.2f} s, features + scoring "
            f"{day['total']:.2f} s (median of 3)."
        )
    lines += ["", MARKER_END]
    section = "\n".join(lines)
    text = path.read_text() if path.exists() else ""
    if MARKER_START in text and MARKER_END in text:
        before = text[: text.index(MARKER_START)]
        after = text[text.index(MARKER_END) + len(MARKER_END) :]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="Handbook CSV (default: shared datasets).")
    parser.add_argument("--spec", default=str(SPEC_FILE))
    parser.add_argument("--models", nargs="+", default=MODELS, choices=[*MODELS, "gan_context"])
    parser.add_argument("--train-end", default="2018-07-01")
    parser.add_argument("--test-start", default="2018-07-01")
    parser.add_argument("--test-end", default="2018-08-01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-train-rows",
        type=int,
        default=200_000,
        help="Training normals sampled for the tabular models (the sequence models use "
        "their own max_train_rows; set it with --overrides).",
    )
    parser.add_argument("--epochs", type=int, default=None, help="Override every model's epochs.")
    parser.add_argument("--overrides", default=None, help='JSON, e.g. {"seq_vae": {"beta": 2}}')
    parser.add_argument("--out", default="benchmarks/results/sequences.json")
    parser.add_argument("--markdown", default=None, help="RESULTS.md to update (a section).")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    if args.markdown:
        write_markdown(report, Path(args.markdown))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
