"""The per-set AUROC tables of RESULTS.md, issue 12 parts 2 and 3, from the committed
result files.

    python -m benchmarks.issue12_tables            # part 2 (screen figures for the GAN)
    python -m benchmarks.issue12_tables --part 3   # part 3 (GAN detector runs, seeds)
"""

# ruff: noqa: E501

import argparse
import glob
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.devpool import SHARED
from benchmarks.devpool_report import half_half

ROOT = Path(__file__).resolve().parents[1]

R = str(ROOT / "benchmarks" / "results") + "/"
P = ["pyod_autoencoder", "pyod_deepsvdd", "pyod_ecod", "pyod_iforest"]


def det_rows(paths, model=None):
    """{dataset: (mean AUROC, mean AUPRC)} over the seeds in these devpool.py files."""
    acc = {}
    for p in paths:
        for r in json.load(open(p))["results"]:
            if model is None or r["model"] == model:
                acc.setdefault(r["dataset"], []).append((r["auroc"], r["auprc"]))
    return {s: tuple(np.mean(v, axis=0)) for s, v in acc.items()}


def combo(path, variant):
    d = json.load(open(path))
    return {r["dataset"]: (r["auroc"], r["auprc"]) for r in d["rows"] if r["variant"] == variant}


def pyod_rows():
    pyod = {}
    for f in sorted(glob.glob(R + "devpool_pyod_part*.json")):
        for r in json.load(open(f))["results"]:
            pyod.setdefault(r["dataset"], {})[r["model"]] = (r["auroc"], r["auprc"])
    return pyod


def mean(v):
    return float(np.mean(v))


def per_set_table(cols, gaps, sets):
    """Markdown lines: one row per set (the columns, each PyOD model, the best PyOD of the
    set, the named columns minus it), the means, and one summary line per column."""
    pyod = pyod_rows()
    lines = [
        "| set | "
        + " | ".join(c for c, _ in cols)
        + " | PyOD AE | PyOD DeepSVDD | PyOD ECOD | PyOD IForest | best PyOD | "
        + " | ".join(f"{g} - best" for g in gaps)
        + " |",
        "|---|" + "---:|" * (len(cols) + 5 + len(gaps)),
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
        cells.append(f"{b:.3f}")
        cells += [f"{dict(cols)[g][s][0] - b:+.3f}" for g in gaps]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append(
        f"| mean ({len(sets)} sets) | "
        + " | ".join(f"**{mean(acc[c]):.3f}**" for c, _ in cols)
        + " | "
        + " | ".join(f"**{mean(pa[p]):.3f}**" for p in P)
        + f" | {mean(best):.3f} | "
        + " | ".join(f"{mean(acc[g]) - mean(best):+.3f}" for g in gaps)
        + " |"
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
    return lines


def part2():
    vae_new = det_rows([R + "devpool_vigil_vae_prototypes.json"])
    cols = [
        ("VAE new", vae_new),
        ("VAE prev", det_rows([R + "devpool_vigil_vae_a.json", R + "devpool_vigil_vae_b.json"])),
        ("VAE rules only", combo(R + "devpool_views_vae.json", "base")),
        ("GAN new", combo(R + "devpool_views_gan.json", "km64/va50/xz/w6")),
        ("GAN prev", combo(R + "devpool_views_gan.json", "ex5/va50/xz/w1.5")),
        ("GAN own terms", combo(R + "devpool_views_gan.json", "base")),
    ]
    sets = list(SHARED) + sorted(s for s in vae_new if s not in SHARED)
    return per_set_table(cols, ["VAE new", "GAN new"], sets)


def part3():
    vae_s0 = det_rows([R + "devpool_vigil_vae_prototypes.json"])
    gan_s0 = det_rows([R + "devpool_vigil_gan_s0.json"])
    cols = [("VAE s0", vae_s0), ("GAN s0", gan_s0)]
    more = sorted(glob.glob(R + "devpool_vigil_s[1-9].json"))
    for model, s0 in (
        ("vigil_vae", "devpool_vigil_vae_prototypes.json"),
        ("vigil_gan", "devpool_vigil_gan_s0.json"),
    ):
        rows = det_rows([R + s0, *more], model)
        seeds = 1 + sum(
            any(r["model"] == model for r in json.load(open(p))["results"]) for p in more
        )
        if seeds > 1 and len(rows) == len(gan_s0):
            cols.append((f"{model[6:].upper()} mean of {seeds} seeds", rows))
    cols.append(("GAN s0 screen", combo(R + "devpool_views_gan.json", "km64/va50/xz/w6")))
    sets = list(SHARED) + sorted(s for s in gan_s0 if s not in SHARED)
    gaps = [c for c, _ in cols if c != "GAN s0 screen"]
    return per_set_table(cols, gaps, sets) + [""] + halves(cols, sets)


def halves(cols, sets):
    """``devpool_report.half_half`` for each column alone: its mean on each half of the
    pool against the best-mean PyOD model there (the shipped defaults were chosen on the
    whole pool; which weighting each half alone would choose is in part 2's table)."""
    pyod = pyod_rows()
    wide = pd.DataFrame({c: {s: m[s][0] for s in sets} for c, m in cols})
    for p in P:
        wide[p] = [pyod[s][p][0] for s in sets]
    lines = []
    for c, _ in cols:
        for h in half_half(wide, [c], P):
            lines.append(
                f"- {c} on the half holding {h['measured_on'][0]}: {h['mean']:.3f} vs "
                f"{h['best_pyod'][5:]} {h['best_pyod_mean']:.3f} ({h['mean'] - h['best_pyod_mean']:+.3f}); "
                f">= {h['best_pyod'][5:]} on {h['wins_vs_best_model']}/{h['n']}; >= the best PyOD "
                f"model per set on {h['wins']}/{h['n']}; worst gap {h['worst_gap']:+.3f}."
            )
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", type=int, choices=[2, 3], default=2)
    args = parser.parse_args()
    print("\n".join(part2() if args.part == 2 else part3()))
