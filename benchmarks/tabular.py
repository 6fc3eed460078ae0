"""Tabular benchmark: vigil's VAE and GAN detectors side by side with PyOD on real data.

    python -m benchmarks tabular [--datasets cardio thyroid ...] [--seeds 3]

Protocol (the one users live in): per seed, split the normal records 60/40; fit on the 60%
normals only (scaling fitted there too); test on the other 40% normals plus all anomalies.
Every model's threshold is set on held-out *training* normals for a 1% false-positive
target (vigil: its internal 20% validation split; PyOD: fit on 80% of the training
normals, calibrate on the other 20%), so the threshold never sees test labels.

Baselines in the same run: PyOD's KNN and LOF (its strongest classical detectors on the
one-class ADBench tables) and the kNN distance on vigil's own encoding, beside PyOD's
deep models. The figures rank every detector per set (mean rank), test each vigil
detector against the best baseline (Wilcoxon signed-rank over sets) and check each set
against the kept figures (``results/tabular.json``): a set that loses more than 0.01
AUROC fails the check, loudly, in the report.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from benchmarks.comparison import (
    check_regressions,
    comparison,
    comparison_lines,
    kept_reference,
    regression_lines,
)
from benchmarks.datasets import NAMED, Split, load_dataset, split_normals
from detectors import GANDetector, Threshold, VAEDetector, metrics
from detectors.encoding import as_frame
from detectors.parts import kth_distance, reference_side

DEFAULT_DATASETS = ["cardio", "thyroid", "mammography", "shuttle", "creditcard_ulb"]
VIGIL_MODELS = ["vigil_vae", "vigil_gan"]
PYOD_MODELS = [
    "pyod_vae",
    "pyod_autoencoder",
    "pyod_deepsvdd",
    "pyod_alad",
    "pyod_iforest",
    "pyod_ecod",
    "pyod_knn",
    "pyod_lof",
]
#: The kNN distance (k = 5, the k-th nearest, as PyOD's KNN) on vigil's own encoding.
ENCODED_KNN = "vigil_encoded_knn"
BASELINES = [*PYOD_MODELS, ENCODED_KNN]
TARGET_FPR = 0.01
#: The suite's results file: the kept figures a new run is checked against.
KEPT = Path(__file__).resolve().parent / "results" / "tabular.json"


@dataclass
class Fitted:
    score: Callable[[np.ndarray], np.ndarray]
    threshold: float
    fit_seconds: float
    # Given the test rows, returns a function that runs only the network on them.
    bare_forward: Callable[[np.ndarray], Callable[[object], None]] | None = None
    # The scorer users are served (the VAE's numpy forward, as the bundle loads it).
    served: Callable[[np.ndarray], np.ndarray] | None = None


def fit_vigil(kind: str, X_train: np.ndarray, seed: int, overrides: dict) -> Fitted:
    cls = VAEDetector if kind == "vigil_vae" else GANDetector
    detector = cls(seed=seed, target_fpr=TARGET_FPR, **overrides)
    started = time.perf_counter()
    detector.fit(X_train)
    fit_seconds = time.perf_counter() - started

    def bare_forward(X: np.ndarray) -> Callable[[object], None]:
        """The same network and score on a tensor encoded beforehand (encoding is not
        timed): the ceiling for scoring speed."""
        encoded = torch.from_numpy(detector.encoder_.transform(X))
        detector.model_.eval()

        def forward(_: object) -> None:
            with torch.inference_mode():
                for start in range(0, len(encoded), 8192):
                    detector._score_batch(encoded[start : start + 8192])

        return forward

    served = None
    if isinstance(detector, VAEDetector):
        import tempfile

        from detectors.numpy_forward import load_numpy_vae

        with tempfile.TemporaryDirectory() as folder:
            detector.save(folder)
            numpy_vae = load_numpy_vae(folder)
        served = numpy_vae.decision_function if numpy_vae is not None else None
    return Fitted(
        score=detector.decision_function,
        threshold=float(detector.threshold_.value),
        fit_seconds=fit_seconds,
        bare_forward=bare_forward,
        served=served,
    )


def _pyod_model(kind: str, n_features: int, seed: int):
    if kind == "pyod_vae":
        from pyod.models.vae import VAE

        return VAE(random_state=seed, verbose=0)
    if kind == "pyod_autoencoder":
        from pyod.models.auto_encoder import AutoEncoder

        return AutoEncoder(random_state=seed, verbose=0)
    if kind == "pyod_deepsvdd":
        from pyod.models.deep_svdd import DeepSVDD

        return DeepSVDD(n_features=n_features, random_state=seed, verbose=0)
    if kind == "pyod_alad":
        from pyod.models.alad import ALAD

        return ALAD(verbose=0)
    if kind == "pyod_iforest":
        from pyod.models.iforest import IForest

        return IForest(random_state=seed)
    if kind == "pyod_ecod":
        from pyod.models.ecod import ECOD

        return ECOD()
    if kind == "pyod_knn":
        from pyod.models.knn import KNN

        return KNN()  # PyOD's defaults: k = 5, the largest of the 5 distances
    if kind == "pyod_lof":
        from pyod.models.lof import LOF

        return LOF()  # PyOD's defaults: 20 neighbours
    raise ValueError(f"unknown model {kind}")


def fit_pyod(kind: str, X_train: np.ndarray, seed: int) -> Fitted:
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed + 1000)
    order = rng.permutation(len(X_train))
    n_cal = max(1, int(round(0.2 * len(X_train))))
    calibration, fit_rows = X_train[order[:n_cal]], X_train[order[n_cal:]]
    torch.manual_seed(seed)
    started = time.perf_counter()
    scaler = StandardScaler().fit(fit_rows)
    model = _pyod_model(kind, X_train.shape[1], seed)
    model.fit(scaler.transform(fit_rows))
    fit_seconds = time.perf_counter() - started

    def score(X: np.ndarray) -> np.ndarray:
        return np.asarray(model.decision_function(scaler.transform(X)), dtype="float64")

    threshold = Threshold.for_fpr(score(calibration), TARGET_FPR).value
    return Fitted(score=score, threshold=float(threshold), fit_seconds=fit_seconds)


class EncodedKNN:
    """The kNN baseline on vigil's own encoding: ``TabularEncoder`` (robust scaling, one-hot)
    then the distance to the 5th nearest training row, exact, in batched matrix products."""

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def fit(self, X: np.ndarray) -> EncodedKNN:
        from detectors.encoding import TabularEncoder

        self.encoder_ = TabularEncoder().fit(as_frame(X))
        reference = torch.from_numpy(self.encoder_.transform(as_frame(X)))
        self.reference_ = reference
        self.prepared_ = reference_side(reference)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(self.encoder_.transform(as_frame(X)))
        parts = [
            kth_distance(x[i : i + 4096], self.reference_, self.k, self.prepared_)
            for i in range(0, len(x), 4096)
        ]
        return torch.cat(parts).numpy() if parts else np.empty(0)


def fit_encoded_knn(X_train: np.ndarray, seed: int) -> Fitted:
    """As ``fit_pyod``: fit on 80% of the training normals, threshold on the other 20%."""
    rng = np.random.default_rng(seed + 1000)
    order = rng.permutation(len(X_train))
    n_cal = max(1, int(round(0.2 * len(X_train))))
    calibration, fit_rows = X_train[order[:n_cal]], X_train[order[n_cal:]]
    started = time.perf_counter()
    model = EncodedKNN().fit(fit_rows)
    fit_seconds = time.perf_counter() - started
    threshold = Threshold.for_fpr(model.decision_function(calibration), TARGET_FPR).value
    return Fitted(
        score=model.decision_function, threshold=float(threshold), fit_seconds=fit_seconds
    )


def rows_per_second(fn: Callable[[np.ndarray], object], X: np.ndarray, min_seconds: float) -> float:
    """Throughput over repeated passes (at least ``min_seconds`` of work) after a warm-up."""
    fn(X)
    rows, started = 0, time.perf_counter()
    while True:
        fn(X)
        rows += len(X)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return rows / elapsed


def served_speed(fn: Callable[[np.ndarray], object], X: np.ndarray, min_seconds: float):
    """Rows per wall second and per CPU second of this process (the fairer figure on a
    shared machine) of the scorer users are served, after a warm-up."""
    fn(X)
    rows, started, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        fn(X)
        rows += len(X)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return rows / elapsed, rows / max(time.process_time() - cpu, 1e-9)


def evaluate(fitted: Fitted, split: Split, min_seconds: float) -> dict:
    scores = fitted.score(split.X_test)
    precision, recall = metrics.precision_recall_at(fitted.threshold, split.y_test, scores)
    result = {
        "auroc": metrics.auroc(split.y_test, scores),
        "auprc": metrics.auprc(split.y_test, scores),
        "precision_at_threshold": float(precision),
        "recall_at_threshold": float(recall),
        "test_fpr": metrics.fpr_at(fitted.threshold, scores[split.y_test == 0]),
        "fit_seconds": fitted.fit_seconds,
        "score_rows_per_s": rows_per_second(fitted.score, split.X_test, min_seconds),
    }
    if fitted.served is not None:
        result["served_rows_per_s"], result["served_rows_per_cpu_s"] = served_speed(
            fitted.served, split.X_test, min_seconds
        )
    if fitted.bare_forward is not None:
        result["bare_forward_rows_per_s"] = rows_per_second(
            fitted.bare_forward(split.X_test), split.X_test, min_seconds
        )
    return {k: float(v) for k, v in result.items()}


def run(
    datasets: list[str],
    models: list[str],
    seeds: int,
    *,
    label_col: str | None = None,
    vigil_overrides: dict | None = None,
    max_rows: int | None = None,
    min_seconds: float = 0.5,
    log: Callable[[str], None] = print,
) -> dict:
    torch.set_num_threads(2)
    rows = []
    for name in datasets:
        dataset = load_dataset(name, label_col=label_col)
        if max_rows and len(dataset.y) > max_rows:
            keep = np.random.default_rng(0).choice(len(dataset.y), max_rows, replace=False)
            dataset.X, dataset.y = dataset.X[np.sort(keep)], dataset.y[np.sort(keep)]
        for seed in range(seeds):
            split = split_normals(dataset, seed)
            for model in models:
                if model in VIGIL_MODELS:
                    fitted = fit_vigil(model, split.X_train, seed, vigil_overrides or {})
                elif model == ENCODED_KNN:
                    fitted = fit_encoded_knn(split.X_train, seed)
                else:
                    fitted = fit_pyod(model, split.X_train, seed)
                result = evaluate(fitted, split, min_seconds)
                rows.append({"dataset": dataset.name, "model": model, "seed": seed, **result})
                log(
                    f"{dataset.name:>14} seed {seed} {model:>16}: AUROC {result['auroc']:.3f} "
                    f"AUPRC {result['auprc']:.3f} FPR {result['test_fpr']:.3f} "
                    f"fit {result['fit_seconds']:.1f}s {result['score_rows_per_s']:,.0f} rows/s"
                )
    return {"meta": _meta(datasets, models, seeds), "results": rows}


def package_versions(packages: tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions (None where a package is missing), for the results files."""

    def v(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    return {p: v(p) for p in packages}


def _meta(datasets, models, seeds) -> dict:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{platform.processor() or platform.platform()}",
        "python": sys.version.split()[0],
        "versions": package_versions(("torch", "numpy", "scikit-learn", "pyod", "vigil")),
        "datasets": datasets,
        "models": models,
        "seeds": seeds,
        "protocol": "fit on 60% of normals; test on 40% normals + all anomalies; threshold "
        "for 1% FPR set on held-out training normals",
    }


