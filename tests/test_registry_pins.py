"""load_bundle's own check of a model's pinned requirements (MLflow's scan is skipped)."""

from __future__ import annotations

import logging
from importlib.metadata import version

import mlflow.pyfunc

from pipelines.modeling.registry import ModelRef, _warn_on_version_drift


def test_a_pin_that_differs_from_the_installed_version_is_reported(tmp_path, monkeypatch, caplog):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        f"numpy=={version('numpy')}\n"
        "pandas==0.0.1\n"
        "surely-not-installed-pkg==1.0\n"
        "# a comment\n"
        "-r other.txt\n"
        "scipy>=1.0\n"
    )
    monkeypatch.setattr(mlflow.pyfunc, "get_model_dependencies", lambda uri: str(requirements))
    with caplog.at_level(logging.WARNING):
        drift = _warn_on_version_drift(ModelRef("m", "1", None))
    assert drift == [
        f"pandas==0.0.1 (installed: {version('pandas')})",
        "surely-not-installed-pkg==1.0 (installed: not installed)",
    ]
    assert "trained with other package versions" in caplog.text


def test_matching_pins_and_a_missing_requirements_file_are_quiet(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"numpy=={version('numpy')}\n")
    monkeypatch.setattr(mlflow.pyfunc, "get_model_dependencies", lambda uri: str(requirements))
    assert _warn_on_version_drift(ModelRef("m", "1", None)) == []

    def missing(uri):
        raise OSError("no requirements.txt")

    monkeypatch.setattr(mlflow.pyfunc, "get_model_dependencies", missing)
    assert _warn_on_version_drift(ModelRef("m", "1", None)) == []
