"""The all-labels protocol's RESULTS.md lines (``feedback_handbook``'s report)."""

from __future__ import annotations

import numpy as np


def _cell(values: list[float], digits: int) -> str:
    """Mean over seeds, with each seed's figure when they differ."""
    mean = float(np.mean(values))
    if len(values) == 1 or max(values) - min(values) < 0.5 * 10**-digits:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ({' / '.join(f'{v:.{digits}f}' for v in values)})"


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: each model's test-week quality (mean over seeds, each seed in
    brackets), the chosen settings, and the held-out fraud types."""
    meta = report["meta"]
    runs = report["seeds"]
    lines = [
        f"{meta['dataset']} ({meta['records']:,} records loaded): train "
        f"{meta['train']['rows']:,} records ({meta['train']['frauds']} frauds) from "
        f"{meta['train']['start']}, 7 days of delay, test {meta['test']['rows']:,} "
        f"({meta['test']['frauds']} frauds; known-compromised cards removed). Both models "
        "tuned on the same grid by validation AP on the fold(s) starting "
        f"{', '.join(str(w) for w in meta['protocol']['validation_weeks'])} weeks before "
        f"(risk windows {meta['protocol'].get('risk_delay_days', 0)} days late); seeds "
        f"{', '.join(map(str, meta['seeds']))} (mean, each seed in brackets). CP@100: the "
        "handbook's card precision (cards found on earlier days leave).",
        "",
    ]
    first = runs[0]["results"]
    kinds = sorted({k for r in first.values() for k in r if k != "all"})
    lines.append("| model | AUROC | AP | CP@100 | " + " | ".join(f"{k} AP" for k in kinds) + " |")
    lines.append("|---|---:|---:|---:|" + "---:|" * len(kinds))
    per_seed_floor = "vigil served, floor chosen on validation"
    for name in first:
        if "post hoc" in name or name == per_seed_floor:
            continue
        rs = [run["results"][name] for run in runs]
        cells = [
            _cell([r["all"]["auroc"] for r in rs], 4),
            _cell([r["all"]["ap"] for r in rs], 3),
            _cell([r["all"]["cp100"] for r in rs], 3),
        ]
        cells += [_cell([r[k]["ap"] for r in rs], 3) if k in rs[0] else "-" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    previous = "vigil served, ungated, below x1 (previous rule) [post hoc]"
    lines.append("")
    before = ""
    if previous in first:
        rs = [run["results"][previous]["all"] for run in runs]
        before = (
            "The served rule before the gate (the detector's 1% line, full weight below it) "
            f"on the same scores: AP {_cell([r['ap'] for r in rs], 3)}, CP@100 "
            f"{_cell([r['cp100'] for r in rs], 3)}; other gates and weights in the JSON. "
        )
    chosen = {name: [run["tuning"][name]["chosen"] for run in runs] for name in runs[0]["tuning"]}
    selections = [run.get("floor_selection") for run in runs]
    floor = ""
    if all(selections) and per_seed_floor in first:
        picks = " / ".join(
            f"gate {c['gate']:g}, below {c['below']:g}"
            + ("" if c["within_tolerance"] else " (none within tolerance)")
            for c in (sel["chosen"] for sel in selections)
        )
        rs = [run["results"][per_seed_floor]["all"] for run in runs]
        floor = (
            " The floor chosen per seed on the validation fold(s) (highest served AP whose "
            f"held-out types lose at most {selections[0]['tolerance']:g} AUROC there): {picks}; "
            f"served with it AP {_cell([r['ap'] for r in rs], 3)}, CP@100 "
            f"{_cell([r['cp100'] for r in rs], 3)} (every setting's validation figures in the "
            "JSON; `python -m benchmarks.feedback_floor` picks one for every data set and seed)."
        )
    lines.append(
        before
        + "Chosen settings: "
        + "; ".join(f"{name} {', '.join(map(str, c))}" for name, c in chosen.items())
        + "."
        + floor
    )
    for kind in runs[0].get("heldout", {}):
        hs = [run["heldout"][kind] for run in runs if kind in run.get("heldout", {})]
        chosen_floor = ""
        if all("chosen_served_auroc" in h for h in hs):
            chosen_floor = (
                f", served with the floor chosen on validation "
                f"{_cell([h['chosen_served_auroc'] for h in hs], 4)}"
            )
        lines.append(
            f"Held out `{kind}` (its frauds never labelled, presumed normal): AUROC "
            f"unsupervised {_cell([h['unsupervised_auroc'] for h in hs], 4)}, served "
            f"{_cell([h['served_auroc'] for h in hs], 4)}{chosen_floor}, labelled model "
            f"alone {_cell([h['p_auroc'] for h in hs], 4)}."
        )
    return lines
