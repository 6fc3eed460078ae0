"""Dev-pool benchmark: vigil's defaults across every tabular set in ../shared/datasets.

    python -m benchmarks devpool                 # vigil's VAE and GAN, KNN, LOF, encoded kNN
    python -m benchmarks devpool --only pyod     # refresh the cached PyOD baselines (slow)

Budgeted protocol (the machine is 2 shared cores): per set and seed, the normals are split
60/40 as in ``benchmarks.tabular`` (fit on the 60%, test on the 40% plus every anomaly),
then capped: at most ``--max-train`` training normals, ``--max-test-normals`` test
normals and ``--max-test-anomalies`` anomalies, each a seeded random subsample. Every cap
is in the results file. Only AUROC, AUPRC and fit seconds are measured (no throughput).
Defaults are chosen by the mean and the per-set wins over sets, never per set, and the
test labels are used only to measure.

The strongest simple baselines run beside vigil's detectors in the same run, on the same
splits and seeds: PyOD's KNN and LOF at their defaults (standardised features, as every
PyOD model here) and the kNN distance on vigil's own encoding (``vigil_encoded_knn``).
The deep PyOD baselines (DeepSVDD, AutoEncoder, IForest, ECOD at their defaults) cost
hours on a shared machine, so they are run once and cached: the ``pyod`` step of the
suite; the ``vigil`` step copies them into its report. The figures rank every detector
per set (mean rank), test each vigil detector against the best baseline (Wilcoxon
signed-rank over sets) and check each set against the kept figures (the suite's results
file): a set that loses more than 0.01 AUROC fails the check, loudly, in the report.

``--vae`` / ``--gan`` take JSON constructor overrides, e.g.
``--vae '{"latent_dim": 16}'`` (to try a candidate default); ``--tag`` names the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.comparison import (
    check_regressions,
    comparison,
    comparison_lines,
    kept_reference,
    regression_lines,
)
from benchmarks.datasets import NAMED, datasets_dir, load_dataset, split_normals
from benchmarks.tabular import (
    ENCODED_KNN,
    PYOD_MODELS,
    TARGET_FPR,
    EncodedKNN,
    _pyod_model,
    package_versions,
)
from detectors import GANDetector, VAEDetector, metrics

SHARED = ["cardio", "thyroid", "mammography", "shuttle", "creditcard_ulb"]
#: The suite's results file: its ``pyod`` step holds the cached baselines.
BASELINES = Path(__file__).resolve().parent / "results" / "devpool.json"
VIGIL = ("vigil_vae", "vigil_gan")


def load_baselines(path: Path) -> dict | None:
    """The cached PyOD report: a devpool report, or the suite's results file (its ``pyod``
    step); None when there is none."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if "steps" in data:
        data = data["steps"].get("pyod")
    return data if data and data.get("results") else None


def dev_sets() -> list[str]:
    """The 5 shared sets, then every .npz in ``adbench_dev/`` (sorted by ADBench number)."""
    folder = datasets_dir() / "adbench_dev"
    files = sorted(folder.glob("*.npz"), key=lambda p: int(p.stem.split("_")[1]))
    return SHARED + [str(p) for p in files]


def set_name(name_or_path: str) -> str:
    if name_or_path in NAMED:
        return name_or_path
    stem = Path(name_or_path).stem  # adbench_12_fault
    return stem.split("_", 2)[-1]


