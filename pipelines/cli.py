"""The ``vigil`` command line.

Settings are applied before Prefect or MLflow is imported (both read the environment at
import time), so every command imports its heavy modules lazily.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from pipelines.settings import get_settings

#: Where `spec init` and `demo-data` write by default: the user's project folder.
DEFAULT_SPECS = Path("data") / "specs"
DEFAULT_SAMPLES = Path("data") / "samples"
DEFAULT_SPEC = DEFAULT_SPECS / "demo_transactions.yaml"


#: Exit code when the same batch is being scored by another live process right now.
EXIT_ALREADY_RUNNING = 3


def _fail(message: str, code: int = 2) -> None:
    click.echo(click.style(f"error: {message}", fg="red"), err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns the errors people cause (bad files, bad specs, unknown models, a store that
    went away) into one readable line instead of a traceback."""

    def invoke(self, ctx):
        from pipelines.intake.ingest import DataSourceError
        from pipelines.intake.spec import SpecError
        from pipelines.store.production import LeaseLost, RunAlreadyRunning, StoreUnavailable

        try:
            with _quiet_prefect_errors():
                return super().invoke(ctx)
        except RunAlreadyRunning as exc:
            _fail(f"already running: {exc}", EXIT_ALREADY_RUNNING)
        except (StoreUnavailable, LeaseLost) as exc:
            _fail(f"{exc}; re-run to resume from the last committed chunk")
        except (DataSourceError, SpecError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))


