"""Cases as analysts shape them: tags and notes on the case's entity (kept across its
cases), a flagged record attached to the case, another case merged into it, and the case
file (one printable page for audits and suspicious-activity reports).

Changes need the analyst role (a viewer reads, the case file included); browser forms
carry the session's CSRF token like every other form. A refused change comes back to the
case page as its message, never as a lost form.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from pipelines.store import ResultsStore
from pipelines.store.errors import ReviewError
from review.casefile import CASE_FILE_CSP, case_entities, case_file_context
from review.deps import AnalystUser, CurrentUser, FlashDep, StoreDep
from review.formatting import int_or_none
from review.routers.base import api_router, page_router
from review.schemas import (
    AttachIn,
    CaseId,
    EntityProfileOut,
    MergeIn,
    MergeOut,
    NoteIn,
    TagIn,
)
from review.templating import templates

pages = page_router()
api = api_router()


def _entity(store: ResultsStore, case_id: int, requested: str | None) -> tuple[str, str]:
    """(data set, entity) for a tag or note: the entity named in the request, which must
    be one the case is about, else the case's own."""
    case = store.get_case(case_id)
    entities = case_entities(case)
    if requested:
        if requested not in entities:
            raise ReviewError(f"case {case_id} is not about {requested!r}")
        return case["dataset"], requested
    if not entities:
        raise ReviewError(f"case {case_id} names no entity (card or customer) to tag")
    return case["dataset"], entities[0]


def _flags(n: int) -> str:
    return f"{n} flag" if n == 1 else f"{n} flags"


# -- pages --------------------------------------------------------------------------------


@pages.post("/cases/{case_id:int}/tags")
async def tag_page(
    request: Request, case_id: CaseId, principal: AnalystUser, store: StoreDep, flash: FlashDep
):
    form = await request.form()
    back = f"/cases/{case_id}#entity"
    try:
        dataset, entity = _entity(store, case_id, str(form.get("entity") or "") or None)
        if form.get("remove"):
            store.remove_tag(dataset, entity, str(form.get("remove")), principal.name)
            return flash.redirect(back, f"Tag “{form.get('remove')}” removed from {entity}.")
        tags = store.add_tag(dataset, entity, str(form.get("tag") or ""), principal.name)
    except ReviewError as exc:
        return flash.redirect(back, f"Not done: {exc}")
    return flash.redirect(back, f"{entity} is tagged {', '.join(tags)}.")


@pages.post("/cases/{case_id:int}/notes")
async def note_page(
    request: Request, case_id: CaseId, principal: AnalystUser, store: StoreDep, flash: FlashDep
):
    form = await request.form()
    back = f"/cases/{case_id}#entity"
    try:
        dataset, entity = _entity(store, case_id, str(form.get("entity") or "") or None)
        store.add_note(dataset, entity, str(form.get("note") or ""), principal.name)
    except ReviewError as exc:
        return flash.redirect(back, f"Not done: {exc}")
    return flash.redirect(back, f"Note added to {entity}.")


@pages.post("/cases/{case_id:int}/attach")
async def attach_page(
    request: Request, case_id: CaseId, principal: AnalystUser, store: StoreDep, flash: FlashDep
):
    form = await request.form()
    record_id = str(form.get("record_id") or "").strip()
    try:
        done = store.attach_record(
            case_id, record_id, principal.name, version=int_or_none(form.get("version"))
        )
    except ReviewError as exc:
        return flash.redirect(f"/cases/{case_id}#casework", f"Not attached: {exc}")
    sources = ", ".join(f"#{c}" for c in done["from_cases"])
    return flash.redirect(
        f"/cases/{case_id}", f"Record {record_id} attached to case #{case_id} (from {sources})."
    )


@pages.post("/cases/{case_id:int}/merge")
async def merge_page(
    request: Request, case_id: CaseId, principal: AnalystUser, store: StoreDep, flash: FlashDep
):
    form = await request.form()
    absorb = int_or_none(str(form.get("absorb") or "").strip().lstrip("#"))
    try:
        if absorb is None or absorb < 1:
            raise ReviewError("name the case to merge into this one (its number)")
        done = store.merge_cases(
            case_id, absorb, principal.name, version=int_or_none(form.get("version"))
        )
    except ReviewError as exc:
        return flash.redirect(f"/cases/{case_id}#casework", f"Not merged: {exc}")
    return flash.redirect(
        f"/cases/{case_id}",
        f"Case #{absorb} merged into #{case_id} ({_flags(done['flags_moved'])} moved).",
    )


@pages.get("/cases/{case_id:int}/file", response_class=HTMLResponse)
def case_file_page(
    request: Request,
    case_id: CaseId,
    principal: CurrentUser,
    store: StoreDep,
    download: Annotated[bool, Query(description="Save as a file instead of showing it.")] = False,
):
    """The case file: one self-contained printable page (print it to PDF). Each one
    handed out is in the audit trail (who, when), its own included."""
    store.record_case_file(case_id, principal.name, saved=download)
    response = templates.TemplateResponse(
        request, "case_file.html", case_file_context(store, case_id, principal.name)
    )
    response.headers["Content-Security-Policy"] = CASE_FILE_CSP
    if download:
        response.headers["Content-Disposition"] = (
            f'attachment; filename="vigil-case-{case_id}.html"'
        )
    return response


# -- JSON API -----------------------------------------------------------------------------


@api.get("/queue/{case_id:int}/entity", response_model=list[EntityProfileOut])
def entity_profiles(case_id: CaseId, store: StoreDep):
    case = store.get_case(case_id)
    profiles = store.entity_profiles(case["dataset"], case_entities(case))
    return [{"entity": name, **profile} for name, profile in profiles.items()]


@api.post("/queue/{case_id:int}/tags", response_model=list[str])
def add_tag(case_id: CaseId, body: TagIn, principal: AnalystUser, store: StoreDep):
    dataset, entity = _entity(store, case_id, body.entity)
    return store.add_tag(dataset, entity, body.tag, principal.name)


@api.delete("/queue/{case_id:int}/tags/{tag}", response_model=list[str])
def remove_tag(
    case_id: CaseId, tag: str, principal: AnalystUser, store: StoreDep, entity: str | None = None
):
    dataset, name = _entity(store, case_id, entity)
    return store.remove_tag(dataset, name, tag, principal.name)


@api.post("/queue/{case_id:int}/notes", response_model=dict)
def add_note(case_id: CaseId, body: NoteIn, principal: AnalystUser, store: StoreDep):
    dataset, entity = _entity(store, case_id, body.entity)
    return store.add_note(dataset, entity, body.note, principal.name)


@api.post("/queue/{case_id:int}/attach", response_model=MergeOut)
def attach(case_id: CaseId, body: AttachIn, principal: AnalystUser, store: StoreDep):
    done = store.attach_record(case_id, body.record_id, principal.name, version=body.version)
    return {"id": done["id"], "version": done["version"], "absorbed": done["from_cases"]}


@api.post("/queue/{case_id:int}/merge", response_model=MergeOut)
def merge(case_id: CaseId, body: MergeIn, principal: AnalystUser, store: StoreDep):
    done = store.merge_cases(case_id, body.absorb, principal.name, version=body.version)
    return {"id": done["id"], "version": done["version"], "absorbed": [done["absorbed"]]}
