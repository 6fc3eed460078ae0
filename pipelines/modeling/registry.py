"""MLflow glue: experiments, logging bundles as pyfunc models, versions and aliases.

The registry decides which model is champion; nothing else keeps that fact.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

import detectors
import pipelines
from detectors import Threshold
from pipelines.modeling import local_registry
from pipelines.modeling.bundle import ScoringBundle
from pipelines.settings import VigilSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_DATASET = "vigil.dataset"
TAG_DETECTOR = "vigil.detector"
#: ``ok``, ``warning: <what>``, or ``failed: <reasons>`` for a version whose training checks
#: failed (it gets no alias).
TAG_TRAINING_HEALTH = "vigil.training_health"
#: The kind of a version trained on labels as well: ``<detector>-reranked``.
LABELLED_SUFFIX = "-reranked"
#: A threshold set after training (``vigil threshold set``): JSON of the Threshold plus who
#: and which ledger entry; applied every time the version is loaded.
TAG_THRESHOLD = "vigil.threshold"
#: Set to ``in-progress`` when a version is created and to ``complete`` as the last step of
#: registration (after tags and aliases). A version still ``in-progress`` was left by a
#: training run that did not finish; versions from before this tag existed have none and
#: count as complete.
TAG_REGISTRATION = "vigil.registration"
#: ``HOST:PID`` of the process registering the version, to tell a live registration from
#: an abandoned one.
TAG_REGISTRATION_OWNER = "vigil.registration_owner"
REGISTRATION_IN_PROGRESS = "in-progress"
REGISTRATION_COMPLETE = "complete"


class IncompleteModelVersion(ValueError):
    """A model version whose registration never finished (its training run was killed)."""


def configure_mlflow(settings: VigilSettings) -> str:
    """Point MLflow at the settings' store and make sure the experiment exists.

    The experiment gets an explicit artifact location: MLflow's default is frozen from the
    working directory at creation time. Runs queued while MLflow was not open
    (:mod:`pipelines.modeling.deferred_tracking`) are logged now.
    """
    import mlflow
    from mlflow import MlflowClient

    from pipelines.modeling.deferred_tracking import log_deferred_runs

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
    log_deferred_runs(settings, experiment_id)
    return experiment_id


def model_name_for(dataset: str, detector_kind: str) -> str:
    return f"{dataset}-{detector_kind}"


def _signature(bundle: ScoringBundle) -> ModelSignature:
    """Output schema only.

    MLflow's input enforcement refuses int64 for a double column ("cannot safely
    convert"), which would reject most real CSVs; the bundle checks its own input columns
    and types them by the spec, with an error that names the missing column.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

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
    import mlflow
    from mlflow import MlflowClient

    remove_abandoned_versions(registered_name)
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
            pip_requirements=_pip_requirements(),
        )
    # The version is born marked in progress (one call: no window without the mark);
    # complete_registration() clears it once tags and aliases are in place.
    registered = mlflow.register_model(
        info.model_uri,
        registered_name,
        tags={
            TAG_REGISTRATION: REGISTRATION_IN_PROGRESS,
            TAG_REGISTRATION_OWNER: f"{socket.gethostname()}:{os.getpid()}",
        },
    )
    version = str(registered.version)
    client = MlflowClient()
    client.set_registered_model_tag(registered_name, TAG_DATASET, bundle.spec.name)
    # The model's kind is its detector's; a labelled version (``vae-reranked``) says so
    # in its own version tag.
    client.set_registered_model_tag(
        registered_name, TAG_DETECTOR, detector_kind.removesuffix(LABELLED_SUFFIX)
    )
    client.set_model_version_tag(registered_name, version, TAG_DETECTOR, detector_kind)
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