class _DropFlowErrorRecords(logging.Filter):
    """Prefect logs a failed flow or task with its full traceback before the exception
    reaches the CLI; the CLI prints its own one-line message (the Prefect API, when one
    is configured, still keeps the failed state with the traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


@contextmanager
def _quiet_prefect_errors():
    names = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine")
    loggers = [logging.getLogger(name) for name in names]
    quiet = _DropFlowErrorRecords()
    handlers = [h for lg in loggers for h in lg.handlers]
    for target in (*loggers, *handlers):
        target.addFilter(quiet)
    try:
        yield
    finally:
        for target in (*loggers, *handlers):
            target.removeFilter(quiet)


def _use_prefect() -> bool:
    """Run jobs as Prefect flows only when a Prefect API is configured: otherwise each
    command would start (and, killed, leave behind) a temporary API server."""
    return bool(os.environ.get("PREFECT_API_URL"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """vigil: train VAE and GAN anomaly detectors, score batches, review flags."""
    get_settings().apply_environment()


# -- spec ---------------------------------------------------------------------------------


@main.group()
def spec() -> None:
    """Data-set specs: which column is the id, the label, the features."""


@spec.command("init")
@click.option("--data", "data", required=True, help="CSV/Parquet file to infer from.")
@click.option("--id-col", required=True, help="Column that identifies a record.")
@click.option("--label-col", default=None, help="0/1 label column (evaluation only).")
@click.option(
    "--entity-col", default=None, help="Entity column (card, customer): turns on sequence mode."
)
@click.option("--time-col", default=None, help="Event time column (needed with --entity-col).")
@click.option(
    "--ignore-col",
    "ignore_cols",
    multiple=True,
    help="Column that must not be a feature (repeatable), e.g. a fraud-scenario code.",
)
@click.option("--name", default=None, help="Data-set name (default: from the file name).")
@click.option("--out", "out", default=None, help="Where to write the spec YAML.")
def spec_init(data, id_col, label_col, entity_col, time_col, ignore_cols, name, out) -> None:
    """Infer a spec from a data file; edit it before training.

    With --entity-col and --time-col the spec is in sequence mode and proposes context
    features (windows, amount history, first-time flags, travel) from the columns found.
    """
    from pipelines.intake.ingest import read_batch
    from pipelines.intake.spec import infer_spec

    batch = read_batch(data)
    frame = batch.frame.head(50_000)
    name = name or _slug(Path(data).name.split(".")[0])
    inferred = infer_spec(
        frame,
        name=name,
        id_column=id_col,
        label_column=label_col,
        entity_column=entity_col,
        time_column=time_col,
        ignore_columns=list(ignore_cols),
    )
    out_path = Path(out) if out else DEFAULT_SPECS / f"{name}.yaml"
    inferred.save(out_path)
    click.echo(f"wrote {out_path}")
    click.echo(f"  numeric:     {', '.join(inferred.numeric_features) or '-'}")
    click.echo(f"  categorical: {', '.join(inferred.categorical_features) or '-'}")
    if inferred.context is not None:
        ctx = inferred.context
        click.echo(f"  sequence:    entity {entity_col}, time {time_col}")
        click.echo(
            f"  context:     amount {ctx.amount_column or '-'}; windows {ctx.windows}; "
            f"history {ctx.history}"
        )
        click.echo(f"  secondary:   {', '.join(inferred.secondary_entity_columns) or '-'}")
        click.echo(f"  first-time:  {', '.join(ctx.novelty_columns) or '-'}")
        if ctx.latitude_column:
            click.echo(f"  travel:      {ctx.latitude_column}, {ctx.longitude_column}")
    used = {id_col, label_col, entity_col, time_col, *inferred.raw_context_columns}
    skipped = [c for c in frame.columns if c not in inferred.feature_columns and c not in used]
    if skipped:
        click.echo(
            f"  left out:    {', '.join(skipped)} (ignored, ids, high-cardinality text, dates "
            "or numbers that only count time)"
        )
    click.echo("Review the file, then: vigil train --data F --spec " + str(out_path))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "dataset"


# -- train / score ------------------------------------------------------------------------


@main.command()
@click.option("--data", required=True, help="Training file (CSV/Parquet) or SQLAlchemy URL.")
@click.option("--spec", "spec_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--detectors",
    default=None,
    help="Comma-separated: vae, gan, seq_vae, seq_gan (default: vae,gan; seq_vae,seq_gan "
    "for a sequence spec).",
)
@click.option("--epochs", type=int, default=None, help="Override epochs for every detector.")
@click.option(
    "--max-train-rows",
    type=int,
    default=None,
    help="Training records the sequence detectors sample (default 200,000 for seq_vae, "
    "100,000 for seq_gan): fewer trains faster on a large file.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--target-fpr", type=float, default=0.01, show_default=True)
@click.option(
    "--threshold-method", type=click.Choice(["fpr", "f1"]), default="fpr", show_default=True
)
@click.option(
    "--with-labels",
    is_flag=True,
    help="Also train a re-ranker on the verdicts known now and register it as a new "
    "version of each detector's model (kind <detector>-reranked): the challenger.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(
    data,
    spec_path,
    detectors,
    epochs,
    max_train_rows,
    seed,
    target_fpr,
    threshold_method,
    with_labels,
    as_json,
) -> None:
    """Train the detectors on normal records and register them in MLflow."""
    from pipelines.flows import train_flow
    from pipelines.modeling.training import TrainConfig

    kinds = [k.strip() for k in detectors.split(",") if k.strip()] if detectors else None
    overrides = {"epochs": epochs} if epochs else {}
    sequence = {**overrides, **({"max_train_rows": max_train_rows} if max_train_rows else {})}
    config = TrainConfig(
        detectors=kinds,
        seed=seed,
        target_fpr=target_fpr,
        threshold_method=threshold_method,
        vae=dict(overrides),
        gan=dict(overrides),
        seq_vae=dict(sequence),
        seq_gan=dict(sequence),
    )
    result = train_flow(
        data=str(data), spec_path=str(spec_path), config=config, with_labels=with_labels
    )
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(
        f"trained on {result['rows_train']} normal records "
        f"({result['rows_quarantined']} rows quarantined, "
        f"{result['rows_evaluation']} held out for evaluation)"
    )
    known = result.get("labels") or {}
    click.echo(
        f"labels known before training: {known.get('labels_known', 0)}; "
        f"{known.get('confirmed_frauds_dropped', 0)} confirmed frauds dropped from the normal "
        f"training rows, {known.get('reviewed_normals_kept', 0)} reviewed normals kept"
    )
    for model in result["models"]:
        click.echo(_model_line(model))
    for skipped in result.get("reranked_skipped", []):
        click.echo(f"  {skipped['model']} (labelled): not trained: {skipped['skipped']}")


def _model_line(model: dict) -> str:
    m = model["metrics"]
    quality = (
        f"AUROC {m['auroc']:.3f}  AUPRC {m['auprc']:.3f}  "
        f"precision {m['precision_at_threshold']:.2f} recall {m['recall_at_threshold']:.2f}"
        if "auroc" in m
        else "no labels: AUROC n/a"
    )
    if model.get("base"):  # a labelled (re-ranked) version: its threshold is on max(u, p/p_cut)
        return (
            f"  {model['model']} v{model['version']} [{', '.join(model['aliases'])}]  "
            f"{quality}  labelled: re-ranks v{model['base'].rsplit('/', 1)[-1]} with "
            f"{m['n_labelled']:.0f} verdicts "
            f"({m['n_frauds']:.0f} fraud)  hold-out FPR {_percent(m.get('holdout_fpr'))}  "
            f"fit {m['fit_seconds']:.1f}s"
        )
    line = (
        f"  {model['model']} v{model['version']} [{', '.join(model['aliases'])}]  {quality}  "
        f"threshold {m['threshold']:.4g} (target FPR {m['target_fpr']:.1%}, "
        f"hold-out FPR {_percent(m.get('holdout_fpr'))})  fit {m['fit_seconds']:.1f}s"
    )
    for problem in model.get("problems", []):
        line += f"\n    NOT made champion or challenger: {problem}"
    for warning in model.get("warnings", []):
        line += f"\n    warning: {warning}"
    return line


def _percent(value: float | None) -> str:
    """A share with two decimals, or "n/a" when it could not be measured (no normals)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2%}"


