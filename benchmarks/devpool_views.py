"""Cheaper neighbourhood views, screened on the dev pool from ONE fit per set and model.

    python -m benchmarks.devpool_views --model vae --dump DIR      # fits, writes raw views
    python -m benchmarks.devpool_views --model vae --dump DIR --combos OUT.json

The shipped kNN views (issue 12) measure the distance to the 5th nearest of up to 2,048
reference rows; a top-k over 2,048 distances per row and view made scoring 3-19x slower.
This screen fits the shipped detector once per set (capped split of
``benchmarks.devpool``, seed 0), then measures each view on the detector's training,
held-out (validation) and test rows against cheaper references, all chosen without labels:

- ``ex5``: the shipped view, 5th nearest of every training row (the reference on capped sets);
- ``rM``: nearest of a seeded random sample of M training rows;
- ``kmM``: nearest of M k-means centres of the training rows (one k-means run, seeded);

in the encoded input space (``x``) and the latent space (``z``: the VAE's posterior means,
the GAN's codes E(x)). ``--combos`` then scores the detector's own terms plus ``w`` times
both views, each view over its 99% training quantile (VAE, like the residual rules) or its
held-out quantile or median (``val``). Test labels are used only to measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans

from benchmarks.devpool import SHARED, capped_split, dev_sets, set_name
from detectors import GANDetector, VAEDetector, metrics

RANDOM_SIZES = (256, 512)
KMEANS_SIZES = (64, 128, 256)


def nearest(ref: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row of ``q`` to its k-th nearest row of ``ref``."""
    r = torch.from_numpy(ref.astype(np.float32))
    k = max(1, min(k, len(ref)))
    out = []
    for i in range(0, len(q), 1024):
        d = torch.cdist(torch.from_numpy(q[i : i + 1024].astype(np.float32)), r)
        out.append(d.topk(k, dim=1, largest=False).values[:, -1])
    return torch.cat(out).double().numpy()


def view_variants(train: np.ndarray, val: np.ndarray, test: np.ndarray, seed: int) -> dict:
    """{variant: (train, val, test) distances} for one space."""
    out = {"ex5": (nearest(train, train, 6), nearest(train, val, 5), nearest(train, test, 5))}
    rng = np.random.default_rng([seed, 2])
    for m in RANDOM_SIZES:
        pick = rng.choice(len(train), min(m, len(train)), replace=False)
        member = np.zeros(len(train), bool)
        member[pick] = True
        ref = train[pick]
        tr = np.empty(len(train))
        tr[member] = nearest(ref, train[member], 2)
        if (~member).any():
            tr[~member] = nearest(ref, train[~member], 1)
        out[f"r{m}"] = (tr, nearest(ref, val, 1), nearest(ref, test, 1))
    for m in KMEANS_SIZES:
        m_eff = min(m, len(train))
        km = KMeans(n_clusters=m_eff, n_init=1, max_iter=100, random_state=seed).fit(train)
        c = km.cluster_centers_
        out[f"km{m}"] = (nearest(c, train, 1), nearest(c, val, 1), nearest(c, test, 1))
    return out


