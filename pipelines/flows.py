"""Prefect flows: each reads as the story of its job; the work is in plain functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import Field

from pipelines.feedback.hygiene import label_masks
from pipelines.intake.ingest import Batch, ValidationResult, read_batch, validate_batch
from pipelines.intake.spec import DatasetSpec, load_spec
from pipelines.jobs.reports import RunHealth, ScheduledReport, ScoreReport
from pipelines.jobs.scheduled import score_pending
from pipelines.jobs.score import ScoreRequest, score_source
from pipelines.modeling.bundle import PreparedRecords
from pipelines.modeling.churn import TAG_FLAG_CHURN, FlagChurn, flag_churn_against_champion
from pipelines.modeling.health import generative_health
from pipelines.modeling.registry import model_name_for
from pipelines.modeling.training import (
    DetectorKind,
    TrainConfig,
    TrainingSplit,
    evaluate_detector,
    fit_detector,
    log_and_register,
    seed_problem,
    seed_stability,
    split_for_training,
    training_problems,
    training_warnings,
)
from pipelines.operations.sources import (
    FolderSource,
    Listing,
    ScheduledSource,
    SqlSource,
    list_pending,
)
from pipelines.scoring.history import KeptHistory
from pipelines.settings import get_settings
from pipelines.store import ResultsStore
from pipelines.store.retention import RetentionResult
from pipelines.store.vocabulary import DecisionOutcome


def retry_on_io(task, task_run, state) -> bool:
    """Retry what a flaky disk, share or database causes; a bad file fails at once."""
    import sqlalchemy.exc

    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classifying, not handling
        transient = (OSError, TimeoutError, sqlalchemy.exc.OperationalError)
        return isinstance(exc, transient) or isinstance(exc.__cause__, transient)
    return False


#: How tasks that read or write outside the process retry: transient I/O errors only
#: (``retry_on_io``), with backoff, so a blip in the store or the source does not fail a
#: nightly run.
IO_RETRIES = {
    "retries": 3,
    "retry_delay_seconds": [5, 30, 120],
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": retry_on_io,
}


@task(name="load-and-validate", **IO_RETRIES)
def load_and_validate(
    data: str, spec: DatasetSpec, table: str | None = None, query: str | None = None
) -> tuple[Batch, ValidationResult]:
    batch = read_batch(data, table=table, query=query)
    validated = validate_batch(batch, spec)
    if validated.rows_quarantined:
        logger = get_run_logger()
        logger.warning(
            "%s: %d of %d rows quarantined; first: %s",
            batch.source,
            validated.rows_quarantined,
            validated.rows_in,
            validated.error_summary(batch.row_label)[:3],
        )
    return batch, validated


@task(name="split")
def split(
    validated: ValidationResult, spec: DatasetSpec, config: TrainConfig, masks=None
) -> TrainingSplit:
    return split_for_training(
        validated.clean,
        spec,
        evaluation_fraction=config.evaluation_fraction,
        seed=config.seed,
        confirmed_frauds=None if masks is None else masks.confirmed_frauds,
        reviewed_normals=None if masks is None else masks.reviewed_normals,
    )


@task(name="fit-evaluate-register")
def train_detector(
    kind: DetectorKind,
    spec: DatasetSpec,
    data_split: TrainingSplit,
    config: TrainConfig,
    data_source: str,
) -> dict[str, Any]:
    from pipelines.operations.reference import log_training_reference

    detector = fit_detector(kind, spec, data_split, config)
    evaluation = evaluate_detector(detector, spec, data_split, config)
    evaluation.metrics.update(generative_health(detector, spec, data_split))
    problems = training_problems(detector, evaluation, spec, data_split)
    if config.seed_check:
        again = config.model_copy(update={"seed": config.seed + 1})
        twin = fit_detector(kind, spec, data_split, again)
        stability = seed_stability(
            evaluation.scores,
            evaluate_detector(twin, spec, data_split, again).scores,
            config.target_fpr,
        )
        evaluation.metrics.update(stability)
        problems += [p for p in [seed_problem(stability)] if p]
    warnings = training_warnings(evaluation)
    churn = flag_churn_against_champion(
        model_name_for(spec.name, kind),
        PreparedRecords(features=data_split.evaluation, history=data_split.context),
        evaluation.scores > float(detector.threshold_.value),
    )
    if isinstance(churn, FlagChurn):
        evaluation.metrics.update(churn.metrics())
    if churn:
        evaluation.notes.append(churn.describe() if isinstance(churn, FlagChurn) else churn)
    registered = log_and_register(
        kind,
        detector,
        evaluation,
        spec,
        config,
        data_source=data_source,
        max_reasons=get_settings().max_reasons,
        input_example=data_split.raw_example,
        problems=problems,
        warnings=warnings,
        notes=evaluation.notes,
        tags={TAG_FLAG_CHURN: evaluation.notes[0][:500]} if evaluation.notes else None,
    )
    # Drift watch and promotion compare against what the model saw in training.
    log_training_reference(
        registered["mlflow_run_id"],
        spec=spec,
        split=data_split,
        evaluation=evaluation,
        threshold=float(detector.threshold_.value),
    )
    return registered


@task(name="rerank-register")
def train_reranked_model(
    trained: dict[str, Any],
    spec: DatasetSpec,
    clean,
    known,
    data_split: TrainingSplit,
    config: TrainConfig,
    data_source: str,
    known_before: datetime,
) -> dict[str, Any] | None:
    """A re-ranked version of a just-trained detector from the verdicts known."""
    from pipelines.feedback.training import NotEnoughLabels, register_reranked, train_reranked
    from pipelines.modeling.registry import ModelRef, load_bundle

    base = load_bundle(ModelRef(trained["model"], trained["version"], None))
    try:
        model = train_reranked(
            base,
            clean,
            known,
            seed=config.seed,
            evaluation_ids=set(data_split.evaluation[spec.id_column].astype(str)),
            min_labels=config.min_labels or get_settings().feedback_min_labels,
        )
    except NotEnoughLabels as exc:
        get_run_logger().warning("%s: no re-ranked model: %s", trained["model"], exc)
        return {"model": trained["model"], "detector": f"{trained['detector']}-reranked",
                "skipped": str(exc)}  # fmt: skip
    return register_reranked(
        model,
        base_model=trained["model"],
        base_version=trained["version"],
        detector_kind=trained["detector"],
        data_source=data_source,
        known_before=known_before,
        input_example=data_split.raw_example,
    )


@flow(name="train", log_prints=True)
def train_flow(
    data: str, spec_path: str, config: TrainConfig | None = None, with_labels: bool = False
) -> dict[str, Any]:
    """Load → validate → split normals → fit each detector → evaluate → log → register
    (→ with labels: a re-ranked version of each, trained on the verdicts known now)."""
    from pipelines.modeling.registry import configure_mlflow

    settings = get_settings()
    config = config or TrainConfig()
    configure_mlflow(settings)
    spec = load_spec(spec_path)
    store = ResultsStore(settings.resolved_database_url)
    batch, validated = load_and_validate(data, spec)
    if validated.rows_quarantined:
        store.replace_training_quarantine(batch.content_hash, batch.source, validated.quarantined)
    kinds = config.detector_kinds(spec)
    # Verdicts known before training starts: confirmed frauds never train "normal".
    started = datetime.now(UTC)
    known = store.known_labels(known_before=started, dataset=spec.name)
    masks = label_masks(validated.clean, spec.id_column, known, started)
    data_split = split(validated, spec, config, masks)
    models = [train_detector(kind, spec, data_split, config, batch.source) for kind in kinds]
    skipped = []
    if with_labels:
        for trained in list(models):
            reranked = train_reranked_model(
                trained, spec, validated.clean, known, data_split, config, batch.source, started
            )
            (skipped if "skipped" in reranked else models).append(reranked)
    if data_split.state is not None:
        # The training records' tail is the entity history the first scored batch needs.
        KeptHistory(store, spec).keep(
            data_split.state, batch_id=batch.content_hash, source=batch.source, only_recent=True
        )
    return {
        "dataset": spec.name,
        "rows_in": validated.rows_in,
        "rows_quarantined": validated.rows_quarantined,
        "rows_train": len(data_split.train),
        "rows_evaluation": len(data_split.evaluation),
        "labels": masks.report(data_split),
        "models": models,
        **({"reranked_skipped": skipped} if skipped else {}),
    }


@flow(name="score", log_prints=True)
def score_flow(request: ScoreRequest) -> ScoreReport:
    """Resolve the champion → read and validate the batch (streamed for large files) →
    score in chunks (the dask runner: partitions as tasks on a Dask cluster) → store →
    drift watch → the challenger in shadow."""
    report = score_source(request)
    report_health(report.health, run_id=report.run_id, model=report.model)
    return report


def report_health(health: RunHealth | None, *, run_id: str, model: str) -> None:
    """A drift alarm is a log line and a Prefect event (automations can notify or retrain)."""
    if health is None or health.status != "alarm":
        return
    from prefect.events import emit_event

    get_run_logger().warning("run %s: %s", run_id[:8], health.summary)
    emit_event(
        event="vigil.drift.alarm",
        resource={"prefect.resource.id": f"vigil.scoring-run.{run_id}", "vigil.model": model},
        payload={"run_id": run_id, "alarms": health.alarms, "summary": health.summary},
    )


# -- operations ---------------------------------------------------------------------------


@flow(name="promote", log_prints=True)
def promote_flow(
    model: str | None = None,
    policy: dict[str, Any] | None = None,
    actor: str = "vigil promote flow",
    approval_timeout_s: int = 3600,
) -> list[dict[str, Any]]:
    """Compare each model's challenger with its champion on paired evidence → decide by
    the policy → (optionally) pause for a person's approval → ledger, tags, aliases."""
    from pipelines.modeling.registry import configure_mlflow
    from pipelines.operations.promotion import (
        PromotionPolicy,
        compare,
        decide,
        models_with_challengers,
        record_and_apply,
    )

    settings = get_settings()
    configure_mlflow(settings)
    typed = PromotionPolicy.model_validate(policy or {})
    store = ResultsStore(settings.resolved_database_url)
    results = []
    for name in [model] if model else models_with_challengers():
        comparison = compare(store, name, typed)
        if comparison is None:
            results.append({"model": name, "decision": "no_challenger"})
            continue
        decision = decide(comparison, typed)
        approved_by, override = None, None
        if decision.outcome == "promote" and typed.require_approval:
            answer = ask_for_approval(comparison, decision, approval_timeout_s)
            approved_by = answer.approver
            if not answer.approve:
                override = DecisionOutcome.APPROVAL_REJECTED
                decision.reasons.append(f"rejected by {answer.approver}: {answer.note or '-'}")
        result = record_and_apply(
            store,
            comparison,
            decision,
            typed,
            actor=actor,
            approved_by=approved_by,
            override=override,
        )
        print(f"{name}: {result['decision']} ({'; '.join(result['reasons'])})")
        results.append(result)
    return results