def summarise(report: dict) -> dict:
    """Mean and std over seeds per (dataset, model), and the mean over data sets."""
    import pandas as pd

    frame = pd.DataFrame(report["results"])
    numeric = [c for c in frame.columns if c not in {"dataset", "model", "seed"}]
    grouped = frame.groupby(["model", "dataset"])[numeric]
    mean, std = grouped.mean(), grouped.std(ddof=0).fillna(0.0)
    per_dataset: dict = {}
    for (model, dataset), row in mean.iterrows():
        per_dataset.setdefault(model, {})[dataset] = {
            k: {"mean": float(row[k]), "std": float(std.loc[(model, dataset), k])}
            for k in numeric
            if not np.isnan(row[k])
        }
    overall = {
        model: {k: float(v) for k, v in mean.loc[model].mean().items() if not np.isnan(v)}
        for model in mean.index.get_level_values(0).unique()
    }
    worst_seed_gap = {}
    for model, part in frame.groupby("model"):
        by = part.groupby("dataset")["auroc"]
        worst_seed_gap[model] = float((by.transform("mean") - part["auroc"]).max())
    auroc, auprc = per_set_means(report["results"])
    ours = [m for m in VIGIL_MODELS if m in auroc.columns]
    baselines = [m for m in auroc.columns if m not in VIGIL_MODELS]
    return {
        "per_dataset": per_dataset,
        "overall": overall,
        "worst_seed_auroc_gap": worst_seed_gap,
        "comparison": comparison(auroc, auprc, ours, baselines),
    }


