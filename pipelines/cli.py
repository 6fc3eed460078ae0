"""The ``vigil`` command line.

Settings are applied before Prefect or MLflow is imported (both read the environment at
import time), so every command imports its heavy modules lazily.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pipelines.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLES = REPO_ROOT / "data" / "samples"
DEFAULT_SPEC = REPO_ROOT / "data" / "specs" / "demo_transactions.yaml"


def _fail(message: str) -> None:
    click.echo(click.style(f"error: {message}", fg="red"), err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns the errors people cause (bad files, bad specs, unknown models) into one
    readable line instead of a traceback."""

    def invoke(self, ctx):
        from pipelines.intake.ingest import DataSourceError
        from pipelines.intake.spec import SpecError

        try:
            return super().invoke(ctx)
        except (DataSourceError, SpecError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))


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
    out_path = Path(out) if out else REPO_ROOT / "data" / "specs" / f"{name}.yaml"
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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--target-fpr", type=float, default=0.01, show_default=True)
@click.option(
    "--threshold-method", type=click.Choice(["fpr", "f1"]), default="fpr", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(data, spec_path, detectors, epochs, seed, target_fpr, threshold_method, as_json) -> None:
    """Train the detectors on normal records and register them in MLflow."""
    from pipelines.flows import train_flow
    from pipelines.modeling.training import TrainConfig

    kinds = [k.strip() for k in detectors.split(",") if k.strip()] if detectors else None
    overrides = {"epochs": epochs} if epochs else {}
    config = TrainConfig(
        detectors=kinds,
        seed=seed,
        target_fpr=target_fpr,
        threshold_method=threshold_method,
        vae=dict(overrides),
        gan=dict(overrides),
        seq_vae=dict(overrides),
        seq_gan=dict(overrides),
    )
    result = train_flow(data=str(data), spec_path=str(spec_path), config=config)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(
        f"trained on {result['rows_train']} normal records "
        f"({result['rows_quarantined']} rows quarantined, "
        f"{result['rows_evaluation']} held out for evaluation)"
    )
    for model in result["models"]:
        click.echo(_model_line(model))


def _model_line(model: dict) -> str:
    m = model["metrics"]
    quality = (
        f"AUROC {m['auroc']:.3f}  AUPRC {m['auprc']:.3f}  "
        f"precision {m['precision_at_threshold']:.2f} recall {m['recall_at_threshold']:.2f}"
        if "auroc" in m
        else "no labels: AUROC n/a"
    )
    return (
        f"  {model['model']} v{model['version']} [{', '.join(model['aliases'])}]  {quality}  "
        f"threshold {m['threshold']:.4g} (target FPR {m['target_fpr']:.1%}, "
        f"hold-out FPR {m['holdout_fpr']:.1%})  fit {m['fit_seconds']:.1f}s"
    )


@main.command()
@click.option("--data", required=True, help="Batch to score (CSV/Parquet) or SQLAlchemy URL.")
@click.option("--model", default=None, help="NAME@ALIAS or NAME/VERSION (default: champion).")
@click.option("--out", default=None, help="Write every record's id, score and flag here.")
@click.option("--batch-id", default=None, help="Default: a hash of the batch content.")
@click.option("--table", default=None, help="SQL table, when --data is a database URL.")
@click.option("--query", default=None, help="SQL query, when --data is a database URL.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def score(data, model, out, batch_id, table, query, as_json) -> None:
    """Score a batch with a registered model and store scores and flags."""
    from pipelines.flows import score_flow

    result = score_flow(
        data=str(data), model=model, batch_id=batch_id, out=out, table=table, query=query
    )
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
@click.option("--status", default=None, help="open, confirmed or dismissed.")
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
@click.option("--model", default=None, help="Registered model (default: every model whose "
              "challenger differs from its champion).")
@click.option("--rollback", is_flag=True, help="Move champion back to previous-champion.")
@click.option("--reason", default=None, help="Why (required with --rollback).")
@click.option("--actor", default=None, help="Who decides (default: your user name).")
@click.option("--policy", "policy_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Promotion policy as YAML/JSON (fields of PromotionPolicy).")
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
                _fail("name the model to roll back with --model "
                      f"(models with a previous-champion: {', '.join(names) or 'none'})")
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
@click.option("--settle-seconds", type=float, default=60.0, show_default=True,
              help="A file must be unchanged this long before it is scored.")
@click.option("--sql-url", default=None, help="Or: score new rows from this database ...")
@click.option("--sql-query", default=None, help="... given by this SELECT ...")
@click.option("--watermark-column", default=None, help="... after this column's last value.")
@click.option("--model", default=None, help="NAME or NAME@ALIAS (default: champion).")
@click.option("--score-cron", default="0 2 * * *", show_default=True)
@click.option("--train-data", default=None, help="Weekly retraining data (with --spec).")
@click.option("--spec", "spec_path", default=None, help="Spec for weekly retraining.")
@click.option("--train-cron", default="0 3 * * 0", show_default=True)
def serve(watch_folder, pattern, settle_seconds, sql_url, sql_query, watermark_column, model,
          score_cron, train_data, spec_path, train_cron) -> None:
    """Run the schedules (nightly score, weekly train + promote) until stopped."""
    from pipelines.operations.serve import ServeConfig, serve_forever
    from pipelines.operations.sources import FolderSource, SqlSource

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
    config = ServeConfig(source=source, model=model, score_cron=score_cron,
                         train_data=train_data, spec_path=spec_path, train_cron=train_cron)
    click.echo("serving: " + ", ".join(
        d for d, on in (("nightly-score " + score_cron, source is not None),
                        ("weekly-train " + train_cron, train_data is not None),
                        ("promote-on-demand", True)) if on) + " (Ctrl-C stops)")
    serve_forever(config)


@main.command()
@click.option("--model", default=None, help="NAME or NAME@ALIAS (default: the champion).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8100, show_default=True)
@click.option("--refresh-seconds", type=float, default=30.0, show_default=True,
              help="How often the champion alias is looked up again.")
def api(model, host, port, refresh_seconds) -> None:
    """Real-time scoring over HTTP (POST /score), with entity history for sequence models."""
    import uvicorn

    from pipelines.modeling.registry import configure_mlflow
    from pipelines.operations.api import create_app

    configure_mlflow(get_settings())
    app = create_app(_store(), model, refresh_seconds=refresh_seconds)
    app.state.scorer.current()  # fail now, not on the first request, if there is no model
    uvicorn.run(app, host=host, port=port, log_level="warning")


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
def demo(epochs) -> None:
    """The whole loop on bundled sample data: train both detectors, register, score."""
    from pipelines.demo import run_demo

    run_demo(epochs=epochs, echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    main()
