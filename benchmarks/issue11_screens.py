"""Tables of issue 11's feature screens, from the JSON that ``benchmarks.sequences`` wrote.

    python -m benchmarks.issue11_screens --markdown benchmarks/RESULTS.md

Each screen is one ``benchmarks.sequences`` run (command in the section); the JSON files
are in ``benchmarks/results/issue11_screens/`` as ``typologies_NAME.json`` and
``handbook_NAME.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.report import write_section
from benchmarks.sequences import TYPOLOGY_HEADER, typology_rows

FOLDER = Path(__file__).resolve().parent / "results" / "issue11_screens"
#: (file name, what the run's --context set)
TYPOLOGY_RUNS = [
    ("base", "spec before this session (no novelty windows)"),
    ("nov1d", "+ novelty_windows [1D]"),
    ("nov6h", "+ novelty_windows [6h]"),
    ("nov1h6h", "+ novelty_windows [1h, 6h] (the new default)"),
    ("nov6h_ph", "+ novelty_windows [6h] + profile_hours"),
    ("prof", "+ profile_columns [merchant_category] + profile_hours"),
    ("robust", "+ robust_baseline"),
    ("allnew", "+ profile columns/hours, novelty_windows [1D], robust_baseline"),
    ("lvl6h_nov", "+ novelty_windows [1h, 6h] + level_windows [6h, 7D]"),
    ("seqbase", "spec before this session (no novelty windows)"),
    ("seq_nov6h", "+ novelty_windows [6h]"),
    ("seq_nov1h6h", "+ novelty_windows [1h, 6h] (the new default)"),
    ("seq_lvl6h_nov", "+ novelty_windows [1h, 6h] + level_windows [6h, 7D]"),
    # Third session: novelty_rate (each novelty window's count against the card's own rate).
    ("rate_unloc", "[1h, 6h] + novelty_rate unlocated"),
    ("rate_all", "[1h, 6h] + novelty_rate all"),
    ("rate6h_unloc", "[6h] + novelty_rate unlocated"),
    ("rate1h6h1d_unloc", "[1h, 6h, 1D] + novelty_rate unlocated"),
    ("rate3h12h_unloc", "[3h, 12h] + novelty_rate unlocated"),
    ("seq_rate_unloc", "[1h, 6h] + novelty_rate unlocated (before clean_calibration)"),
    ("seq_nov1h6h_cleancal", "[1h, 6h], clean_calibration (third session's code)"),
    ("s1_seq_nov1h6h", "data seed 1, [1h, 6h], clean_calibration"),
    ("s1_seq_rate_unloc", "data seed 1, [1h, 6h] + novelty_rate unlocated, clean_calibration"),
]
HANDBOOK_RUNS = [
    ("base", "data/specs/fraud_handbook.yaml as it is"),
    ("nov1h6h", "+ novelty_windows [1h, 6h]"),
    ("lvl7d", "+ level_windows [7D]"),
    ("lvl1d7d", "+ level_windows [1D, 7D]"),
    ("base_cleancal", "as it is, third session's code (clean_calibration)"),
    ("nov1h6h_now", "+ novelty_windows [1h, 6h], third session's code"),
    ("nov1h6h_rate", "+ novelty_windows [1h, 6h] + novelty_rate all, third session's code"),
]


def typology_lines() -> list[str]:
    lines = [*TYPOLOGY_HEADER]
    for name, label in TYPOLOGY_RUNS:
        path = FOLDER / f"typologies_{name}.json"
        if path.exists():
            lines += typology_rows(json.loads(path.read_text()), f"{label}: ")
    return lines


def handbook_lines() -> list[str]:
    lines = [
        "| run / model | all AUROC | all AUPRC | s1 AUPRC | s2 AUROC | s3 AUROC | s3 AUPRC "
        "| hold-out FPR | fit s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in HANDBOOK_RUNS:
        path = FOLDER / f"handbook_{name}.json"
        if not path.exists():
            continue
        for model, r in json.loads(path.read_text())["results"].items():
            a = r["all"]
            lines.append(
                f"| {label}: {model} | {a['auroc']:.4f} | {a['auprc']:.3f} | "
                f"{r['scenario_1']['auprc']:.3f} | {r['scenario_2']['auroc']:.3f} | "
                f"{r['scenario_3']['auroc']:.4f} | {r['scenario_3']['auprc']:.3f} | "
                f"{a['holdout_fpr']:.2%} | {r['fit_seconds']:.0f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", required=True)
    parser.add_argument("--intro", default=None, help="Markdown file put before the tables.")
    args = parser.parse_args(argv)
    intro = Path(args.intro).read_text().splitlines() if args.intro else []
    lines = [
        *intro,
        "",
        "Typology set screens (1,000 cards; the hard generator of this session):",
        "",
        *typology_lines(),
        "",
        "Handbook screens (1,000 customers):",
        "",
        *handbook_lines(),
    ]
    write_section(Path(args.markdown), "issue11-screens", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
