"""How the VAE's views should be fused, chosen across the dev pool with a half/half check.

    python -m benchmarks devpool --only views        # dump (cached) + choose, into RESULTS.md
    python -m benchmarks.devpool_views dump [--out-dir DIR] [--seeds 3]   # fit once, cache
    python -m benchmarks.devpool_views choose [--out-dir DIR] --out report.json

``dump`` fits the current default ``VAEDetector`` once per set and seed on the dev pool's
capped split (``benchmarks.devpool.capped_split``) and caches, for its training rows and
the test rows, every view a fused score could read: the four residual rules, the
k-means-prototype neighbourhood views, and exact k-th nearest distances (k 1 and 5) to a
seeded sample of R training rows (R 512, 1024, 2048) in the encoded input space and in
the latent space (training rows in the reference skip themselves). It also caches the
baselines' test scores: PyOD's KNN and LOF on standardised features, and the kNN
distance on vigil's own encoding.

``choose`` scores candidate fusions offline from the cache (no refit): each view divided
by its 99% training quantile and weighted, summed. A candidate is chosen by mean AUROC on
one half of the sets and confirmed on the other half, then the reverse: a default must
hold on sets it was not chosen on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.comparison import comparison
from benchmarks.devpool import capped_split, dev_sets, set_name
from detectors import GANDetector, VAEDetector, metrics
from detectors.parts import kth_distance, reference_mask

REFERENCE_SIZES = (512, 1024, 2048)
#: The candidate the VAE's defaults implement (``neighbour_rows=2048``,
#: ``neighbour_weight=8``, the residual rules and prototype views kept).
DEFAULT = "q99:cur+in_R2048_k1_w8"
BASELINES = ("pyod_knn", "pyod_lof", "vigil_encoded_knn")
#: Where ``dump`` caches the views (ignored by git, under the state folder).
CACHE = Path(__file__).resolve().parent.parent / ".vigil" / "bench" / "devpool_views"
KS = (1, 5)


def _knn_views(x_tr: torch.Tensor, x_te: torch.Tensor, seed: int) -> dict[str, tuple]:
    """Exact k-th nearest distances of training rows (skipping themselves when in the
    reference) and test rows to a seeded sample of R training rows, per (R, k)."""
    out = {}
    for size in REFERENCE_SIZES:
        mask = reference_mask(x_tr.shape[0], size, seed)
        ref = x_tr[torch.from_numpy(mask)]
        for k in KS:
            train = torch.empty(x_tr.shape[0], dtype=torch.float64)
            m = torch.from_numpy(mask)
            train[m] = kth_distance(x_tr[m], ref, k + 1)
            if (~m).any():
                train[~m] = kth_distance(x_tr[~m], ref, k)
            out[f"R{size}_k{k}"] = (train.numpy(), kth_distance(x_te, ref, k).numpy())
    return out


def dump_one(name: str, seed: int, caps: dict, folder: Path) -> None:
    path = folder / f"{set_name(name)}_s{seed}.npz"
    if path.exists():
        return
    X_train, X_test, y_test = capped_split(name, seed, caps)
    arrays: dict[str, np.ndarray] = {"y": y_test}
    det = VAEDetector(seed=seed).fit(X_train)
    train_idx, _ = det._split(len(X_train))
    x_tr = torch.from_numpy(det.encoder_.transform(X_train[train_idx]))
    x_te = torch.from_numpy(det.encoder_.transform(X_test))
    rules = lambda x: det._batched(lambda xb: det._ensemble_rules(xb)[0], x).numpy()  # noqa: E731
    arrays["rules_train"], arrays["rules_test"] = rules(x_tr), rules(x_te)
    with torch.inference_mode():
        z_tr = det.model_.encode(x_tr)[0]
        z_te = det.model_.encode(x_te)[0]
    for space, (a, b) in {"in": (x_tr, x_te), "z": (z_tr, z_te)}.items():
        for key, (tr, te) in _knn_views(a, b, seed).items():
            arrays[f"{space}_{key}_train"], arrays[f"{space}_{key}_test"] = tr, te
    arrays["vigil_vae_test"] = det.decision_function(X_test)
    # Baselines on the same split: PyOD's KNN and LOF on standardised features (as every
    # PyOD model in the devpool suite) and the kNN distance on vigil's own encoding.
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    s_tr, s_te = scaler.transform(X_train), scaler.transform(X_test)
    arrays["pyod_knn_test"] = KNN().fit(s_tr).decision_function(s_te)
    arrays["pyod_lof_test"] = LOF().fit(s_tr).decision_function(s_te)
    enc_tr = torch.from_numpy(det.encoder_.transform(X_train))
    arrays["vigil_encoded_knn_test"] = kth_distance(x_te, enc_tr, 5).numpy()
    np.savez(path, **arrays)


def dump_gan(name: str, seed: int, caps: dict, folder: Path) -> None:
    """The default GAN's test scores on the same split (its own views are model-bound; the
    neighbour views it could add are the VAE dump's, on the same encoding and split)."""
    path = folder / f"{set_name(name)}_s{seed}.gan.npz"
    if path.exists():
        return
    X_train, X_test, y_test = capped_split(name, seed, caps)
    det = GANDetector(seed=seed).fit(X_train)
    np.savez(path, y=y_test, vigil_gan_test=det.decision_function(X_test))


