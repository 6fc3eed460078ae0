"""Registry reads straight from the embedded SQLite file agree with MLflow's own, and a
short `vigil score` on the embedded default never imports MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detectors import Threshold, VAEDetector
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.modeling import local_registry
from pipelines.modeling.bundle import ScoringBundle
from pipelines.settings import get_settings
from tests.conftest import FAST_VAE

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A fresh embedded home with two versions of one VAE (v2 half-registered) and a
    threshold tag on v1; the environment is restored afterwards."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines.modeling.registry import (
        TAG_THRESHOLD,
        assign_new_version_aliases,
        complete_registration,
        configure_mlflow,
        log_bundle,
        model_name_for,
    )
    from pipelines.settings import get_settings

    home = tmp_path_factory.mktemp("local-registry") / "home"
    saved = dict(os.environ)
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    os.environ["VIGIL_HOME"] = str(home)
    get_settings.cache_clear()
    try:
        configure_mlflow(get_settings())
        train = generate_transactions(600, n_anomalies=0, seed=5)
        detector = VAEDetector(**FAST_VAE, categorical_features=DEMO_SPEC.categorical_features)
        detector.fit(train[DEMO_SPEC.feature_columns])
        name = model_name_for(DEMO_SPEC.name, "vae")
        bundle = ScoringBundle(DEMO_SPEC, detector)
        with mlflow.start_run():
            v1 = log_bundle(bundle, registered_name=name, detector_kind="vae")
        assign_new_version_aliases(name, v1)
        complete_registration(name, v1)
        recalibrated = Threshold(method="fpr", target=0.005, value=bundle.threshold * 1.5)
        MlflowClient().set_model_version_tag(
            name, v1, TAG_THRESHOLD, json.dumps(recalibrated.to_dict())
        )
        with mlflow.start_run():
            v2 = log_bundle(bundle, registered_name=name, detector_kind="vae")  # in progress
        yield {
            "home": home, "name": name, "v1": v1, "v2": v2, "uri": mlflow.get_tracking_uri(),
            "threshold": recalibrated.value,
        }  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def _both(monkeypatch, call):
    """``call()`` through the local reader, then through MLflow."""
    monkeypatch.delenv("VIGIL_LOCAL_REGISTRY", raising=False)
    get_settings.cache_clear()
    assert local_registry.current() is not None
    local = _outcome(call)
    monkeypatch.setenv("VIGIL_LOCAL_REGISTRY", "0")
    get_settings.cache_clear()
    try:
        assert local_registry.current() is None
        return local, _outcome(call)
    finally:
        monkeypatch.delenv("VIGIL_LOCAL_REGISTRY")
        get_settings.cache_clear()


def _outcome(call):
    try:
        return ("ok", call())
    except ValueError as exc:
        return (type(exc).__name__, str(exc))


def test_resolving_references_agrees_with_mlflow(registered, monkeypatch):
    import mlflow

    from pipelines.modeling.registry import default_model_name, resolve_model

    mlflow.set_tracking_uri(registered["uri"])
    mlflow.set_registry_uri(registered["uri"])
    name = registered["name"]
    for reference in (
        None,
        name,
        f"{name}@champion",
        f"{name}@challenger",
        f"{name}/{registered['v1']}",
        f"{name}/{registered['v2']}",  # half-registered: refused the same way
        f"{name}/99",  # missing: same message, same known versions
        f"{name}@nosuchalias",
        "no-such-model@champion",
    ):
        local, remote = _both(monkeypatch, lambda r=reference: resolve_model(r))
        assert local == remote, reference
    local, remote = _both(monkeypatch, default_model_name)
    assert local == remote == ("ok", name)


def test_the_bundle_loads_from_its_folder_with_the_tagged_threshold(registered, monkeypatch):
    import mlflow

    from pipelines.modeling.registry import ModelRef, load_bundle

    mlflow.set_tracking_uri(registered["uri"])
    mlflow.set_registry_uri(registered["uri"])
    ref = ModelRef(registered["name"], registered["v1"], "champion")
    (_, local), (_, remote) = _both(monkeypatch, lambda: load_bundle(ref))
    frame = generate_transactions(300, n_anomalies=5, seed=9)
    a, b = local.score(frame), remote.score(frame)
    np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())
    assert local.threshold == remote.threshold == registered["threshold"]
    assert a["is_anomaly"].equals(b["is_anomaly"])
    assert list(a["reasons"]) == list(b["reasons"])


def test_anything_but_a_plain_bundle_model_is_left_to_mlflow(registered, tmp_path):
    registry = local_registry.open_registry(registered["uri"])
    version = registry.get_model_version(registered["name"], registered["v1"])
    assert registry.load_bundle(version) is not None
    copy = tmp_path / "model"
    import shutil

    shutil.copytree(registry.model_folder(version), copy)
    mlmodel = (copy / "MLmodel").read_text()
    (copy / "MLmodel").write_text(mlmodel.replace("pyfunc_model.py", "pyfunc_reranked.py"))
    version.storage_location = copy.as_uri()
    assert registry.load_bundle(version) is None  # re-ranked entry point: MLflow loads it
    assert local_registry.open_registry("postgresql://h/db") is None
    assert local_registry.open_registry(f"sqlite:///{tmp_path / 'missing.db'}") is None


def test_a_ten_row_score_on_the_embedded_default_does_not_import_mlflow(registered, tmp_path):
    """`vigil score` as a user runs it: no MLflow, scipy, torch (the VAE scores with its
    numpy forward, detectors.numpy_forward), scikit-learn or Prefect; the garbage
    collector, paused while the modules load, runs again."""
    data = tmp_path / "ten.csv"
    generate_transactions(10, n_anomalies=1, seed=77, start_id=10_000).to_csv(data, index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_", "MLFLOW_"))}
    env["VIGIL_HOME"] = str(registered["home"])
    code = (
        "import gc, runpy, sys\n"
        f"sys.argv = ['vigil', 'score', '--data', {str(data)!r}]\n"
        "try:\n"
        "    runpy.run_module('pipelines.cli', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = ('mlflow', 'scipy', 'torch', 'sklearn', 'prefect')\n"
        "print('loaded', [m for m in heavy if m in sys.modules], gc.isenabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=str(REPO), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "10 rows in = 10 scored" in done.stdout, done.stdout
    assert done.stdout.strip().splitlines()[-1] == "loaded [] True"


def test_the_numpy_forward_scores_a_bundle_as_torch_does(registered, monkeypatch):
    """Scores, flags and the reasons an analyst reads agree with the torch detector's
    (tolerance as tests/detectors/test_numpy_forward.py); VIGIL_NUMPY_FORWARD=0 loads the
    torch detector."""
    from detectors.numpy_forward import NumpyVAE
    from pipelines.modeling.registry import ModelRef, load_bundle
    from pipelines.settings import get_settings

    ref = ModelRef(registered["name"], registered["v1"], "champion")
    monkeypatch.setenv("VIGIL_HOME", str(registered["home"]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    loaded = {}
    for setting in ("1", "0"):
        monkeypatch.setenv("VIGIL_NUMPY_FORWARD", setting)
        get_settings.cache_clear()
        loaded[setting] = load_bundle(ref)
    get_settings.cache_clear()
    assert isinstance(loaded["1"].detector, NumpyVAE)
    assert isinstance(loaded["0"].detector, VAEDetector)
    frame = generate_transactions(400, n_anomalies=12, seed=21)
    a, b = loaded["1"].score(frame), loaded["0"].score(frame)
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-3, atol=1e-3)
    assert loaded["1"].threshold == loaded["0"].threshold == registered["threshold"]
    clear = (b["score"] - registered["threshold"]).abs() > 1e-3 * (1 + registered["threshold"])
    assert a["is_anomaly"][clear].equals(b["is_anomaly"][clear]) and b["is_anomaly"].any()
    for mine, theirs in zip(a["reasons"][clear], b["reasons"][clear], strict=True):
        assert [r["feature"] for r in mine] == [r["feature"] for r in theirs]
        assert [r["value"] for r in mine] == [r["value"] for r in theirs]
        np.testing.assert_allclose(
            [r["contribution"] for r in mine], [r["contribution"] for r in theirs], rtol=1e-3,
            atol=1e-3,
        )  # fmt: skip


def test_the_schema_check_is_kept_only_while_the_file_is_unchanged(registered, tmp_path):
    import shutil

    copy = tmp_path / "mlflow.db"
    shutil.copyfile(Path(registered["home"]) / "mlflow.db", copy)
    uri = f"sqlite:///{copy}"
    first = local_registry.open_registry(uri)
    assert first is not None and local_registry.open_registry(uri) is first
    with copy.open("ab") as grow:  # any write changes size or mtime: checked again
        grow.write(b"\0" * 4096)
    again = local_registry.open_registry(uri)
    assert again is not None and again is not first
    assert again.get_model_version(registered["name"], registered["v1"]).version == "1"
    copy.unlink()
    assert local_registry.open_registry(uri) is None


def test_score_threads_cap_the_blas_pool_for_the_run_and_restore_it():
    """VIGIL_SCORE_THREADS applies to the numpy forward's BLAS pool too (it spun a second
    thread on a shared machine: twice the CPU for the same scores)."""
    from threadpoolctl import threadpool_info

    from pipelines.jobs.score import scoring_threads

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before = blas_threads()
    assert before, "numpy has a BLAS pool"
    with scoring_threads(1):
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before
    with scoring_threads(None):
        assert blas_threads() == before
