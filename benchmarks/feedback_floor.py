"""The novelty floor's settings chosen on validation folds, never on the test week.

    python -m benchmarks.feedback_floor benchmarks/results/feedback.json   # one setting for all

On each validation fold of the all-labels protocol (the weeks before the test week that
the trees' grid is tuned on, ``feedback_handbook --select-floor``), the labelled model is
trained with the chosen tree settings once with every label (the served score's AP) and
once per held-out fraud type with that type's frauds never labelled (presumed normal, in
the trees' targets and in the floor's reference). Each (gate, below) of a small grid is
scored on the fold's test week by the served AP and by each held-out type's AUROC loss
against the unsupervised score. Chosen: the highest mean AP whose worst loss (any held-out
type, mean over folds) is within the tolerance; where none is, the smallest worst loss.

Beside it, two checks a product without a held-out type could make on the same fold, each
an AUROC against the normals under the served score less the unsupervised score's:
``proxy_loss``, the frauds the labelled model itself ranks among the normals (``p`` at or
below the normals' 90th percentile: what it missed); ``novel_loss``, every fraud with its
own ``u`` but a ``p`` drawn from the normals' (a type the labelled model has no opinion on);
``pseudo_loss``, the worst of the known frauds' clusters (k-means on their features), each
held out of the labels as a type is (the product's equivalent of the held-out types).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Sequence

import numpy as np

from detectors import metrics as m
from pipelines.feedback.novelty import NoveltyFloor, served_score

MISSED_QUANTILE = 0.9  # a fraud at or below this share of the normals' p counts as missed


def _served(u_ref: np.ndarray, u: np.ndarray, p: np.ndarray, gate, below, cap) -> np.ndarray:
    floor = NoveltyFloor.fit(u_ref, cap=cap, below=below, gate=gate)
    return served_score(u, p, 0.5, floor)


def _held_out(X, u, y, kind, names, train, test, fit, least: int = 1) -> dict:
    """Per type: the labelled model trained with that type presumed normal, its floor
    reference (the presumed normals' u), and the type's AUROC under u on the test week."""
    finite = np.isfinite(u)
    models = {}
    for k in names:
        y_known = np.where(kind == k, 0, y)
        keep = np.isin(kind[test], ["", k])
        yk = (kind[test][keep] == k).astype(int)
        if least <= yk.sum() < len(yk):
            p_k = fit(X[train], y_known[train]).predict_proba(X[test])
            ref_k = u[train][(y_known[train] == 0) & finite[train]]
            models[k] = (p_k, ref_k, keep, yk, m.auroc(yk, u[test][keep]))
    return models


def _pseudo_types(X, y, train, test, clusters: int) -> np.ndarray:
    """What a product without fraud types could hold out: the known frauds in ``clusters``
    groups of their (standardised) features, fit on the training frauds."""
    from sklearn.cluster import KMeans  # only this check needs it

    pseudo = np.full(len(y), "", dtype=object)
    if clusters < 2:
        return pseudo
    frauds = train[y[train] == 1]
    scale = np.nan_to_num(X[frauds])
    mean, std = scale.mean(axis=0), scale.std(axis=0) + 1e-9
    model = KMeans(clusters, n_init=4, random_state=0).fit((scale - mean) / std)
    rows = np.concatenate([frauds, test[y[test] == 1]])
    labels = model.predict((np.nan_to_num(X[rows]) - mean) / std)
    pseudo[rows] = [f"cluster {c}" for c in labels]
    return pseudo


def floor_trials(
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    X: np.ndarray,
    u: np.ndarray,
    y: np.ndarray,
    kind: np.ndarray,
    heldout: Sequence[str],
    fit: Callable[[np.ndarray, np.ndarray], object],
    gates: Sequence[float],
    belows: Sequence[float],
    cap: float,
    tolerance: float = 0.005,
    clusters: int = 3,
) -> dict:
    """Every (gate, below) on every fold; the chosen one (see the module's docstring)."""
    finite = np.isfinite(u)
    grid = list(itertools.product(gates, belows))
    trials = {
        g: {
            "ap": [],
            "proxy_loss": [],
            "novel_loss": [],
            "pseudo_loss": {},
            "loss": {k: [] for k in heldout},
        }
        for g in grid
    }
    rng = np.random.default_rng(0)
    for train, test in folds:
        yt = y[test]
        p = fit(X[train], y[train]).predict_proba(X[test])
        ref = u[train][(y[train] == 0) & finite[train]]
        missed = (yt == 1) & (p <= np.quantile(p[yt == 0], MISSED_QUANTILE))
        proxy = (yt == 0) | missed
        u_proxy = m.auroc(missed[proxy].astype(int), u[test][proxy]) if missed.any() else None
        p_novel = np.where(yt == 1, rng.choice(p[yt == 0], len(yt)), p)
        u_all = m.auroc(yt, u[test])
        models = _held_out(X, u, y, kind, heldout, train, test, fit)
        pseudo = _pseudo_types(X, y, train, test, clusters)
        names = sorted(set(pseudo) - {""})
        pseudo_models = _held_out(X, u, y, pseudo, names, train, test, fit, least=10)
        for gate, below in grid:
            t = trials[(gate, below)]
            s = _served(ref, u[test], p, gate, below, cap)
            t["ap"].append(m.auprc(yt, s))
            s_novel = _served(ref, u[test], p_novel, gate, below, cap)
            t["novel_loss"].append(u_all - m.auroc(yt, s_novel))
            if u_proxy is not None:
                t["proxy_loss"].append(u_proxy - m.auroc(missed[proxy].astype(int), s[proxy]))
            for k, (p_k, ref_k, keep, yk, u_auroc) in models.items():
                s_k = _served(ref_k, u[test], p_k, gate, below, cap)
                t["loss"][k].append(u_auroc - m.auroc(yk, s_k[keep]))
            for k, (p_k, ref_k, keep, yk, u_auroc) in pseudo_models.items():
                s_k = _served(ref_k, u[test], p_k, gate, below, cap)
                t["pseudo_loss"].setdefault(k, []).append(u_auroc - m.auroc(yk, s_k[keep]))
    rows = []
    for (gate, below), t in trials.items():
        losses = {k: float(np.mean(v)) for k, v in t["loss"].items() if v}
        rows.append(
            {
                "gate": gate,
                "below": below,
                "ap": float(np.mean(t["ap"])),
                "loss": losses,
                "worst_loss": max(losses.values(), default=0.0),
                "proxy_loss": float(np.mean(t["proxy_loss"])) if t["proxy_loss"] else None,
                "novel_loss": float(np.mean(t["novel_loss"])),
                "pseudo_loss": max(
                    (float(np.mean(v)) for v in t["pseudo_loss"].values()), default=None
                ),
            }
        )
    return {"trials": rows, "chosen": choose(rows, tolerance), "tolerance": tolerance}


def choose(rows: list[dict], tolerance: float) -> dict:
    """The highest AP within the tolerance, else the smallest worst loss."""
    ok = [r for r in rows if r["worst_loss"] <= tolerance]
    best = max(ok, key=lambda r: r["ap"]) if ok else min(rows, key=lambda r: r["worst_loss"])
    return {"gate": best["gate"], "below": best["below"], "within_tolerance": bool(ok)}


def across(reports: list[dict], tolerance: float = 0.005) -> tuple[list[dict], dict]:
    """One setting for every data set and seed: each trial's AP averaged per data set then
    over data sets, its loss the worst of any data set, seed and held-out type."""
    table: dict[tuple, dict] = {}
    # A suite's results file holds its steps' reports; a step's JSON is one report.
    reports = [r for report in reports for r in report.get("steps", {"": report}).values()]
    reports = [
        r
        for r in reports
        if r.get("seeds") and all(run.get("floor_selection") for run in r["seeds"])
    ]
    for report in reports:
        name = report["meta"]["dataset"]
        for run in report["seeds"]:
            for r in run["floor_selection"]["trials"]:
                row = table.setdefault((r["gate"], r["below"]), {"ap": {}, "worst": 0.0})
                row["ap"].setdefault(name, []).append(r["ap"])
                row["worst"] = max(row["worst"], r["worst_loss"])
    rows = [
        {
            "gate": gate,
            "below": below,
            "ap": float(np.mean([np.mean(v) for v in row["ap"].values()])),
            "ap_by_dataset": {k: float(np.mean(v)) for k, v in row["ap"].items()},
            "worst_loss": row["worst"],
        }
        for (gate, below), row in table.items()
    ]
    return rows, choose(rows, tolerance)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "reports", nargs="+", help="the suite's results or feedback_handbook --select-floor JSONs"
    )
    parser.add_argument("--tolerance", type=float, default=0.005)
    args = parser.parse_args(argv)
    reports = [json.loads(open(path).read()) for path in args.reports]
    rows, chosen = across(reports, args.tolerance)
    print("gate below  mean AP  worst loss  AP per data set")
    for r in sorted(rows, key=lambda r: (r["gate"], r["below"])):
        per = ", ".join(f"{k} {v:.3f}" for k, v in r["ap_by_dataset"].items())
        print(f"{r['gate']:4g} {r['below']:5g}  {r['ap']:.4f}  {r['worst_loss']:+.4f}  {per}")
    print(f"chosen: {chosen}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
