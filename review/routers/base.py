"""The two kinds of router every resource module builds: pages and the JSON API.

Authentication is the routers' own dependency, so a route added to either cannot skip it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from review.deps import api_user, page_user
from review.schemas import ERRORS


def page_router() -> APIRouter:
    """Server-rendered pages: a live session (else the login page), CSRF on changes."""
    return APIRouter(dependencies=[Depends(page_user)], include_in_schema=False)


def api_router() -> APIRouter:
    """The JSON API under ``/api``: a bearer token (else 401), documented errors."""
    return APIRouter(
        prefix="/api", dependencies=[Depends(api_user)], tags=["review"], responses=ERRORS
    )
