"""``vigil serve``: the schedules on the embedded default (Prefect ``serve``, no server to
install). Nightly scoring of what is new in a source, weekly retraining followed by the
promotion policy, and an on-demand promote deployment for the approval form.

With ``PREFECT_API_URL`` pointing at a Prefect server the same deployments register
there (that is how the integration test runs it); ``deployments/prefect.yaml`` is the
production way with a work pool and workers.

``GET /metrics`` (Prometheus text format) on ``metrics_port`` says what the results store
knows of the scoring runs (:class:`~pipelines.operations.metrics.RunMetrics`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from pipelines.operations.sources import FolderSource, SqlSource


class ServeConfig(BaseModel):
    """What ``vigil serve`` schedules."""

    source: FolderSource | SqlSource | None = Field(
        default=None, description="Where nightly scoring finds new data."
    )
    model: str | None = Field(default=None, description="NAME or NAME@ALIAS (default: champion).")
    score_cron: str = Field(default="0 2 * * *", description="Nightly scoring (UTC).")
    train_data: str | None = Field(default=None, description="Training data for retraining.")
    spec_path: str | None = Field(default=None, description="Data-set spec for retraining.")
    train_cron: str = Field(default="0 3 * * 0", description="Weekly retraining (UTC).")
    timezone: str = "UTC"
    metrics_host: str = Field(default="127.0.0.1", description="Where /metrics listens.")
    metrics_port: int | None = Field(
        default=9464, description="Port of GET /metrics (Prometheus); None: no endpoint."
    )


def build_deployments(config: ServeConfig) -> list:
    """The Prefect runner deployments ``serve`` will run."""
    from prefect.schedules import Cron

    from pipelines.flows import promote_flow, retrain_flow, scheduled_score_flow

    deployments = []
    if config.source is not None:
        deployments.append(
            scheduled_score_flow.to_deployment(
                name="nightly-score",
                description=f"Score what is new in {config.source.describe()} with the champion "
                "(challenger in shadow), drift watch on each run.",
                schedules=[Cron(config.score_cron, timezone=config.timezone)],
                parameters={"source": config.source.model_dump(), "model": config.model},
                tags=["vigil", "score"],
            )
        )
    if config.train_data and config.spec_path:
        deployments.append(
            retrain_flow.to_deployment(
                name="weekly-train",
                description="Retrain: new versions become challengers; the promotion policy "
                "judges each one.",
                schedules=[Cron(config.train_cron, timezone=config.timezone)],
                parameters={"data": config.train_data, "spec_path": config.spec_path},
                tags=["vigil", "train"],
            )
        )
    deployments.append(
        promote_flow.to_deployment(
            name="promote-on-demand",
            description="Compare challenger and champion now; set policy.require_approval to "
            "pause for a person's approval.",
            tags=["vigil", "promote"],
        )
    )
    return deployments


def serve_forever(config: ServeConfig) -> None:  # pragma: no cover - runs until stopped
    """Register the deployments and run their flow runs until SIGINT/SIGTERM."""
    from prefect import serve

    server = start_run_metrics(config)
    try:
        serve(*build_deployments(config))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def start_run_metrics(config: ServeConfig, store=None):
    """The /metrics endpoint of ``vigil serve`` (None when ``metrics_port`` is None)."""
    if config.metrics_port is None:
        return None
    from pipelines.operations.metrics import RunMetrics, start_metrics_server
    from pipelines.settings import get_settings
    from pipelines.store import ResultsStore

    store = store or ResultsStore(get_settings().resolved_database_url)
    return start_metrics_server(
        RunMetrics(store).registry, config.metrics_host, config.metrics_port
    )
