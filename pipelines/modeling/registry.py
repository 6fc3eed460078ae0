"""MLflow glue: experiments, logging bundles as pyfunc models, versions and aliases.

The registry decides which model is champion; nothing else keeps that fact.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

import detectors
import pipelines
from detectors import Threshold
from pipelines.modeling.bundle import ScoringBundle
from pipelines.settings import VigilSettings

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_DATASET = "vigil.dataset"
TAG_DETECTOR = "vigil.detector"
#: A threshold set after training (``vigil threshold set``): JSON of the Threshold plus who
#: and which ledger entry; applied every time the version is loaded.
TAG_THRESHOLD = "vigil.threshold"


def configure_mlflow(settings: VigilSettings) -> str:
    """Point MLflow at the settings' store and make sure the experiment exists.

    The experiment gets an explicit artifact location: MLflow's default is frozen from the
    working directory at creation time.
    """
    settings.apply_environment()
    uri = settings.resolved_mlflow_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(
            settings.mlflow_experiment, artifact_location=settings.artifact_root.as_uri()
        )
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def model_name_for(dataset: str, detector_kind: str) -> str:
    return f"{dataset}-{detector_kind}"


def _signature(bundle: ScoringBundle) -> ModelSignature:
    """Output schema only.

    MLflow's input enforcement refuses int64 for a double column ("cannot safely
    convert"), which would reject most real CSVs; the bundle checks its own input columns
    and types them by the spec, with an error that names the missing column.
    """
    outputs = [
        ColSpec("string", bundle.spec.id_column, required=False),
        ColSpec("double", "score"),
        ColSpec("boolean", "is_anomaly"),
        ColSpec("string", "reasons"),
    ]
    return ModelSignature(inputs=None, outputs=Schema(outputs))


def log_bundle(
    bundle: ScoringBundle,
    *,
    registered_name: str,
    detector_kind: str,
    input_example: pd.DataFrame | None = None,
    python_model: str | None = None,
) -> str:
    """Log the bundle as a pyfunc model in the active run and register a new version.

    Returns the new version (as a string: MLflow gives int on SQLite, str over HTTP).
    The package source travels with the model (``code_paths``) so a fresh process, or
    ``mlflow models serve``, can load it.
    """
    code_paths = [str(Path(detectors.__file__).parent), str(Path(pipelines.__file__).parent)]
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = bundle.save(Path(tmp) / "bundle")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model or str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"bundle": str(bundle_dir)},
            code_paths=code_paths,
            signature=_signature(bundle),
            input_example=input_example,
            registered_model_name=registered_name,
            pip_requirements=_pip_requirements(),
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_tag(registered_name, TAG_DATASET, bundle.spec.name)
    client.set_registered_model_tag(registered_name, TAG_DETECTOR, detector_kind)
    client.set_model_version_tag(registered_name, version, "threshold", str(bundle.threshold))
    return version


def _pip_requirements() -> list[str]:
    """The scoring dependencies pinned to what trained the model.

    Given explicitly because MLflow's inference loads the model in a subprocess, which
    costs tens of seconds per registration.
    """
    from importlib.metadata import version

    packages = ["torch", "numpy", "pandas", "scikit-learn", "pydantic", "pyyaml", "mlflow"]
    return [f"{name}=={version(name)}" for name in packages]


def assign_new_version_aliases(name: str, version: str) -> list[str]:
    """A new version is the challenger; the first version of a model is also champion."""
    client = MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version)
    aliases = [CHALLENGER]
    if CHAMPION not in client.get_registered_model(name).aliases:
        client.set_registered_model_alias(name, CHAMPION, version)
        aliases.append(CHAMPION)
    return aliases


@dataclass(frozen=True)
class ModelRef:
    """A resolved registry reference: what ``NAME@ALIAS`` pointed to at load time."""

    name: str
    version: str
    alias: str | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def __str__(self) -> str:
        suffix = f"@{self.alias}" if self.alias else ""
        return f"{self.name}{suffix} (v{self.version})"


def resolve_model(reference: str | None) -> ModelRef:
    """``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (= champion); no reference means the
    VAE champion of the only data set that has one."""
    client = MlflowClient()
    if not reference:
        reference = f"{default_model_name()}@{CHAMPION}"
    match = re.fullmatch(r"(?:models:/)?([^@/]+)(?:@([\w-]+)|/(\d+))?", reference)
    if match is None:
        raise ValueError(f"model reference {reference!r}: use NAME@ALIAS or NAME/VERSION")
    name, alias, version = match.group(1), match.group(2), match.group(3)
    if version is None:
        alias = alias or CHAMPION
        try:
            version = str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            raise ValueError(f"no model version {name}@{alias} in the registry") from exc
    else:
        try:
            client.get_model_version(name, version)
        except MlflowException as exc:
            known = _known_versions(client, name)
            raise ValueError(
                f"no model version {name}/{version} in the registry"
                + (f" (versions: {', '.join(known)})" if known else f" (no model {name!r})")
            ) from exc
    return ModelRef(name=name, version=str(version), alias=alias)


def _known_versions(client: MlflowClient, name: str) -> list[str]:
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    return sorted((str(v.version) for v in versions), key=int)


def default_model_name() -> str:
    """The data set's VAE (the sequence VAE where there is one), when exactly one data set
    has a VAE registered."""
    preference = {"seq_vae": 0, "vae": 1}
    best: dict[str, tuple[int, str]] = {}
    for m in MlflowClient().search_registered_models():
        rank = preference.get(m.tags.get(TAG_DETECTOR, ""))
        if rank is None:
            continue
        dataset = m.tags.get(TAG_DATASET, m.name)
        if dataset not in best or rank < best[dataset][0]:
            best[dataset] = (rank, m.name)
    if len(best) == 1:
        return next(iter(best.values()))[1]
    if not best:
        raise ValueError("no trained model in the registry yet: run `vigil train` first")
    names = ", ".join(sorted(name for _, name in best.values()))
    raise ValueError(f"several models are registered ({names}): pick one with --model")


def load_bundle(ref: ModelRef) -> ScoringBundle:
    """Load the registered pyfunc and hand back the bundle inside it.

    MLflow's own requirements check is skipped (``suppress_warnings``): it maps every
    installed distribution to its modules, about a quarter of a short ``vigil score``'s
    CPU time. :func:`_warn_on_version_drift` checks the model's pins directly instead."""
    model = mlflow.pyfunc.load_model(ref.uri, suppress_warnings=True)
    _warn_on_version_drift(ref)
    bundle = model.unwrap_python_model().bundle
    tags = MlflowClient().get_model_version(ref.name, ref.version).tags
    if TAG_THRESHOLD in tags:
        # Recalibrated after training: the tag wins over the threshold in the bundle.
        bundle.set_threshold(Threshold.from_dict(json.loads(tags[TAG_THRESHOLD])))
    return bundle


