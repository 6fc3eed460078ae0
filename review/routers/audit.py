"""The audit trail: who did what, when, with the values before and after."""

from __future__ import annotations

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from review.deps import StoreDep
from review.routers.base import api_router, page_router
from review.schemas import AuditOut
from review.templating import render

pages = page_router()
api = api_router()


@pages.get("/audit", response_class=HTMLResponse)
def audit_view(request: Request, store: StoreDep):
    return render(request, "audit.html", {"entries": store.audit_entries(limit=300)})


@api.get("/audit", response_model=list[AuditOut])
def audit(store: StoreDep, limit: int = Query(100, ge=1, le=1000)):
    return [
        {c: getattr(a, c) for c in AuditOut.model_fields} for a in store.audit_entries(limit=limit)
    ]
