"""The labelled model in operations, through the CLI: it is the challenger of the
detector's own model, its shadow runs send an exploration sample of its own flags (those
the champion did not flag) to the review queue, `vigil models` says which labels each
version saw, and once promoted `vigil score` serves it by default."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.feedback.lanes import UNCERTAIN_REASON, uncertain_picks
from pipelines.operations.evidence import Evidence, without_training_labels
from pipelines.scoring.flags import EXPLORATION_REASON, in_exploration_sample
from pipelines.settings import get_settings
from pipelines.store import ResultsStore

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_exploration_sample_is_stable_and_sized():
    ids = [f"r{i}" for i in range(20_000)]
    picked = in_exploration_sample(ids, 0.1)
    assert 0.08 < picked.mean() < 0.12
    # the same records, whatever the order or chunking
    again = in_exploration_sample(ids[::-1], 0.1)[::-1]
    assert np.array_equal(picked, again)
    assert not in_exploration_sample(ids, 0.0).any()
    assert in_exploration_sample(ids, 1.0).all()


def test_evidence_leaves_out_the_labels_a_model_learnt_from():
    ids = np.array(["a", "b", "c", "d"])
    e = Evidence("verdicts", ids, np.ones(4), np.zeros(4), np.array([1, 0, 1, 0]))
    kept, left_out = without_training_labels([e], {"a", "d"})
    assert left_out == 2 and kept[0].record_ids.tolist() == ["b", "c"]
    assert kept[0].y.tolist() == [0, 1]
    assert without_training_labels([e], set()) == ([e], 0)


def test_uncertainty_lane_takes_its_share_of_the_queue_below_the_line():
    p = np.array([0.9, 0.8, 0.45, 0.2, 0.05, 0.5, 0.01, 0.3, 0.0, 0.6])
    flagged = p > 0.5
    picks = uncertain_picks(p, flagged, 0.25)  # 3 flags -> 1 pick (1 of 4 in the queue)
    assert picks.sum() == 1 and picks[5] and not (picks & flagged).any()
    assert uncertain_picks(p, flagged, 0.5).sum() == 3  # 0.5, 0.45, 0.3
    assert not uncertain_picks(p, flagged, 0.0).any()
    assert not uncertain_picks(p, np.zeros(len(p), bool), 0.5).any()  # no flags, no lane


def test_labelled_challenger_explores_shows_labels_and_serves_once_promoted(
    tmp_path, unique_name, monkeypatch
):
    spec = DEMO_SPEC.model_copy(update={"name": unique_name})
    train = generate_transactions(800, n_anomalies=25, seed=11)
    later = generate_transactions(400, n_anomalies=8, seed=12, start_id=500_000)
    for frame in (train, later):
        frame["transaction_id"] = unique_name + frame["transaction_id"].astype(str)
    spec_path = spec.save(tmp_path / "spec.yaml")
    train_path, later_path = tmp_path / "train.csv", tmp_path / "later.csv"
    train.to_csv(train_path, index=False)
    later.drop(columns=["is_fraud"]).to_csv(later_path, index=False)
    runner = CliRunner()

    def vigil(*args: str):
        result = runner.invoke(main, list(args))
        assert result.exit_code == 0, result.output
        return result

    vigil("train", "--data", str(train_path), "--spec", str(spec_path),
          "--detectors", "vae", "--epochs", "2")  # fmt: skip
    ids = train[spec.id_column].astype(str)
    labels = tmp_path / "chargebacks.csv"
    frauds, normals = ids[train["is_fraud"] == 1], ids[train["is_fraud"] == 0][:80]
    pd.DataFrame(
        {
            "record_id": [*frauds, *normals],
            "verdict": ["fraud"] * len(frauds) + ["not_fraud"] * len(normals),
            "known_at": "2026-01-01T00:00:00Z",
            "source": "chargeback",
        }
    ).to_csv(labels, index=False)
    vigil("labels", "import", str(labels), "--dataset", spec.name)
    trained = vigil("train", "--data", str(train_path), "--spec", str(spec_path),
                    "--detectors", "vae", "--epochs", "2", "--with-labels", "--json")  # fmt: skip
    labelled = next(
        m for m in json.loads(trained.stdout)["models"] if m["detector"] == "vae-reranked"
    )
    name = labelled["model"]
    assert name == f"{spec.name}-vae" and "challenger" in labelled["aliases"]

    # `vigil models` says which labels each version saw.
    listed = json.loads(vigil("models", "--json").stdout)
    versions = {v["version"]: v for m in listed if m["model"] == name for v in m["versions"]}
    assert versions["1"]["labels_seen"] == "-"
    assert versions[labelled["version"]]["labels_seen"].startswith(
        f"{len(frauds) + len(normals)} ({len(frauds)} fraud) known 2026-01-01"
    )

    # Every challenger-only flag is explored (share 1): they reach the queue, marked.
    monkeypatch.setenv("VIGIL_FEEDBACK_EXPLORATION_SHARE", "1.0")
    get_settings.cache_clear()
    try:
        scored = json.loads(
            vigil("score", "--data", str(later_path), "--model", name, "--json").stdout
        )
    finally:
        monkeypatch.delenv("VIGIL_FEEDBACK_EXPLORATION_SHARE")
        get_settings.cache_clear()
    assert scored["shadow"] is not None
    assert scored["shadow"]["model_version"] == labelled["version"]
    store = ResultsStore(get_settings().resolved_database_url)
    champion_flags = {f.record_id for f in store.list_flags(run_id=scored["run_id"], limit=10_000)}
    explored = store.list_flags(run_id=scored["shadow"]["run_id"], limit=10_000)
    assert all(f.reasons[0]["feature"] == EXPLORATION_REASON for f in explored)
    assert not {f.record_id for f in explored} & champion_flags
    assert all(f.case_id is not None for f in explored)  # in the review queue

    # `vigil promote` weighs the labelled version against the champion.
    decided = json.loads(vigil("promote", "--model", name, "--min-labelled", "1", "--json").stdout)[
        0
    ]
    assert decided["champion_before"] == "1" and decided["challenger"] == labelled["version"]
    if decided["decision"] != "promote":  # the evidence may tie on easy data: approve by hand
        from mlflow import MlflowClient

        MlflowClient().set_registered_model_alias(name, "champion", labelled["version"])
    # Promoted, the labelled version is what a plain `vigil score` serves.
    served = json.loads(vigil("score", "--data", str(later_path), "--model", name, "--json").stdout)
    assert served["model_version"] == labelled["version"]
    # Its queue holds its own exploration lane: records below its line it is least sure of.
    queued = store.list_flags(run_id=served["run_id"], limit=10_000)
    lanes = [f.reasons[0]["feature"] if f.reasons else "" for f in queued]
    assert lanes.count(UNCERTAIN_REASON) >= 1
    below = [f for f, lane in zip(queued, lanes, strict=True) if lane == UNCERTAIN_REASON]
    assert all(f.score <= f.threshold for f in below)
