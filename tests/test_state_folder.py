"""A state folder can be moved or copied: models registered in one place load from the
new place once the old one is gone, and MLflow writes nothing outside the folder (run
health included) nor into the working directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipelines.modeling.bundle import ScoringBundle
from pipelines.settings import HOME_MARKER, VigilSettings, get_settings, relocate_state_folder
from tests.golden_pipeline import GOLDEN


@pytest.fixture
def isolated_mlflow(monkeypatch, tmp_path):
    """Run in an empty working directory; put MLflow back on the session's store after."""
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    for key in ("MLFLOW_TRACKING_URI", "VIGIL_HOME"):
        monkeypatch.setenv(key, os.environ.get(key, ""))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])
    get_settings.cache_clear()


def _use(home: Path, monkeypatch) -> VigilSettings:
    from pipelines.modeling.registry import configure_mlflow

    monkeypatch.setenv("VIGIL_HOME", str(home))
    get_settings.cache_clear()
    settings = get_settings()
    configure_mlflow(settings)  # apply_environment() relocates a moved folder first
    return settings


def test_a_copied_state_folder_serves_its_models_from_the_new_place(
    isolated_mlflow, tmp_path, monkeypatch
):
    import mlflow

    from pipelines.modeling.registry import (
        Registration,
        load_bundle,
        register_version,
        resolve_model,
    )
    from pipelines.operations.watch import log_health_to_mlflow

    first, second = tmp_path / "first", tmp_path / "second"
    _use(first, monkeypatch)
    bundle = ScoringBundle.load(GOLDEN / "tabular" / "bundle", numpy_forward=False)
    registered = register_version(
        Registration(name="moved-vae", kind="vae", bundle=bundle, data_source="golden")
    )
    assert (first / HOME_MARKER).read_text().strip() == str(first.resolve())

    shutil.copytree(first, second)
    shutil.rmtree(first)
    settings = _use(second, monkeypatch)
    experiment = mlflow.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment.artifact_location.startswith(second.resolve().as_uri())
    for local in ("1", "0"):  # the direct registry read and MLflow's own loader
        monkeypatch.setenv("VIGIL_LOCAL_REGISTRY", local)
        get_settings.cache_clear()
        loaded = load_bundle(resolve_model(f"moved-vae/{registered['version']}"))
        assert loaded.threshold == bundle.threshold
    health = {
        "status": "ok",
        "score": {"psi": 0.0, "ks": 0.0},
        "flag_rate": {"observed_rate": 0.01, "expected_rate": 0.01},
        "unseen": {"share": 0.0},
        "features": [],
    }
    run_id = log_health_to_mlflow("r" * 32, "moved-vae", registered["version"], health)
    artifact_uri = mlflow.get_run(run_id).info.artifact_uri
    assert artifact_uri.startswith(second.resolve().as_uri())
    assert not first.exists()
    assert list(isolated_mlflow.iterdir()) == []  # nothing written into the working dir


def test_relocation_is_a_no_op_where_the_folder_has_not_moved(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert relocate_state_folder(home) is False  # first use: the marker is written
    assert relocate_state_folder(home) is False
    assert (home / HOME_MARKER).read_text().strip() == str(home)