@main.command()
@click.option("--data", required=True, help="Batch to score (CSV/Parquet) or SQLAlchemy URL.")
@click.option("--model", default=None, help="NAME@ALIAS or NAME/VERSION (default: champion).")
@click.option("--out", default=None, help="Write every record's id, score and flag here.")
@click.option("--batch-id", default=None, help="Default: a hash of the batch content.")
@click.option("--table", default=None, help="SQL table, when --data is a database URL.")
@click.option("--query", default=None, help="SQL query, when --data is a database URL.")
@click.option(
    "--runner",
    type=click.Choice(["local", "dask"]),
    default=None,
    help="Score in this process (local) or across a Dask cluster through prefect-dask "
    "(dask). Default: VIGIL_SCORE_RUNNER, else local.",
)
@click.option(
    "--dask-address",
    default=None,
    help="Dask scheduler (tcp://HOST:8786) for --runner dask. Default: VIGIL_DASK_ADDRESS, "
    "else a LocalCluster of VIGIL_DASK_WORKERS processes started for this run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def score(data, model, out, batch_id, table, query, runner, dask_address, as_json) -> None:
    """Score a batch with a registered model and store scores and flags.

    Runs as the Prefect ``score`` flow when PREFECT_API_URL is set or with --runner dask
    (its partitions are Prefect tasks), else as the same plain function in this process.
    Exit code 3: the batch is being scored by another process.
    """
    from pipelines.settings import get_settings

    runner = runner or get_settings().score_runner
    if dask_address and runner != "dask":
        raise click.UsageError("--dask-address needs --runner dask")
    arguments = dict(data=str(data), model=model, batch_id=batch_id, out=out, table=table)
    if _use_prefect() or runner == "dask":
        from pipelines.flows import score_flow

        result = score_flow(**arguments, query=query, runner=runner, dask_address=dask_address)
    else:
        from pipelines.scoring.job import score_source

        result = score_source(**arguments, query=query)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(_score_line(result))
    if result.get("history"):
        click.echo(f"  context: {result['history']}")
    if result.get("health"):
        click.echo(f"  health: {result['health']['summary']}")
    if result.get("shadow"):
        sh = result["shadow"]
        click.echo(
            f"  shadow: {sh['model']} v{sh['model_version']} would flag {sh['would_flag']} "
            f"(scoring {sh['score_seconds']}s, {sh['cost_ratio']}x the champion's; "
            f"load {sh['load_seconds']}s)"
        )
    for note in result.get("notes", []):
        click.echo(f"  note: {note}")
    if result.get("out"):
        click.echo(f"  scores written to {result['out']}")


def _score_line(r: dict) -> str:
    prefix = "already scored, nothing written: " if r["already_scored"] else ""
    return (
        f"{prefix}run {r['run_id'][:8]} batch {r['batch_id']} with {r['model']} "
        f"v{r['model_version']}: {r['rows_in']} rows in = {r['rows_scored']} scored + "
        f"{r['rows_quarantined']} quarantined; {r['rows_flagged']} flagged "
        f"(threshold {r['threshold']:.4g})"
    )


# -- reading results ----------------------------------------------------------------------


def _store():
    from pipelines.store import ResultsStore

    return ResultsStore(get_settings().resolved_database_url)


@main.command()
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def runs(limit, as_json) -> None:
    """List scoring runs, newest first, with their drift-watch health."""
    store = _store()
    rows = [
        {
            "run_id": r.id,
            "batch_id": r.batch_id,
            "model": r.model_name,
            "version": r.model_version,
            "status": r.status,
            "rows_in": r.rows_in,
            "rows_scored": r.rows_scored,
            "rows_quarantined": r.rows_quarantined,
            "rows_flagged": r.rows_flagged,
            "started_at": r.started_at.isoformat() if r.started_at else None,
            "source": r.source,
            "role": r.role,
            "score_seconds": r.score_seconds,
        }
        for r in store.list_runs(limit)
    ]
    health = store.run_health_status([r["run_id"] for r in rows])
    for r in rows:
        r["health"] = health.get(r["run_id"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no scoring runs yet")
        return
    click.echo(
        f"{'run':8}  {'status':9}  {'role':7} {'model':28}  {'in':>6} {'scored':>6} "
        f"{'quar.':>5} {'flags':>5}  {'health':12} started"
    )
    for r in rows:
        state = (r["health"] or {}).get("status", "-")
        click.echo(
            f"{r['run_id'][:8]}  {r['status']:9}  {r['role']:7} "
            f"{r['model'] + ' v' + r['version']:28}  "
            f"{r['rows_in']:>6} {r['rows_scored']:>6} {r['rows_quarantined']:>5} "
            f"{r['rows_flagged']:>5}  {state.upper() if state == 'alarm' else state:12} "
            f"{(r['started_at'] or '')[:19]}"
        )
    for r in rows:
        if (r["health"] or {}).get("status") == "alarm":
            click.echo(f"  {r['run_id'][:8]}: {r['health']['summary']}")


@main.command()
@click.option("--run", "run_id", default=None, help="Only this run (id or id prefix).")
@click.option("--status", default=None, help="open or reviewed (a verdict was given).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def flags(run_id, status, limit, as_json) -> None:
    """List flagged records with the reasons they were flagged, highest score first."""
    store = _store()
    if run_id:
        run = store.get_run(run_id)
        if run is None:
            _fail(f"no scoring run {run_id!r}")
        run_id = run.id
    rows = [
        {
            "flag_id": f.id,
            "run_id": f.run_id,
            "record_id": f.record_id,
            "score": f.score,
            "threshold": f.threshold,
            "status": f.status,
            "reasons": f.reasons,
            "record": f.record,
        }
        for f in store.list_flags(run_id=run_id, status=status, limit=limit)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no flags")
        return
    for r in rows:
        reasons = "; ".join(x["text"] for x in r["reasons"]) or "-"
        click.echo(
            f"{r['record_id']:>12}  score {r['score']:10.4g}  [{r['status']}]  run "
            f"{r['run_id'][:8]}  {reasons}"
        )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Aliases, versions and ledger as JSON.")
def models(as_json) -> None:
    """List registered models with versions, aliases, thresholds and the decision ledger."""
    from mlflow import MlflowClient

    from pipelines.modeling.registry import configure_mlflow, registry_summary
    from pipelines.operations.promotion import ledger_entries

    configure_mlflow(get_settings())
    client = MlflowClient()
    names = sorted(m.name for m in client.search_registered_models())
    store = _store()
    if as_json:
        summary = registry_summary(names) if names else None
        out = []
        for name in names:
            versions = summary[summary["model"] == name] if summary is not None else []
            out.append(
                {
                    "model": name,
                    "aliases": {
                        k: str(v) for k, v in client.get_registered_model(name).aliases.items()
                    },
                    "versions": versions.to_dict("records") if len(versions) else [],
                    "ledger": ledger_entries(store, name),
                }
            )
        click.echo(json.dumps(out, indent=2, default=str))
        return
    if not names:
        click.echo("no registered models")
        return
    click.echo(registry_summary(names).to_string(index=False))
    for name in names:
        entries = ledger_entries(store, name, limit=5)
        if entries:
            click.echo(f"\n{name} ledger (newest first):")
            for e in entries:
                who = e["actor"] + (f", approved by {e['approved_by']}" if e["approved_by"] else "")
                click.echo(
                    f"  #{e['id']} {e['at'][:19]} {e['kind']} {e['decision']} "
                    f"v{e['from_version']} -> v{e['to_version']} by {who}: {e['reason'] or '-'}"
                )


# -- operations (issue 10) ----------------------------------------------------------------


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
    """Real-time scoring over HTTP (POST /score), with entity history for sequence models."""
    import torch
    import uvicorn

    from pipelines.modeling.registry import configure_mlflow
    from pipelines.operations.api import create_app

    settings = get_settings()
    configure_mlflow(settings)
    torch.set_num_threads(settings.api_torch_threads)
    app = create_app(
        _store(), model, refresh_seconds=refresh_seconds,
        flush_seconds=settings.api_flush_seconds,
    )  # fmt: skip
    app.state.scorer.current()  # fail now, not on the first request, if there is no model
    uvicorn.run(app, host=host, port=port, log_level="warning")


# -- review app and its users -------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Bind address (default: VIGIL_REVIEW_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: VIGIL_REVIEW_PORT).")
def review(host, port) -> None:
    """Start the analysts' review app (queue, cases, verdicts, runs, quality)."""
    import uvicorn

    from review import create_app

    settings = get_settings()
    host, port = host or settings.review_host, port or settings.review_port
    app = create_app(_store(), settings)
    click.echo(f"vigil review on http://{host}:{port}/  (stop with Ctrl-C)")
    if not app.state.store.list_users():
        click.echo("no users yet: vigil users add NAME --role analyst --password-stdin")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@main.group()
def users() -> None:
    """Review-app users: viewer reads, analyst also gives verdicts, admin manages users."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "analyst", "admin"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--no-password", is_flag=True, help="API-token-only user (cannot log in).")
def users_add(name, role, password_stdin, no_password) -> None:
    """Add a user."""
    from pipelines.accounts import hash_password
    from pipelines.store.review import ReviewError

    password_hash = None if no_password else hash_password(_read_password(password_stdin))
    try:
        _store().add_user(name, role, password_hash, actor=_actor())
    except ReviewError as exc:
        _fail(str(exc))
    click.echo(f"added {name} ({role})")


def _change_user(name: str, done: str, **changes) -> None:
    """Apply a user change through the store (audited there) and say what happened."""
    from pipelines.store.review import ReviewError

    try:
        _store().update_user(name, actor=_actor(), **changes)
    except ReviewError as exc:
        _fail(str(exc))
    click.echo(done)


@users.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_set_password(name, password_stdin) -> None:
    """Set a user's password."""
    from pipelines.accounts import hash_password

    password_hash = hash_password(_read_password(password_stdin))
    _change_user(name, f"password of {name} changed", password_hash=password_hash)


@users.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(["viewer", "analyst", "admin"]))
def users_set_role(name, role) -> None:
    """Change a user's role."""
    _change_user(name, f"{name} is now {role}", role=role)


@users.command("disable")
@click.argument("name")
def users_disable(name) -> None:
    """Disable a user: ends their sessions and revokes their API tokens."""
    _change_user(name, f"{name} disabled", disabled=True)


@users.command("enable")
@click.argument("name")
def users_enable(name) -> None:
    """Enable a disabled user again (tokens stay revoked: issue a new one)."""
    _change_user(name, f"{name} enabled", disabled=False)


@users.command("token")
@click.argument("name")
def users_token(name) -> None:
    """Print a new API token for the user (one line; only its hash is kept)."""
    from pipelines.store.review import ReviewError

    try:
        click.echo(_store().create_token(name, actor=_actor()))
    except ReviewError as exc:
        _fail(str(exc))


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def users_list(as_json) -> None:
    """List users with their roles."""
    rows = [{"name": u.name, "role": u.role, "disabled": u.disabled} for u in _store().list_users()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']:24} {r['role']:8} {'disabled' if r['disabled'] else 'active'}")


# -- feedback (issue 9) -------------------------------------------------------------------


def _actor(actor: str | None = None) -> str:
    import getpass

    return actor or getpass.getuser()


@main.group()
def labels() -> None:
    """Labels: verdicts from files in, every label row out."""


@labels.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--source",
    type=click.Choice(["import", "chargeback", "review"]),
    default="import",
    show_default=True,
    help="Source for rows whose file gives none.",
)
@click.option("--dataset", default=None, help="Data set the labels belong to (if not in the file).")
@click.option("--actor", default=None, help="Who imports (default: the OS user).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def labels_import(file, source, dataset, actor, as_json) -> None:
    """Add labels from a CSV/Parquet file (record_id, verdict; optional known_at, source).

    Idempotent: rows already imported are skipped. Bad rows are reported (file, row,
    column) and left out; the good rows are stored. Exits 1 when some rows were bad.
    """
    from pipelines.feedback.labels import read_label_file

    parsed = read_label_file(file, default_source=source, dataset=dataset)
    result = _store().add_label_rows(parsed.rows, actor=_actor(actor), source_name=str(file))
    report = {
        "file": str(file),
        "rows_in": parsed.rows_in,
        "inserted": result.inserted,
        "already_imported": result.duplicates,
        "bad_rows": len({e.row for e in parsed.errors}),
        "errors": [str(e) for e in parsed.errors],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(
            f"{file}: {report['rows_in']} rows: {result.inserted} labels added, "
            f"{result.duplicates} already imported, {report['bad_rows']} bad rows left out"
        )
        for line in report["errors"][:50]:
            click.echo(f"  {line}", err=True)
        if len(report["errors"]) > 50:
            click.echo(f"  ... and {len(report['errors']) - 50} more", err=True)
    if parsed.errors:
        sys.exit(1)


@labels.command("export")
@click.option("--out", required=True, help="FILE.csv or FILE.parquet.")
@click.option("--known-before", default=None, help="Only rows known before this time (ISO).")
def labels_export(out, known_before) -> None:
    """Write every label row (record_id, verdict, known_at, source, analyst, ...)."""
    import pandas as pd

    from pipelines.feedback.labels import write_label_export

    before = pd.to_datetime(known_before, utc=True).to_pydatetime() if known_before else None
    rows = _store().label_rows(known_before=before)
    path = write_label_export(rows, out)
    click.echo(f"wrote {len(rows)} label rows to {path}")


@main.group()
def threshold() -> None:
    """Decision thresholds of registered model versions."""


@threshold.command("set")
@click.option("--model", "model_ref", required=True, help="NAME@ALIAS or NAME/VERSION.")
@click.option("--budget", default=None, help="Expected flags per day, e.g. 50 or 50/day.")
@click.option("--precision", type=float, default=None, help="Target precision among reviewed.")
@click.option("--fpr", type=float, default=None, help="Target false-positive rate.")
@click.option("--reason", default=None, help="Why (kept in the decision ledger).")
@click.option("--actor", default=None, help="Who (default: the OS user).")
@click.option("--dry-run", is_flag=True, help="Show the new threshold, change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def threshold_set(model_ref, budget, precision, fpr, reason, actor, dry_run, as_json) -> None:
    """Recalibrate a version's threshold from its scores and the verdicts known now,
    without retraining; the next scoring run uses it."""
    from pipelines.feedback.thresholds import (
        NotEnoughEvidence,
        apply_threshold,
        describe,
        parse_budget,
        plan_threshold,
        record_refusal,
    )
    from pipelines.modeling.registry import configure_mlflow, load_bundle, resolve_model

    given = [
        (m, v)
        for m, v in (("budget", budget), ("precision", precision), ("fpr", fpr))
        if v is not None
    ]
    if len(given) != 1:
        _fail("give exactly one of --budget N/day, --precision P, --fpr F")
    mode, raw = given[0]
    target = parse_budget(raw) if mode == "budget" else float(raw)
    settings = get_settings()
    configure_mlflow(settings)
    ref = resolve_model(model_ref)
    bundle = load_bundle(ref)
    store = _store()
    who = _actor(actor)
    try:
        plan = plan_threshold(
            store,
            model_name=ref.name,
            model_version=ref.version,
            current=bundle.threshold,
            mode=mode,
            target=target,
            min_reviewed=settings.feedback_min_reviewed,
            min_scored=settings.feedback_min_scored,
            dataset=bundle.spec.name,
        )
    except NotEnoughEvidence as exc:
        if not dry_run:
            record_refusal(
                store,
                model_name=ref.name,
                model_version=ref.version,
                mode=mode,
                target=target,
                actor=who,
                reason=reason,
                message=str(exc),
            )
        _fail(f"refused: {exc}")
    result = {
        "model": ref.name,
        "version": ref.version,
        "mode": mode,
        "target": target,
        "before": plan.before,
        "after": plan.after,
        "evidence": plan.evidence,
        "applied": not dry_run,
    }
    if not dry_run:
        result["decision_id"] = apply_threshold(
            store,
            plan,
            model_name=ref.name,
            model_version=ref.version,
            actor=who,
            reason=reason,
            policy={
                "min_reviewed": settings.feedback_min_reviewed,
                "min_scored": settings.feedback_min_scored,
            },
        )
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    prefix = "dry run, nothing changed: " if dry_run else ""
    click.echo(f"{prefix}{ref}: {describe(plan)}")


@main.command("demo-feedback")
@click.option("--epochs", type=int, default=None, help="Override epochs (faster, rougher).")
def demo_feedback(epochs) -> None:
    """The feedback loop once on the demo data: import verdicts, retrain with labels,
    print before/after on the later batch."""
    from pipelines.demo_feedback import run_feedback_demo

    run_feedback_demo(epochs=epochs, echo=click.echo)


# -- demo ---------------------------------------------------------------------------------


@main.command("demo-data")
@click.option("--out-dir", default=str(DEFAULT_SAMPLES), show_default=True)
@click.option("--spec-out", default=str(DEFAULT_SPEC), show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def demo_data(out_dir, spec_out, seed) -> None:
    """Write the seeded demo transactions and their spec."""
    from pipelines.demo import DEMO_SPEC, write_demo_data

    paths = write_demo_data(out_dir, seed=seed)
    DEMO_SPEC.save(spec_out)
    for role, path in paths.items():
        click.echo(f"{role}: {path}")
    click.echo(f"spec: {spec_out}")


@main.command()
@click.option("--epochs", type=int, default=None, help="Override epochs (faster, rougher).")
@click.option("--cards", type=int, default=None, help="Cards in the stream (default 1,500).")
@click.option("--seed", type=int, default=None, help="Stream seed (default: the demo's).")
def demo(epochs, cards, seed) -> None:
    """The whole story on a generated card stream: sequence models against rules, the
    analysts' queue, verdicts -> a labelled model -> promotion, the next day's drift."""
    from pipelines.demo import run_demo

    run_demo(epochs=epochs, n_cards=cards, seed=seed, echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    main()
