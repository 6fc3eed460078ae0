"""The feedback loop through the flows and the CLI (issue 9): training drops confirmed
frauds known before it starts; a threshold set from verdicts is used by the next run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from pipelines.cli import main
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.feedback.labels import dedupe_key
from pipelines.flows import score_flow, train_flow
from pipelines.jobs.score import ScoreRequest
from pipelines.modeling.training import TrainConfig
from pipelines.settings import get_settings
from pipelines.store import ResultsStore
from tests.conftest import FAST_VAE

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def demo(tmp_path, unique_name):
    spec = DEMO_SPEC.model_copy(update={"name": unique_name})
    spec_path = spec.save(tmp_path / "spec.yaml")
    # Record ids of their own: other tests' label imports (without a data set) must not
    # count as this data set's labels.
    start_id = 10_000_000 + int(unique_name[1:], 16) % 1_000_000 * 10
    train = generate_transactions(1500, n_anomalies=30, seed=11, start_id=start_id)
    train_path = tmp_path / "train.csv"
    train.to_csv(train_path, index=False)
    return spec, spec_path, train, train_path


def _store() -> ResultsStore:
    return ResultsStore(get_settings().resolved_database_url)


def _add_labels(rows: list[tuple[str, str, datetime]], dataset: str) -> None:
    frame = pd.DataFrame(
        [
            {
                "record_id": r,
                "verdict": v,
                "source": "import",
                "known_at": t,
                "dataset": dataset,
                "dedupe_key": dedupe_key(r, v, t.isoformat(), "import", dataset),
            }
            for r, v, t in rows
        ]
    )
    _store().add_label_rows(frame, actor="test", source_name="test")


def _config(**kwargs) -> TrainConfig:
    return TrainConfig(detectors=["vae"], vae=dict(FAST_VAE), **kwargs)


def test_training_drops_frauds_confirmed_before_it_starts(demo):
    spec, spec_path, train, train_path = demo
    normals = train.loc[train["is_fraud"] == 0, "transaction_id"].astype(str).tolist()
    now = datetime.now(UTC)
    _add_labels(
        [(r, "fraud", now - timedelta(days=2)) for r in normals[:5]]
        + [(r, "not_fraud", now - timedelta(days=2)) for r in normals[5:8]]
        # Confirmed only after training starts: must not change this training run.
        + [(normals[8], "fraud", now + timedelta(days=1))],
        spec.name,
    )
    result = train_flow(data=str(train_path), spec_path=str(spec_path), config=_config())
    report = result["labels"]
    assert report["confirmed_frauds_dropped"] == 5
    assert report["labels_matched"] == 8  # labels_known also counts other tests' imports
    assert report["labels_known"] >= 8
    assert 0 < report["reviewed_normals_kept"] <= 3
    # 1470 normals minus 5 confirmed frauds; 20% of those held out for evaluation.
    assert result["rows_train"] == 1465 - round(1465 * 0.2)


def test_threshold_set_from_verdicts_is_used_by_the_next_run(demo, tmp_path, monkeypatch):
    spec, spec_path, _, train_path = demo
    train_flow(data=str(train_path), spec_path=str(spec_path), config=_config())
    model = f"{spec.name}-vae@champion"
    batch = tmp_path / "night1.csv"
    generate_transactions(600, n_anomalies=10, seed=21, start_id=70_000).to_csv(batch, index=False)
    first = score_flow(ScoreRequest(data=str(batch), model=model))

    runner = CliRunner()
    refused = runner.invoke(main, ["threshold", "set", "--model", model, "--budget", "5/day"])
    assert refused.exit_code == 2
    assert "600 scored records over 1 day(s)" in refused.output
    assert "at least 1000" in refused.output

    monkeypatch.setenv("VIGIL_FEEDBACK_MIN_SCORED", "500")
    get_settings.cache_clear()
    try:
        result = runner.invoke(
            main,
            [
                "threshold",
                "set",
                "--model",
                model,
                "--budget",
                "5/day",
                "--reason",
                "queue of 5",
                "--actor",
                "lead",
                "--json",
            ],
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    changed = json.loads(result.stdout)
    assert changed["before"] == pytest.approx(first.threshold)
    assert changed["evidence"]["flags_per_day"] == 5

    # Recorded: ledger (who, why, before -> after) and the MLflow version tag.
    decisions = _store().decisions(f"{spec.name}-vae")
    assert [d.decision for d in decisions] == ["applied", "refused"]
    assert decisions[0].actor == "lead" and decisions[0].reason == "queue of 5"
    assert decisions[0].before == {"threshold": pytest.approx(first.threshold)}
    assert decisions[0].after["threshold"] == changed["after"]
    tags = MlflowClient().get_model_version(f"{spec.name}-vae", "1").tags
    assert json.loads(tags["vigil.threshold"])["value"] == changed["after"]

    # The next run (a fresh load, no restart) flags with the new threshold.
    batch2 = tmp_path / "night2.csv"
    generate_transactions(600, n_anomalies=10, seed=22, start_id=80_000).to_csv(batch2, index=False)
    second = score_flow(ScoreRequest(data=str(batch2), model=model))
    assert second.threshold == pytest.approx(changed["after"])
    assert second.threshold != pytest.approx(first.threshold)


def test_train_with_labels_registers_a_scorable_reranked_version(demo, tmp_path):
    spec, spec_path, train, train_path = demo
    frauds = train.loc[train["is_fraud"] == 1, "transaction_id"].astype(str).tolist()
    normals = train.loc[train["is_fraud"] == 0, "transaction_id"].astype(str).tolist()[:40]
    labels = tmp_path / "verdicts.csv"
    pd.DataFrame(
        {
            "record_id": frauds + normals,
            "verdict": ["fraud"] * 30 + ["not_fraud"] * 40,
            "known_at": "2026-01-01T00:00:00Z",
            "source": "chargeback",
        }
    ).to_csv(labels, index=False)
    runner = CliRunner()
    imported = runner.invoke(main, ["labels", "import", str(labels), "--dataset", spec.name])
    assert imported.exit_code == 0, imported.output

    result = runner.invoke(
        main,
        [
            "train",
            "--data",
            str(train_path),
            "--spec",
            str(spec_path),
            "--detectors",
            "vae",
            "--epochs",
            "4",
            "--with-labels",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    reranked = next(m for m in trained["models"] if m["detector"] == "vae-reranked")
    assert reranked["model"] == f"{spec.name}-vae"
    assert reranked["version"] == "2" and reranked["base"] == f"{spec.name}-vae/1"
    # one model: the labelled version is the challenger, and says which labels it saw
    versions = MlflowClient().get_model_version(f"{spec.name}-vae", "2")
    assert versions.tags["vigil.detector"] == "vae-reranked"
    assert versions.tags["vigil.labels_count"] == "70"
    assert versions.tags["vigil.labels_frauds"] == "30"
    assert versions.tags["vigil.labels_first_known"].startswith("2026-01-01")
    aliases = MlflowClient().get_registered_model(f"{spec.name}-vae").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "1", "challenger": "2"}
    assert reranked["metrics"]["n_frauds"] == 30 and reranked["metrics"]["n_labelled"] == 70
    assert trained["labels"]["confirmed_frauds_dropped"] == 0  # already labelled in the data

    batch = tmp_path / "night.csv"
    generate_transactions(400, n_anomalies=8, seed=31, start_id=60_000).to_csv(batch, index=False)
    scored = runner.invoke(
        main, ["score", "--data", str(batch), "--model", f"{spec.name}-vae/2", "--json"]
    )
    assert scored.exit_code == 0, scored.output
    run = json.loads(scored.stdout)
    assert run["rows_scored"] == 400 and run["model"] == f"{spec.name}-vae"
    assert run["threshold"] == 1.0
