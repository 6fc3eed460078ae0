"""The per-set AUROC table of RESULTS.md, issue 12 part 2, from the committed result files.

    python -m benchmarks.issue12_tables
"""

# ruff: noqa: E501

import glob
import json
from pathlib import Path

import numpy as np

from benchmarks.devpool import SHARED

ROOT = Path(__file__).resolve().parents[1]

R = str(ROOT / "benchmarks" / "results") + "/"


def det_rows(paths):
    out = {}
    for p in paths:
        for r in json.load(open(p))["results"]:
            out[r["dataset"]] = (r["auroc"], r["auprc"])
    return out


vae_new = det_rows([R + "devpool_vigil_vae_prototypes.json"])
vae_prev = det_rows([R + "devpool_vigil_vae_a.json", R + "devpool_vigil_vae_b.json"])


def combo(path, variant):
    d = json.load(open(path))
    return {r["dataset"]: (r["auroc"], r["auprc"]) for r in d["rows"] if r["variant"] == variant}


vae_base = combo(R + "devpool_views_vae.json", "base")
gan_new = combo(R + "devpool_views_gan.json", "km64/va50/xz/w6")
gan_prev = combo(R + "devpool_views_gan.json", "ex5/va50/xz/w1.5")
gan_base = combo(R + "devpool_views_gan.json", "base")
pyod = {}
for f in sorted(glob.glob(R + "devpool_pyod_part*.json")):
    for r in json.load(open(f))["results"]:
        pyod.setdefault(r["dataset"], {})[r["model"]] = (r["auroc"], r["auprc"])
P = ["pyod_autoencoder", "pyod_deepsvdd", "pyod_ecod", "pyod_iforest"]
sets = [s for s in SHARED] + sorted(s for s in vae_new if s not in SHARED)
cols = [
    ("VAE new", vae_new),
    ("VAE prev", vae_prev),
    ("VAE rules only", vae_base),
    ("GAN new", gan_new),
    ("GAN prev", gan_prev),
    ("GAN own terms", gan_base),
]
lines = [
    "| set | "
    + " | ".join(c for c, _ in cols)
    + " | PyOD AE | PyOD DeepSVDD | PyOD ECOD | PyOD IForest | best PyOD | VAE new - best | GAN new - best |",
    "|---|" + "---:|" * (len(cols) + 7),
]
acc = {c: [] for c, _ in cols}
accp = {c: [] for c, _ in cols}
pa = {p: [] for p in P}
ppr = {p: [] for p in P}
best = []
for s in sets:
    b = max(pyod[s][p][0] for p in P)
    best.append(b)
    cells = []
    for c, m in cols:
        cells.append(f"{m[s][0]:.3f}")
        acc[c].append(m[s][0])
        accp[c].append(m[s][1])
    for p in P:
        cells.append(f"{pyod[s][p][0]:.3f}")
        pa[p].append(pyod[s][p][0])
        ppr[p].append(pyod[s][p][1])
    cells += [f"{b:.3f}", f"{vae_new[s][0] - b:+.3f}", f"{gan_new[s][0] - b:+.3f}"]
    lines.append(f"| {s} | " + " | ".join(cells) + " |")


def mean(v):
    return float(np.mean(v))


lines.append(
    f"| mean ({len(sets)} sets) | "
    + " | ".join(f"**{mean(acc[c]):.3f}**" for c, _ in cols)
    + " | "
    + " | ".join(f"**{mean(pa[p]):.3f}**" for p in P)
    + f" | {mean(best):.3f} | {mean(acc['VAE new']) - mean(best):+.3f} | {mean(acc['GAN new']) - mean(best):+.3f} |"
)
lines.append("")
ae = np.array(pa["pyod_autoencoder"])
bb = np.array(best)
top = max(P, key=lambda p: mean(pa[p]))
for c, _ in cols:
    a = np.array(acc[c])
    gap = a - bb
    lines.append(
        f"- {c}: mean AUROC {a.mean():.3f}, AUPRC {mean(accp[c]):.3f}; >= PyOD AutoEncoder on {int((a >= ae).sum())}/{len(sets)} sets; >= the best PyOD model of each set on {int((gap >= -1e-12).sum())}/{len(sets)}; worst set {sets[int(gap.argmin())]} {gap.min():+.3f}."
    )
lines.append(
    "- PyOD mean AUPRC: "
    + ", ".join(f"{p[5:]} {mean(ppr[p]):.3f}" for p in P)
    + f". Best PyOD mean AUROC: {top[5:]} {mean(pa[top]):.3f}"
    + (f" (DeepSVDD {mean(pa['pyod_deepsvdd']):.3f})" if top != "pyod_deepsvdd" else "")
    + "."
)
sh = [sets.index(s) for s in SHARED]
lines.append(
    "- The five shared sets inside this table (capped): "
    + ", ".join(f"{c} {np.mean([acc[c][i] for i in sh]):.4f}" for c, _ in cols)
    + "."
)
print("\n".join(lines))
