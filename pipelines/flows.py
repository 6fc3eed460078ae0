"""Prefect flows: each reads as the story of its job; the work is in plain functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task

from pipelines.feedback.hygiene import label_masks
from pipelines.intake.ingest import Batch, ValidationResult, read_batch, validate_batch
from pipelines.intake.spec import DatasetSpec, load_spec
from pipelines.modeling.training import (
    DetectorKind,
    TrainConfig,
    TrainingSplit,
    evaluate_detector,
    fit_detector,
    log_and_register,
    split_for_training,
)
from pipelines.scoring.history import save_entity_history
from pipelines.settings import get_settings
from pipelines.store import ResultsStore


@task(name="load-and-validate")
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
        validated.clean, spec, evaluation_fraction=config.evaluation_fraction, seed=config.seed,
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
    detector = fit_detector(kind, spec, data_split, config)
    evaluation = evaluate_detector(detector, spec, data_split, config)
    return log_and_register(
        kind,
        detector,
        evaluation,
        spec,
        config,
        data_source=data_source,
        max_reasons=get_settings().max_reasons,
        input_example=data_split.raw_example,
    )


@task(name="rerank-register")
def train_reranked_model(
    trained: dict[str, Any], spec: DatasetSpec, clean, known, data_split: TrainingSplit,
    config: TrainConfig, data_source: str, known_before: datetime,
) -> dict[str, Any] | None:
    """A re-ranked version of a just-trained detector from the verdicts known (issue 9)."""
    from pipelines.feedback.training import NotEnoughLabels, register_reranked, train_reranked
    from pipelines.modeling.registry import ModelRef, load_bundle

    base = load_bundle(ModelRef(trained["model"], trained["version"], None))
    try:
        model = train_reranked(
            base, clean, known, seed=config.seed,
            evaluation_ids=set(data_split.evaluation[spec.id_column].astype(str)),
            min_labels=get_settings().feedback_min_labels,
        )
    except NotEnoughLabels as exc:
        get_run_logger().warning("%s: no re-ranked model: %s", trained["model"], exc)
        return {"model": f"{trained['model']}-reranked", "skipped": str(exc)}
    return register_reranked(
        model, base_model=trained["model"], base_version=trained["version"],
        detector_kind=trained["detector"], data_source=data_source, known_before=known_before,
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
    batch, validated = load_and_validate(data, spec)
    if validated.rows_quarantined:
        store = ResultsStore(settings.resolved_database_url)
        store.replace_training_quarantine(batch.content_hash, batch.source, validated.quarantined)
    kinds = config.detector_kinds(spec)
    # Verdicts known before training starts: confirmed frauds never train "normal".
    started = datetime.now(UTC)
    store = ResultsStore(settings.resolved_database_url)
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
        save_entity_history(
            ResultsStore(settings.resolved_database_url),
            spec,
            batch_id=batch.content_hash,
            source=batch.source,
            state=data_split.state,
            only_recent=True,
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
def score_flow(
    data: str,
    model: str | None = None,
    batch_id: str | None = None,
    out: str | None = None,
    table: str | None = None,
    query: str | None = None,
) -> dict[str, Any]:
    """Resolve the champion → read the batch in chunks → validate → score → store."""
    from pipelines.scoring.job import score_source

    return score_source(
        data=data, model=model, batch_id=batch_id, out=out, table=table, query=query
    )