# --------------------------------------------------------------------------- choose
def _scaled(data: dict, key: str, scale: str = "q99") -> np.ndarray:
    """A cached view's test scores over a scale read off its training scores: the 99%
    quantile ("q99", the VAE's rule), the 99% quantile less the median ("span"), or the
    training-tail surprisal ("tail": -log of the share of training rows at or above the
    score, beyond the largest one growing linearly in units of the top 5%'s mean excess)."""
    tr, te = data[f"{key}_train"], data[f"{key}_test"]
    if tr.ndim == 1:
        tr, te = tr[:, None], te[:, None]
        squeeze = True
    else:
        squeeze = False
    if scale == "tail":
        out = np.empty_like(te, dtype=np.float64)
        for j in range(tr.shape[1]):
            ordered = np.sort(tr[:, j])
            n = len(ordered)
            above = n - np.searchsorted(ordered, te[:, j], side="left")
            surprisal = -np.log((above + 1) / (n + 1))
            top = ordered[int(0.95 * n) :]
            excess = max(float((top - top[0]).mean()), 1e-12)
            beyond = te[:, j] > ordered[-1]
            surprisal[beyond] = np.log(n + 1) + (te[beyond, j] - ordered[-1]) / excess
            out[:, j] = surprisal
    else:
        q = np.quantile(tr, 0.99, axis=0)
        if scale == "span":
            q = q - np.median(tr, axis=0)
        out = te / np.maximum(q, 1e-12)
    return out[:, 0] if squeeze else out


def candidates() -> dict[str, tuple[str, list[tuple[str, int | None, float]]]]:
    """Name -> (scale, [(cached key, column or None, weight)])."""
    rules = [("rules", j, 1.0) for j in range(4)]
    current = rules + [("rules", 4, 1.0), ("rules", 5, 1.0)]
    out = {"current": ("q99", current), "rules_only": ("q99", rules)}
    # "span" and "tail" scales were tried on seed 0 too: never better than "q99".
    for scale in ("q99",):
        for space, size, k, w in itertools.product(
            ("in", "z", "both"), REFERENCE_SIZES, KS, (2.0, 4.0, 8.0, 16.0)
        ):
            spaces = ("in", "z") if space == "both" else (space,)
            extra = [(f"{s}_R{size}_k{k}", None, w) for s in spaces]
            out[f"{scale}:cur+{space}_R{size}_k{k}_w{w:g}"] = (scale, current + extra)
            out[f"{scale}:rules+{space}_R{size}_k{k}_w{w:g}"] = (scale, rules + extra)
        for space, size, k in itertools.product(("in", "z", "both"), REFERENCE_SIZES, KS):
            spaces = ("in", "z") if space == "both" else (space,)
            out[f"{scale}:knn_{space}_R{size}_k{k}"] = (
                scale,
                [(f"{s}_R{size}_k{k}", None, 1.0) for s in spaces],
            )
    return out


