"""What makes up the scores of late takeover payments, per model (issue 11, post hoc).

    python -m benchmarks.typology_explain --workdir .vigil/bench/typology_cli_vae1000 \
        --models typologies-seq_vae/1 typologies-vae/1

Loads each registered model of a ``benchmarks.typology_cli`` work folder, explains the next
period (the training file as history) and prints, for the account-takeover payments at
place 4 or later in their run: their median score, the share of it from the novelty-count
columns (``ctx_new_*``) against normals, the largest median per-column terms, and how many
of them stay below the normals' 97th percentile; for the normals above that line, which
column is the largest term and how much of the score it makes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.typology_posthoc import run_positions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--models", nargs="+", required=True, help="NAME/VERSION")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir).resolve()
    os.environ["VIGIL_HOME"] = str(workdir / "home")
    from pipelines.modeling.bundle import prepare_records
    from pipelines.modeling.registry import configure_mlflow, load_bundle, resolve_model
    from pipelines.settings import get_settings

    configure_mlflow(get_settings())
    train = pd.read_csv(workdir / "train.csv")
    later = pd.read_csv(workdir / "next.csv")
    kind = later["fraud_kind"].fillna("").to_numpy()
    late_takeover = np.flatnonzero(
        (kind == "account_takeover") & (run_positions(workdir, later) >= 4)
    )
    normal = np.flatnonzero(kind == "")
    frame = pd.concat([train, later], ignore_index=True)
    for ref in args.models:
        bundle = load_bundle(resolve_model(ref))
        spec, detector = bundle.spec, bundle.detector
        features = prepare_records(spec, frame).features
        if hasattr(detector, "entity_column"):
            columns = [*spec.model_feature_columns, spec.entity_column, spec.time_column]
            parts = detector.explain(
                features.iloc[len(train) :][columns], history=features.iloc[: len(train)][columns]
            )
        else:
            parts = detector.explain(features.iloc[len(train) :][spec.model_feature_columns])
        novelty = [c for c in parts.columns if c.startswith("ctx_new_")]
        total = parts.sum(axis=1).to_numpy()
        line = float(np.quantile(total[normal], 0.97))
        mine = parts.iloc[late_takeover]
        print(
            f"{ref}: {len(late_takeover)} takeover payments at place 4+: median score "
            f"{np.median(total[late_takeover]):.1f}; novelty columns' share of it "
            f"{np.median(mine[novelty].sum(axis=1) / total[late_takeover]):.2f}, median "
            f"contribution {mine[novelty].sum(axis=1).median():.2f} (normals "
            f"{parts.iloc[normal][novelty].sum(axis=1).median():.3f}); below the normals' 97th "
            f"percentile ({line:.1f}): {int((total[late_takeover] <= line).sum())}"
        )
        top = mine.median().sort_values(ascending=False).head(6).round(2).to_dict()
        print(f"  largest median terms: {top}")
        tail = parts.iloc[normal[total[normal] > line]]
        share = (tail.max(axis=1) / tail.sum(axis=1)).median()
        columns = tail.idxmax(axis=1).value_counts(normalize=True).head(6).round(2).to_dict()
        print(
            f"  normals above that line ({len(tail)}): largest column's share of the score "
            f"{share:.2f} (median); the largest column is {columns}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
