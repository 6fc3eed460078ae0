"""Train and score flows under Prefect's test harness, with a temporary MLflow registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.flows import score_flow, train_flow
from pipelines.jobs.score import ScoreRequest
from pipelines.modeling.training import TrainConfig
from pipelines.settings import get_settings
from pipelines.store import Flag, ResultsStore, Score, ScoringRun
from tests.conftest import FAST_GAN, FAST_VAE

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def demo_files(tmp_path, unique_name):
    spec = DEMO_SPEC.model_copy(update={"name": unique_name})
    spec_path = spec.save(tmp_path / "spec.yaml")
    train = tmp_path / "train.csv"
    generate_transactions(1500, n_anomalies=30, seed=11).to_csv(train, index=False)
    score = tmp_path / "score.csv"
    generate_transactions(400, n_anomalies=8, seed=12, start_id=50_000).to_csv(score, index=False)
    return spec, spec_path, train, score


def _config(**kwargs) -> TrainConfig:
    return TrainConfig(vae=dict(FAST_VAE), gan=dict(FAST_GAN), **kwargs)


def test_train_registers_both_detectors_with_aliases(demo_files):
    spec, spec_path, train, _ = demo_files
    result = train_flow(data=str(train), spec_path=str(spec_path), config=_config())
    assert result["rows_in"] == 1500 and result["rows_quarantined"] == 0
    # Labelled anomalies are evaluation evidence only, never training data.
    assert result["rows_train"] + result["rows_evaluation"] == 1500
    assert result["rows_train"] == 1500 - 30 - round(1470 * 0.2)
    by_kind = {m["detector"]: m for m in result["models"]}
    assert set(by_kind) == {"vae", "gan"}
    client = MlflowClient()
    for kind, model in by_kind.items():
        assert model["model"] == f"{spec.name}-{kind}"
        assert model["version"] == "1"
        assert set(model["aliases"]) == {"champion", "challenger"}
        aliases = client.get_registered_model(model["model"]).aliases
        assert str(aliases["champion"]) == "1"
        for metric in ("auroc", "auprc", "threshold", "holdout_fpr"):
            assert metric in model["metrics"]
        assert model["metrics"]["auroc"] > 0.8
        run = client.get_run(model["mlflow_run_id"])
        # The caps (params) and what the fit read (fit_info) are both in the run.
        params = run.data.params
        assert params["max_calibration_rows"] == "65536"
        assert params["fit_info.rows"] == str(result["rows_train"])
        assert params["fit_info.statistics_rows"] == params["fit_info.train_rows"]
        assert "seeded sample" in params["fit_info.sampling"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert {
            "plots/roc_curve.png",
            "plots/pr_curve.png",
            "plots/score_histogram.png",
        } <= artifacts

    # A second training run makes a challenger; the champion stays until promoted.
    again = train_flow(data=str(train), spec_path=str(spec_path), config=_config(detectors=["vae"]))
    model = again["models"][0]
    assert model["version"] == "2" and model["aliases"] == ["challenger"]
    aliases = client.get_registered_model(model["model"]).aliases
    assert str(aliases["champion"]) == "1" and str(aliases["challenger"]) == "2"


def test_score_flow_is_idempotent_and_model_loads_in_a_fresh_process(demo_files, tmp_path):
    spec, spec_path, train, score = demo_files
    train_flow(data=str(train), spec_path=str(spec_path), config=_config(detectors=["vae"]))
    model = f"{spec.name}-vae@champion"
    out = tmp_path / "scores.parquet"
    first = score_flow(ScoreRequest(data=str(score), model=model, out=str(out)))
    assert first.rows_in == 400 and first.rows_scored == 400
    assert first.rows_flagged > 0 and not first.already_scored
    second = score_flow(ScoreRequest(data=str(score), model=model))
    assert second.already_scored and second.run_id == first.run_id

    # The same batch through the Dask runner (a scheduler address, as in production; the
    # cluster's worker is a thread here) writes the same scores as a run of its own.
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        spread = score_flow(
            ScoreRequest(
                data=str(score), model=model, batch_id="dask-run", runner="dask",
                dask_address=cluster.scheduler_address,
            )
        )  # fmt: skip
    assert spread.run_id != first.run_id and not spread.already_scored
    counts = ("rows_in", "rows_scored", "rows_quarantined", "rows_flagged")
    assert [getattr(spread, c) for c in counts] == [getattr(first, c) for c in counts]
    store = ResultsStore(get_settings().resolved_database_url)
    single, dask = (
        store.scores_frame(r.run_id).set_index("record_id").sort_index() for r in (first, spread)
    )
    pd.testing.assert_frame_equal(dask, single)
    assert store.count(Score, first.run_id) == 400
    assert store.count(Flag, first.run_id) == first.rows_flagged
    assert out.exists()

    # The same rows in a SQL table (shuffled) stream through a cursor in id order.
    source = f"sqlite:///{tmp_path / 'source.db'}"
    rows = pd.read_csv(score, dtype=str).sample(frac=1.0, random_state=0)
    rows.to_sql("payments", sa.create_engine(source), index=False)
    from_sql = score_flow(ScoreRequest(data=source, table="payments", model=model, shadow=False))
    assert not from_sql.already_scored
    with store.session() as session:
        assert session.get(ScoringRun, from_sql.run_id).source.endswith("#payments")
    assert [getattr(from_sql, c) for c in counts] == [getattr(first, c) for c in counts]
    pd.testing.assert_frame_equal(
        store.scores_frame(from_sql.run_id).set_index("record_id").sort_index(), single
    )

    # models:/NAME@champion scores a raw DataFrame in a process that never saw the bundle.
    code = (
        "import mlflow, pandas as pd, json, sys\n"
        f"m = mlflow.pyfunc.load_model('models:/{model}')\n"
        f"df = pd.read_csv({str(score)!r}).head(50)\n"
        "out = m.predict(df)\n"
        "print(json.dumps({'cols': list(out.columns), 'n': len(out),"
        " 'flagged': int(out['is_anomaly'].sum())}))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": get_settings().resolved_mlflow_uri}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["cols"] == ["transaction_id", "score", "is_anomaly", "reasons"]
    assert result["n"] == 50


def test_sequence_spec_trains_sequence_models_and_scores_a_later_day_alone(tmp_path, unique_name):
    """The issue's 'done when': train the sequence models on the past, then score a later
    day on its own with the entity history kept by training."""
    from pipelines.demo_sequences import SEQUENCE_SPEC, generate_card_sequences

    spec = SEQUENCE_SPEC.model_copy(update={"name": unique_name})
    spec_path = spec.save(tmp_path / "cards.yaml")
    records = generate_card_sequences(n_cards=30, days=16, seed=9)
    days = pd.to_datetime(records["timestamp"]).dt.normalize()
    past, last_day = records[days < days.max()], records[days == days.max()]
    past.to_csv(tmp_path / "past.csv", index=False)
    last_day.to_csv(tmp_path / "day.csv", index=False)
    config = TrainConfig(
        seq_vae={"epochs": 2, "hidden_dims": [16], "latent_dim": 4, "context_hidden": 8},
        seq_gan={"epochs": 2, "batch_size": 256},
    )
    result = train_flow(data=str(tmp_path / "past.csv"), spec_path=str(spec_path), config=config)
    assert {m["detector"] for m in result["models"]} == {"seq_vae", "seq_gan"}
    # Evaluation is the latest 20% of the time, with labels: metrics are there.
    assert all("auroc" in m["metrics"] for m in result["models"])

    scored = score_flow(
        ScoreRequest(data=str(tmp_path / "day.csv"), model=f"{unique_name}-seq_vae")
    )
    assert scored.model == f"{unique_name}-seq_vae"
    assert scored.rows_scored == len(last_day)
    assert "earlier records as context" in scored.history
