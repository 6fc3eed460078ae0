"""The queue: the page analysts work from, claiming the next item, bulk verdicts."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from pipelines.store.cases import VERDICTS
from pipelines.store.queue import SORTS
from review.deps import (
    AnalystUser,
    ClaimLock,
    CountsCacheDep,
    FlashDep,
    QueueFiltersDep,
    StoreDep,
    undo_offer,
)
from review.queries import queue_page
from review.routers.base import api_router, page_router
from review.schemas import BulkOut, BulkVerdictIn, ClaimOut, QueueResponse, SortName
from review.templating import render

#: Query parameters that choose a view of the queue rather than narrow it.
UNFILTERED = ("status", "sort", "cursor")

pages = page_router()
api = api_router()


@pages.get("/")
def home():
    return RedirectResponse("/queue", status_code=303)


@pages.get("/queue", response_class=HTMLResponse)
def queue_view(
    request: Request,
    store: StoreDep,
    cache: CountsCacheDep,
    filters: QueueFiltersDep,
    sort: SortName = "priority",
    cursor: str | None = None,
):
    page = queue_page(store, cache, filters, sort=sort, cursor=cursor, limit=50)
    query = {k: v for k, v in request.query_params.items() if k != "cursor"}
    return render(
        request,
        "queue.html",
        {
            "page": page,
            "filters": filters,
            "sort": sort,
            "sorts": list(SORTS),
            "query": query,
            "undo_last": undo_offer(request, store),
            "filtered": any(
                value not in (None, "") for key, value in query.items() if key not in UNFILTERED
            ),
            "next_url": "/queue?" + urlencode({**query, "cursor": page.next_cursor})
            if page.next_cursor
            else None,
        },
    )


@pages.post("/queue/claim-next")
def claim_next_page(principal: AnalystUser, store: StoreDep, lock: ClaimLock, flash: FlashDep):
    claimed = store.claim_next(principal.name, lock=lock)
    if claimed is None:
        return flash.redirect("/queue", "Nothing left to claim: the queue is empty.")
    return RedirectResponse(f"/cases/{claimed['id']}", status_code=303)


@pages.post("/queue/bulk")
async def bulk_page(request: Request, principal: AnalystUser, store: StoreDep, flash: FlashDep):
    form = await request.form()
    ids = [int(v) for v in form.getlist("case_id") if str(v).isdigit()]
    verdict = str(form.get("verdict", ""))
    if not ids:
        raise HTTPException(422, "select at least one item for a bulk verdict")
    overrides = {
        i: str(form.get(f"override_{i}")) for i in ids if form.get(f"override_{i}") in VERDICTS
    }
    result = store.bulk_verdict(
        ids,
        principal.name,
        verdict,
        overrides=overrides,
        reason_code=str(form.get("reason_code") or "") or None,
        note=str(form.get("note") or "") or None,
    )
    text = f"Bulk verdict: {len(result['applied'])} applied"
    if result["skipped"]:
        text += "; skipped " + "; ".join(f"#{k}: {v}" for k, v in result["skipped"].items())
    return flash.redirect("/queue", text)


# -- JSON API ---------------------------------------------------------------------------


@api.get("/queue", response_model=QueueResponse)
def queue(
    store: StoreDep,
    cache: CountsCacheDep,
    filters: QueueFiltersDep,
    sort: SortName = "priority",
    cursor: str | None = None,
    limit: int = Query(50, ge=1, le=500),
):
    page = queue_page(store, cache, filters, sort=sort, cursor=cursor, limit=limit)
    return {
        "items": page.items,
        "next_cursor": page.next_cursor,
        "counts": page.counts,
        "sort": page.sort,
    }


@api.post("/queue/claim-next", response_model=ClaimOut)
def claim_next(principal: AnalystUser, store: StoreDep, lock: ClaimLock):
    claimed = store.claim_next(principal.name, lock=lock)
    return claimed or {"id": None, "version": None}


@api.post("/queue/bulk-verdict", response_model=BulkOut)
def bulk(body: BulkVerdictIn, principal: AnalystUser, store: StoreDep):
    overrides = {}
    for key, value in body.overrides.items():
        if not key.isdigit():
            raise HTTPException(422, f"overrides: {key!r} is not a case id")
        overrides[int(key)] = value
    result = store.bulk_verdict(
        body.case_ids,
        principal.name,
        body.verdict,
        overrides=overrides,
        reason_code=body.reason_code or None,
        note=body.note,
    )
    return {
        "applied": result["applied"],
        "skipped": {str(k): v for k, v in result["skipped"].items()},
    }