class ApprovalInput(RunInput):
    """The promote flow's pause form: approve or not, and who decided."""

    approve: bool = Field(default=False, description="Promote the challenger?")
    approver: str = Field(description="Your name (recorded in the decision ledger).")
    note: str = Field(default="", description="Why (optional).")


# How often a paused promote flow asks the server whether someone has answered (a person
# answers in minutes; Prefect's own default, kept here so a test can answer faster).
APPROVAL_POLL_SECONDS = 10


def ask_for_approval(comparison, decision, timeout_s: int) -> ApprovalInput:
    """Pause the flow run with a form that shows the comparison; the answer names who."""
    from prefect.flow_runs import pause_flow_run

    from pipelines.operations.promotion import comparison_markdown

    return pause_flow_run(
        wait_for_input=ApprovalInput.with_initial_data(
            description=comparison_markdown(comparison, decision), approve=False, approver=""
        ),
        timeout=timeout_s,
        poll_interval=APPROVAL_POLL_SECONDS,
    )


@flow(name="retrain-and-promote", log_prints=True)
def retrain_flow(
    data: str, spec_path: str, config: TrainConfig | None = None, promote: bool = True
) -> dict[str, Any]:
    """Weekly: train new challengers, then let the promotion policy judge each one.

    Nobody watches this training, so each detector is fitted twice (two seeds) and only
    one whose scores repeat is registered as challenger."""
    config = (config or TrainConfig()).model_copy(update={"seed_check": True})
    trained = train_flow(data=data, spec_path=spec_path, config=config)
    if promote:
        trained["promotions"] = [
            promote_flow(model=m["model"], actor="vigil retrain flow")[0] for m in trained["models"]
        ]
    return trained


