"""The comparison the tabular suites report (mean rank over all detectors, Wilcoxon against
the best baseline) and their guard against silent regressions."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmarks.comparison import (
    TOLERANCE,
    check_regressions,
    comparison,
    kept_reference,
    mean_ranks,
    regression_lines,
)

AUROC = pd.DataFrame(
    {"vae": [0.9, 0.8, 0.7, 0.95], "knn": [0.85, 0.82, 0.6, 0.9], "lof": [0.5, 0.5, 0.5, 0.5]},
    index=["a", "b", "c", "d"],
)


def test_mean_ranks_and_the_best_baseline():
    ranks = mean_ranks(AUROC)
    assert ranks["vae"] == pytest.approx(1.25) and ranks["knn"] == pytest.approx(1.75)
    assert ranks["lof"] == pytest.approx(3.0)
    result = comparison(AUROC, AUROC, ["vae"], ["knn", "lof"])
    assert result["best_baseline"] == "knn"
    test = result["wilcoxon"][0]
    assert (test["wins"], test["losses"], test["sets"]) == (3, 1, 4)
    assert test["mean_difference"] == pytest.approx(0.045)
    assert 0.0 < test["p_value"] <= 1.0


def rows(model: str, dataset: str, values: dict[int, float]) -> list[dict]:
    return [{"model": model, "dataset": dataset, "seed": s, "auroc": v} for s, v in values.items()]


def test_a_set_that_loses_more_than_the_tolerance_fails_loudly(tmp_path):
    kept_file = tmp_path / "kept.json"
    kept_file.write_text(
        json.dumps({"results": rows("vae", "a", {0: 0.90, 1: 0.92}) + rows("vae", "b", {0: 0.8})})
    )
    kept = kept_reference(kept_file)
    now = rows("vae", "a", {0: 0.90 - 3 * TOLERANCE}) + rows("vae", "b", {0: 0.795, 1: 0.1})
    regressions, reference = check_regressions(now, kept, ["vae"])
    # Set a lost 0.03 on the seed both runs have; set b lost 0.005 on seed 0 (seed 1 is new).
    assert [(r["dataset"], r["seeds"]) for r in regressions] == [("a", [0])]
    lines = "\n".join(regression_lines(regressions, checked=True))
    assert "REGRESSION CHECK FAILED" in lines and "vae on a: 0.900 -> 0.870" in lines
    # The regressed set keeps its kept figure, so the next run still fails until it is fixed.
    assert reference["vae"]["a"] == {"0": 0.90, "1": 0.92}
    assert reference["vae"]["b"] == {"0": 0.795, "1": 0.1}
    kept_file.write_text(json.dumps({"reference": reference}))
    again, _ = check_regressions(now, kept_reference(kept_file), ["vae"])
    assert [r["dataset"] for r in again] == ["a"]
    passed = check_regressions(rows("vae", "a", {0: 0.95}), kept, ["vae"])[0]
    assert passed == [] and "passed" in regression_lines(passed, checked=True)[0]
