"""`vigil labels`: verdicts and chargebacks in and out."""

from __future__ import annotations

import json
import sys

import click

from pipelines.cli.app import _actor, _store, main


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
