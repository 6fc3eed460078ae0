"""Review quality per model: precision, unsure rate, label coverage, backlog by age."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from review.deps import StoreDep
from review.routers.base import api_router, page_router
from review.schemas import QualityOut
from review.templating import render

pages = page_router()
api = api_router()


@pages.get("/quality", response_class=HTMLResponse)
def quality_view(request: Request, store: StoreDep):
    return render(request, "quality.html", {"rows": store.quality_by_model()})


@api.get("/quality", response_model=list[QualityOut])
def quality(store: StoreDep):
    return store.quality_by_model()
