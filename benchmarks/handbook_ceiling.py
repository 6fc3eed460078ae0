"""How high can an unsupervised per-record score go on handbook scenario 3? (issue 11)

    python -m benchmarks.handbook_ceiling

Scenario 3 ("compromised customer") multiplies a third of a customer's amounts by 5 for
14 days and changes nothing else: same terminals, same times. Oracles that read the
labels, on the July test month (normals + scenario-3 frauds, the protocol of
``benchmarks/sequences.py``):

* ``amount / true mean``: each amount divided by the customer's mean *legitimate* amount
  over the whole file (the best per-record amount baseline there can be);
* ``+ compromised window``: the same, with every record inside the customer's true
  compromised period (first to last scenario-3 fraud) ranked above every record outside
  it: a detector that knows exactly who is compromised and when;
* the share of frauds whose amount is within the customer's own legitimate range.

Prints the figures and, with ``--markdown``, writes the ``handbook-ceiling`` section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.report import write_section
from benchmarks.sequences import load_handbook
from detectors import metrics as m


def ceilings(raw: pd.DataFrame, test_start: str, test_end: str) -> dict:
    when = raw["TX_DATETIME"]
    legit = raw[raw["TX_FRAUD"] == 0]
    mean = legit.groupby("CUSTOMER_ID")["TX_AMOUNT"].mean()
    top = legit.groupby("CUSTOMER_ID")["TX_AMOUNT"].max()
    s3 = raw[raw["TX_FRAUD_SCENARIO"] == 3]
    first = s3.groupby("CUSTOMER_ID")["TX_DATETIME"].min()
    last = s3.groupby("CUSTOMER_ID")["TX_DATETIME"].max()
    test = raw[(when >= pd.Timestamp(test_start)) & (when < pd.Timestamp(test_end))]
    test = test[test["TX_FRAUD_SCENARIO"].isin([0, 3])]
    y = (test["TX_FRAUD_SCENARIO"] == 3).to_numpy().astype(int)
    ratio = (test["TX_AMOUNT"] / test["CUSTOMER_ID"].map(mean)).to_numpy(float)
    start = test["CUSTOMER_ID"].map(first)
    end = test["CUSTOMER_ID"].map(last)
    inside = ((test["TX_DATETIME"] >= start) & (test["TX_DATETIME"] <= end)).to_numpy()
    in_range = (test["TX_AMOUNT"] <= test["CUSTOMER_ID"].map(top)).to_numpy()
    window_score = ratio + np.where(inside, 1e6, 0.0)
    frauds_inside = int(y[inside].sum())
    return {
        "test_records": len(test),
        "frauds": int(y.sum()),
        "amount_oracle": {"auroc": m.auroc(y, ratio), "auprc": m.auprc(y, ratio)},
        "window_oracle": {"auroc": m.auroc(y, window_score), "auprc": m.auprc(y, window_score)},
        "frauds_within_own_range": float(in_range[y == 1].mean()),
        "records_in_windows": int(inside.sum()),
        "fraud_share_in_windows": frauds_inside / max(int(inside.sum()), 1),
    }


def ceiling_lines(c: dict) -> list[str]:
    """The RESULTS.md section for the figures of :func:`ceilings`."""
    return [
        "## Handbook scenario 3: the ceiling of a per-record score "
        "(`python -m benchmarks.handbook_ceiling`)",
        "",
        f"July 2018 test, normals + scenario-3 frauds ({c['test_records']:,} records, "
        f"{c['frauds']} frauds), full handbook data. Oracles read the labels.",
        "",
        "| oracle | AUROC | AUPRC |",
        "|---|---:|---:|",
        f"| amount / customer's true mean legitimate amount | "
        f"{c['amount_oracle']['auroc']:.4f} | {c['amount_oracle']['auprc']:.3f} |",
        f"| the same + every record in the true compromised window ranked first | "
        f"{c['window_oracle']['auroc']:.4f} | {c['window_oracle']['auprc']:.3f} |",
        "",
        f"{c['frauds_within_own_range']:.1%} of the frauds have an amount within the "
        "customer's own legitimate range (at or below its largest legitimate amount). The "
        f"compromised windows hold {c['records_in_windows']:,} test records, "
        f"{c['fraud_share_in_windows']:.1%} of them frauds: the rest are the same "
        "customer's genuine payments, at the same terminals and hours.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-start", default="2018-07-01")
    parser.add_argument("--test-end", default="2018-08-01")
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)
    c = ceilings(load_handbook(), args.test_start, args.test_end)
    print(c, file=sys.stderr)
    if args.markdown:
        write_section(Path(args.markdown), "handbook-ceiling", ceiling_lines(c))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
