"""The replay's report: the alert-threshold effect, the RESULTS.md lines and the
per-day plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.sequences import SCENARIOS


def threshold_effect(u, y, day, first_update, n_days, args) -> dict:
    """Flags/day and precision: the 1%-FPR threshold vs a weekly alert-budget threshold set
    from the previous week's scores (budget = cards reviewed per day)."""
    fixed = {"flags": 0, "frauds": 0}
    budget = {"flags": 0, "frauds": 0}
    cut = None
    for d in range(first_update, n_days):
        if cut is None or (d - first_update) % args.update_every == 0:
            past = u[(day < d) & (day >= d - args.update_every)]
            wanted = args.cards_per_day * args.update_every
            cut = float(np.sort(past)[::-1][min(wanted, len(past) - 1)])
        rows = day == d
        for counter, line in ((fixed, 1.0), (budget, cut)):
            flagged = rows & (u > line)
            counter["flags"] += int(flagged.sum())
            counter["frauds"] += int(y[flagged].sum())
    days = n_days - first_update
    out = {}
    for name, c in (("fpr_1pct", fixed), ("budget", budget)):
        out[name] = {
            "flags_per_day": c["flags"] / days,
            "precision": c["frauds"] / c["flags"] if c["flags"] else None,
        }
    return out


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: each served variant's quality over the replay, overall and per
    scenario, what each team labelled, and the unsupervised score's two thresholds."""
    meta = report["meta"]
    p = meta["protocol"]
    lines = [
        f"{meta['rows']:,} records ({p['customer_fraction']:.0%} of the customers); VAE on raw "
        f"+ context features fit on {meta['train']}; {meta['test']}. Analysts review the top "
        f"{p['cards_per_day']} cards a day, labels known {p['label_delay_days']} days later, "
        f"models updated every {p['update_every']} days. Served rule of the vigil variants: "
        f"max(p / 0.5, floor(u)), floor capped at {p.get('floor_cap', 'n/a')}. "
        "`all_heldout_s3`: scenario-3 verdicts never become labels (a novel pattern); "
        "`*_linked`: 10% of the daily cards go to cards linked to confirmed fraud; "
        "`*_explore`: 10% to the cards the labelled model is least sure of (p nearest 0.5). "
        "`*_clean`: unlabelled records that paid where a fraud was confirmed are not presumed "
        "normal; `*_prop`: half of those are presumed fraud instead. "
        "Scenarios: " + "; ".join(f"s{k} {v}" for k, v in SCENARIOS.items()) + ". "
        "CP@100: Card Precision@100 per day. Post hoc served rules are in the JSON.",
        "",
    ]
    header = "| variant | all AUROC | all AUPRC | all CP@100 |"
    rule = "|---|---:|---:|---:|"
    for s in SCENARIOS:
        header += f" s{s} AUROC | s{s} AUPRC |"
        rule += "---:|---:|"
    lines += [header + " labelled records (s2 frauds) |", rule + "---:|"]
    labelled = report.get("labelled", {})
    for name, r in report["results"].items():
        if "post hoc" in name:
            continue
        cells = [f"{r['all']['auroc']:.4f}", f"{r['all']['auprc']:.3f}", f"{r['all']['cp100']:.3f}"]
        for s in SCENARIOS:
            part = r[f"scenario_{s}"]
            cells += [f"{part['auroc']:.4f}", f"{part['auprc']:.3f}"]
        team = labelled.get(name)
        cells.append(f"{team['records']:,} ({team['scenario_2_frauds']})" if team else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += goal_lines(report)
    t = report["thresholds"]
    lines += [
        "Thresholds of the unsupervised score: fixed 1% FPR "
        f"{t['fpr_1pct']['flags_per_day']:.0f} flags/day, precision "
        f"{_fmt(t['fpr_1pct']['precision'])}; a weekly alert budget of {p['cards_per_day']}/day "
        f"{t['budget']['flags_per_day']:.0f} flags/day, precision "
        f"{_fmt(t['budget']['precision'])}.",
    ]
    return lines


def plot_per_day(report: dict, path: Path) -> None:
    """Card Precision@100 per replay day for the served variants (the analysts' daily view)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = int(report["meta"]["test"].split("replay day ")[1].split(" ")[0])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, r in report["results"].items():
        if "post hoc" in name:
            continue
        series = np.asarray(r["cp100_per_day"])
        # A 7-day rolling mean: single days swing with the day's fraud count.
        smooth = pd.Series(series).rolling(7, min_periods=1).mean()
        style = "--" if name.startswith("supervised") else "-"
        ax.plot(
            np.arange(first, first + len(series)),
            smooth,
            style,
            label=f"{name} ({series.mean():.3f})",
        )
    ax.set_xlabel("replay day (0 = 2018-07-01)")
    ax.set_ylabel("Card Precision@100 (7-day mean)")
    ax.set_title("Handbook replay: what the top 100 cards of each day held")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def goal_lines(report: dict) -> list[str]:
    """The few-labels goals for the team whose labels trained the same-labels baseline:
    AUPRC at or above that baseline's, and at least 90% of the all-labels model's."""
    results = report["results"]
    name = report["meta"]["protocol"].get("same_labels_from")
    if name not in results or not {"supervised_same_labels", "supervised_all_labels"} <= set(
        results
    ):
        return [""]
    ours = results[name]["all"]["auprc"]
    same = results["supervised_same_labels"]["all"]["auprc"]
    target = 0.9 * results["supervised_all_labels"]["all"]["auprc"]
    return [
        "",
        f"Few-labels goals for `{name}`: AUPRC {ours:.3f} against the same-labels baseline's "
        f"{same:.3f} (gap {ours - same:+.3f}) and 90% of the all-labels model's, {target:.3f} "
        f"(gap {ours - target:+.3f}).",
    ]