@task(name="list-new-data", cache_policy=NO_CACHE, **IO_RETRIES)
def list_new_data(source: FolderSource | SqlSource) -> Listing:
    """What the source has that no run has scored yet (I/O: retried with backoff)."""
    return list_pending(ResultsStore(get_settings().resolved_database_url), source)


@task(name="score-new-data", cache_policy=NO_CACHE)
def score_new_data(
    source: FolderSource | SqlSource, listing: Listing, model: str | None, shadow: bool
) -> ScheduledReport:
    settings = get_settings()
    return score_pending(
        ResultsStore(settings.resolved_database_url),
        source,
        listing,
        model=model,
        chunk_size=settings.score_chunk_size,
        shadow=shadow,
    )


@task(name="apply-retention", cache_policy=NO_CACHE, **IO_RETRIES)
def apply_retention() -> RetentionResult | None:
    """Remove the record snapshots of cases closed longer ago than the retention period
    (``retention_snapshot_days``; unset: nothing is removed). A retry is safe: a sweep
    finds only what is still due."""
    settings = get_settings()
    if settings.retention_snapshot_days is None:
        return None
    store = ResultsStore(settings.resolved_database_url)
    return store.remove_closed_snapshots(settings.retention_snapshot_days, actor="vigil nightly")


@flow(name="scheduled-score", log_prints=True)
def scheduled_score_flow(
    source: ScheduledSource, model: str | None = None, shadow: bool = True
) -> ScheduledReport:
    """What is new in the source → champion scores it (challenger in shadow) → drift watch;
    the file manifest / watermark commits with each run → retention, when set, removes
    the record snapshots of long-closed cases."""
    from pipelines.modeling.registry import configure_mlflow

    configure_mlflow(get_settings())
    listing = list_new_data(source)
    summary = score_new_data(source, listing, model, shadow)
    print(summary.message)
    for run in summary.runs:
        report_health(run.health, run_id=run.run_id, model=run.model)
        if run.health:
            print(f"  {run.input}: {run.health.summary}")
    removed = apply_retention()
    if removed is not None:
        print(
            f"retention: {removed.snapshots} record snapshots of {removed.cases} cases closed "
            f"more than {removed.older_than_days} days ago removed"
        )
    return summary
