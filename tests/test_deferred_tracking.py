"""A scoring run's health reaches MLflow the same whether logged at once or queued by a
short command and logged by the next one that opens MLflow."""

from __future__ import annotations

import json
import os

import pytest

from pipelines.settings import VigilSettings, get_settings

HEALTH = {
    "status": "alarm",
    "alarms": ["flag rate 5.00% outside its control limits"],
    "summary": "drift alarm: flag rate",
    "score": {"psi": 0.31, "ks": 0.2},
    "flag_rate": {"observed_rate": 0.05, "expected_rate": 0.01},
    "unseen": {"share": 0.0},
    "features": [{"feature": "amount", "drifted": True}],
}


@pytest.fixture
def own_home(monkeypatch, tmp_path):
    """A state folder of its own; MLflow put back on the session's store after."""
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    for key in ("MLFLOW_TRACKING_URI", "VIGIL_HOME"):
        monkeypatch.setenv(key, os.environ.get(key, ""))
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield get_settings()
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])
    get_settings.cache_clear()


def test_embedded_default_defers_a_tracking_server_does_not():
    assert VigilSettings().defers_tracking
    assert VigilSettings(mlflow_tracking_uri="file:///tmp/mlruns").defers_tracking
    assert not VigilSettings(mlflow_tracking_uri="http://mlflow:5000").defers_tracking
    assert not VigilSettings(health_to_mlflow="now").defers_tracking
    assert VigilSettings(
        mlflow_tracking_uri="http://mlflow:5000", health_to_mlflow="deferred"
    ).defers_tracking


def test_queued_health_is_logged_by_the_next_command_like_an_immediate_one(own_home):
    from mlflow import MlflowClient

    from pipelines.modeling.deferred_tracking import pending_runs
    from pipelines.modeling.registry import configure_mlflow
    from pipelines.operations.watch import defer_health_to_mlflow, log_health_to_mlflow

    queued = defer_health_to_mlflow("q" * 32, "m-vae", "3", HEALTH)
    assert pending_runs(own_home) == [queued]
    now_id = log_health_to_mlflow("n" * 32, "m-vae", "3", HEALTH)  # opens MLflow: logs both
    assert pending_runs(own_home) == []
    client = MlflowClient()
    experiment = client.get_experiment_by_name(own_home.mlflow_experiment).experiment_id
    (later,) = client.search_runs([experiment], "tags.`vigil.scoring_run` = '" + "q" * 32 + "'")
    now = client.get_run(now_id)
    assert later.info.run_name == "health-qqqqqqqq" and later.info.status == "FINISHED"
    assert later.data.metrics == now.data.metrics
    assert later.data.metrics["alarm"] == 1.0 and later.data.metrics["score_psi"] == 0.31
    ignore = {"vigil.scoring_run", "vigil.deferred"}
    assert {
        k: v for k, v in later.data.tags.items() if k.startswith("vigil.") and k not in ignore
    } == {k: v for k, v in now.data.tags.items() if k.startswith("vigil.") and k not in ignore}
    assert later.info.start_time <= now.info.start_time  # when it was scored, not logged
    folder = client.download_artifacts(later.info.run_id, "run_health.json")
    assert json.loads(open(folder).read()) == HEALTH
    configure_mlflow(own_home)  # nothing queued: nothing logged twice
    assert len(client.search_runs([experiment], "tags.`vigil.kind` = 'run_health'")) == 2