def fit_dump(model: str, name: str, seed: int, caps: dict, folder: Path) -> None:
    X_train, X_test, y_test = capped_split(name, seed, caps)
    det = (VAEDetector if model == "vae" else GANDetector)(seed=seed)
    started = time.process_time()
    det.fit(X_train)
    fit_cpu = time.process_time() - started
    tr_idx, va_idx = det._split(len(X_train))
    rows = {
        "train": torch.from_numpy(det.encoder_.transform(X_train[tr_idx])),
        "val": torch.from_numpy(det.encoder_.transform(X_train[va_idx])),
        "test": torch.from_numpy(det.encoder_.transform(X_test)),
    }
    arrays: dict[str, np.ndarray] = {"y": y_test, "fit_cpu": np.array(fit_cpu)}
    latent = {}
    for part, x in rows.items():
        if model == "vae":
            rules = det._batched(lambda b: det._ensemble_rules(b)[0][:, :4], x).numpy()
            for i in range(4):
                arrays[f"r{i}__{part}"] = rules[:, i]
            latent[part] = det._batched(lambda b: det.model_.encode(b)[0], x).numpy()
        else:

            def terms(b: torch.Tensor) -> torch.Tensor:
                fm, se, zn = det._parts(b)
                return torch.stack([fm.double(), se.double().sum(1), zn.double()], 1)

            t = det._batched(terms, x).numpy()
            for i, term in enumerate(("fm", "rec", "lat")):
                arrays[f"{term}__{part}"] = t[:, i]
            latent[part] = det._batched(det.model_.encoder, x).numpy()
    spaces = {"x": {p: v.numpy() for p, v in rows.items()}, "z": latent}
    for space, parts in spaces.items():
        variants = view_variants(parts["train"], parts["val"], parts["test"], seed)
        for variant, (tr, va, te) in variants.items():
            arrays[f"{space}_{variant}__train"] = tr
            arrays[f"{space}_{variant}__val"] = va
            arrays[f"{space}_{variant}__test"] = te
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{set_name(name)}__{model}.npz", **arrays)


def q(v: np.ndarray, level: float) -> float:
    return float(max(np.quantile(v, level), 1e-12))


VIEW_WEIGHTS = (0.5, 0.75, 1, 1.5, 2, 3, 4, 6)
#: Whole-pool selection rule for the VAE: a set may lose at most this much AUROC against
#: the residual rules alone ("lose little anywhere").
VAE_MAX_SET_LOSS = 0.005


def combos(d, model: str) -> dict[str, np.ndarray]:
    """``base`` (the detector's own terms: the VAE's four residual rules over their 99%
    training quantiles, the GAN's three terms over their held-out medians) and
    ``VARIANT/SCALING/VIEWS/wW``: base + W x the views (x, z or both), each view over the
    quantile SCALING names (``tr99``: 99% of training rows, ``va99`` / ``va50``: 99% /
    median of held-out rows)."""
    if model == "vae":
        base = sum(d[f"r{i}__test"] / q(d[f"r{i}__train"], 0.99) for i in range(4))
        scalings = {"tr99": ("train", 0.99), "va99": ("val", 0.99)}
    else:
        base = sum(d[f"{t}__test"] / q(d[f"{t}__val"], 0.5) for t in ("fm", "rec", "lat"))
        scalings = {"va50": ("val", 0.5), "va99": ("val", 0.99), "tr99": ("train", 0.99)}
    out = {"base": base}
    variants = sorted({k.split("__")[0][2:] for k in d.files if k.startswith("x_")})
    for variant in variants:
        for label, (part, level) in scalings.items():
            view = {
                s: d[f"{s}_{variant}__test"] / q(d[f"{s}_{variant}__{part}"], level) for s in "xz"
            }
            view["xz"] = view["x"] + view["z"]
            for views, v in view.items():
                for w in VIEW_WEIGHTS:
                    out[f"{variant}/{label}/{views}/w{w:g}"] = base + w * v
    return out


#: Scoring-cost budget of the selection: the nearest of at most this many centres
#: (with 256 the GAN scored at 0.71-0.82 of its speed without the views, with 64 at
#: 0.78-0.86; benchmarks/RESULTS.md).
MAX_PROTOTYPES = 64


def candidates(model: str, names: list[str]) -> list[str]:
    """The candidates a rule may choose from: references within the cost budget (k-means
    centres, at most ``MAX_PROTOTYPES``); for the VAE every screened weighting of them, for
    the GAN both views over their held-out medians (the GAN's own normalisation)."""
    allowed = {f"km{m}" for m in KMEANS_SIZES if m <= MAX_PROTOTYPES}
    keep = [n for n in names if n == "base" or n.split("/")[0] in allowed]
    if model == "vae":
        return keep
    return [n for n in keep if n == "base" or "/va50/xz/" in n]


def choose(model: str, wide: pd.DataFrame, names: list[str]) -> str:
    """The rule, on the sets in ``wide`` only (never the sets it is measured on). VAE: the
    best mean among candidates that lose at most ``VAE_MAX_SET_LOSS`` on every set against
    the residual rules alone; GAN: the best mean."""
    pool = candidates(model, names)
    if model == "vae":
        loss = wide[pool].sub(wide["base"], axis=0).min()
        pool = [c for c in pool if loss[c] >= -VAE_MAX_SET_LOSS]
    return str(wide[pool].mean().idxmax())


