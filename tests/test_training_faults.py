"""Training killed midway: no half-registered model version stays usable or visible after
the re-run (issue 13). Real subprocesses, killed with SIGKILL inside registration."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.modeling.registry import (
    REGISTRATION_COMPLETE,
    REGISTRATION_IN_PROGRESS,
    TAG_REGISTRATION,
    TAG_REGISTRATION_OWNER,
    IncompleteModelVersion,
    configure_mlflow,
    registry_summary,
    remove_abandoned_versions,
    resolve_model,
)
from pipelines.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def training_files(tmp_path, unique_name):
    spec = DEMO_SPEC.model_copy(update={"name": unique_name})
    spec_path = spec.save(tmp_path / "spec.yaml")
    data = tmp_path / "train.csv"
    generate_transactions(1500, n_anomalies=30, seed=11).to_csv(data, index=False)
    configure_mlflow(get_settings())
    return f"{unique_name}-vae", spec_path, data


def _train(spec_path: Path, data: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.registration_worker", str(spec_path), str(data), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"worker exited early: {process.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("worker never reached registration")
        time.sleep(0.1)


def test_training_killed_inside_registration_leaves_nothing_usable_and_the_rerun_works(
    training_files, tmp_path
):
    name, spec_path, data = training_files
    marker = tmp_path / "registering"
    victim = _train(spec_path, data, "--hold-in-registration", str(marker))
    _wait_for(marker, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    client = MlflowClient()
    [left] = client.search_model_versions(f"name='{name}'")
    assert str(left.version) == marker.read_text() == "1"
    assert left.tags[TAG_REGISTRATION] == REGISTRATION_IN_PROGRESS
    assert client.get_registered_model(name).aliases == {}
    with pytest.raises(IncompleteModelVersion, match=rf"{name}/1 is half-registered"):
        resolve_model(f"{name}/1")
    with pytest.raises(ValueError, match="no model version"):
        resolve_model(name)
    assert registry_summary([name])["registration"].str.startswith("HALF-REGISTERED").all()

    rerun = _train(spec_path, data)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["version"] == "2"
    assert set(result["aliases"]) == {"champion", "challenger"}

    versions = client.search_model_versions(f"name='{name}'")
    assert [str(v.version) for v in versions] == ["2"]
    assert versions[0].tags[TAG_REGISTRATION] == REGISTRATION_COMPLETE
    assert resolve_model(name).version == "2"
    assert client.get_run(left.run_id).info.status == "KILLED"


def test_a_live_registration_is_left_alone_and_removed_once_its_process_is_gone(
    training_files,
):
    name, _, _ = training_files
    client = MlflowClient()
    experiment = client.get_experiment_by_name(get_settings().mlflow_experiment)
    run = client.create_run(experiment.experiment_id)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        client.create_registered_model(name)
        client.create_model_version(
            name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id,
            tags={TAG_REGISTRATION: REGISTRATION_IN_PROGRESS,
                  TAG_REGISTRATION_OWNER: f"{socket.gethostname()}:{live.pid}"},
        )  # fmt: skip
        assert remove_abandoned_versions(name) == []
        assert len(client.search_model_versions(f"name='{name}'")) == 1
    finally:
        live.kill()
        live.wait(timeout=30)
    assert not _pid_alive(live.pid)
    assert remove_abandoned_versions(name) == ["1"]
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    # The model stays (empty), so the next version is 2: numbers are never reused.
    assert client.search_model_versions(f"name='{name}'") == []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