def _warn_on_version_drift(ref: ModelRef) -> list[str]:
    """Warn (and return) where an installed package differs from the model's pinned
    ``name==version`` requirements (what MLflow's check reports, for the pins only)."""
    import logging
    from importlib.metadata import PackageNotFoundError, version

    try:
        requirements = Path(mlflow.pyfunc.get_model_dependencies(ref.uri)).read_text()
    except Exception:  # noqa: BLE001 - a missing requirements file is not a scoring error
        return []
    drift = []
    for line in requirements.splitlines():
        name, _, pinned = line.strip().partition("==")
        if not pinned or name.startswith(("#", "-")):
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pinned and installed.split("+")[0] != pinned.split("+")[0]:
            drift.append(f"{name}=={pinned} (installed: {installed})")
    if drift:
        logging.getLogger(__name__).warning(
            "%s was trained with other package versions: %s", ref, ", ".join(drift)
        )
    return drift


def registry_summary(names: list[str]) -> pd.DataFrame:
    """Versions and aliases of the given registered models, for people to read."""
    client = MlflowClient()
    rows = []
    for name in names:
        aliases = client.get_registered_model(name).aliases
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        for mv in client.search_model_versions(f"name='{name}'"):
            rows.append(
                {
                    "model": name,
                    "version": str(mv.version),
                    "aliases": ",".join(sorted(by_version.get(str(mv.version), []))),
                    "threshold": mv.tags.get("threshold"),
                    "run_id": mv.run_id,
                }
            )
    return pd.DataFrame(rows)
