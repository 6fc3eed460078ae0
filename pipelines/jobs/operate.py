"""One scoring run as operations sees it: the champion scores and flags, drift watch
checks the run, and the challenger scores the same batch in shadow.

Plain functions: the score flow and the scheduled sources call them; tests call them
without Prefect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipelines.intake.ingest import Batch, ValidationResult
from pipelines.modeling.bundle import ScoringBundle
from pipelines.scoring.batch import score_batch, score_stream
from pipelines.scoring.run import RunReport as ScoreReport
from pipelines.scoring.run import RunRequest
from pipelines.store import ResultsStore

log = logging.getLogger(__name__)


@dataclass
class OperatedRun:
    """The champion's report, its health, and the shadow run (if any)."""

    report: ScoreReport
    health: dict | None = None
    shadow: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = self.report.to_dict()
        out["health"] = self.health
        out["shadow"] = self.shadow
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def challenger_of(name: str, champion_version: str):
    """The challenger's ModelRef when it exists and differs from the champion, else None."""
    from pipelines.modeling.registry import CHALLENGER, resolve_model

    try:
        ref = resolve_model(f"{name}@{CHALLENGER}")
    except ValueError:
        return None
    return None if str(ref.version) == str(champion_version) else ref


def shadow_score(
    *,
    model_name: str,
    champion_version: str,
    champion_seconds: float | None,
    score: Callable[[ScoringBundle, object], ScoreReport],
    load: Callable | None = None,
) -> dict | None:
    """Score the batch with the challenger as a shadow run (``score(bundle, ref)`` runs it
    with ``role="shadow"``); None without a challenger.

    Reports the second model's cost: its load and scoring seconds, and the ratio to the
    champion's scoring time.
    """
    from pipelines.modeling.registry import load_bundle

    ref = challenger_of(model_name, champion_version)
    if ref is None:
        return None
    started = time.perf_counter()
    bundle = (load or load_bundle)(ref)
    load_seconds = time.perf_counter() - started
    report = score(bundle, ref)
    seconds = report.score_seconds
    return {
        "run_id": report.run_id,
        "model": ref.name,
        "model_version": ref.version,
        "rows_scored": report.rows_scored,
        "would_flag": report.rows_flagged,
        "already_scored": report.already_scored,
        "load_seconds": round(load_seconds, 3),
        "score_seconds": None if seconds is None else round(seconds, 3),
        "cost_ratio": (
            round(seconds / champion_seconds, 3)
            if seconds is not None and champion_seconds
            else None
        ),
    }


def operate_batch(
    store: ResultsStore,
    *,
    bundle: ScoringBundle,
    ref,
    batch: Batch,
    validated: ValidationResult,
    batch_id: str | None = None,
    chunk_size: int = 5000,
    shadow: bool = True,
    watch: bool = True,
    commit_with: Callable | None = None,
    score_options: dict | None = None,
) -> OperatedRun:
    """Champion run on a batch in memory (flags to the queue, ``commit_with`` in its
    transaction), then drift watch on it, then the challenger in shadow when ``ref`` is
    the champion alias. ``score_options``: lease and field bounds for the store."""
    options = dict(score_options or {})

    def run(scoring_bundle: ScoringBundle, model_ref, **extra) -> ScoreReport:
        request = RunRequest(model=model_ref, batch_id=batch_id, **options, **extra)
        return score_batch(store, scoring_bundle, batch, validated, request, chunk_size=chunk_size)

    report = run(bundle, ref, commit_with=commit_with)
    return _after_champion(
        store, bundle=bundle, ref=ref, report=report, shadow=shadow, watch=watch,
        clean=lambda: validated.clean,
        shadow_run=lambda b, r: run(b, r, role="shadow"),
    )  # fmt: skip


def operate_stream(
    store: ResultsStore,
    *,
    bundle: ScoringBundle,
    ref,
    open_stream: Callable[[], object],
    batch_id: str | None = None,
    shadow: bool = True,
    watch: bool = True,
    score_options: dict | None = None,
    drift_sample_rows: int = 50_000,
) -> OperatedRun:
    """The same for a file read in chunks (bounded memory): the champion streams the file,
    drift watch reads the file's first ``drift_sample_rows`` validated rows, and the
    challenger streams it again in shadow."""
    from pipelines.intake.ingest import validate_batch

    options = dict(score_options or {})

    def run(scoring_bundle: ScoringBundle, model_ref, **extra) -> ScoreReport:
        request = RunRequest(model=model_ref, batch_id=batch_id, **options, **extra)
        return score_stream(store, scoring_bundle, open_stream(), request)

    def sample():
        import pandas as pd

        parts, rows = [], 0
        for chunk in open_stream().chunks():
            clean = validate_batch(chunk, bundle.spec).clean
            parts.append(clean)
            rows += len(clean)
            if rows >= drift_sample_rows:
                break
        return pd.concat(parts, ignore_index=True).head(drift_sample_rows)

    report = run(bundle, ref)
    batch_id = batch_id or report.batch_id  # the shadow run scores the same batch
    return _after_champion(
        store, bundle=bundle, ref=ref, report=report, shadow=shadow, watch=watch,
        clean=sample, shadow_run=lambda b, r: run(b, r, role="shadow"),
    )  # fmt: skip


def _after_champion(
    store: ResultsStore,
    *,
    bundle: ScoringBundle,
    ref,
    report: ScoreReport,
    shadow: bool,
    watch: bool,
    clean: Callable,
    shadow_run: Callable,
) -> OperatedRun:
    from pipelines.modeling.registry import CHAMPION
    from pipelines.operations.watch import watch_run

    operated = OperatedRun(report=report)
    if watch:
        if report.already_scored:
            operated.health = store.run_health(report.run_id)
        else:
            operated.health = watch_run(
                store,
                run_id=report.run_id,
                bundle=bundle,
                model_name=ref.name,
                model_version=ref.version,
                clean=clean(),
            )
    if shadow and ref.alias == CHAMPION:
        try:
            operated.shadow = shadow_score(
                model_name=ref.name,
                champion_version=ref.version,
                champion_seconds=report.score_seconds,
                score=shadow_run,
            )
        except Exception as exc:  # noqa: BLE001 - a broken challenger must not fail the night
            log.warning("shadow scoring with the challenger of %s failed: %s", ref.name, exc)
            operated.notes.append(f"shadow scoring failed: {type(exc).__name__}: {exc}")
    return operated
