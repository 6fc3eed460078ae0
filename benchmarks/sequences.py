"""Sequence benchmark on the Fraud-Detection-Handbook simulated transactions and on the
generated typology set (``pipelines.demo_sequences.generate_typology_set``).

    python -m benchmarks sequences                          # the handbook
    python -m benchmarks sequences --dataset typologies     # the typology set, model level

Typology set: the last ``--test-days`` days are the test period, every earlier record is
the training period (same protocol otherwise); figures per typology (normals + that
typology's frauds). Both sets report, per model: AUROC/AUPRC per group, precision at 100
and 1,000 flags per day (each test day's top-k records, averaged over days), the
false-positive rate of the model's own 1%-FPR threshold on the test period's normals
("hold-out FPR") with recall there, and fit time. ``--customers`` / ``--cards`` and
``--epochs`` give budgeted runs; ``--context`` overrides the spec's context section (JSON)
to measure features on and off.

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
from detectors.thresholds import Threshold
from pipelines.demo_sequences import TYPOLOGIES, TYPOLOGY_SPEC, generate_typology_set
from pipelines.intake.spec import load_spec
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle, prepare_records

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDBOOK_FILE = "fraud_handbook_simulated_transactions.csv.gz"
SPEC_FILE = REPO_ROOT / "data" / "specs" / "fraud_handbook.yaml"
MODELS = ["vae_raw", "vae_context", "seq_vae", "seq_gan", "iforest_context"]
SCENARIOS = {1: "amount > 220", 2: "compromised terminal", 3: "compromised customer"}


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


def precision_at_flags(days: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Mean over days of the fraud share among that day's k highest-scored records."""
    frame = pd.DataFrame({"day": days, "y": labels, "s": scores})
    top = frame.sort_values("s", ascending=False, kind="stable").groupby("day").head(k)
    return float(top.groupby("day")["y"].mean().mean())


def queue_quality(
    labels: np.ndarray,
    groups: np.ndarray,
    days: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    group_names: list[str],
) -> dict:
    """AUROC/AUPRC overall and per group, precision at 100/1,000 flags per day, and the
    hold-out FPR / precision / recall at the model's own threshold."""
    out: dict = {
        "all": {
            "auroc": m.auroc(labels, scores),
            "auprc": m.auprc(labels, scores),
            "p_at_100_per_day": precision_at_flags(days, labels, scores, 100),
            "p_at_1000_per_day": precision_at_flags(days, labels, scores, 1000),
            "frauds": int(labels.sum()),
        }
    }
    if threshold is not None:
        precision, recall = m.precision_recall_at(threshold, labels, scores)
        out["all"].update(
            holdout_fpr=float(m.fpr_at(threshold, scores[labels == 0])),
            precision_at_threshold=float(precision),
            recall_at_threshold=float(recall),
        )
    for name in group_names:
        keep = (labels == 0) | (groups == name)
        ys = (groups[keep] == name).astype(int)
        if ys.sum() == 0:
            continue
        out[name] = {
            "auroc": m.auroc(ys, scores[keep]),
            "auprc": m.auprc(ys, scores[keep]),
            "frauds": int(ys.sum()),
        }
    return out


def build_detector(kind: str, spec, *, seed: int, overrides: dict):
    context = spec.context
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


