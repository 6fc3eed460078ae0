"""The novelty floor's settings chosen on validation folds (benchmarks/feedback_floor.py)."""

from __future__ import annotations

import numpy as np

from benchmarks.feedback_floor import _pseudo_types, across, choose, floor_trials
from pipelines.feedback.reranker import BoostedTrees


def _stream(seed: int):
    """Normals; a labelled type the features give away; a type only the unsupervised score
    sees (presumed normal when held out, so the labelled model learns it as normal)."""
    rng = np.random.default_rng(seed)
    n = 40_000
    kind = rng.choice(["", "labelled", "novel"], n, p=[0.99, 0.005, 0.005])
    x = rng.normal(size=n) + 4.0 * (kind == "labelled")
    u = rng.lognormal(-1.5, 0.6, n) * np.where(kind == "novel", 6.0, 1.0)
    X = np.column_stack([x, u, rng.normal(size=n)])
    y = (kind != "").astype(int)
    half = np.arange(n) < n // 2
    return X, u, y, kind, [(np.flatnonzero(half), np.flatnonzero(~half))]


def _fit(X, y):
    return BoostedTrees.fit(X, y, max_iter=60, max_depth=4, seed=0)


def test_the_chosen_floor_keeps_the_held_out_types_auroc_and_tiny_weights_do_not():
    X, u, y, kind, folds = _stream(0)
    result = floor_trials(
        folds, X, u, y, kind, ["novel"], _fit, [3.0, 4.0], [0.002, 0.05, 0.2], cap=1.5, clusters=0
    )
    by = {(t["gate"], t["below"]): t for t in result["trials"]}
    chosen = result["chosen"]
    assert chosen["within_tolerance"]
    assert by[(chosen["gate"], chosen["below"])]["worst_loss"] <= 0.005
    # The tiny weight orders more by the labelled model and loses the novel type: the
    # choice is not simply the highest AP.
    assert by[(4.0, 0.002)]["worst_loss"] > 0.005
    assert all(t["novel_loss"] is not None for t in result["trials"])


def test_choose_falls_back_to_the_smallest_loss_and_across_takes_the_worst_seed():
    rows = [
        {"gate": 3.0, "below": 0.01, "ap": 0.7, "worst_loss": 0.02},
        {"gate": 3.0, "below": 0.1, "ap": 0.6, "worst_loss": 0.01},
    ]
    assert choose(rows, 0.005) == {"gate": 3.0, "below": 0.1, "within_tolerance": False}
    assert choose(rows, 0.015)["below"] == 0.1
    assert choose(rows, 0.05)["below"] == 0.01

    def report(name, losses):
        trials = [dict(r, worst_loss=loss) for r, loss in zip(rows, losses, strict=True)]
        return {"dataset": name, "trials": trials}

    reports = [
        {
            "meta": {"dataset": name},
            "seeds": [{"floor_selection": {"trials": report(name, ls)["trials"]}} for ls in seeds],
        }
        for name, seeds in (("a", [(0.0, 0.0), (0.004, 0.0)]), ("b", [(0.006, 0.001)]))
    ]
    table, chosen = across(reports, 0.005)
    assert chosen == {"gate": 3.0, "below": 0.1, "within_tolerance": True}
    assert {(r["gate"], r["below"]): r["worst_loss"] for r in table}[(3.0, 0.01)] == 0.006


def test_pseudo_types_group_the_known_frauds_the_same_way_in_training_and_test():
    X, _, y, kind, folds = _stream(1)
    train, test = folds[0]
    pseudo = _pseudo_types(X, y, train, test, clusters=2)
    assert (pseudo[y == 0] == "").all() and (pseudo[y == 1] != "").all()
    for k in ("labelled", "novel"):  # each true type lands (almost) whole in one cluster
        _, counts = np.unique(pseudo[kind == k], return_counts=True)
        assert counts.max() >= 0.9 * counts.sum()
