"""Screen VAE score variants on the dev pool from ONE fit per set and configuration.

    python -m benchmarks.devpool_screen --configs '{"base": {}}' --out screen.json

For each set (capped split of ``benchmarks.devpool``, seed 0 by default) and each VAE
configuration, the detector is fitted once and then read several ways: the shipped
ensemble score, its four rules alone, and extra views (k-nearest-neighbour distance of
the posterior mean to the training posterior means, of the encoded row to the encoded
training rows), combined by 99%-quantile scaling or by rank (tail surprisal) scaling.
Every extra view is normalised on TRAINING rows only (kNN: the k-th neighbour excluding
the row itself); test labels are used only for AUROC/AUPRC.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.devpool import capped_split, dev_sets, set_name
from detectors import GANDetector, VAEDetector, metrics


def knn_dist(ref: np.ndarray, q: np.ndarray, k: int, self_excluded: bool) -> np.ndarray:
    r = torch.from_numpy(ref.astype(np.float32))
    out = []
    kk = k + 1 if self_excluded else k
    kk = min(kk, len(ref))
    for i in range(0, len(q), 1024):
        d = torch.cdist(torch.from_numpy(q[i : i + 1024].astype(np.float32)), r)
        out.append(d.topk(kk, dim=1, largest=False).values[:, -1])
    return torch.cat(out).double().numpy()


def q99(v: np.ndarray) -> float:
    return float(max(np.quantile(v, 0.99), 1e-12))


def surprisal(train: np.ndarray, v: np.ndarray) -> np.ndarray:
    """-log of the training tail probability P(train >= v), smoothed (rank normalisation)."""
    s = np.sort(train)
    n = len(s)
    above = n - np.searchsorted(s, v, side="left")
    return -np.log((above + 1.0) / (n + 1.0))


def views(det: VAEDetector, X_train: np.ndarray, X_test: np.ndarray, k: int) -> dict:
    """Raw view scores on the detector's training rows and on the test rows."""
    train_idx, _ = det._split(len(X_train))
    xt = torch.from_numpy(det.encoder_.transform(X_train[train_idx]))
    xs = torch.from_numpy(det.encoder_.transform(X_test))
    with torch.inference_mode():
        rt = det._batched(lambda b: det._ensemble_rules(b)[0], xt).numpy()
        rs = det._batched(lambda b: det._ensemble_rules(b)[0], xs).numpy()
        mt = det._batched(lambda b: det.model_.encode(b)[0], xt).numpy()
        ms = det._batched(lambda b: det.model_.encode(b)[0], xs).numpy()
    out = {f"r{i}": (rt[:, i], rs[:, i]) for i in range(4)}
    out["zknn"] = (knn_dist(mt, mt, k, True), knn_dist(mt, ms, k, False))
    out["xknn"] = (
        knn_dist(xt.numpy(), xt.numpy(), k, True),
        knn_dist(xt.numpy(), xs.numpy(), k, False),
    )
    return out


def gan_views(det: GANDetector, X_test: np.ndarray) -> dict:
    """The GAN's score terms on the test rows, each already divided by its fitted scale
    (medians on held-out normal rows): fm, rec, lat, and the kNN views."""
    xs = torch.from_numpy(det.encoder_.transform(X_test))

    def parts(b: torch.Tensor) -> torch.Tensor:
        fm, se, zn = det._parts(b)
        cols = [fm.double() / det.fm_scale_, se.double().sum(1) / det.rec_scale_]
        cols.append(zn.double() / det.z_scale_)
        knn = det._knn_distances(b) / torch.tensor(det.knn_["scales"], dtype=torch.float64)
        return torch.cat([torch.stack(cols, 1), knn], 1)

    p = det._batched(parts, xs).numpy()
    return {name: p[:, i] for i, name in enumerate(["fm", "rec", "lat", *det.knn_["views"]])}


def gan_combos(v: dict) -> dict[str, np.ndarray]:
    base = v["fm"] + v["rec"] + v["lat"]
    out = {"gan": base, "gan+x": base + v["input"], "gan+z": base + v["latent"]}
    for w in (1, 2, 3):
        out[f"gan+{w}x+{w}z"] = base + w * (v["input"] + v["latent"])
    for name, a in v.items():
        out[f"only:{name}"] = a
    return out


def combos(v: dict) -> dict[str, np.ndarray]:
    qs = {name: (tr / q99(tr), te / q99(tr)) for name, (tr, te) in v.items()}
    rk = {name: (surprisal(tr, tr), surprisal(tr, te)) for name, (tr, te) in v.items()}
    base = ["r0", "r1", "r2", "r3"]
    sets = {
        "ens": base,
        "ens+zknn": [*base, "zknn"],
        "ens+xknn": [*base, "xknn"],
        "ens+zknn+xknn": [*base, "zknn", "xknn"],
        "r0+zknn": ["r0", "zknn"],
    }
    scores: dict[str, np.ndarray] = {}
    for label, members in sets.items():
        scores[label] = sum(qs[m][1] for m in members)
        scores[f"rank:{label}"] = sum(rk[m][1] for m in members)
    for name in v:
        scores[f"only:{name}"] = v[name][1]
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default='{"base": {}}', help="JSON {label: overrides}")
    parser.add_argument("--datasets", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=["vae", "gan"], default="vae")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--max-test-normals", type=int, default=2000)
    parser.add_argument("--max-test-anomalies", type=int, default=1000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dump", default=None, help="folder for the raw view scores (.npz)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    caps = {
        "max_train": args.max_train,
        "max_test_normals": args.max_test_normals,
        "max_test_anomalies": args.max_test_anomalies,
    }
    configs = json.loads(args.configs)
    rows = []
    for name in args.datasets or dev_sets():
        X_train, X_test, y_test = capped_split(name, args.seed, caps)
        for label, overrides in configs.items():
            if args.model == "gan":
                overrides = {"knn_views": ("input", "latent"), "knn_k": args.k, **overrides}
                det = GANDetector(seed=args.seed, **overrides)
            else:
                det = VAEDetector(seed=args.seed, **overrides)
            started = time.perf_counter()
            det.fit(X_train)
            seconds = time.perf_counter() - started
            if args.model == "gan":
                v = gan_views(det, X_test)
                variants = gan_combos(v)
            else:
                v = views(det, X_train, X_test, args.k)
                variants = combos(v)
            if args.dump:
                Path(args.dump).mkdir(parents=True, exist_ok=True)
                np.savez_compressed(
                    Path(args.dump) / f"{set_name(name)}__{label}.npz",
                    y=y_test,
                    **(
                        {f"{k}__test": a for k, a in v.items()}
                        if args.model == "gan"
                        else {
                            **{f"{k}__train": a for k, (a, _) in v.items()},
                            **{f"{k}__test": b for k, (_, b) in v.items()},
                        }
                    ),
                )
            for variant, scores in variants.items():
                rows.append(
                    {
                        "dataset": set_name(name),
                        "config": label,
                        "variant": variant,
                        "auroc": float(metrics.auroc(y_test, scores)),
                        "auprc": float(metrics.auprc(y_test, scores)),
                        "fit_seconds": seconds,
                    }
                )
            shown = ("ens", "ens+zknn", "gan", "gan+1x+1z")
            ens = [r for r in rows if r["config"] == label and r["variant"] in shown]
            print(
                f"{set_name(name):>18} {label:>10} fit {seconds:5.1f}s "
                + " ".join(f"{r['variant']} {r['auroc']:.3f}" for r in ens[-2:]),
                flush=True,
            )
        Path(args.out).write_text(json.dumps({"caps": caps, "k": args.k, "rows": rows}))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