def load_data(args: argparse.Namespace):
    """(raw records sorted by time, spec, train mask, test mask, groups, group names, days)."""
    context = json.loads(args.context) if args.context else {}
    if args.dataset == "typologies":
        spec = TYPOLOGY_SPEC
        cached = (
            Path(args.cache_dir) / f"typologies_{args.cards}_{args.days}_{args.data_seed}.parquet"
            if args.cache_dir
            else None
        )
        if cached is not None and cached.exists():
            raw = pd.read_parquet(cached)
        else:
            raw = generate_typology_set(n_cards=args.cards, days=args.days, seed=args.data_seed)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                raw.to_parquet(cached)
        raw[spec.time_column] = pd.to_datetime(raw[spec.time_column])
        raw = raw.sort_values([spec.time_column, spec.id_column], kind="stable")
        raw = raw.reset_index(drop=True)
        when = raw[spec.time_column]
        cut = when.min().normalize() + pd.Timedelta(days=args.days - args.test_days)
        train_mask = (when < cut).to_numpy()
        test_mask = ~train_mask
        groups = raw["fraud_kind"].to_numpy()
        names = list(TYPOLOGIES)
        days = ((when - when.min().normalize()).dt.days).to_numpy()
    else:
        spec = load_spec(args.spec)
        raw = load_handbook(Path(args.data) if args.data else None)
        if args.customers:
            ids = np.sort(raw["CUSTOMER_ID"].unique())
            rng = np.random.default_rng(args.data_seed)
            keep = rng.choice(ids, min(args.customers, len(ids)), replace=False)
            raw = raw[raw["CUSTOMER_ID"].isin(keep)].reset_index(drop=True)
        when = raw["TX_DATETIME"]
        train_mask = (when < pd.Timestamp(args.train_end)).to_numpy()
        test_start, test_end = pd.Timestamp(args.test_start), pd.Timestamp(args.test_end)
        test_mask = ((when >= test_start) & (when < test_end)).to_numpy()
        groups = np.array(
            [f"scenario_{v}" if v else "" for v in raw["TX_FRAUD_SCENARIO"].to_numpy()],
            dtype=object,
        )
        names = [f"scenario_{k}" for k in SCENARIOS]
        days = raw["TX_TIME_DAYS"].to_numpy()
    if context:
        spec = spec.model_copy(update={"context": spec.context.replace(**context)}, deep=True)
    return raw, spec, train_mask, test_mask, groups, names, days


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    raw, spec, train_mask, test_mask, groups, group_names, days = load_data(args)
    read_seconds = time.perf_counter() - started
    print(f"read {len(raw):,} records in {read_seconds:.1f}s", file=sys.stderr)

    started = time.perf_counter()
    prepared = prepare_records(spec, raw)
    build_seconds = time.perf_counter() - started
    print(f"context features for {len(raw):,} records in {build_seconds:.1f}s", file=sys.stderr)

    features = prepared.features
    labels = raw[spec.label_column].to_numpy().astype(int)
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
        threshold: float | None = None
        if kind == "iforest_context":
            encoder = TabularEncoder()
            shuffled = np.random.default_rng([args.seed, 2]).permutation(normal_idx)
            n_cal = len(shuffled) // 5
            x_train = encoder.fit_transform(features.iloc[np.sort(shuffled[n_cal:])][model_columns])
            forest = IsolationForest(random_state=args.seed, n_jobs=1).fit(x_train)
            x_cal = encoder.transform(features.iloc[np.sort(shuffled[:n_cal])][model_columns])
            threshold = Threshold.for_fpr(-forest.score_samples(x_cal), 0.01).value
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
                # Every training-period record is context; labelled frauds are never targets.
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
            threshold = float(detector.threshold_.value)
            fit_seconds = started_score - started
            score_seconds = time.perf_counter() - started_score
            if args.dataset == "handbook" and kind in ("vae_context", "seq_vae"):
                speed[kind] = one_day_seconds(spec, raw, prepared.state, detector, args)
        scores = np.asarray(scores, dtype="float64")
        summary = queue_quality(
            labels[test_mask], groups[test_mask], days[test_mask], scores, threshold, group_names
        )
        if args.dataset == "handbook":
            handbook = quality(test, scores)
            for key, part in handbook.items():
                summary.setdefault(key, {})["cp100"] = part["cp100"]
        results[kind] = {**summary, "fit_seconds": fit_seconds, "score_seconds": score_seconds}
        a = summary["all"]
        groups_text = " ".join(
            f"{g} {summary[g]['auroc']:.3f}/{summary[g]['auprc']:.3f}"
            for g in group_names
            if g in summary
        )
        print(
            f"{kind}: AUROC {a['auroc']:.4f} AUPRC {a['auprc']:.3f} "
            f"P@100/day {a['p_at_100_per_day']:.3f} P@1000/day {a['p_at_1000_per_day']:.3f} "
            f"hold-out FPR {a.get('holdout_fpr', float('nan')):.4f} "
            f"recall {a.get('recall_at_threshold', float('nan')):.3f}; {groups_text}; "
            f"fit {fit_seconds:.0f}s",
            file=sys.stderr,
        )
    return {
        "meta": _meta(args, len(raw), int(normal_train.sum()), len(normal_idx), len(test)),
        "context": spec.context.model_dump(),
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
    if args.dataset == "typologies":
        data = (
            f"generate_typology_set(n_cards={args.cards}, days={args.days}, seed={args.data_seed})"
        )
        train = f"records before the last {args.test_days} days"
        test = f"the last {args.test_days} days: {n_test:,} records"
    else:
        data = "handbook" + (
            f", {args.customers} customers sampled (seed {args.data_seed})"
            if args.customers
            else ""
        )
        train = f"records before {args.train_end}"
        test = f"{args.test_start} to {args.test_end} (exclusive): {n_test:,} records"
    return {
        "dataset": data,
        "epochs": args.epochs,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "python": sys.version.split()[0],
        "versions": package_versions(("torch", "numpy", "pandas", "scikit-learn", "vigil")),
        "rows": n_rows,
        "train": f"{train}: {n_normal_train:,} normal "
        f"({n_fit:,} sampled as training targets of the tabular models)",
        "test": test,
        "seed": args.seed,
        "models": args.models,
    }


def typology_rows(report: dict, label: str = "") -> list[str]:
    """Table rows (one per model) of a typology-set report; ``label`` prefixes the model."""
    rows = []
    for model, r in report["results"].items():
        a = r["all"]
        cells = [f"{r[t]['auroc']:.3f}" if t in r else "-" for t in TYPOLOGIES]
        cells += [
            f"{a['auroc']:.3f}",
            f"{a['auprc']:.3f}",
            f"{a['p_at_100_per_day']:.2f}",
            f"{a['p_at_1000_per_day']:.3f}",
            f"{a.get('holdout_fpr', float('nan')):.2%}",
            f"{a.get('recall_at_threshold', float('nan')):.2f}",
            f"{r['fit_seconds']:.0f}",
        ]
        rows.append(f"| {label}{model} | " + " | ".join(cells) + " |")
    return rows


TYPOLOGY_HEADER = [
    "| model | " + " | ".join(TYPOLOGIES) + " | all AUROC | AUPRC | P@100/day | P@1000/day "
    "| hold-out FPR | recall at threshold | fit s |",
    "|---|" + "---:|" * (len(TYPOLOGIES) + 7),
]


def scenario_table(results: dict) -> list[str]:
    """One row per model: AUROC, AUPRC and CP@100 overall, AUROC and AUPRC per scenario,
    and its fit time (the handbook's table, in process or through the CLI)."""
    header = "| model | all AUROC | all AUPRC | all CP@100 |"
    rule = "|---|---:|---:|---:|"
    for s in SCENARIOS:
        header += f" s{s} AUROC | s{s} AUPRC |"
        rule += "---:|---:|"
    lines = [header + " fit s |", rule + "---:|"]
    for model, r in results.items():
        cells = [f"{r['all']['auroc']:.4f}", f"{r['all']['auprc']:.3f}", f"{r['all']['cp100']:.3f}"]
        for s in SCENARIOS:
            part = r[f"scenario_{s}"]
            cells += [f"{part['auroc']:.4f}", f"{part['auprc']:.3f}"]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {r['fit_seconds']:.0f} |")
    return lines


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: per model, quality overall and per scenario (handbook) or per
    typology (typology set), fit time, and the one-day speed with kept state."""
    meta = report["meta"]
    if meta.get("dataset", "").startswith("generate_typology_set"):
        return [
            f"Data {meta['dataset']}; epochs {meta['epochs'] or 'default'}. Train: "
            f"{meta['train']}. Test: {meta['test']}. Typology columns: AUROC on the test "
            "normals + that typology's frauds. P@k/day: share of frauds among each test "
            "day's k highest scores. Hold-out FPR: the model's own 1%-FPR threshold on the "
            "test period's normals.",
            "",
            *TYPOLOGY_HEADER,
            *typology_rows(report),
        ]
    lines = [
        f"Seed {meta['seed']}, epochs {meta.get('epochs') or 'default'}. Train: {meta['train']}. "
        f"Test: {meta['test']}. Labels only keep known frauds out of the training targets. "
        "Scenario columns: normals + that scenario's frauds ("
        + "; ".join(f"s{k}: {v}" for k, v in SCENARIOS.items())
        + "). CP@100: Card Precision@100 per day, averaged over the test days.",
        "",
    ]
    lines += scenario_table(report["results"])
    timing = [
        f"Context features for all {meta['rows']:,} records: "
        f"{report['feature_build_seconds']:.1f} s."
    ]
    for model, day in report["one_day_seconds"].items():
        timing.append(
            f"One day with {model} ({day['records']:,} records, {day['history_records']:,} "
            f"kept history records): features {day['build']:.2f} s, features + scoring "
            f"{day['total']:.2f} s (median of 3)."
        )
    return [*lines, "", " ".join(timing)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["handbook", "typologies"], default="handbook")
    parser.add_argument("--data", default=None, help="Handbook CSV (default: shared datasets).")
    parser.add_argument(
        "--customers", type=int, default=None, help="Handbook: a seeded sample of customers."
    )
    parser.add_argument("--cards", type=int, default=2000, help="Typology set: cards.")
    parser.add_argument("--days", type=int, default=60, help="Typology set: days.")
    parser.add_argument("--test-days", type=int, default=12, help="Typology set: test days.")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="Keep the generated set here.")
    parser.add_argument("--context", default=None, help='JSON, e.g. {"profile_hours": true}')
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
    parser.add_argument("--out", required=True, help="the report (JSON)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
