"""The labelled model's exploration lanes: which records below its line join the queue.

Analysts label only what they are shown, so a queue of the model's own top flags teaches
it only what it already knows. Each batch a labelled model scores gives a share of its
queue to two lanes (the linked one only when its share is set), each its own reason so
the review app shows it as its own lane:

- **uncertain** (``explore_uncertain``): the records whose fraud probability is nearest
  to a coin toss, where a verdict moves the model most;
- **linked** (``explore_linked``): the records that paid at a terminal or merchant where
  frauds have been confirmed recently (the verdict-driven risk features count them),
  the largest share of confirmed frauds first.
  A compromised terminal shows in no card's own history; its other payments look normal
  to every unsupervised model, and until analysts see some of them the labelled model
  never learns what a confirmed fraud next door means.

Each lane's size is a share of the batch's queue (flags + picks); a lane picks nothing
when the batch has no flags or (linked) no record links to a confirmed fraud.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from detectors.context.config import _seconds, _slug
from pipelines.feedback.risk import RiskConfig

EXPLORE_COLUMN = "explore"
UNCERTAIN_REASON = "explore_uncertain"
LINKED_REASON = "explore_linked"
#: The most a lane may take of the queue (the flags keep the rest).
MAX_SHARE = 0.9


def lane_size(n_flagged: int, share: float, n_candidates: int) -> int:
    """Picks that make ``share`` of a queue of ``n_flagged`` flags plus the picks."""
    share = min(max(float(share), 0.0), MAX_SHARE)
    if share <= 0 or n_flagged <= 0:
        return 0
    return min(int(np.ceil(share * n_flagged / (1.0 - share))), n_candidates)


def uncertain_picks(
    p: np.ndarray, flagged: np.ndarray, share: float, *, taken: np.ndarray | None = None
) -> np.ndarray:
    """The unflagged records (and not ``taken`` by another lane) with the most uncertain
    fraud probability (largest ``p (1 - p)``), as many as make ``share`` of the batch's
    queue (flags + picks)."""
    p = np.asarray(p, dtype="float64")
    picks = np.zeros(len(p), dtype=bool)
    flagged = np.asarray(flagged, dtype=bool)
    busy = flagged if taken is None else flagged | np.asarray(taken, dtype=bool)
    candidates = np.flatnonzero(~busy)
    k = lane_size(int(flagged.sum()), share, len(candidates))
    if k:
        doubt = p[candidates] * (1.0 - p[candidates])
        picks[candidates[np.argsort(-doubt, kind="stable")[:k]]] = True
    return picks


def linked_picks(
    link: np.ndarray, p: np.ndarray, taken: np.ndarray, n_flagged: int, share: float
) -> np.ndarray:
    """Records not ``taken`` (flagged or in another lane) with confirmed frauds at their
    terminal/merchant (``link`` > 0), the strongest link first (then the higher fraud
    probability), as many as make ``share`` of the batch's queue."""
    link = np.nan_to_num(np.asarray(link, dtype="float64"), nan=0.0)
    picks = np.zeros(len(link), dtype=bool)
    candidates = np.flatnonzero(~np.asarray(taken, dtype=bool) & (link > 0))
    k = lane_size(n_flagged, share, len(candidates))
    if k:
        order = np.lexsort((-np.asarray(p, dtype="float64")[candidates], -link[candidates]))
        picks[candidates[order[:k]]] = True
    return picks


def link_strength(features: pd.DataFrame, risk: RiskConfig | None) -> np.ndarray:
    """Per record: the share of its terminal's/merchant's payments over the longest risk
    window that are confirmed frauds (the largest over the secondary columns); 0 without
    risk features. A share, not a count: one confirmed fraud at a web shop thousands of
    cards use says little about the next payment there, and one at a corner terminal
    with a handful of payments says a lot."""
    if risk is None:
        return np.zeros(len(features))
    longest = _slug(max(risk.windows, key=_seconds))
    names = [n for n in risk.feature_names() if n.endswith(f"_fraud_share_{longest}")]
    present = [n for n in names if n in features.columns]
    if not present:
        return np.zeros(len(features))
    values = features[present].to_numpy(dtype="float64")
    return np.nan_to_num(values, nan=0.0).max(axis=1)


@dataclass(frozen=True)
class Lanes:
    """What the lanes picked in one batch: the union (``explore``) and each lane."""

    uncertain: np.ndarray
    linked: np.ndarray

    @property
    def explore(self) -> np.ndarray:
        return self.uncertain | self.linked


def pick_lanes(
    p: np.ndarray,
    flagged: np.ndarray,
    link: np.ndarray,
    *,
    uncertainty_share: float,
    linked_share: float,
) -> Lanes:
    """Both lanes for one batch: the linked lane first (its records are the likelier
    frauds), then the uncertain lane among what is left."""
    flagged = np.asarray(flagged, dtype=bool)
    n_flagged = int(flagged.sum())
    linked = linked_picks(link, p, flagged, n_flagged, linked_share)
    uncertain = uncertain_picks(p, flagged, uncertainty_share, taken=linked)
    return Lanes(uncertain=uncertain, linked=linked)


def uncertain_reason(share: float) -> dict:
    return {
        "feature": UNCERTAIN_REASON,
        "value": None,
        "contribution": 0.0,
        "share": 0.0,
        "text": "exploration: below the line, but the re-ranker is unsure (fraud "
        f"probability near its most uncertain); {share:.0%} of the queue is kept for these",
    }


def linked_reason(share: float) -> dict:
    return {
        "feature": LINKED_REASON,
        "value": None,
        "contribution": 0.0,
        "share": 0.0,
        "text": "exploration: below the line, but paid where frauds were confirmed recently "
        f"(the value: their share of its payments); {share:.0%} of the queue is kept for these",
    }
