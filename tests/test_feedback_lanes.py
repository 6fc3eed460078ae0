"""The labelled model's exploration lanes: the uncertain lane and the lane of records
linked to confirmed fraud share the queue below the line, each with its own reason."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.feedback.lanes import (
    LINKED_REASON,
    lane_size,
    link_strength,
    linked_picks,
    pick_lanes,
)
from pipelines.feedback.risk import RiskConfig


def test_lane_size_is_a_share_of_the_queue_and_needs_flags():
    assert lane_size(9, 0.1, 100) == 1  # 9 flags + 1 pick: 10%
    assert lane_size(3, 0.25, 100) == 1
    assert lane_size(0, 0.5, 100) == 0  # no flags, no lane
    assert lane_size(10, 0.5, 4) == 4  # at most the candidates
    assert lane_size(10, 0.0, 100) == 0


def test_linked_lane_takes_unflagged_records_with_the_most_confirmed_frauds_nearby():
    link = np.array([0, 3, 1, 0, 2, 5, 1])
    p = np.array([0.9, 0.1, 0.4, 0.2, 0.3, 0.8, 0.2])
    flagged = np.array([True, False, False, False, False, True, False])
    picks = linked_picks(link, p, flagged, int(flagged.sum()), 0.5)  # 2 flags -> 2 picks
    assert picks.tolist() == [False, True, False, False, True, False, False]
    # ties in the count go to the higher fraud probability
    tie = linked_picks(np.array([1, 1, 1]), np.array([0.1, 0.3, 0.2]), np.zeros(3, bool), 1, 0.5)
    assert tie.tolist() == [False, True, False]
    assert not linked_picks(np.zeros(4), np.zeros(4), np.array([1, 0, 0, 0], bool), 1, 0.5).any()


def test_both_lanes_share_the_queue_without_overlap():
    n = 40
    p = np.linspace(0.0, 0.99, n)
    flagged = p > 0.8  # 8 flags
    link = np.zeros(n)
    link[[20, 21, 35]] = [1, 2, 4]  # 35 is flagged already
    lanes = pick_lanes(p, flagged, link, uncertainty_share=0.2, linked_share=0.2)
    assert lanes.linked.sum() == 2 and lanes.linked[[20, 21]].all()
    assert lanes.uncertain.sum() == 2  # its own share, from the flags alone
    assert not (lanes.uncertain & lanes.linked).any()
    assert not (lanes.explore & flagged).any()
    off = pick_lanes(p, flagged, link, uncertainty_share=0.2, linked_share=0.0)
    assert not off.linked.any() and off.uncertain.sum() == 2


def test_link_strength_reads_the_fraud_share_of_the_longest_window_per_column():
    risk = RiskConfig(columns=("terminal", "merchant"), time_column="t", id_column="id")
    names = risk.feature_names()
    features = pd.DataFrame(0.0, index=range(3), columns=names)
    features.loc[0, "risk_terminal_fraud_share_28d"] = 0.5
    features.loc[0, "risk_terminal_frauds_28d"] = 9  # a count is not a share
    features.loc[1, "risk_merchant_fraud_share_28d"] = 0.01
    features.loc[2, "risk_terminal_fraud_share_7d"] = 1.0  # the shorter window is inside
    assert link_strength(features, risk).tolist() == [0.5, 0.01, 0.0]
    assert link_strength(features, None).tolist() == [0.0, 0.0, 0.0]
    assert LINKED_REASON == "explore_linked"


def test_records_linked_to_confirmed_fraud_are_not_presumed_normal():
    from pipelines.feedback.presumed import presume

    link = np.array([0, 0, 2, 0, 1, 0, np.nan, 0, 3, 0])
    unlabelled = np.array([0, 1, 2, 3, 4, 6, 8, 9])  # 5 and 7 carry verdicts
    drawn = presume(unlabelled, link, 100, np.random.default_rng(0))
    assert drawn.normal.tolist() == [0, 1, 3, 6, 9]  # every plain one, none linked
    assert len(drawn.fraud) == 0
    few = presume(unlabelled, link, 2, np.random.default_rng(0), propagate=1.0)
    assert len(few.normal) == 2 and set(few.normal) <= {0, 1, 3, 6, 9}
    assert few.fraud.tolist() == [2, 4, 8]
    half = presume(unlabelled, link, 2, np.random.default_rng(0), propagate=0.5)
    assert len(half.fraud) == 2 and set(half.fraud) <= {2, 4, 8}
