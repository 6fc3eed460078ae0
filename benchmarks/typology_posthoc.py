"""Post hoc looks at ``benchmarks.typology_cli`` scores (issue 11): takeover by place in the run,
and two models' scores combined.

    python -m benchmarks.typology_posthoc --workdir .vigil/bench/typology_cli_vae1000 \
        --report benchmarks/results/typology_cli_1000_vae.json --models seq_vae vae

Reads the next period (``next.csv``), the training file's fraud rows and each model's
``scores_KIND.parquet`` that ``typology_cli`` left in ``--workdir``. Prints, per model, the
AUROC of account-takeover payments by their place in the card's run (1st, 2nd, 3rd, 4th and
later) against all normals; with a ``--report`` (the JSON of the same run, for each
model's threshold), also the typology AUROCs of two combined scores: the larger of
``score / threshold`` and the mean of ``log(score / threshold)``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from pipelines.demo_sequences import TYPOLOGIES


def run_positions(workdir: Path, later: pd.DataFrame) -> np.ndarray:
    """Place of each next-period record in its card's takeover run (0: not a takeover)."""
    train = pd.read_csv(workdir / "train.csv", usecols=["card_id", "timestamp", "fraud_kind"])
    every = pd.concat([train, later[["card_id", "timestamp", "fraud_kind"]]])
    taken = every[every["fraud_kind"].fillna("") == "account_takeover"].copy()
    taken["when"] = pd.to_datetime(taken["timestamp"])
    taken["place"] = taken.groupby("card_id")["when"].rank(method="first")
    keys = zip(taken["card_id"], taken["timestamp"], strict=True)
    place = dict(zip(keys, taken["place"], strict=True))
    wanted = zip(later["card_id"], later["timestamp"], strict=True)
    return np.array([place.get(k, 0) for k in wanted])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--models", nargs="+", required=True, help="kinds, e.g. seq_vae vae")
    parser.add_argument("--report", default=None, help="typology_cli JSON of the same run")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    later = pd.read_csv(workdir / "next.csv")
    kind = later["fraud_kind"].fillna("").to_numpy()
    labels = later["is_fraud"].to_numpy()
    place = run_positions(workdir, later)
    scores = {}
    for model in args.models:
        scored = pd.read_parquet(workdir / f"scores_{model}.parquet").set_index("record_id")
        scores[model] = scored["score"].reindex(later["transaction_id"].astype(str)).to_numpy()
    normal = kind == ""
    for model, s in scores.items():
        cells = []
        for lo, hi, name in ((1, 1, "1st"), (2, 2, "2nd"), (3, 3, "3rd"), (4, 99, "4th+")):
            sel = (kind == "account_takeover") & (place >= lo) & (place <= hi)
            y = np.r_[np.zeros(normal.sum()), np.ones(sel.sum())]
            auroc = roc_auc_score(y, np.r_[s[normal], s[sel]])
            cells.append(f"{name} {auroc:.3f} (n={sel.sum()})")
        print(f"{model} takeover by place in the run: " + "; ".join(cells))
    if args.report and len(scores) == 2:
        report = json.loads(Path(args.report).read_text())
        thresholds = {}
        for command in report["commands"]:
            if command["command"].startswith("vigil score"):
                out = json.loads(command["stdout"][command["stdout"].index("{") :])
                model = command["command"].split("--model ")[1].split("/")[0].rsplit("-", 1)[-1]
                thresholds[model] = float(out["threshold"])
        ratio = [scores[m] / thresholds[m] for m in scores]
        combined = {
            "max(score / threshold)": (np.maximum(*ratio), 1.0),
            "mean(log(score / threshold))": ((np.log(ratio[0]) + np.log(ratio[1])) / 2, 0.0),
        }
        for name, (s, line) in combined.items():
            per = []
            for t in TYPOLOGIES:
                sel = normal | (kind == t)
                per.append(f"{t} {roc_auc_score(labels[sel], s[sel]):.3f}")
            print(
                f"{name}: AUROC {roc_auc_score(labels, s):.3f} AUPRC "
                f"{average_precision_score(labels, s):.3f} FPR {np.mean(s[normal] > line):.2%}; "
                + " ".join(per)
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
