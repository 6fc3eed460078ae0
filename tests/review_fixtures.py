"""Store content for review tests: runs with flags, written through the store's own
claimed, chunked run path (no detector needed), so tests of the queue stay fast."""

from __future__ import annotations

import pandas as pd

from pipelines.store import ResultsStore
from pipelines.store.queue import QueueFilters
from pipelines.store.runs import ChunkWrite


def add_flagged_run(
    store: ResultsStore,
    *,
    batch_id: str,
    flags: list[tuple[str, str | None, float]],
    dataset: str = "demo",
    model_name: str = "demo-vae",
    model_version: str = "1",
    threshold: float = 1.0,
    group_by_entity: bool = False,
    unflagged: int = 3,
) -> str:
    """A completed run whose flagged records are ``(record_id, entity, score)``."""
    ticket = store.claim_run(
        batch_id=batch_id,
        source=f"{batch_id}.csv",
        dataset=dataset,
        model_name=model_name,
        model_version=model_version,
        model_alias="champion",
        threshold=threshold,
        chunk_size=1000,
        lease_seconds=60,
    )
    records = [r for r, _, _ in flags] + [f"{batch_id}-ok{i}" for i in range(unflagged)]
    scores = pd.DataFrame(
        {
            "record_id": records,
            "score": [s for _, _, s in flags] + [threshold / 2] * unflagged,
            "is_anomaly": [True] * len(flags) + [False] * unflagged,
        }
    )
    flag_rows = [
        {
            "record_id": record_id,
            "entity": entity,
            "score": score,
            "threshold": threshold,
            "record": {"tx_id": record_id, "card_id": entity, "amount": 12.5 * score},
            "reasons": [
                {"feature": "amount", "contribution": score * 0.7},
                {"feature": "merchant_category", "contribution": score * 0.3},
            ],
        }
        for record_id, entity, score in flags
    ]
    store.write_chunk(
        ticket.run.id,
        ticket.owner,
        ChunkWrite(
            chunk_number=0,
            chunk_size=1000,
            first_row=0,
            rows_in=len(records),
            scores=scores,
            flags=flag_rows,
            quarantined=pd.DataFrame(),
            rows_quarantined=0,
            batch_id=batch_id,
            source=f"{batch_id}.csv",
        ),
    )
    store.complete_run(ticket.run.id, ticket.owner, group_by_entity=group_by_entity)
    return ticket.run.id


def add_snapshot_run(
    store: ResultsStore,
    *,
    batch_id: str,
    flags: list[dict],
    dataset: str = "cards",
    model_name: str = "card-vae",
    model_version: str = "1",
    threshold: float = 1.0,
    group_by_entity: bool = True,
    role: str = "primary",
) -> str:
    """A completed run whose flag rows are given whole (``record_id``, ``entity``,
    ``score``, ``record``, ``reasons``): for pages that show what the snapshot holds.
    A ``shadow`` run's flags are its exploration lane."""
    ticket = store.claim_run(
        batch_id=batch_id,
        source=f"{batch_id}.csv",
        dataset=dataset,
        model_name=model_name,
        model_version=model_version,
        model_alias="champion",
        threshold=threshold,
        chunk_size=1000,
        lease_seconds=60,
        role=role,
    )
    rows = [{"threshold": threshold, **f} for f in flags]
    scores = pd.DataFrame(
        {
            "record_id": [f["record_id"] for f in rows],
            "score": [f["score"] for f in rows],
            "is_anomaly": [True] * len(rows),
        }
    )
    store.write_chunk(
        ticket.run.id,
        ticket.owner,
        ChunkWrite(
            chunk_number=0,
            chunk_size=1000,
            first_row=0,
            rows_in=len(rows),
            scores=scores,
            flags=rows,
            quarantined=pd.DataFrame(),
            rows_quarantined=0,
            batch_id=batch_id,
            source=f"{batch_id}.csv",
        ),
    )
    store.complete_run(ticket.run.id, ticket.owner, group_by_entity=group_by_entity)
    return ticket.run.id


def case_of(store: ResultsStore, record_id: str) -> int:
    """The newest case holding ``record_id``, found through the queue as a page would."""
    page = store.queue_page(QueueFilters(status="all"), sort="newest", limit=500)
    return next(item["id"] for item in page.items if record_id in item["record_ids"])


def payment_flag(
    record_id: str,
    card: str,
    at: str,
    amount: float,
    score: float,
    *,
    columns: dict | None = None,
    reasons: list[tuple[str, float, str | None]] = (),
    shares: bool = False,
) -> dict:
    """A flagged card payment as a run stores it: its record (id, card, time, amount, then
    ``columns`` in their order) and ``reasons`` as (feature, share of the score, text or
    None), with the share itself kept where ``shares``."""
    flag_reasons = []
    for feature, share, text in reasons:
        reason = {"feature": feature, "contribution": score * share}
        if shares:
            reason["share"] = share
        if text is not None:
            reason["text"] = text
        flag_reasons.append(reason)
    record = {"transaction_id": record_id, "card_id": card, "timestamp": at, "amount": amount}
    return {
        "record_id": record_id,
        "entity": card,
        "score": score,
        "record": {**record, **(columns or {})},
        "reasons": flag_reasons,
    }
