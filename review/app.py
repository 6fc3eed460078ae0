"""The review app: pages and a JSON API over one results store.

:func:`create_app` wires the parts together: the store and settings the dependencies
hand to routes (``review.deps``), one router per resource (``review.routers``), security
headers on every answer, and errors answered as JSON under ``/api`` and as the error page
elsewhere. Every route outside ``/login`` and ``/static`` sits behind its router's
authentication dependency; state-changing routes check the role (and, for browsers, the
CSRF token).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from pipelines.settings import VigilSettings, get_settings
from pipelines.store import ResultsStore
from pipelines.store.errors import Conflict, NotFound, ReviewError
from review.auth import LoginRequired
from review.queries import CountsCache
from review.routers import ROUTERS
from review.signing import Signer
from review.templating import HERE, render_error

PUBLIC_PATHS = ("/login", "/static")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(store: ResultsStore | None = None, settings: VigilSettings | None = None) -> FastAPI:
    """The review app over ``store`` (default: the store the settings point at)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="vigil review",
        version="1",
        description="Analyst review queue, verdicts and quality figures. Every route needs "
        "a login (pages) or 'Authorization: Bearer TOKEN' (API; `vigil users token NAME`).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.store = store or ResultsStore(settings.resolved_database_url)
    app.state.settings = settings
    app.state.counts_cache = CountsCache()
    key = settings.review_secret_key
    app.state.signer = Signer(key.get_secret_value() if key is not None else None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.middleware("http")(security_headers)
    app.add_exception_handler(LoginRequired, to_login)
    app.add_exception_handler(ReviewError, review_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    for router in ROUTERS:
        app.include_router(router)
    return app


async def security_headers(request: Request, call_next):
    """Every answer: a strict content policy, no framing or sniffing, no caching of
    pages, the app's own time; a 405 names every method its path answers."""
    started = time.perf_counter()
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", CSP)  # a page may set its own
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    if not request.url.path.startswith("/static"):
        response.headers["Cache-Control"] = "no-store"
    if response.status_code == 405:  # name every method the path answers, not one route's
        response.headers["Allow"] = ", ".join(_allowed_methods(request.app, request.url.path))
    return response


async def to_login(request: Request, _exc: LoginRequired):
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)


async def review_error(request: Request, exc: ReviewError):
    status = 409 if isinstance(exc, Conflict) else 404 if isinstance(exc, NotFound) else 422
    if request.url.path.startswith("/api"):
        return JSONResponse({"detail": str(exc)}, status_code=status)
    return render_error(request, str(exc), status)


async def http_error(request: Request, exc: HTTPException):
    if request.url.path.startswith("/api") or exc.status_code == 401:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
    return render_error(request, str(exc.detail), exc.status_code)


async def invalid_request(request: Request, exc: RequestValidationError):
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
    )
    if request.url.path.startswith("/api"):
        return JSONResponse({"detail": detail}, status_code=422)
    return render_error(request, detail, 422)


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for route in app.routes:
        contexts = (
            route.effective_route_contexts()
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for context in contexts:
            regex = getattr(context, "path_regex", None)
            if regex is not None and regex.match(path):
                methods |= set(getattr(context, "methods", None) or ())
    return sorted(methods)