def pyod_table(paths: list[str]) -> pd.DataFrame:
    rows = [r for p in paths for r in json.loads(Path(p).read_text())["results"]]
    frame = pd.DataFrame(rows).groupby(["dataset", "model"])["auroc"].mean()
    return frame.unstack("model")


def halves(sets: list[str]) -> list[list[str]]:
    """Every other set, shared sets first then the rest by name: the halves of
    ``benchmarks.devpool_report``."""
    ordered = [s for s in SHARED if s in sets] + sorted(s for s in sets if s not in SHARED)
    return [ordered[0::2], ordered[1::2]]


def measure(wide: pd.DataFrame, chosen: str, pyod: pd.DataFrame) -> dict:
    sets = list(wide.index)
    p = pyod.loc[sets]
    best_model = str(p.mean().idxmax())
    ours = wide[chosen]
    return {
        "chosen": chosen,
        "sets": sets,
        "mean": float(ours.mean()),
        "base_mean": float(wide["base"].mean()),
        "best_pyod_model": best_model,
        "best_pyod_mean": float(p[best_model].mean()),
        "wins_vs_best_model": int((ours >= p[best_model]).sum()),
        "wins_vs_per_set_best": int((ours >= p.max(axis=1) - 1e-12).sum()),
        "worst_vs_per_set_best": float((ours - p.max(axis=1)).min()),
        "worst_vs_base": float((ours - wide["base"]).min()),
    }


def select(model: str, rows: list[dict], pyod_paths: list[str]) -> dict:
    """The rule on the whole pool, and on each half measured on the other half."""
    wide = pd.DataFrame(rows).pivot(index="dataset", columns="variant", values="auroc")
    pyod = pyod_table(pyod_paths)
    names = list(wide.columns)
    out = {"pool": measure(wide, choose(model, wide, names), pyod), "halves": []}
    a, b = halves(list(wide.index))
    for pick, on in ((a, b), (b, a)):
        chosen = choose(model, wide.loc[pick], names)
        out["halves"].append({"chosen_on": pick, **measure(wide.loc[on], chosen, pyod)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["vae", "gan"], default="vae")
    parser.add_argument("--datasets", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dump", required=True, help="folder of the raw views (.npz)")
    parser.add_argument("--combos", default=None, help="write the combos' AUROC/AUPRC here")
    parser.add_argument(
        "--pyod",
        nargs="*",
        default=sorted(str(p) for p in Path("benchmarks/results").glob("devpool_pyod_part*.json")),
        help="cached PyOD baselines (with --combos: apply the selection rule)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    caps = {"max_train": 2000, "max_test_normals": 2000, "max_test_anomalies": 1000}
    folder = Path(args.dump)
    sets = [set_name(s) if args.combos else s for s in (args.datasets or dev_sets())]
    if not args.combos:
        for name in sets:
            if (folder / f"{set_name(name)}__{args.model}.npz").exists():
                continue
            started = time.perf_counter()
            fit_dump(args.model, name, args.seed, caps, folder)
            print(f"{set_name(name):>18} {time.perf_counter() - started:6.1f}s", flush=True)
        return 0
    rows = []
    for name in sets:
        path = folder / f"{name}__{args.model}.npz"
        if not path.exists():
            continue
        with np.load(path) as d:
            y = d["y"]
            for variant, scores in combos(d, args.model).items():
                rows.append(
                    {
                        "dataset": name,
                        "variant": variant,
                        "auroc": float(metrics.auroc(y, scores)),
                        "auprc": float(metrics.auprc(y, scores)),
                    }
                )
    report = {"model": args.model, "caps": caps, "seed": args.seed, "rows": rows}
    if args.pyod:
        report["selection"] = select(args.model, rows, args.pyod)
        print(json.dumps(report["selection"], indent=1))
    Path(args.combos).write_text(json.dumps(report))
    print(f"wrote {args.combos} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
