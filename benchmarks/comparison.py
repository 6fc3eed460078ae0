"""The comparison every tabular suite reports: vigil's detectors against the strongest
baselines in the same run (mean AUROC and AUPRC, mean rank over all detectors, a Wilcoxon
signed-rank test against the best baseline), and the guard against silent regressions
(a set that loses more than ``TOLERANCE`` AUROC against the kept figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

#: A set whose AUROC falls more than this below its kept figure is a regression.
TOLERANCE = 0.01


def mean_ranks(per_set: pd.DataFrame) -> pd.Series:
    """Mean over sets of each detector's rank (1 = best AUROC on that set; ties share the
    mean rank). ``per_set``: sets x detectors; a set missing a detector is left out."""
    complete = per_set.dropna()
    return complete.rank(axis=1, ascending=False, method="average").mean().sort_values()


def best_baseline(per_set: pd.DataFrame, baselines: list[str]) -> str | None:
    """The baseline with the highest mean AUROC over the sets."""
    present = [b for b in baselines if b in per_set.columns]
    if not present:
        return None
    return str(per_set[present].mean().idxmax())


def wilcoxon(per_set: pd.DataFrame, model: str, baseline: str) -> dict:
    """Two-sided Wilcoxon signed-rank test of ``model`` against ``baseline`` over the sets
    (paired per-set AUROC), with the mean difference and the per-set wins."""
    from scipy.stats import wilcoxon as scipy_wilcoxon  # benchmark-only, heavy import

    pair = per_set[[model, baseline]].dropna()
    diff = pair[model] - pair[baseline]
    result = {
        "model": model,
        "baseline": baseline,
        "sets": int(len(pair)),
        "mean_difference": float(diff.mean()) if len(pair) else float("nan"),
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
        "p_value": float("nan"),
    }
    if (diff != 0).sum() >= 1:
        result["p_value"] = float(scipy_wilcoxon(pair[model], pair[baseline]).pvalue)
    return result


def comparison(
    auroc: pd.DataFrame, auprc: pd.DataFrame, ours: list[str], baselines: list[str]
) -> dict:
    """Means, mean ranks over all detectors and each of ``ours`` against the best baseline."""
    ranks = mean_ranks(auroc)
    best = best_baseline(auroc, baselines)
    return {
        "mean_auroc": {m: float(auroc[m].mean()) for m in auroc.columns},
        "mean_auprc": {m: float(auprc[m].mean()) for m in auprc.columns},
        "mean_rank": {m: float(r) for m, r in ranks.items()},
        "best_baseline": best,
        "wilcoxon": [wilcoxon(auroc, m, best) for m in ours if best and m in auroc.columns],
    }


def comparison_lines(result: dict, models: list[str]) -> list[str]:
    """Markdown: one row per detector (mean AUROC, mean AUPRC, mean rank), then each of
    vigil's detectors against the best baseline."""
    lines = [
        "| detector | mean AUROC | mean AUPRC | mean rank (all detectors) |",
        "|---|---:|---:|---:|",
    ]
    ranked = sorted(models, key=lambda m: result["mean_rank"].get(m, float("inf")))
    for m in ranked:
        rank = result["mean_rank"].get(m)
        lines.append(
            f"| {m} | {result['mean_auroc'][m]:.3f} | {result['mean_auprc'][m]:.3f} | "
            + (f"{rank:.2f}" if rank is not None else "")
            + " |"
        )
    lines.append("")
    for w in result["wilcoxon"]:
        lines.append(
            f"- {w['model']} vs the best baseline ({w['baseline']}): mean AUROC difference "
            f"{w['mean_difference']:+.3f}, better on {w['wins']}/{w['sets']} sets, worse on "
            f"{w['losses']}; Wilcoxon signed-rank p = {w['p_value']:.3g}."
        )
    return lines


# ------------------------------------------------------------------- regressions
def kept_reference(path: Path, step: str | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """The kept AUROC of a suite's results file, per model, set and seed (model -> set ->
    seed -> AUROC): its ``reference`` where it has one, else its results."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if step is not None and "steps" in data:
        data = data["steps"].get(step) or {}
    if data.get("reference"):
        return data["reference"]
    return per_seed(data.get("results") or [])


def per_seed(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """model -> set -> seed (as a string, JSON's keys) -> AUROC of result rows."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        seeds = out.setdefault(row["model"], {}).setdefault(row["dataset"], {})
        seeds[str(row["seed"])] = float(row["auroc"])
    return out


def check_regressions(
    rows: list[dict],
    kept: dict[str, dict[str, dict[str, float]]],
    models: list[str],
    accept: bool = False,
) -> tuple[list[dict], dict[str, dict[str, dict[str, float]]]]:
    """Sets where one of ``models`` lost more than ``TOLERANCE`` AUROC against ``kept``
    (the mean over the seeds both have), and the reference the next run compares with:
    the new figures where they held, the kept ones where they regressed (a regression
    stays flagged until it is fixed or accepted). ``accept``: an intended change, whose new
    figures become the reference all the same (the regressions are still reported, marked
    accepted). ``rows``: this run's result rows."""
    now = per_seed(rows)
    regressions: list[dict] = []
    reference = {m: {d: dict(s) for d, s in sets.items()} for m, sets in kept.items()}
    for model in models:
        for dataset, seeds in now.get(model, {}).items():
            before = kept.get(model, {}).get(dataset, {})
            common = sorted(set(seeds) & set(before))
            ref = reference.setdefault(model, {}).setdefault(dataset, {})
            if common:
                was = sum(before[s] for s in common) / len(common)
                value = sum(seeds[s] for s in common) / len(common)
                if value < was - TOLERANCE:
                    regressions.append(
                        {
                            "model": model,
                            "dataset": dataset,
                            "seeds": [int(s) for s in common],
                            "kept": was,
                            "now": value,
                            "change": value - was,
                            "accepted": accept,
                        }
                    )
                    if not accept:
                        continue
            ref.update(seeds)
    return regressions, reference


def regression_lines(regressions: list[dict] | None, checked: bool) -> list[str]:
    """The loud part of a report: a FAILED line per regressed set, or one line that says the
    check passed (or that there was nothing kept to check against)."""
    if not checked:
        return ["Regression check: no kept figures to compare with (first run).", ""]
    if not regressions:
        return [
            f"Regression check: passed (no set lost more than {TOLERANCE} AUROC against the "
            "kept figures).",
            "",
        ]
    failed = "; ".join(
        f"**FAILED** {r['model']} on {r['dataset']}: {r['kept']:.3f} -> {r['now']:.3f} "
        f"({r['change']:+.3f}; seeds {', '.join(map(str, r['seeds']))})"
        + (" — accepted: the new figure is the reference from now on" if r.get("accepted") else "")
        for r in regressions
    )
    return [
        f"**REGRESSION CHECK FAILED: {len(regressions)} set(s) lost more than {TOLERANCE} "
        f"AUROC against the kept figures.** {failed}.",
        "",
    ]
