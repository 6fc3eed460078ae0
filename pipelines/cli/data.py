"""`vigil spec` and `vigil demo-data`: the data-set spec and sample data."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.app import DEFAULT_SAMPLES, DEFAULT_SPEC, DEFAULT_SPECS, main


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
    from pipelines.intake.display import describe_display
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
    click.echo(f"  analysts see: {describe_display(inferred.display_columns)}")
    click.echo(
        "                (the payment in the queue and on the case; change it under "
        "display_columns: entity, time, merchant, amount, currency_column or a fixed "
        "currency code)"
    )
    used = {id_col, label_col, entity_col, time_col, *inferred.raw_context_columns}
    if inferred.display_columns:
        used |= set(inferred.display_columns.columns)
    skipped = [c for c in frame.columns if c not in inferred.feature_columns and c not in used]
    if skipped:
        click.echo(
            f"  left out:    {', '.join(skipped)} (ignored, ids, high-cardinality text, dates "
            "or numbers that only count time)"
        )
    click.echo("Review the file, then: vigil train --data F --spec " + str(out_path))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "dataset"


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
