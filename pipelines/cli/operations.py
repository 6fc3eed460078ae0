"""`vigil promote`, `vigil serve`, `vigil api`, `vigil retention`: what runs in production."""

from __future__ import annotations

import json

import click

from pipelines.cli import collector
from pipelines.cli.app import _actor, _fail, _store, main, prefect_api
from pipelines.settings import get_settings


@main.command()
@click.option(
    "--model",
    default=None,
    help="Registered model (default: every model whose challenger differs from its champion).",
)
@click.option("--rollback", is_flag=True, help="Move champion back to previous-champion.")
@click.option("--reason", default=None, help="Why (required with --rollback).")
@click.option("--actor", default=None, help="Who decides (default: your user name).")
@click.option(
    "--policy",
    "policy_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Promotion policy as YAML/JSON (fields of PromotionPolicy).",
)
@click.option("--min-labelled", type=int, default=None, help="Override the policy's minimum.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def promote(model, rollback, reason, actor, policy_path, min_labelled, as_json) -> None:
    """Promote the challenger when paired evidence says it is better; or roll back."""
    from pipelines.modeling.registry import configure_mlflow
    from pipelines.operations import promotion

    configure_mlflow(get_settings())
    store = _store()
    if rollback:
        if not model:
            names = promotion.models_with_previous_champion()
            if len(names) != 1:
                _fail(
                    "name the model to roll back with --model "
                    f"(models with a previous-champion: {', '.join(names) or 'none'})"
                )
            model = names[0]
        result = promotion.rollback(store, model, reason=reason or "", actor=actor)
        if as_json:
            click.echo(json.dumps(result, indent=2, default=str))
        else:
            click.echo(
                f"{model}: rolled back, champion v{result['champion_before']} -> "
                f"v{result['champion_after']} (ledger #{result['ledger_id']}): {result['reason']}"
            )
        return
    policy = promotion.load_policy(policy_path)
    if min_labelled is not None:
        policy = policy.model_copy(update={"min_labelled": min_labelled})
    names = [model] if model else promotion.models_with_challengers()
    if not names:
        _fail("no model has a challenger that differs from its champion: train one first")
    results = [promotion.promote(store, name, policy, actor=actor) for name in names]
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
        return
    for result in results:
        click.echo(promotion.describe_result(result))


@main.command()
@click.option("--watch-folder", default=None, help="Score new files from this folder.")
@click.option("--pattern", default="*.csv", show_default=True, help="Files to pick up (glob).")
@click.option(
    "--settle-seconds",
    type=float,
    default=60.0,
    show_default=True,
    help="A file must be unchanged this long before it is scored.",
)
@click.option("--sql-url", default=None, help="Or: score new rows from this database ...")
@click.option("--sql-query", default=None, help="... given by this SELECT ...")
@click.option("--watermark-column", default=None, help="... after this column's last value.")
@click.option("--model", default=None, help="NAME or NAME@ALIAS (default: champion).")
@click.option("--score-cron", default="0 2 * * *", show_default=True)
@click.option("--train-data", default=None, help="Weekly retraining data (with --spec).")
@click.option("--spec", "spec_path", default=None, help="Spec for weekly retraining.")
@click.option("--train-cron", default="0 3 * * 0", show_default=True)
@click.option(
    "--metrics-port",
    type=int,
    default=9464,
    show_default=True,
    help="GET /metrics (Prometheus) on 127.0.0.1 at this port; 0: none.",
)
def serve(
    watch_folder,
    pattern,
    settle_seconds,
    sql_url,
    sql_query,
    watermark_column,
    model,
    score_cron,
    train_data,
    spec_path,
    train_cron,
    metrics_port,
) -> None:
    """Run the schedules (nightly score, weekly train + promote) until stopped."""
    from pipelines.operations.sources import FolderSource, SqlSource
    from pipelines.serve import ServeConfig, serve_forever

    if watch_folder and sql_url:
        _fail("give --watch-folder or --sql-url, not both")
    source = None
    if watch_folder:
        source = FolderSource(path=watch_folder, pattern=pattern, settle_seconds=settle_seconds)
    elif sql_url:
        if not (sql_query and watermark_column):
            _fail("--sql-url needs --sql-query and --watermark-column")
        source = SqlSource(url=sql_url, query=sql_query, watermark_column=watermark_column)
    if (train_data is None) != (spec_path is None):
        _fail("--train-data and --spec go together")
    if source is None and train_data is None:
        _fail("nothing to schedule: give --watch-folder or --sql-url, and/or --train-data")
    config = ServeConfig(
        source=source,
        model=model,
        score_cron=score_cron,
        train_data=train_data,
        spec_path=spec_path,
        train_cron=train_cron,
        metrics_port=metrics_port or None,
    )
    click.echo(
        "serving: "
        + ", ".join(
            d
            for d, on in (
                ("nightly-score " + score_cron, source is not None),
                ("weekly-train " + train_cron, train_data is not None),
                ("promote-on-demand", True),
            )
            if on
        )
        + " (Ctrl-C stops)"
    )
    with prefect_api():
        serve_forever(config)


@main.command()
@click.option("--model", default=None, help="NAME or NAME@ALIAS (default: the champion).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8100, show_default=True)
@click.option(
    "--refresh-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="How often the champion alias is looked up again.",
)
def api(model, host, port, refresh_seconds) -> None:
    """Real-time scoring over HTTP (POST /score, GET /metrics), with entity state for
    sequence models."""
    with collector.paused():
        import uvicorn

        from pipelines.modeling import local_registry
        from pipelines.modeling.registry import configure_mlflow
        from pipelines.operations.api import create_app

    settings = get_settings()
    settings.apply_environment()
    if local_registry.current() is None:
        configure_mlflow(settings)  # else the registry is read from its file, MLflow unloaded
    app = create_app(
        _store(), model, refresh_seconds=refresh_seconds,
        flush_seconds=settings.api_flush_seconds,
        running_state=settings.api_running_state, state_url=settings.api_state_url,
    )  # fmt: skip
    app.state.scorer.current()  # fail now, not on the first request, if there is no model
    _limit_compute_threads(settings.api_torch_threads)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _limit_compute_threads(threads: int) -> None:
    """One record is too small to split: cap torch's threads where the model loaded torch
    (a VAE scored by its numpy forward never imports it) and numpy's BLAS pool."""
    import sys

    from threadpoolctl import threadpool_limits

    if "torch" in sys.modules:
        import torch  # deferred: only where the model loaded it already

        torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")


@main.group()
def retention() -> None:
    """Removing data that is kept only for a while (VIGIL_RETENTION_SNAPSHOT_DAYS)."""


@retention.command("apply")
@click.option("--days", type=click.IntRange(min=1), default=None, help="Override the setting.")
@click.option("--dry-run", is_flag=True, help="Count what would be removed, change nothing.")
@click.option("--actor", default=None, help="Who (default: the OS user).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def retention_apply(days, dry_run, actor, as_json) -> None:
    """Remove the record snapshots of cases closed more than N days ago (verdicts,
    reasons and the audit trail stay); the sweep is written to the audit trail."""
    days = days or get_settings().retention_snapshot_days
    if days is None:
        _fail("no retention period: set VIGIL_RETENTION_SNAPSHOT_DAYS or give --days N")
    result = _store().remove_closed_snapshots(days, actor=_actor(actor), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(vars(result), indent=2, default=str))
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{'dry run, nothing changed: ' if dry_run else ''}{verb} {result.snapshots} record "
        f"snapshots of {result.cases} cases closed before {result.cutoff:%Y-%m-%d %H:%M} UTC"
    )