def capped_split(name: str, seed: int, caps: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dataset = load_dataset(name)
    split = split_normals(dataset, seed)
    rng = np.random.default_rng(10_000 + seed)

    def cap(rows: np.ndarray, limit: int | None) -> np.ndarray:
        if limit and len(rows) > limit:
            return np.sort(rng.choice(rows, limit, replace=False))
        return rows

    train = cap(np.arange(len(split.X_train)), caps["max_train"])
    normals = cap(np.flatnonzero(split.y_test == 0), caps["max_test_normals"])
    anomalies = cap(np.flatnonzero(split.y_test == 1), caps["max_test_anomalies"])
    test = np.concatenate([normals, anomalies])
    return split.X_train[train], split.X_test[test], split.y_test[test]


def fit_score(
    model: str, params: dict, X_train, X_test, seed: int
) -> tuple[np.ndarray, float, float]:
    """Scores of the test rows, fit wall seconds and fit CPU seconds of this process (the
    CPU time is the fairer figure on a shared machine: with 1 torch thread it is what the
    wall time would be on an idle core)."""
    torch.manual_seed(seed)
    started, cpu = time.perf_counter(), time.process_time()
    if model in ("vigil_vae", "vigil_gan"):
        cls = VAEDetector if model == "vigil_vae" else GANDetector
        det = cls(seed=seed, target_fpr=TARGET_FPR, **params)
        det.fit(X_train)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return det.decision_function(X_test), seconds, cpu
    if model == ENCODED_KNN:
        knn = EncodedKNN().fit(X_train)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        return knn.decision_function(X_test), seconds, cpu
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    det = _pyod_model(model, X_train.shape[1], seed)
    det.fit(scaler.transform(X_train))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    scores = np.asarray(det.decision_function(scaler.transform(X_test)), dtype="float64")
    return scores, seconds, cpu


def run(sets, models, seeds, caps, params, log=print, first_seed: int = 0) -> list[dict]:
    rows = []
    for name in sets:
        for seed in range(first_seed, first_seed + seeds):
            X_train, X_test, y_test = capped_split(name, seed, caps)
            for model in models:
                scores, seconds, cpu = fit_score(
                    model, params.get(model, {}), X_train, X_test, seed
                )
                if not np.all(np.isfinite(scores)):
                    scores = np.nan_to_num(scores, nan=np.nanmax(scores), posinf=1e300)
                row = {
                    "dataset": set_name(name),
                    "model": model,
                    "seed": seed,
                    "auroc": float(metrics.auroc(y_test, scores)),
                    "auprc": float(metrics.auprc(y_test, scores)),
                    "fit_seconds": float(seconds),
                    "fit_cpu_seconds": float(cpu),
                    "n_train": int(len(X_train)),
                    "n_test": int(len(y_test)),
                }
                rows.append(row)
                log(
                    f"{row['dataset']:>18} s{seed} {model:>16}: AUROC {row['auroc']:.3f} "
                    f"AUPRC {row['auprc']:.3f} fit {seconds:.1f}s (CPU {cpu:.1f}s)",
                )
    return rows


def _means(rows: list[dict], metric: str) -> pd.DataFrame:
    """Sets x models, the metric's mean over seeds, in the pool's order."""
    frame = pd.DataFrame(rows).groupby(["dataset", "model"])[metric].mean().unstack("model")
    order = [s for s in SHARED if s in frame.index]
    return frame.loc[order + sorted(set(frame.index) - set(order), key=str.lower)]


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: per-set AUROC of vigil's detectors (mean over seeds) beside the
    cached PyOD baselines and each set's best PyOD model; or, for the baselines' own run,
    their means."""
    meta, rows = report["meta"], report["results"]
    caps = ", ".join(f"{k} {v:,}" for k, v in meta["caps"].items())
    ours = [m for m in VIGIL if any(r["model"] == m for r in rows)]
    if not ours:
        auroc, auprc = _means(rows, "auroc"), _means(rows, "auprc")
        # One line: their per-set figures are the vigil step's table (cached columns).
        means = "; ".join(f"{m} {auroc[m].mean():.3f} / {auprc[m].mean():.3f}" for m in auroc)
        return [
            f"PyOD baselines on {len(auroc)} sets, caps {caps}, {meta.get('seeds', 1)} seed; "
            f"mean AUROC / AUPRC: {means}."
        ]
    auroc, auprc = _means(rows, "auroc"), _means(rows, "auprc")
    base = report.get("baselines")
    if base:
        cached_auroc, cached_auprc = (
            _means(base["results"], "auroc"),
            _means(base["results"], "auprc"),
        )
        cached = [c for c in cached_auroc.columns if c not in auroc.columns]
        auroc = auroc.join(cached_auroc[cached])
        auprc = auprc.join(cached_auprc[cached])
    else:
        cached = []
    fresh = [m for m in auroc.columns if m not in VIGIL and m not in cached]
    baselines = fresh + cached
    best = auroc[baselines].max(axis=1) if baselines else None
    seeds = sorted({r["seed"] for r in rows})
    lines = []
    if "regression_checked" in report:  # runs before the check existed were not checked
        lines = regression_lines(report["regressions"], report["regression_checked"])
    lines += [
        f"AUROC per set, capped protocol ({caps}); mean over seeds "
        f"{', '.join(map(str, seeds))} for "
        + ", ".join(ours + fresh)
        + " (fresh in this run)"
        + (f"; {', '.join(cached)}: the cached baselines, seed 0" if cached else "")
        + ". Best baseline: the best baseline on each set (an oracle no one model is).",
        "",
        "| set | "
        + " | ".join(ours + [b.removeprefix("pyod_") for b in baselines])
        + (" | best baseline |" if best is not None else " |"),
        "|---|" + "---:|" * (len(ours) + len(baselines) + (best is not None)),
    ]
    for name in auroc.index:
        cells = [f"{auroc.loc[name, m]:.3f}" for m in ours + baselines]
        if best is not None:
            cells.append(f"{best.get(name, float('nan')):.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cells = [f"**{auroc[m].mean():.3f}**" for m in ours + baselines]
    if best is not None:
        cells.append(f"{best.mean():.3f}")
    lines.append(f"| mean ({len(auroc)} sets) | " + " | ".join(cells) + " |")
    lines.append("")
    if baselines:
        result = comparison(auroc, auprc, ours, baselines)
        lines += ["Every detector of the table, ranked per set by AUROC (1 = best):", ""]
        lines += comparison_lines(result, ours + baselines)
    for m in ours:
        line = f"- {m}: mean AUPRC {auprc[m].mean():.3f}"
        if best is not None:
            wins = int((auroc[m] >= best).sum())
            line += f"; at or above each set's best baseline on {wins}/{len(auroc)} sets"
        lines.append(line + ".")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=None, help="default: the whole pool")
    parser.add_argument("--models", nargs="+", default=["vigil_vae", "vigil_gan"])
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1"
    )
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--max-test-normals", type=int, default=2000)
    parser.add_argument("--max-test-anomalies", type=int, default=1000)
    parser.add_argument("--vae", default="{}", help="JSON overrides for VAEDetector")
    parser.add_argument("--gan", default="{}", help="JSON overrides for GANDetector")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="default")
    parser.add_argument("--baselines", default=str(BASELINES), help="cached PyOD report")
    parser.add_argument(
        "--kept", default=str(BASELINES), help="the kept figures a set must not fall below"
    )
    parser.add_argument(
        "--accept-regressions",
        action="store_true",
        help="an intended change: report the lost sets, then keep the new figures as reference",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    unknown = set(args.models) - {"vigil_vae", "vigil_gan", ENCODED_KNN, *PYOD_MODELS}
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}")
    torch.set_num_threads(args.threads)
    caps = {
        "max_train": args.max_train,
        "max_test_normals": args.max_test_normals,
        "max_test_anomalies": args.max_test_anomalies,
    }
    params = {"vigil_vae": json.loads(args.vae), "vigil_gan": json.loads(args.gan)}
    sets = args.datasets or dev_sets()
    rows = run(
        sets,
        args.models,
        args.seeds,
        caps,
        params,
        log=lambda s: print(s, flush=True),
        first_seed=args.first_seed,
    )
    report = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "tag": args.tag,
            "torch_threads": args.threads,
            "versions": package_versions(("torch", "numpy", "scikit-learn", "pyod", "vigil")),
            "caps": caps,
            "seeds": args.seeds,
            "first_seed": args.first_seed,
            "params": params,
            "protocol": "60/40 split of normals per seed, then seeded caps on training "
            "normals, test normals and test anomalies",
        },
        "results": rows,
    }
    if set(args.models) & set(VIGIL):
        report["baselines"] = load_baselines(Path(args.baselines))
        kept = kept_reference(Path(args.kept), step="vigil")
        regressions, reference = check_regressions(
            rows, kept, list(VIGIL), accept=args.accept_regressions
        )
        report.update(regression_checked=bool(kept), regressions=regressions, reference=reference)
        for line in regression_lines(regressions, bool(kept)):
            if line:
                print(line, file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