@dataclass
class Registration:
    """What one training run registers: the bundle under ``name`` with what it was
    trained on. Every model a training run registers (detectors, re-ranked models) goes
    through :func:`register_version`, so each gets the same run, tags and aliases."""

    name: str
    kind: str
    bundle: object
    data_source: str
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    #: tags on the MLflow run and the registered version (beyond data set and detector)
    tags: dict = field(default_factory=dict)
    #: per-epoch training logs, logged as ``epoch_*`` metrics
    history: list = field(default_factory=list)
    input_example: pd.DataFrame | None = None
    #: the pyfunc model file when it is not the plain bundle's
    python_model: str | None = None
    #: writes plots into the folder it is given (logged under ``plots/``)
    plots: Callable[[Path], object] | None = None
    #: why the version must not serve (failed training checks): registered for people to
    #: inspect, tagged with the reasons, and given no alias
    problems: list[str] = field(default_factory=list)
    #: what a person should know that does not stop it serving (tagged, printed)
    warnings: list[str] = field(default_factory=list)


def register_version(registration: Registration) -> dict[str, object]:
    """One MLflow run: tags, params, metrics, plots, then the bundle as a new version,
    its version tags and aliases, and last the mark that registration completed.
    Returns the train result (detector, model, version, aliases, run id, metrics)."""
    import mlflow
    from mlflow import MlflowClient

    r = registration
    plots = None
    with mlflow.start_run(run_name=f"train-{r.name}") as run:
        tags = {TAG_DATASET: r.bundle.spec.name, TAG_DETECTOR: r.kind, "data": r.data_source}
        mlflow.set_tags({**tags, **r.tags})
        if r.params:
            mlflow.log_params({k: str(v)[:500] for k, v in r.params.items()})
        finite = {k: v for k, v in r.metrics.items() if isinstance(v, int | float)}
        mlflow.log_metrics({k: v for k, v in finite.items() if math.isfinite(v)})
        for epoch, logs in enumerate(r.history or []):
            mlflow.log_metrics(
                {f"epoch_{k}": float(v) for k, v in logs.items() if isinstance(v, int | float)},
                step=epoch,
            )
        if r.plots is not None:
            with tempfile.TemporaryDirectory() as tmp:
                plots = r.plots(Path(tmp))
                mlflow.log_artifacts(tmp, artifact_path="plots")
        version = log_bundle(
            r.bundle,
            registered_name=r.name,
            detector_kind=r.kind,
            input_example=r.input_example,
            python_model=r.python_model,
        )
        client = MlflowClient()
        for key, value in r.tags.items():
            client.set_model_version_tag(r.name, version, key, str(value))
        health = "failed: " + "; ".join(r.problems) if r.problems else "ok"
        if r.warnings and not r.problems:
            health = "warning: " + "; ".join(r.warnings)
        client.set_model_version_tag(r.name, version, TAG_TRAINING_HEALTH, health[:5000])
        aliases = [] if r.problems else assign_new_version_aliases(r.name, version)
        complete_registration(r.name, version)
    return {
        "detector": r.kind,
        "model": r.name,
        "version": version,
        "aliases": aliases,
        "mlflow_run_id": run.info.run_id,
        "metrics": r.metrics,
        "plots": plots,
        **({"problems": list(r.problems)} if r.problems else {}),
        **({"warnings": list(r.warnings)} if r.warnings else {}),
    }


