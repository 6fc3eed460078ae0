"""Label exports (CSV or Parquet) for people (a download link) and for the API."""

from __future__ import annotations

from fastapi import Query
from fastapi.responses import Response

from review.deps import StoreDep
from review.queries import labels_export
from review.routers.base import api_router, page_router

pages = page_router()
api = api_router()


@pages.get("/export/labels.{fmt}")
def export(fmt: str, store: StoreDep):
    return labels_export(store, fmt)


@api.get(
    "/labels",
    response_class=Response,
    responses={
        200: {
            "description": "Every label row (the latest per record counts).",
            "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
        }
    },
)
def labels(store: StoreDep, format: str = Query("csv", pattern="^(csv|parquet)$")):
    return labels_export(store, format)
