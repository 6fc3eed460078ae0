"""Scheduled scoring: each batch a watched source has not had scored yet, scored with the
champion (the challenger in shadow), its file manifest row or watermark committed with
the run.

The source says what is new (:func:`pipelines.operations.sources.list_pending`) and what
commits with a run (:func:`pipelines.operations.sources.committer`); this job scores it.
"""

from __future__ import annotations

from pipelines.intake.ingest import validate_batch
from pipelines.jobs.operate import operate_batch
from pipelines.jobs.reports import ScheduledReport
from pipelines.modeling.registry import load_bundle, resolve_model
from pipelines.operations.sources import FolderSource, Listing, SqlSource, committer
from pipelines.scoring.run import RunRequest
from pipelines.store import ResultsStore


def score_pending(
    store: ResultsStore,
    source: FolderSource | SqlSource,
    listing: Listing,
    *,
    model: str | None = None,
    chunk_size: int = 5000,
    shadow: bool = True,
    load=None,
) -> ScheduledReport:
    """Score each pending batch with the champion (and the challenger in shadow)."""
    summary = ScheduledReport(
        source=source.describe(),
        nothing_new=not listing.pending,
        waiting=listing.waiting,
        already_known=listing.known,
    )
    if not listing.pending:
        extra = f"; {len(listing.waiting)} still being written" if listing.waiting else ""
        summary.message = f"nothing new in {source.describe()}{extra}"
        return summary
    ref = resolve_model(model)  # resolved per run: a promotion needs no restart
    bundle = (load or load_bundle)(ref)
    for item in listing.pending:
        validated = validate_batch(item.batch, bundle.spec)
        commit = committer(store, source, item)
        request = RunRequest(model=ref, commit_with=commit)
        operated = operate_batch(
            store, bundle, item.batch, validated, request, chunk_size=chunk_size, shadow=shadow
        )
        if operated.already_scored:
            # A duplicate run got here first: make sure the source remembers it too.
            run = store.get_run(operated.run_id)
            with store.session() as session:
                commit(session, run)
        operated.input = item.label
        summary.runs.append(operated)
    scored = sum(not r.already_scored for r in summary.runs)
    summary.message = (
        f"{source.describe()}: {scored} new batch(es) scored with {ref}"
        + (f", {len(summary.runs) - scored} already scored" if scored < len(summary.runs) else "")
        + (f"; {len(listing.waiting)} file(s) still being written" if listing.waiting else "")
    )
    return summary
