"""A scoring run's records as a file: every record of the batch with its score and flag,
quarantined ones marked with why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.spreadsheet import spreadsheet_safe
from pipelines.store import ResultsStore


def write_scores_file(store: ResultsStore, run_id: str, path: str | Path) -> Path:
    """Every record of the batch: scored ones with score and flag, quarantined ones marked."""
    path = Path(path)
    scores = store.scores_frame(run_id)
    scores["status"] = "scored"
    quarantine = store.quarantine_frame(run_id)
    if len(quarantine):
        reasons = quarantine.groupby("row_number", sort=False).agg(
            record_id=("record_id", "first"), reason=("reason", "; ".join)
        )
        rejected = pd.DataFrame(
            {
                "record_id": reasons["record_id"].to_numpy(),
                "score": np.nan,
                "is_anomaly": pd.NA,
                "status": "quarantined: " + reasons["reason"],
            }
        )
        scores = pd.concat([scores, rejected], ignore_index=True)
    scores = spreadsheet_safe(scores)  # record ids come from data: no formulas in a sheet
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        scores.to_csv(path, index=False)
    else:
        scores.to_parquet(path, index=False)
    return path