def per_set_means(rows: list[dict]):
    """(AUROC, AUPRC) as sets x models frames, each the mean over seeds."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    if "auprc" not in frame.columns:
        frame["auprc"] = np.nan
    grouped = frame.groupby(["dataset", "model"])
    return grouped["auroc"].mean().unstack("model"), grouped["auprc"].mean().unstack("model")


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: per model, AUROC per set and the means over sets (seeds averaged)."""
    summary = report.get("summary") or summarise(report)
    meta = report["meta"]
    datasets = meta["datasets"]
    models = [m for m in meta["models"] if m in summary["overall"]]
    lines = []
    if "regression_checked" in report:  # runs before the check existed were not checked
        lines = regression_lines(report["regressions"], report["regression_checked"])
    if meta.get("carried"):
        lines += [
            f"Not rerun (slow), carried from the kept run of {meta['carried']['from']}: "
            + ", ".join(meta["carried"]["models"])
            + ".",
            "",
        ]
    lines += [
        f"Protocol: {meta['protocol']}; {meta['seeds']} seeds (AUROC per set: mean ± std over "
        f"seeds). Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
        + ". Worst seed: the largest drop of one seed's AUROC below its set's mean. Scoring "
        "rows/s: the detector's own decision_function (torch for vigil's); served rows per CPU "
        "s: the VAE's numpy forward, which the model bundle scores with, per CPU second of "
        "the process (the fairer figure on a shared machine).",
        "",
        "| model | " + " | ".join(datasets) + " | mean AUROC | mean AUPRC | FPR at the 1% "
        "threshold | recall there | fit s | scoring rows/s | served rows per CPU s | worst seed |",
        "|---|" + "---:|" * (len(datasets) + 8),
    ]
    for model in models:
        per_set = summary["per_dataset"][model]
        cells = [_cell(per_set.get(d, {}).get("auroc"), "auroc") for d in datasets]
        overall = summary["overall"][model]
        for metric in (
            "auroc",
            "auprc",
            "test_fpr",
            "recall_at_threshold",
            "fit_seconds",
            "score_rows_per_s",
            "served_rows_per_cpu_s",
        ):
            value = overall.get(metric)
            cells.append(_cell({"mean": value}, metric) if value is not None else "")
        cells.append(f"{summary['worst_seed_auroc_gap'][model]:.3f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if summary.get("comparison"):
        lines += ["", "Every detector of this run, ranked per set by AUROC (1 = best):", ""]
        lines += comparison_lines(summary["comparison"], models)
    return lines


def _cell(cell: dict | None, metric: str, bold: bool = False) -> str:
    if not cell or cell.get("mean") is None:
        return ""
    mean, std = cell["mean"], cell.get("std", 0.0)
    if metric in ("score_rows_per_s", "served_rows_per_cpu_s"):
        text = f"{mean:,.0f}"
    elif metric == "fit_seconds":
        text = f"{mean:.1f}"
    elif metric in {"test_fpr", "recall_at_threshold"}:
        text = f"{mean:.1%}"
    else:
        text = f"{mean:.3f}" + (f" ± {std:.3f}" if std and not bold else "")
    return f"**{text}**" if bold else text


def carry_kept_models(report: dict, kept_path: Path) -> None:
    """Rows of the kept run for the baselines this run left out (the slow deep ones), on
    the same sets and seeds, so every figure stays in one table; ``meta["carried"]`` names
    them and the date of the run they come from."""
    if not kept_path.exists():
        return
    kept = json.loads(kept_path.read_text())
    meta = report["meta"]
    ran = set(meta["models"])
    seeds = set(range(meta["seeds"]))
    rows = [
        r
        for r in kept.get("results", [])
        if r["model"] not in ran
        and r["model"] in BASELINES  # never an older version of vigil's own detectors
        and r["dataset"] in meta["datasets"]
        and r["seed"] in seeds
    ]
    if not rows:
        return
    carried = sorted({r["model"] for r in rows}, key=[*VIGIL_MODELS, *BASELINES].index)
    report["results"] += rows
    meta["models"] = [*meta["models"], *carried]
    meta["carried"] = {
        "models": carried,
        "from": (kept.get("runner") or {}).get("date") or kept["meta"].get("date"),
    }


def add_regression_check(report: dict, kept_path: Path, accept: bool = False) -> None:
    """Compare vigil's per-set AUROC with the kept figures; say it loudly where one lost
    more than the tolerance (in the report, RESULTS.md and on stderr)."""
    kept = kept_reference(kept_path)
    regressions, reference = check_regressions(report["results"], kept, VIGIL_MODELS, accept)
    report["regression_checked"] = bool(kept)
    report["regressions"] = regressions
    report["reference"] = reference
    for line in regression_lines(regressions, bool(kept)):
        if line:
            print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=DEFAULT_DATASETS,
        help=f"named sets ({', '.join(NAMED)}) or file paths",
    )
    parser.add_argument("--data", nargs="*", default=[], help="extra .npz/CSV/Parquet files")
    parser.add_argument("--label-col", default=None, help="label column of --data files")
    parser.add_argument("--models", nargs="+", default=VIGIL_MODELS + PYOD_MODELS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", required=True, help="the report (JSON)")
    parser.add_argument("--max-rows", type=int, default=None, help="subsample (smoke runs)")
    parser.add_argument("--epochs", type=int, default=None, help="override vigil epochs (smoke)")
    parser.add_argument(
        "--kept", default=str(KEPT), help="the kept figures a set must not fall below"
    )
    parser.add_argument(
        "--accept-regressions",
        action="store_true",
        help="an intended change: report the lost sets, then keep the new figures as reference",
    )
    args = parser.parse_args(argv)
    overrides = {"epochs": args.epochs} if args.epochs else {}
    report = run(
        args.datasets + args.data,
        args.models,
        args.seeds,
        label_col=args.label_col,
        vigil_overrides=overrides,
        max_rows=args.max_rows,
        min_seconds=0.05 if args.max_rows else 0.5,
    )
    add_regression_check(report, Path(args.kept), accept=args.accept_regressions)
    if not args.max_rows:
        carry_kept_models(report, Path(args.kept))
    report["summary"] = summarise(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