def fused(data: dict, recipe) -> np.ndarray:
    scale, parts = recipe
    score = np.zeros(len(data["y"]))
    cache: dict[str, np.ndarray] = {}
    for key, col, w in parts:
        if key not in cache:
            cache[key] = _scaled(data, key, scale)
        part = cache[key]
        score += w * (part[:, col] if col is not None else part)
    return score


def choose(folder: Path) -> dict:
    files = sorted(f for f in folder.glob("*_s*.npz") if not f.name.endswith(".gan.npz"))
    by_set: dict[str, list[dict]] = {}
    for f in files:
        with np.load(f) as npz:
            by_set.setdefault(f.stem.rsplit("_s", 1)[0], []).append(dict(npz))
    sets = sorted(by_set, key=str.lower)
    recipes = candidates()
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in sets:
        for model in ("vigil_vae", *BASELINES):
            runs = by_set[name]
            table.setdefault(model, {})[name] = {
                "auroc": float(np.mean([metrics.auroc(d["y"], d[f"{model}_test"]) for d in runs])),
                "auprc": float(np.mean([metrics.auprc(d["y"], d[f"{model}_test"]) for d in runs])),
            }
        for cand, recipe in recipes.items():
            runs = by_set[name]
            scores = [fused(d, recipe) for d in runs]
            table.setdefault(cand, {})[name] = {
                "auroc": float(
                    np.mean([metrics.auroc(d["y"], s) for d, s in zip(runs, scores, strict=True)])
                ),
                "auprc": float(
                    np.mean([metrics.auprc(d["y"], s) for d, s in zip(runs, scores, strict=True)])
                ),
            }
    return report_from_table(table, sets, sorted({len(v) for v in by_set.values()}))