def assign_new_version_aliases(name: str, version: str) -> list[str]:
    """A new version is the challenger; the first version of a model is also champion."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version)
    aliases = [CHALLENGER]
    if CHAMPION not in client.get_registered_model(name).aliases:
        client.set_registered_model_alias(name, CHAMPION, version)
        aliases.append(CHAMPION)
    return aliases


def complete_registration(name: str, version: str) -> None:
    """The last step of registering a version: from now on it may be resolved and loaded."""
    from mlflow import MlflowClient

    MlflowClient().set_model_version_tag(name, version, TAG_REGISTRATION, REGISTRATION_COMPLETE)


def is_registration_complete(model_version) -> bool:
    """False only for a version marked in progress (versions without the tag predate it)."""
    return (model_version.tags or {}).get(TAG_REGISTRATION) != REGISTRATION_IN_PROGRESS


def _refuse_incomplete(model_version) -> None:
    if not is_registration_complete(model_version):
        raise IncompleteModelVersion(
            f"model version {model_version.name}/{model_version.version} is half-registered: "
            "the training run that created it did not finish (killed or failed). The next "
            "`vigil train` of this model removes it; use another version meanwhile."
        )


def _registration_abandoned(client: MlflowClient, model_version) -> bool:
    """True when the process registering this version is gone or its run has ended.

    The owner is ``HOST:PID``: on this host a missing PID (or our own PID: we are not
    inside that registration any more) is proof; elsewhere, only the MLflow run having
    ended (FAILED / KILLED / FINISHED without completing) is.
    """
    from mlflow.exceptions import MlflowException

    if model_version.run_id:
        try:
            status = client.get_run(model_version.run_id).info.status
        except MlflowException:
            status = None
        if status in {"FAILED", "KILLED", "FINISHED"}:
            return True
    host, _, pid = (model_version.tags or {}).get(TAG_REGISTRATION_OWNER, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_abandoned_versions(name: str) -> list[str]:
    """Delete versions of ``name`` left half-registered by a training run that died.

    Their MLflow runs still marked RUNNING are ended as KILLED. The registered model
    itself stays even when no version is left, so version numbers are never reused (a
    scoring run's ``model_version`` keeps naming one model). Returns the removed versions.
    """
    import logging

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    removed = []
    for mv in versions:
        if is_registration_complete(mv) or not _registration_abandoned(client, mv):
            continue
        if mv.run_id:
            try:
                if client.get_run(mv.run_id).info.status == "RUNNING":
                    client.set_terminated(mv.run_id, status="KILLED")
            except MlflowException:
                pass
        client.delete_model_version(name, str(mv.version))
        removed.append(str(mv.version))
    if removed:
        logging.getLogger(__name__).warning(
            "%s: removed half-registered version(s) %s (training did not finish)",
            name,
            ", ".join(removed),
        )
    return removed


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


def _reader() -> tuple[object, tuple[type[Exception], ...]]:
    """Who answers registry reads, and what it raises for "not there": the local SQLite
    registry read directly (no MLflow import) where there is one, else MLflow."""
    local = local_registry.current()
    if local is not None:
        return local, (local_registry.NotInRegistry,)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    return MlflowClient(), (MlflowException,)


def resolve_model(reference: str | None) -> ModelRef:
    """``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (= champion); no reference means the
    VAE champion of the only data set that has one."""
    client, not_found = _reader()
    if not reference:
        reference = f"{default_model_name()}@{CHAMPION}"
    match = re.fullmatch(r"(?:models:/)?([^@/]+)(?:@([\w-]+)|/(\d+))?", reference)
    if match is None:
        raise ValueError(f"model reference {reference!r}: use NAME@ALIAS or NAME/VERSION")
    name, alias, version = match.group(1), match.group(2), match.group(3)
    if version is None:
        alias = alias or CHAMPION
        try:
            model_version = client.get_model_version_by_alias(name, alias)
        except not_found as exc:
            raise ValueError(f"no model version {name}@{alias} in the registry") from exc
        version = str(model_version.version)
    else:
        try:
            model_version = client.get_model_version(name, version)
        except not_found as exc:
            known = _known_versions(client, not_found, name)
            raise ValueError(
                f"no model version {name}/{version} in the registry"
                + (f" (versions: {', '.join(known)})" if known else f" (no model {name!r})")
            ) from exc
    _refuse_incomplete(model_version)
    return ModelRef(name=name, version=str(version), alias=alias)


def _known_versions(client, not_found: tuple[type[Exception], ...], name: str) -> list[str]:
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except not_found:
        return []
    return sorted((str(v.version) for v in versions), key=int)


def default_model_name() -> str:
    """The data set's VAE (the sequence VAE where there is one), when exactly one data set
    has a VAE registered."""
    preference = {"seq_vae": 0, "vae": 1}
    best: dict[str, tuple[int, str]] = {}
    client, _ = _reader()
    for m in client.search_registered_models():
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
    CPU time. :func:`_warn_on_version_drift` checks the model's pins directly instead.

    On the embedded default a plain bundle model is loaded straight from its folder
    (:mod:`local_registry`): the same files MLflow's loader reads, without importing
    MLflow; re-ranked models and remote stores still load through MLflow."""
    local = local_registry.current()
    if local is not None:
        model_version = local.get_model_version(ref.name, ref.version)
        _refuse_incomplete(model_version)
        bundle = local.load_bundle(model_version)
        if bundle is not None:
            _warn_on_version_drift(ref, local.requirements(model_version))
            return _with_threshold_tag(bundle, model_version.tags)
    import mlflow
    from mlflow import MlflowClient

    model_version = MlflowClient().get_model_version(ref.name, ref.version)
    _refuse_incomplete(model_version)
    model = mlflow.pyfunc.load_model(ref.uri, suppress_warnings=True)
    _warn_on_version_drift(ref)
    return _with_threshold_tag(model.unwrap_python_model().bundle, model_version.tags)


def _with_threshold_tag(bundle: ScoringBundle, tags: dict) -> ScoringBundle:
    """Recalibrated after training: the version's threshold tag wins over the bundle's."""
    if TAG_THRESHOLD in tags:
        bundle.set_threshold(Threshold.from_dict(json.loads(tags[TAG_THRESHOLD])))
    return bundle


def _warn_on_version_drift(ref: ModelRef, requirements: str | None = None) -> list[str]:
    """Warn (and return) where an installed package differs from the model's pinned
    ``name==version`` requirements (what MLflow's check reports, for the pins only).
    ``requirements``: the model's requirements.txt text, when already read."""
    import logging

    if requirements is None:
        try:
            import mlflow

            requirements = Path(mlflow.pyfunc.get_model_dependencies(ref.uri)).read_text()
        except Exception:  # noqa: BLE001 - a missing requirements file is not a scoring error
            return []
    drift = []
    for line in requirements.splitlines():
        name, _, pinned = line.strip().partition("==")
        if not pinned or name.startswith(("#", "-")):
            continue
        installed = installed_version(name)
        if installed != pinned and installed.split("+")[0] != pinned.split("+")[0]:
            drift.append(f"{name}=={pinned} (installed: {installed})")
    if drift:
        logging.getLogger(__name__).warning(
            "%s was trained with other package versions: %s", ref, ", ".join(drift)
        )
    return drift


def _normal_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _dist_info_versions() -> dict[str, str]:
    """``{name: version}`` from the ``*.dist-info`` folder names on ``sys.path`` (one
    listing per folder, read once per process; the first on the path wins, as for
    imports). ``importlib.metadata.version`` searches the path again for each name."""
    import sys

    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if folder.endswith(".dist-info"):
                name, _, version = folder[: -len(".dist-info")].partition("-")
                found.setdefault(_normal_name(name), version)
    return found


def installed_version(name: str) -> str:
    """The installed version of distribution ``name``, or ``not installed``."""
    known = _dist_info_versions().get(_normal_name(name))
    if known:
        return known
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def registry_summary(names: list[str]) -> pd.DataFrame:
    """Versions and aliases of the given registered models, for people to read."""
    from mlflow import MlflowClient

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
                    "kind": mv.tags.get(TAG_DETECTOR),
                    "labels_seen": _labels_seen(mv.tags),
                    "registration": "complete"
                    if is_registration_complete(mv)
                    else "HALF-REGISTERED (training did not finish)",
                    "run_id": mv.run_id,
                }
            )
    return pd.DataFrame(rows)


def _labels_seen(tags: dict) -> str:
    """Which labels a version learnt from: count, frauds and when they became known
    ("-" for a version trained without labels)."""
    count = tags.get("vigil.labels_count")
    if count is None:
        return "-"
    first = (tags.get("vigil.labels_first_known") or "")[:10]
    last = (tags.get("vigil.labels_last_known") or "")[:10]
    text = f"{count} ({tags.get('vigil.labels_frauds', '?')} fraud) known {first}..{last}"
    data_frauds = tags.get("vigil.labels_data_frauds")
    if data_frauds and data_frauds != "0":
        text += f" + {data_frauds} frauds from the data's label column"
    return text
