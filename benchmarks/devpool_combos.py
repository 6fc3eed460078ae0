"""Weightings of the screened views, from the raw view scores ``devpool_screen --dump`` wrote.

    python -m benchmarks.devpool_combos --dump DIR --model vae --out combos_vae.json

VAE: the four residual rules (``ens``: each over its 99% training quantile, summed, the
shipped issue-3 score) plus ``w`` times each kNN view (input ``x``, latent ``z``) over
its 99% training quantile, or everything rank-normalised (``rank_``: training tail
surprisal). GAN: the three shipped terms (each over its held-out median) plus ``w`` times
the two kNN views (each over its held-out median). Output rows feed
``benchmarks.devpool_report --screen``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from detectors import metrics


def q99(v: np.ndarray) -> float:
    return float(max(np.quantile(v, 0.99), 1e-12))


def surprisal(train: np.ndarray, v: np.ndarray) -> np.ndarray:
    s = np.sort(train)
    above = len(s) - np.searchsorted(s, v, side="left")
    return -np.log((above + 1.0) / (len(s) + 1.0))


def vae_variants(d) -> dict[str, np.ndarray]:
    views = {
        k: (d[f"{k}__train"], d[f"{k}__test"]) for k in ("r0", "r1", "r2", "r3", "zknn", "xknn")
    }
    q = {k: te / q99(tr) for k, (tr, te) in views.items()}
    r = {k: surprisal(tr, te) for k, (tr, te) in views.items()}
    ens = q["r0"] + q["r1"] + q["r2"] + q["r3"]
    rens = r["r0"] + r["r1"] + r["r2"] + r["r3"]
    out = {
        "ens": ens,
        "rank_ens": rens,
        "x": q["xknn"],
        "max(ens/4,x)": np.maximum(ens / 4, q["xknn"]),
    }
    for w in (1, 2, 3, 4, 6):
        out[f"ens+{w}x"] = ens + w * q["xknn"]
        out[f"ens+{w}x+{w}z"] = ens + w * (q["xknn"] + q["zknn"])
        out[f"rank_ens+{w}x"] = rens + w * r["xknn"]
    out["ens+2x+1z"] = ens + 2 * q["xknn"] + q["zknn"]
    return out


def gan_variants(d) -> dict[str, np.ndarray]:
    v = {k: d[f"{k}__test"] for k in ("fm", "rec", "lat", "input", "latent")}
    base = v["fm"] + v["rec"] + v["lat"]
    out = {"gan": base}
    for w in (1, 1.5, 2, 3):
        out[f"gan+{w}x+{w}z"] = base + w * (v["input"] + v["latent"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", required=True)
    parser.add_argument("--model", choices=["vae", "gan"], default="vae")
    parser.add_argument("--config", default=None, help="config label in the dump file names")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    config = args.config or ("base" if args.model == "vae" else "gan")
    rows = []
    for path in sorted(Path(args.dump).glob(f"*__{config}.npz")):
        with np.load(path) as d:
            y = d["y"]
            variants = vae_variants(d) if args.model == "vae" else gan_variants(d)
        for name, scores in variants.items():
            rows.append(
                {
                    "dataset": path.name.split("__")[0],
                    "config": config,
                    "variant": name,
                    "auroc": float(metrics.auroc(y, scores)),
                    "auprc": float(metrics.auprc(y, scores)),
                }
            )
    Path(args.out).write_text(json.dumps({"model": args.model, "rows": rows}, indent=1))
    print(f"wrote {args.out}: {len({r['dataset'] for r in rows})} sets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
