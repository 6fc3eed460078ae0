"""Training hygiene from verdicts: confirmed frauds never train a model of "normal".

The train flow reads the labels known before training starts and turns them into per-row
masks that :func:`pipelines.modeling.training.split_for_training` applies: confirmed frauds
are treated like labelled anomalies (left out of the normal training rows, still context
in sequence mode); reviewed ``not_fraud`` rows stay and are marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd


@dataclass
class LabelMasks:
    confirmed_frauds: np.ndarray
    reviewed_normals: np.ndarray
    known_before: datetime | None
    labels_known: int

    def report(self, split) -> dict:
        """What the labels changed in a training split, for the train result."""
        reviewed = split.train_reviewed_normal
        return {
            "known_before": self.known_before.isoformat() if self.known_before else None,
            "labels_known": self.labels_known,
            "labels_matched": int(self.confirmed_frauds.sum() + self.reviewed_normals.sum()),
            "confirmed_frauds_dropped": int(split.confirmed_frauds_dropped),
            "reviewed_normals_kept": int(reviewed.sum()) if reviewed is not None else 0,
        }


def label_masks(
    records: pd.DataFrame, id_column: str, labels: pd.DataFrame, known_before: datetime | None
) -> LabelMasks:
    """Per-row masks of ``records`` from ``labels`` (one counting verdict per record, as
    :meth:`ResultsStore.known_labels` returns them)."""
    ids = records[id_column].astype(str)
    fraud_ids = set(labels.loc[labels["y"] == 1, "record_id"].astype(str))
    normal_ids = set(labels.loc[labels["y"] == 0, "record_id"].astype(str))
    return LabelMasks(
        confirmed_frauds=ids.isin(fraud_ids).to_numpy(),
        reviewed_normals=ids.isin(normal_ids).to_numpy(),
        known_before=known_before,
        labels_known=len(labels),
    )
