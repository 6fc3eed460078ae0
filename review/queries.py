"""What pages and API both read, assembled once: the queue page with its counts, a case
with its entity's timeline, a run as the API shows it, the labels export."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime

from fastapi import HTTPException
from fastapi.responses import Response

from pipelines.spreadsheet import spreadsheet_safe
from pipelines.store import ResultsStore
from pipelines.store.queue import QueueFilters, QueuePage
from review.schemas import RunOut

COUNTS_TTL_SECONDS = 5.0
# A spreadsheet reads a cell that starts with one of these as a formula (OWASP's list).


class CountsCache:
    """The queue's counts per status, kept a few seconds per filter set: they scan every
    matching item, while the page of items itself is always read fresh."""

    def __init__(self, ttl_seconds: float = COUNTS_TTL_SECONDS, size: int = 256) -> None:
        self.ttl_seconds = ttl_seconds
        self.size = size
        self._entries: dict[str, tuple[float, dict[str, int]]] = {}

    def counts(self, store: ResultsStore, filters: QueueFilters) -> dict[str, int]:
        key = repr(sorted(filters.__dict__.items()))
        hit = self._entries.get(key)
        if hit is None or time.monotonic() - hit[0] > self.ttl_seconds:
            if len(self._entries) > self.size:
                self._entries.clear()
            hit = (time.monotonic(), store.queue_counts(filters))
            self._entries[key] = hit
        return hit[1]


def queue_page(
    store: ResultsStore, cache: CountsCache, filters: QueueFilters, **kwargs
) -> QueuePage:
    """A queue page with its counts per status (the counts from ``cache``)."""
    page = store.queue_page(filters, with_counts=False, **kwargs)
    page.counts = cache.counts(store, filters)
    return page


def run_out(run) -> dict:
    """A scoring run as the API answers it."""
    return {c: getattr(run, c) for c in RunOut.model_fields}


def case_with_timeline(store: ResultsStore, case_id: int) -> dict:
    """A case with its flags and, when it names an entity, the entity's recent records."""
    case = store.get_case(case_id)
    case["timeline"] = []
    entity = case.get("entity") or next((f["entity"] for f in case["flags"] if f["entity"]), None)
    if entity and case["flags"]:
        record = case["flags"][0]["record"] or {}
        id_column = next(
            (k for k, v in record.items() if str(v) == case["flags"][0]["record_id"]), None
        )
        entity_column = next((k for k, v in record.items() if str(v) == entity), None)
        case["timeline"] = store.entity_timeline(
            case["dataset"], entity, id_column=id_column, entity_column=entity_column
        )
        case["entity"] = entity
    return case


def distinct_flags(flags: list[dict]) -> list[dict]:
    """The case's flags with identical ones folded into one: a record scored twice by the
    same model version, with the same score, snapshot and reasons, says nothing new the
    second time. Each kept flag lists the others it stands for in ``repeats``."""
    kept: dict[str, dict] = {}
    for flag in flags:
        key = json.dumps(
            [
                flag["record_id"],
                flag["model_name"],
                flag["model_version"],
                round(float(flag["score"]), 9),
                flag["record"],
                flag["reasons"],
            ],
            sort_keys=True,
            default=str,
        )
        if key in kept:
            kept[key]["repeats"].append(flag)
        else:
            kept[key] = {**flag, "repeats": []}
    return list(kept.values())


#: Audit actions that give a case a verdict its analyst can take back.
VERDICT_ACTIONS = ("case.verdict", "case.bulk_verdict")


def last_verdict(store: ResultsStore, user: str, *, window: int = 200) -> dict | None:
    """The user's last verdict while it can still be undone, from the audit trail: the
    case, the verdict and the case's version it left. None when the user's last act on a
    verdict was an undo, when someone changed that case since, or when it lies further
    back than the newest ``window`` audit entries.

    Read from the store rather than the page address, so it holds whatever page opens
    next (auto-advance, the queue, another tab)."""
    changed_since: set[str] = set()
    for entry in store.audit_entries(limit=window):
        if entry.entity != "case":
            continue
        if entry.actor == user and entry.action in (*VERDICT_ACTIONS, "case.undo"):
            if entry.action == "case.undo" or entry.entity_id in changed_since:
                return None
            after = entry.after or {}
            return {
                "case_id": int(entry.entity_id),
                "verdict": after.get("verdict"),
                "version": after.get("version"),
            }
        changed_since.add(entry.entity_id)
    return None


def labels_export(store: ResultsStore, fmt: str) -> Response:
    """Every label row as a CSV or Parquet download, safe to open in a spreadsheet."""
    frame = spreadsheet_safe(store.labels_frame())
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if fmt == "csv":
        body = frame.to_csv(index=False).encode()
        media = "text/csv"
    elif fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        body, media = buffer.getvalue(), "application/vnd.apache.parquet"
    else:
        raise HTTPException(404, "export formats: csv, parquet")
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="vigil-labels-{stamp}.{fmt}"'},
    )