def report_from_table(table: dict, sets: list[str], seeds: list[int]) -> dict:
    """The half/half check and the ranking from the per-set table (candidate or model ->
    set -> {"auroc", "auprc"}, means over seeds)."""
    recipes = candidates()
    rng = np.random.default_rng(2024)
    order = list(rng.permutation(sets))
    halves = [sorted(order[: len(order) // 2]), sorted(order[len(order) // 2 :])]

    def mean(model: str, part: list[str], metric: str = "auroc") -> float:
        return float(np.mean([table[model][s][metric] for s in part]))

    checks = []
    for a, b in ((0, 1), (1, 0)):
        best = max(recipes, key=lambda c: mean(c, halves[a]))
        checks.append(
            {
                "chosen_on": halves[a],
                "confirmed_on": halves[b],
                "chosen": best,
                "chosen_half_auroc": mean(best, halves[a]),
                "other_half_auroc": mean(best, halves[b]),
                "other_half_current": mean("current", halves[b]),
                "other_half_pyod_knn": mean("pyod_knn", halves[b]),
                "other_half_pyod_lof": mean("pyod_lof", halves[b]),
            }
        )
    ranking = sorted(recipes, key=lambda c: -mean(c, sets))
    kept = ["vigil_vae", *BASELINES, "current", DEFAULT, *{c["chosen"] for c in checks}]
    report = {
        "default": DEFAULT,
        "sets": sets,
        "halves": halves,
        "checks": checks,
        "top": [
            {
                "candidate": c,
                "auroc": mean(c, sets),
                "auprc": mean(c, sets, "auprc"),
                "half0": mean(c, halves[0]),
                "half1": mean(c, halves[1]),
            }
            for c in ranking[:25]
        ],
        "baselines": {
            m: {"auroc": mean(m, sets), "auprc": mean(m, sets, "auprc")}
            for m in ("vigil_vae", *BASELINES, "current", DEFAULT)
        },
        "comparison": _comparison(table, sets),
        "default_halves": [mean(DEFAULT, h) for h in halves],
        "knn_halves": [mean("pyod_knn", h) for h in halves],
        "per_set": {m: table[m] for m in kept},
        "candidates": len(recipes),
        "seeds_per_set": seeds,
    }
    return report


def _comparison(table: dict, sets: list[str]) -> dict:
    """Mean rank over the default, the previous VAE and the baselines, and the default
    against the best baseline (Wilcoxon signed-rank over the sets)."""
    names = {DEFAULT: "vigil_vae (default)", "current": "vigil_vae (previous)"}
    names.update({b: b for b in BASELINES})

    def frame(metric: str) -> pd.DataFrame:
        return pd.DataFrame(
            {label: [table[key][s][metric] for s in sets] for key, label in names.items()},
            index=sets,
        )

    return comparison(frame("auroc"), frame("auprc"), [names[DEFAULT]], list(BASELINES))


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: the half/half check, the chosen default, the best three candidates
    and the default's mean rank (the whole table is in the results JSON)."""
    base = report["baselines"]
    lines = [
        f"{report['candidates']} candidate fusions of the VAE's views scored offline from "
        f"one fit per set and seed ({len(report['sets'])} sets, capped protocol as the "
        "vigil step). Each view in units of its 99% training quantile, weighted, summed. "
        "Candidates are named scale:base+space_Rrows_kK_wWeight (base: cur = the four "
        "residual rules and the prototype views, rules = the rules alone; space: in = the "
        "encoded input, z = the latent means; R: the reference sample; k: the neighbour). "
        "Half/half check: chosen by mean AUROC on one half of the sets, confirmed on the "
        "other half.",
        "",
        "| chosen on | chosen | AUROC there | AUROC on the other half | previous VAE there "
        "| PyOD KNN there |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for i, check in enumerate(report["checks"]):
        lines.append(
            f"| half {i + 1} ({len(check['chosen_on'])} sets) | {check['chosen']} | "
            f"{check['chosen_half_auroc']:.3f} | {check['other_half_auroc']:.3f} | "
            f"{check['other_half_current']:.3f} | {check['other_half_pyod_knn']:.3f} |"
        )
    h = report["default_halves"]
    k = report["knn_halves"]
    lines += [
        "",
        f"The default ({report['default']}): mean AUROC {base[report['default']]['auroc']:.3f} "
        f"(half 1 {h[0]:.3f}, half 2 {h[1]:.3f}); PyOD KNN {base['pyod_knn']['auroc']:.3f} "
        f"(half 1 {k[0]:.3f}, half 2 {k[1]:.3f}); the previous VAE "
        f"{base['current']['auroc']:.3f}. Halves: "
        + "; ".join(f"half {i + 1}: " + ", ".join(part) for i, part in enumerate(report["halves"]))
        + ".",
        "",
        # The runners-up in one line (their halves are in the JSON).
        "Best candidates by mean AUROC / AUPRC: "
        + "; ".join(
            f"{row['candidate']} {row['auroc']:.3f} / {row['auprc']:.3f}"
            for row in report["top"][:3]
        )
        + ".",
    ]
    if report.get("comparison"):
        # One line: the full table of the same detectors is the vigil step's.
        result = report["comparison"]
        ranked = sorted(result["mean_rank"], key=result["mean_rank"].get)
        lines += [
            "",
            "Mean rank beside the baselines (3 seeds, all sets): "
            + ", ".join(f"{m} {result['mean_rank'][m]:.2f}" for m in ranked)
            + ".",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "action", nargs="?", default="all", choices=["all", "dump", "dump-gan", "choose"]
    )
    parser.add_argument("--out-dir", default=str(CACHE), help="the cached views")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="*", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    folder = Path(args.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if args.action in ("all", "dump", "dump-gan"):
        caps = {"max_train": 2000, "max_test_normals": 2000, "max_test_anomalies": 1000}
        dump = dump_one if args.action == "dump" else dump_gan
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in args.datasets or dev_sets():
                dump(name, seed, caps, folder)
                print(f"dumped {set_name(name)} seed {seed}", flush=True)
        if args.action != "all":
            return 0
    report = choose(folder)
    Path(args.out or folder / "choice.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("checks", "baselines")}, indent=1))
    for row in report["top"][:12]:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
