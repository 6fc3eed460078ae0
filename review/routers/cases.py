"""One case (a queue item): its page, claiming, verdicts, undo and release."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from pipelines.store.cases import VERDICTS
from pipelines.store.errors import Conflict
from review.casefile import casework_context
from review.deps import AnalystUser, ClaimLock, FlashDep, StoreDep, undo_offer
from review.formatting import int_or_none
from review.queries import case_with_timeline, distinct_flags
from review.routers.base import api_router, page_router
from review.schemas import CaseDetail, CaseId, ClaimOut, VerdictIn, VerdictOut
from review.story import entity_story, story_summary
from review.templating import render

pages = page_router()
api = api_router()


def _case_page(request: Request, store, case_id: int, status: int = 200, **context):
    context.setdefault("undo_last", undo_offer(request, store))
    case = case_with_timeline(store, case_id)
    case["flags"] = distinct_flags(case["flags"])
    extras = casework_context(store, case)
    audit = store.case_audit([case_id, *extras["casework"]["family"]["absorbed"]], limit=50)
    story = entity_story(case["timeline"], case["record_ids"]) if case["timeline"] else None
    return render(
        request,
        "case.html",
        {
            "case": case,
            "audit": audit,
            "story": story,
            "story_summary": story_summary(story) if story else None,
            **extras,
            **context,
        },
        status=status,
    )


@pages.get("/cases/{case_id:int}", response_class=HTMLResponse)
def case_view(request: Request, case_id: CaseId, store: StoreDep):
    return _case_page(request, store, case_id)


@pages.post("/cases/{case_id:int}/claim")
async def claim_page(
    request: Request, case_id: CaseId, principal: AnalystUser, store: StoreDep, lock: ClaimLock
):
    form = await request.form()
    store.claim(case_id, principal.name, lock=lock, version=int_or_none(form.get("version")))
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


@pages.post("/cases/{case_id:int}/verdict")
async def verdict_page(
    request: Request,
    case_id: CaseId,
    principal: AnalystUser,
    store: StoreDep,
    lock: ClaimLock,
    flash: FlashDep,
):
    form = await request.form()
    chosen = str(form.get("verdict", ""))
    overrides = {
        key[len("override_") :]: str(value)
        for key, value in form.items()
        if key.startswith("override_") and value in VERDICTS and value != chosen
    }
    try:
        store.give_verdict(
            case_id,
            principal.name,
            chosen,
            version=int_or_none(form.get("version")),
            reason_code=str(form.get("reason_code") or "") or None,
            note=str(form.get("note") or "").strip() or None,
            overrides=overrides,
        )
    except Conflict as exc:
        return _case_page(request, store, case_id, status=409, conflict=str(exc))
    done = f"Case #{case_id}: {chosen.replace('_', ' ')}."
    if form.get("advance", "1") == "0":
        return flash.redirect(f"/cases/{case_id}", done)
    claimed = store.claim_next(principal.name, lock=lock)
    if claimed is None:
        return flash.redirect("/queue", done + " Nothing left to claim.")
    return flash.redirect(f"/cases/{claimed['id']}?{urlencode({'prev': case_id})}", done)


@pages.post("/cases/{case_id:int}/undo")
async def undo_page(
    request: Request, case_id: CaseId, principal: AnalystUser, store: StoreDep, flash: FlashDep
):
    form = await request.form()
    try:
        store.undo_verdict(case_id, principal.name, version=int_or_none(form.get("version")))
    except Conflict as exc:
        return _case_page(request, store, case_id, status=409, conflict=str(exc))
    return flash.redirect(f"/cases/{case_id}", "Verdict undone; the case is yours again.")


@pages.post("/cases/{case_id:int}/release")
def release_page(case_id: CaseId, principal: AnalystUser, store: StoreDep):
    store.release(case_id, principal.name)
    return RedirectResponse("/queue", status_code=303)


# -- JSON API (a case is a queue item there) --------------------------------------------


@api.get("/queue/{case_id:int}", response_model=CaseDetail)
def case(case_id: CaseId, store: StoreDep):
    return case_with_timeline(store, case_id)


@api.post("/queue/{case_id:int}/claim", response_model=ClaimOut)
def claim(
    case_id: CaseId,
    principal: AnalystUser,
    store: StoreDep,
    lock: ClaimLock,
    version: int | None = None,
):
    new_version = store.claim(case_id, principal.name, lock=lock, version=version)
    return {"id": case_id, "version": new_version}


@api.post("/queue/{case_id:int}/verdict", response_model=VerdictOut)
def verdict(case_id: CaseId, body: VerdictIn, principal: AnalystUser, store: StoreDep):
    return store.give_verdict(
        case_id,
        principal.name,
        body.verdict,
        version=body.version,
        reason_code=body.reason_code or None,
        note=body.note,
        overrides=body.overrides,
    )


@api.post("/queue/{case_id:int}/undo", response_model=VerdictOut)
def undo(case_id: CaseId, principal: AnalystUser, store: StoreDep, version: int | None = None):
    return store.undo_verdict(case_id, principal.name, version=version)
