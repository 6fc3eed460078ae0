"""Drift watch for a finished scoring run: assess, store, log to MLflow.

The Prefect event is emitted by the flow (see ``pipelines.flows``), so this stays callable
from tests and the CLI without Prefect. The results store gets the health at once; its
MLflow run is logged in the same command on a tracking server, and on the embedded
default queued and logged by the next command that opens MLflow
(``VIGIL_HEALTH_TO_MLFLOW``, :mod:`pipelines.modeling.deferred_tracking`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import pandas as pd

from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.deferred_tracking import defer_run
from pipelines.modeling.registry import configure_mlflow
from pipelines.operations.drift import DriftPolicy, assess_drift
from pipelines.operations.reference import TrainingReference, reference_for_version
from pipelines.settings import get_settings
from pipelines.store import ResultsStore
from pipelines.store.vocabulary import HealthStatus

log = logging.getLogger(__name__)

#: The health's full JSON, as an artifact of its MLflow run.
HEALTH_ARTIFACT = "run_health.json"


def no_reference_health(model_name: str, model_version: str) -> dict:
    return {
        "status": HealthStatus.NO_REFERENCE,
        "alarms": [],
        "summary": f"no drift watch: {model_name} v{model_version} has no training reference "
        "(trained before drift watch existed; retrain to get one)",
    }


def watch_run(
    store: ResultsStore,
    *,
    run_id: str,
    bundle: ScoringBundle,
    model_name: str,
    model_version: str,
    clean: pd.DataFrame,
    reference: TrainingReference | None = None,
    policy: DriftPolicy | None = None,
    log_to_mlflow: bool = True,
) -> dict:
    """Assess the run's scores and features against the model's training reference and
    store the result (``store.run_health(run_id)`` reads it back). ``policy``: the
    settings' (``VIGIL_DRIFT__*``) unless given."""
    if reference is None:
        reference = reference_for_version(model_name, model_version)
    if reference is None:
        health = no_reference_health(model_name, model_version)
        store.save_run_health(run_id, health)
        return health
    if policy is None:
        policy = get_settings().drift
    scores = store.scores_frame(run_id)
    features = bundle.features(clean) if len(clean) else pd.DataFrame()
    health = assess_drift(
        reference,
        scores=scores["score"].to_numpy(dtype="float64"),
        flagged=scores["is_anomaly"].to_numpy(dtype=bool),
        features=features,
        policy=policy,
    )
    store.save_run_health(run_id, health)
    if log_to_mlflow:
        try:
            settings = get_settings()
            if settings.defers_tracking:
                defer_health_to_mlflow(run_id, model_name, model_version, health)
            else:
                log_health_to_mlflow(run_id, model_name, model_version, health)
        except Exception as exc:  # noqa: BLE001 - tracking is a mirror; the store has it
            log.warning("run health of %s not logged to MLflow: %s", run_id, exc)
    return health


def _health_run(
    run_id: str, model_name: str, model_version: str, health: dict
) -> tuple[str, dict[str, str], dict[str, float]]:
    """The MLflow run of a scoring run's health: its name, tags and metrics."""
    metrics = {
        "score_psi": health["score"].get("psi"),
        "score_ks": health["score"].get("ks"),
        "flag_rate": health["flag_rate"]["observed_rate"],
        "expected_flag_rate": health["flag_rate"]["expected_rate"],
        "unseen_share": health["unseen"]["share"],
        "features_drifted": float(sum(bool(f.get("drifted")) for f in health["features"])),
        "alarm": 1.0 if health["status"] == HealthStatus.ALARM else 0.0,
    }
    tags = {
        "vigil.kind": "run_health",
        "vigil.scoring_run": run_id,
        "vigil.model": model_name,
        "vigil.model_version": str(model_version),
        "vigil.health": str(health["status"]),
    }
    values = {k: float(v) for k, v in metrics.items() if v is not None}
    return f"health-{run_id[:8]}", tags, values


def log_health_to_mlflow(run_id: str, model_name: str, model_version: str, health: dict) -> str:
    """One MLflow run per scoring run's health: headline metrics, the full JSON.

    Logged in vigil's experiment (under the state folder), never MLflow's Default one,
    whose artifact location is wherever the working directory was when it was made."""
    import mlflow

    if mlflow.active_run() is None:
        configure_mlflow(get_settings())
    run_name, tags, metrics = _health_run(run_id, model_name, model_version, health)
    with mlflow.start_run(run_name=run_name, nested=mlflow.active_run() is not None) as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / HEALTH_ARTIFACT
            path.write_text(json.dumps(health, indent=2, default=str))
            mlflow.log_artifact(str(path))
        return run.info.run_id


def defer_health_to_mlflow(run_id: str, model_name: str, model_version: str, health: dict) -> Path:
    """The same MLflow run as :func:`log_health_to_mlflow`, queued in the state folder for
    the next command that opens MLflow (no MLflow import here)."""
    run_name, tags, metrics = _health_run(run_id, model_name, model_version, health)
    return defer_run(
        get_settings(),
        run_name=run_name,
        tags=tags,
        metrics=metrics,
        artifacts={HEALTH_ARTIFACT: json.dumps(health, indent=2, default=str)},
    )
