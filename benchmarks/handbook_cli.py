"""The Fraud-Detection-Handbook's Chapter 3 split, through the CLI, as a user runs it.

    python -m benchmarks sequences --only cli [--customer-fraction 0.2]

The handbook's baseline protocol (Chapter 3): train on a period, wait out a label delay of
seven days, test on the week after; customers already known compromised (a fraud in the
training period or in the delay days before the test day) are left out of each test day.
Here: the training file is July 2018, the scored batch is 2018-08-01..14 (one ``vigil
score`` that reads the kept customer history, so the delay week is scored too, as it
would be in production), and the figures are taken on 2018-08-08..14.

In a fresh ``VIGIL_HOME``, as subprocesses:

1. ``vigil spec init --id-col TRANSACTION_ID --label-col TX_FRAUD --entity-col
   CUSTOMER_ID --time-col TX_DATETIME --ignore-col TX_FRAUD_SCENARIO`` (the spec as
   proposed, never edited; the scenario code gives the label away);
2. ``vigil train --detectors ...`` with no other option (the defaults are what counts);
3. ``vigil score --data next.csv --model NAME/VERSION --out scores.parquet`` per model.

Figures per model: AUROC, AUPRC and Card Precision@100 per day, overall and per scenario
(normals + that scenario's frauds). ``TX_FRAUD_SCENARIO`` is read only here, to group them.

A ceiling row, ``oracle_ratio``, is no model: each payment's amount over its customer's
mean amount across *all* its normal payments of the file (labels and the future read, so
no detector can have it). Scenario 3 multiplies a third of a compromised customer's
amounts by five, so its frauds differ from normals by this ratio alone; the row says how
far an amount-relative-to-the-customer view can go on this split.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.sequences import SCENARIOS, load_handbook, quality, scenario_table
from benchmarks.typologies import _json_tail, user_environment, vigil
from pipelines.intake.spec import load_spec

TRAIN = ("2018-07-01", "2018-08-01")
SCORED = ("2018-08-01", "2018-08-15")
TEST_START = "2018-08-08"
DELAY_DAYS = 7


def write_files(args: argparse.Namespace, workdir: Path) -> dict:
    """train.csv (July) and next.csv (Aug 1-14), sampled by customer when asked."""
    frame = load_handbook(Path(args.data) if args.data else None)
    if args.customer_fraction < 1:
        ids = np.sort(frame["CUSTOMER_ID"].unique())
        rng = np.random.default_rng(args.data_seed)
        keep = rng.choice(ids, int(len(ids) * args.customer_fraction), replace=False)
        frame = frame[frame["CUSTOMER_ID"].isin(keep)]
    when = frame["TX_DATETIME"]
    train = frame[(when >= TRAIN[0]) & (when < TRAIN[1])]
    later = frame[(when >= SCORED[0]) & (when < SCORED[1])]
    train.to_csv(workdir / "train.csv", index=False)
    later.to_csv(workdir / "next.csv", index=False)
    mean = frame[frame["TX_FRAUD"] == 0].groupby("CUSTOMER_ID")["TX_AMOUNT"].mean()
    later.assign(oracle_ratio=later["TX_AMOUNT"] / later["CUSTOMER_ID"].map(mean))[
        ["TRANSACTION_ID", "oracle_ratio"]
    ].to_csv(workdir / "oracle.csv", index=False)
    known = frame[(when >= TRAIN[0]) & (when < SCORED[1]) & (frame["TX_FRAUD"] == 1)]
    known[["CUSTOMER_ID", "TX_TIME_DAYS"]].to_csv(workdir / "known_frauds.csv", index=False)
    return {
        "customers": int(frame["CUSTOMER_ID"].nunique()),
        "train_rows": len(train),
        "train_frauds": int(train["TX_FRAUD"].sum()),
        "scored_rows": len(later),
    }


def test_rows(later: pd.DataFrame, known: pd.DataFrame) -> np.ndarray:
    """Rows of the test week whose customer was not known compromised that day: no fraud
    from the training period's start to ``day - DELAY_DAYS`` (the handbook's rolling set
    of known customers; ``known`` holds the frauds from the training period on)."""
    first_fraud = known.groupby("CUSTOMER_ID")["TX_TIME_DAYS"].min()
    day = later["TX_TIME_DAYS"].to_numpy()
    first = later["CUSTOMER_ID"].map(first_fraud).to_numpy(dtype="float64")
    in_week = (later["TX_DATETIME"] >= pd.Timestamp(TEST_START)).to_numpy()
    compromised = ~np.isnan(first) & (first < day - DELAY_DAYS)
    return in_week & ~compromised


def run(args: argparse.Namespace) -> dict:
    workdir = Path(args.workdir).resolve()
    env = user_environment(workdir)
    log: list[dict] = []
    spec_path = workdir / "spec.yaml"
    sizes = write_files(args, workdir)
    print(f"wrote {sizes['train_rows']:,} + {sizes['scored_rows']:,} rows", file=sys.stderr)
    vigil(
        "spec", "init", "--data", str(workdir / "train.csv"), "--id-col", "TRANSACTION_ID",
        "--label-col", "TX_FRAUD", "--entity-col", "CUSTOMER_ID", "--time-col", "TX_DATETIME",
        "--ignore-col", "TX_FRAUD_SCENARIO", "--name", "handbook", "--out", str(spec_path),
        env=env, log=log,
    )  # fmt: skip
    if args.context:
        # A measured edit of the proposed spec (not the user's path: the figures say so).
        spec = load_spec(spec_path)
        spec.model_copy(
            update={"context": spec.context.replace(**json.loads(args.context))}, deep=True
        ).save(spec_path)
    out, train_seconds = vigil(
        "train", "--data", str(workdir / "train.csv"), "--spec", str(spec_path),
        "--detectors", args.detectors, "--json", env=env, log=log,
    )  # fmt: skip
    models = _json_tail(out)["models"]
    later = pd.read_csv(workdir / "next.csv", parse_dates=["TX_DATETIME"])
    keep = test_rows(later, pd.read_csv(workdir / "known_frauds.csv"))
    test = later.loc[keep].reset_index(drop=True)
    results = {}
    for model in models:
        name, version = model["model"], model["version"]
        kind = name.rsplit("-", 1)[-1]
        scores_path = workdir / f"scores_{kind}.parquet"
        _, score_seconds = vigil(
            "score", "--data", str(workdir / "next.csv"), "--model", f"{name}/{version}",
            "--out", str(scores_path), "--json", env=env, log=log,
        )  # fmt: skip
        scored = pd.read_parquet(scores_path).set_index("record_id")["score"]
        scores = scored.reindex(test["TRANSACTION_ID"].astype(str)).to_numpy(float)
        results[kind] = {
            **quality(test, np.nan_to_num(scores, nan=-np.inf)),
            "unscored": int(np.isnan(scores).sum()),
            "fit_seconds": float(model["metrics"].get("fit_seconds", float("nan"))),
            "score_command_seconds": score_seconds,
        }
        r = results[kind]
        print(
            f"{kind}: AUROC {r['all']['auroc']:.4f} AP {r['all']['auprc']:.3f} CP@100 "
            f"{r['all']['cp100']:.3f}; "
            + " ".join(
                f"s{s} {r[f'scenario_{s}']['auroc']:.3f}/{r[f'scenario_{s}']['auprc']:.3f}"
                for s in SCENARIOS
            ),
            file=sys.stderr,
        )
    oracle = pd.read_csv(workdir / "oracle.csv").set_index("TRANSACTION_ID")["oracle_ratio"]
    ceiling = oracle.reindex(test["TRANSACTION_ID"]).to_numpy(float)
    results["oracle_ratio"] = {
        **quality(test, np.nan_to_num(ceiling, nan=0.0)),
        "fit_seconds": float("nan"),
    }
    return {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "customer_fraction": args.customer_fraction,
            "data_seed": args.data_seed,
            "detectors": args.detectors,
            "context_edit": args.context,
            "sizes": {**sizes, "test_rows": len(test), "test_frauds": int(test["TX_FRAUD"].sum())},
            "load_average": os.getloadavg(),
            "train_command_seconds": train_seconds,
        },
        "spec": spec_path.read_text(),
        "commands": log,
        "results": results,
    }


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: per model, AUROC / AUPRC / CP@100 overall and per scenario."""
    meta, sizes = report["meta"], report["meta"]["sizes"]
    sample = (
        f"{meta['customer_fraction']:.0%} of the customers (seed {meta['data_seed']})"
        if meta["customer_fraction"] < 1
        else "all customers"
    )
    lines = [
        f"Handbook Chapter 3 split through the CLI, {sample}: `vigil spec init` "
        + (
            f"with its context edited ({meta['context_edit']}), "
            if meta.get("context_edit")
            else "as proposed, "
        )
        + f"`vigil train --detectors {meta['detectors']}` (defaults) on July 2018 "
        f"({sizes['train_rows']:,} rows, {sizes['train_frauds']} frauds), one `vigil score` "
        f"of 2018-08-01..14 ({sizes['scored_rows']:,} rows); figures on 2018-08-08..14 "
        f"without the customers already known compromised ({sizes['test_rows']:,} rows, "
        f"{sizes['test_frauds']} frauds). Scenario columns: normals + that scenario's frauds ("
        + "; ".join(f"s{k}: {v}" for k, v in SCENARIOS.items())
        + "). CP@100: Card Precision@100 per day. Goals: s3 AUPRC >= 0.90 at AUROC >= 0.97, "
        "s1 AUPRC >= 0.9. oracle_ratio is no model: amount / the customer's mean over all "
        "its normal payments (labels and the future read), the ceiling of an "
        "amount-relative view.",
        "",
    ]
    lines += scenario_table(report["results"])
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="Handbook CSV (default: shared datasets).")
    parser.add_argument(
        "--dataset", default="handbook", choices=["handbook"], help="Only the handbook."
    )
    parser.add_argument("--customer-fraction", type=float, default=1.0)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--detectors", default="seq_vae,seq_gan,vae")
    parser.add_argument(
        "--context",
        default=None,
        help='JSON edit of the proposed spec\'s context, e.g. {"baseline_gap": "14D"} '
        "(to measure a proposal before making it spec init's default)",
    )
    parser.add_argument("--workdir", default=".vigil/bench/handbook_cli")
    parser.add_argument("--out", required=True, help="the report (JSON)")
    args = parser.parse_args(argv)
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
