"""`vigil train` and `vigil threshold`: fit, evaluate, register, recalibrate."""

from __future__ import annotations

import json
import math

import click

from pipelines.cli.app import _actor, _fail, _store, main, prefect_api
from pipelines.settings import get_settings


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
    help="Also train a re-ranker on the verdicts known now (and the frauds the data's "
    "label column marks before the evaluation period) and register it as a new version of "
    "each detector's model (kind <detector>-reranked): the challenger.",
)
@click.option(
    "--seed-check",
    is_flag=True,
    help="Fit each detector a second time with the next seed; a model whose hold-out "
    "ranking does not repeat is not made champion or challenger (twice the time).",
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
    seed_check,
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
        seed_check=seed_check,
    )
    with prefect_api():
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
    if "seed_rank_correlation" in m:
        line += (
            f"\n    seeds agree: rank correlation {m['seed_rank_correlation']:.2f}, "
            f"{m['seed_top_overlap']:.0%} of the top records shared"
        )
    for problem in model.get("problems", []):
        line += f"\n    NOT made champion or challenger: {problem}"
    for warning in model.get("warnings", []):
        line += f"\n    warning: {warning}"
    for note in model.get("notes", []):
        line += f"\n    {note}"
    return line


def _percent(value: float | None) -> str:
    """A share with two decimals, or "n/a" when it could not be measured (no normals)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2%}"


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
