"""MLflow runs written later: queued in the state folder, logged when MLflow is next opened.

On the embedded default, importing MLflow and opening its SQLite store for one small
run (a scoring run's health) cost more than the rest of a short ``vigil score``. The
results store already holds what the run needs; the MLflow run is a mirror for people
browsing the tracking UI. So a short command queues it here as one JSON file, and the
next command that opens MLflow anyway (:func:`pipelines.modeling.registry.configure_mlflow`:
``vigil models``, ``vigil train``, ``vigil promote``, the scheduled flows) logs every queued
run with its original start time, tags, metrics and artifacts, then removes the file.
A file that fails to log stays queued for the next time.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

from pipelines.settings import VigilSettings

log = logging.getLogger(__name__)

#: The queue's folder, under the state folder.
PENDING_DIR = "mlflow-pending"


def pending_dir(settings: VigilSettings) -> Path:
    return settings.home_dir / PENDING_DIR


def defer_run(
    settings: VigilSettings,
    *,
    run_name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    artifacts: dict[str, str],
) -> Path:
    """Queue one MLflow run (``artifacts``: file name -> text) in the state folder."""
    folder = pending_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        "run_name": run_name,
        "start_time_ms": int(time.time() * 1000),
        "tags": tags,
        "metrics": metrics,
        "artifacts": artifacts,
    }
    path = folder / f"{entry['start_time_ms']}-{uuid.uuid4().hex[:8]}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(entry, default=str))
    os.replace(partial, path)  # a reader never sees half a file
    return path


def pending_runs(settings: VigilSettings) -> list[Path]:
    folder = pending_dir(settings)
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def log_deferred_runs(settings: VigilSettings, experiment_id: str) -> list[str]:
    """Log every queued run into ``experiment_id`` (MLflow already configured); returns
    the new MLflow run ids. Each file is removed once its run is logged."""
    queued = pending_runs(settings)
    if not queued:
        return []
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient()
    logged = []
    for queued_path in queued:
        # Claimed by renaming it: two commands flushing at once log each run once.
        path = queued_path.with_suffix(f".{os.getpid()}.claimed")
        try:
            os.replace(queued_path, path)
        except FileNotFoundError:
            continue
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("queued MLflow run %s unreadable, left in place: %s", path, exc)
            continue
        try:
            started = int(entry["start_time_ms"])
            run = client.create_run(
                experiment_id,
                start_time=started,
                tags={k: str(v) for k, v in entry["tags"].items()},
                run_name=entry["run_name"],
            )
            run_id = run.info.run_id
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), started, 0) for k, v in entry["metrics"].items()],
                tags=[RunTag("vigil.deferred", "true")],
            )
            with tempfile.TemporaryDirectory() as tmp:
                for name, text in entry["artifacts"].items():
                    file = Path(tmp) / name
                    file.write_text(text)
                    client.log_artifact(run_id, str(file))
            client.set_terminated(run_id, end_time=started)
        except Exception as exc:  # noqa: BLE001 - tracking is a mirror; retried next time
            log.warning("queued MLflow run %s not logged yet: %s", queued_path.name, exc)
            os.replace(path, queued_path)
            continue
        path.unlink(missing_ok=True)
        logged.append(run_id)
    return logged
