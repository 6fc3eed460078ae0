"""The API's OpenAPI document, behind the same authentication as the API it describes."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from review.routers.base import api_router

api = api_router()


@api.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())
