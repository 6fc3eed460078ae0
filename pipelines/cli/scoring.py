"""`vigil score` and what a run wrote: `runs`, `flags`, `models`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from pipelines.cli import collector
from pipelines.cli.app import _fail, _store, _use_prefect, main, prefect_api
from pipelines.settings import get_settings
from pipelines.store.vocabulary import HealthStatus

if TYPE_CHECKING:
    from pipelines.jobs.reports import ScoreReport


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
    with collector.paused():
        from pipelines.jobs.score import ScoreRequest, score_source
    runner = runner or get_settings().score_runner
    if dask_address and runner != "dask":
        raise click.UsageError("--dask-address needs --runner dask")
    request = ScoreRequest(
        data=str(data), model=model, batch_id=batch_id, out=out, table=table, query=query,
        runner=runner, dask_address=dask_address,
    )  # fmt: skip
    if _use_prefect() or runner == "dask":
        from pipelines.flows import score_flow

        with prefect_api():
            report = score_flow(request)
    else:
        report = score_source(request)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    click.echo(_score_line(report))
    if report.history:
        click.echo(f"  context: {report.history}")
    if report.health:
        click.echo(f"  health: {report.health.summary}")
    if report.shadow:
        sh = report.shadow
        click.echo(
            f"  shadow: {sh.model} v{sh.model_version} would flag {sh.would_flag} "
            f"(scoring {sh.score_seconds}s, {sh.cost_ratio}x the champion's; "
            f"load {sh.load_seconds}s)"
        )
    for note in report.notes:
        click.echo(f"  note: {note}")
    if report.out:
        click.echo(f"  scores written to {report.out}")


def _score_line(r: ScoreReport) -> str:
    prefix = "already scored, nothing written: " if r.already_scored else ""
    return (
        f"{prefix}run {r.run_id[:8]} batch {r.batch_id} with {r.model} "
        f"v{r.model_version}: {r.rows_in} rows in = {r.rows_scored} scored + "
        f"{r.rows_quarantined} quarantined; {r.rows_flagged} flagged "
        f"(threshold {r.threshold:.4g})"
    )


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
            f"{r['rows_flagged']:>5}  {state.upper() if state == HealthStatus.ALARM else state:12} "
            f"{(r['started_at'] or '')[:19]}"
        )
    for r in rows:
        if (r["health"] or {}).get("status") == HealthStatus.ALARM:
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
