"""The review app: routes for pages and the JSON API over one results store.

Pages and API share the store calls; a page is the API's answer rendered for a person.
Every route outside ``/login`` and ``/static`` sits behind the routers' authentication
dependency; state-changing routes check the role (and, for browsers, the CSRF token).
"""

from __future__ import annotations

import io
import re
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, BeforeValidator, Field, StrictBool, StrictInt

from pipelines.accounts import hash_password, verify_password
from pipelines.settings import VigilSettings, get_settings
from pipelines.store import ResultsStore
from pipelines.store.accounts import ROLES
from pipelines.store.review import (
    REASON_CODES,
    SORTS,
    VERDICTS,
    Conflict,
    NotFound,
    QueueFilters,
    QueuePage,
    ReviewError,
)
from review import charts
from review.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginRequired,
    Principal,
    api_user,
    login_throttled,
    page_user,
    require,
)

HERE = Path(__file__).parent
PUBLIC_PATHS = ("/login", "/static")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


# -- API shapes (they make the OpenAPI document exact) ------------------------------------


RoleName = Literal["viewer", "analyst", "admin"]
VerdictName = Literal["fraud", "not_fraud", "unsure"]
ReasonCode = Literal[tuple(REASON_CODES)]  # type: ignore[valid-type]


CaseId = Annotated[int, FastPath(ge=1, le=2**31 - 1, description="Queue item (case) id.")]


class ErrorOut(BaseModel):
    detail: str


ERRORS = {
    400: {"model": ErrorOut, "description": "Malformed request body."},
    401: {"model": ErrorOut, "description": "No or unknown credentials."},
    403: {"model": ErrorOut, "description": "Role too low, or CSRF token missing (browsers)."},
    404: {"model": ErrorOut, "description": "No such item."},
    409: {"model": ErrorOut, "description": "Changed by someone else, or claimed by another."},
    422: {"model": ErrorOut, "description": "Invalid input."},
}


class QueueItem(BaseModel):
    id: int
    dataset: str
    entity: str | None
    entity_key: str
    record_ids: list[str]
    score: float
    threshold: float | None
    priority: float
    flag_count: int
    models: list[str]
    top_reasons: list[str | None]
    status: str
    verdict: str | None
    claimed_by: str | None
    claim_expires_at: datetime | None
    last_flag_at: datetime | None
    version: int


class QueueResponse(BaseModel):
    items: list[QueueItem]
    next_cursor: str | None
    counts: dict[str, int]
    sort: str


class FlagDetail(BaseModel):
    id: int
    record_id: str
    entity: str | None
    score: float
    threshold: float
    record: dict[str, Any]
    reasons: list[dict[str, Any]]
    run_id: str
    model_name: str
    model_version: str
    model_alias: str | None
    created_at: datetime | None
    label: dict[str, Any] | None


class CaseDetail(QueueItem):
    flags: list[FlagDetail]
    opened_at: datetime | None
    closed_at: datetime | None
    timeline: list[dict[str, Any]] = Field(default_factory=list)


class VerdictIn(BaseModel):
    verdict: VerdictName
    note: str | None = Field(default=None, max_length=4000)
    reason_code: ReasonCode | None = None
    version: int | None = Field(
        default=None, description="The case version you saw; a newer one is a 409 conflict."
    )
    overrides: dict[str, VerdictName] = Field(
        default_factory=dict, description="record_id -> verdict for records that differ."
    )


class BulkVerdictIn(BaseModel):
    case_ids: list[Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1, max_length=500
    )
    verdict: VerdictName
    note: str | None = Field(default=None, max_length=4000)
    reason_code: ReasonCode | None = None
    overrides: dict[Annotated[str, Field(pattern=r"^[0-9]+$")], VerdictName] = Field(
        default_factory=dict, description="case id (as text) -> verdict for items that differ."
    )


class VerdictOut(BaseModel):
    id: int
    version: int
    labels: dict[str, str] = Field(default_factory=dict)


class BulkOut(BaseModel):
    applied: list[int]
    skipped: dict[str, str]


class ClaimOut(BaseModel):
    id: int | None
    version: int | None


class RunOut(BaseModel):
    id: str
    batch_id: str
    source: str
    dataset: str
    model_name: str
    model_version: str
    model_alias: str | None
    threshold: float
    status: str
    rows_in: int
    rows_scored: int
    rows_quarantined: int
    rows_flagged: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


class QualityOut(BaseModel):
    model_name: str
    model_version: str
    flags: int
    reviewed: int
    fraud: int
    not_fraud: int
    unsure: int
    precision: float | None
    unsure_rate: float | None
    label_coverage: float
    median_hours_to_decision: float | None
    backlog_by_age: dict[str, int]


class UserOut(BaseModel):
    name: str
    role: str
    disabled: bool


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    role: RoleName
    password: str | None = Field(default=None, min_length=10, max_length=256)


class UserPatch(BaseModel):
    role: RoleName | None = None
    disabled: StrictBool | None = None


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: dict[str, Any]


# -- helpers ------------------------------------------------------------------------------


def _store(request: Request) -> ResultsStore:
    return request.app.state.store


def _settings(request: Request) -> VigilSettings:
    return request.app.state.settings


def _lock(request: Request) -> timedelta:
    return timedelta(minutes=_settings(request).review_claim_minutes)


def _iso_only(value: object) -> object:
    """Dates as YYYY-MM-DD only (pydantic alone would read '0' as a Unix time)."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("dates are YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_only)]
QueueStatus = Literal["open", "closed", "all"]
SortName = Literal["priority", "newest", "oldest", "entity"]


def _filters(
    status: QueueStatus = "open",
    model: str | None = None,
    run: str | None = None,
    assignee: str | None = None,
    min_priority: float | None = None,
    max_priority: float | None = None,
    since: Annotated[IsoDate | None, Query(description="Flagged on or after (YYYY-MM-DD).")] = None,
    until: Annotated[IsoDate | None, Query(description="Flagged before (YYYY-MM-DD).")] = None,
    reason: str | None = None,
    verdict: VerdictName | None = None,
    entity: str | None = None,
) -> QueueFilters:
    def when(day: date | None) -> datetime | None:
        return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)

    return QueueFilters(
        status=status,
        model=model or None,
        run_id=run or None,
        assignee=assignee or None,
        min_priority=min_priority,
        max_priority=max_priority,
        since=when(since),
        until=when(until),
        reason=reason or None,
        verdict=verdict or None,
        entity=entity or None,
    )


COUNTS_TTL_SECONDS = 5.0


def _queue_page(request: Request, filters: QueueFilters, **kwargs) -> QueuePage:
    """A queue page with its counts per status; the counts scan every matching item, so
    they are cached for a few seconds per filter set (the items themselves never are)."""
    store = _store(request)
    page = store.queue_page(filters, with_counts=False, **kwargs)
    cache: dict = request.app.state.counts_cache
    key = repr(sorted(filters.__dict__.items()))
    hit = cache.get(key)
    if hit is None or time.monotonic() - hit[0] > COUNTS_TTL_SECONDS:
        if len(cache) > 256:
            cache.clear()
        hit = (time.monotonic(), store.queue_counts(filters))
        cache[key] = hit
    page.counts = hit[1]
    return page


def _run_out(run) -> dict:
    return {c: getattr(run, c) for c in RunOut.model_fields}


def _case_with_timeline(store: ResultsStore, case_id: CaseId) -> dict:
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


def _error_status(exc: ReviewError) -> int:
    return 409 if isinstance(exc, Conflict) else 404 if isinstance(exc, NotFound) else 422


# -- the app ------------------------------------------------------------------------------


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
    app.state.counts_cache = {}
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(charts=charts, reason_codes=REASON_CODES, verdicts=VERDICTS)
    templates.env.filters["when"] = _when
    templates.env.filters["pct"] = lambda v: "–" if v is None else f"{v:.1%}"
    templates.env.filters["change"] = _change
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        if not request.url.path.startswith("/static"):
            response.headers["Cache-Control"] = "no-store"
        if response.status_code == 405:  # name every method the path answers, not one route's
            response.headers["Allow"] = ", ".join(_allowed_methods(app, request.url.path))
        return response

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, _exc: LoginRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(ReviewError)
    async def _review_error(request: Request, exc: ReviewError):
        status = _error_status(exc)
        if request.url.path.startswith("/api"):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return _render_error(request, str(exc), status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api") or exc.status_code == 401:
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        return _render_error(request, str(exc.detail), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        if request.url.path.startswith("/api"):
            return JSONResponse({"detail": detail}, status_code=422)
        return _render_error(request, detail, 422)

    def _render_error(request: Request, message: str, status: int):
        principal = getattr(request.state, "principal", None)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"user": principal, "message": message, "status": status},
            status_code=status,
        )

    app.include_router(_public_routes(templates))
    app.include_router(_page_routes(templates))
    app.include_router(_api_routes(app))
    return app


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


def _change(before: dict | None, after: dict | None) -> str:
    """'field: old → new' for what an audit entry changed (unchanged fields left out)."""
    before, after = before or {}, after or {}
    parts = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if old != new:
            parts.append(f"{key}: {'–' if old is None else old} → {'–' if new is None else new}")
    return "; ".join(parts)


def _when(value: datetime | None) -> str:
    if value is None:
        return "–"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- login --------------------------------------------------------------------------------


def _public_routes(templates: Jinja2Templates) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/queue", error: str | None = None):
        token = secrets.token_urlsafe(24)
        response = templates.TemplateResponse(
            request, "login.html", {"user": None, "csrf": token, "next": next, "error": error}
        )
        _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    @router.post("/login")
    async def login(request: Request):
        form = await request.form()
        name = str(form.get("username", ""))[:64]
        password = str(form.get("password", ""))
        target = str(form.get("next") or "/queue")
        if not target.startswith("/") or target.startswith("//"):
            target = "/queue"
        cookie_token = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not cookie_token or not secrets.compare_digest(
            cookie_token, str(form.get("csrf_token", ""))
        ):
            raise HTTPException(403, "missing or wrong CSRF token; reload the login page")
        store = _store(request)
        settings = _settings(request)
        if login_throttled(store, name, settings.review_login_attempts):
            raise HTTPException(429, "too many failed logins; wait 5 minutes")
        user = store.get_user(name)
        if user is None or user.disabled or not verify_password(password, user.password_hash):
            store.record_failed_login(name, request.client.host if request.client else "?")
            return RedirectResponse(
                "/login?" + urlencode({"next": target, "error": "wrong user name or password"}),
                status_code=303,
            )
        raw, _csrf = store.create_session(user, ttl=timedelta(hours=settings.review_session_hours))
        response = RedirectResponse(target, status_code=303)
        _set_cookie(
            request,
            response,
            SESSION_COOKIE,
            raw,
            max_age=int(settings.review_session_hours * 3600),
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    return router


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int):
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=_settings(request).review_secure_cookies,
        path="/",
    )


# -- pages --------------------------------------------------------------------------------


def _page_routes(templates: Jinja2Templates) -> APIRouter:
    router = APIRouter(dependencies=[Depends(page_user)], include_in_schema=False)

    def render(request: Request, name: str, context: dict, status: int = 200):
        principal: Principal = request.state.principal
        return templates.TemplateResponse(
            request,
            name,
            {"user": principal, "csrf": principal.csrf, **context},
            status_code=status,
        )

    @router.get("/")
    def home():
        return RedirectResponse("/queue", status_code=303)

    @router.post("/logout")
    def logout(request: Request):
        raw = request.cookies.get(SESSION_COOKIE)
        if raw:
            _store(request).end_session(raw)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @router.get("/queue", response_class=HTMLResponse)
    def queue(
        request: Request,
        filters: Annotated[QueueFilters, Depends(_filters)],
        sort: SortName = "priority",
        cursor: str | None = None,
        msg: str | None = None,
    ):
        page = _queue_page(request, filters, sort=sort, cursor=cursor, limit=50)
        query = {k: v for k, v in request.query_params.items() if k not in ("cursor", "msg")}
        return render(
            request,
            "queue.html",
            {
                "page": page,
                "filters": filters,
                "sort": sort,
                "sorts": list(SORTS),
                "query": query,
                "msg": msg,
                "next_url": "/queue?" + urlencode({**query, "cursor": page.next_cursor})
                if page.next_cursor
                else None,
            },
        )

    @router.post("/queue/claim-next")
    def claim_next(request: Request):
        principal = require(request, "analyst")
        claimed = _store(request).claim_next(principal.name, lock=_lock(request))
        if claimed is None:
            return RedirectResponse(
                "/queue?" + urlencode({"msg": "Nothing left to claim: the queue is empty."}),
                status_code=303,
            )
        return RedirectResponse(f"/cases/{claimed['id']}", status_code=303)

    @router.post("/queue/bulk")
    async def bulk(request: Request):
        principal = require(request, "analyst")
        form = await request.form()
        ids = [int(v) for v in form.getlist("case_id") if str(v).isdigit()]
        verdict = str(form.get("verdict", ""))
        if not ids:
            raise HTTPException(422, "select at least one item for a bulk verdict")
        overrides = {
            i: str(form.get(f"override_{i}")) for i in ids if form.get(f"override_{i}") in VERDICTS
        }
        result = _store(request).bulk_verdict(
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
        return RedirectResponse("/queue?" + urlencode({"msg": text}), status_code=303)

    @router.get("/cases/{case_id:int}", response_class=HTMLResponse)
    def case_page(request: Request, case_id: CaseId, msg: str | None = None):
        store = _store(request)
        case = _case_with_timeline(store, case_id)
        audit = store.audit_entries(entity="case", entity_id=str(case_id), limit=50)
        return render(request, "case.html", {"case": case, "audit": audit, "msg": msg})

    @router.post("/cases/{case_id:int}/claim")
    async def claim(request: Request, case_id: CaseId):
        principal = require(request, "analyst")
        form = await request.form()
        version = _int_or_none(form.get("version"))
        _store(request).claim(case_id, principal.name, lock=_lock(request), version=version)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    @router.post("/cases/{case_id:int}/verdict")
    async def verdict(request: Request, case_id: CaseId):
        principal = require(request, "analyst")
        form = await request.form()
        store = _store(request)
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
                version=_int_or_none(form.get("version")),
                reason_code=str(form.get("reason_code") or "") or None,
                note=str(form.get("note") or "").strip() or None,
                overrides=overrides,
            )
        except Conflict as exc:
            case = _case_with_timeline(store, case_id)
            audit = store.audit_entries(entity="case", entity_id=str(case_id), limit=50)
            return render(
                request,
                "case.html",
                {"case": case, "audit": audit, "conflict": str(exc)},
                status=409,
            )
        done = f"Case #{case_id}: {chosen.replace('_', ' ')}."
        if form.get("advance", "1") == "0":
            return RedirectResponse(f"/cases/{case_id}?{urlencode({'msg': done})}", 303)
        claimed = store.claim_next(principal.name, lock=_lock(request))
        if claimed is None:
            return RedirectResponse(
                "/queue?" + urlencode({"msg": done + " Nothing left to claim."}), status_code=303
            )
        return RedirectResponse(
            f"/cases/{claimed['id']}?{urlencode({'msg': done, 'prev': case_id})}",
            status_code=303,
        )

    @router.post("/cases/{case_id:int}/undo")
    async def undo(request: Request, case_id: CaseId):
        principal = require(request, "analyst")
        form = await request.form()
        store = _store(request)
        try:
            store.undo_verdict(case_id, principal.name, version=_int_or_none(form.get("version")))
        except Conflict as exc:
            case = _case_with_timeline(store, case_id)
            audit = store.audit_entries(entity="case", entity_id=str(case_id), limit=50)
            return render(
                request,
                "case.html",
                {"case": case, "audit": audit, "conflict": str(exc)},
                status=409,
            )
        return RedirectResponse(
            f"/cases/{case_id}?{urlencode({'msg': 'Verdict undone; the case is yours again.'})}",
            status_code=303,
        )

    @router.post("/cases/{case_id:int}/release")
    def release(request: Request, case_id: CaseId):
        principal = require(request, "analyst")
        _store(request).release(case_id, principal.name)
        return RedirectResponse("/queue", status_code=303)

    @router.get("/runs", response_class=HTMLResponse)
    def runs(request: Request):
        store = _store(request)
        listed = store.list_runs(100)
        health = store.run_health_status([r.id for r in listed])
        return render(request, "runs.html", {"runs": listed, "health": health})

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str):
        store = _store(request)
        run = store.get_run(run_id)
        if run is None:
            raise HTTPException(404, f"no scoring run {run_id}")
        earlier = [_run_out(r) for r in reversed(store.runs_for_model(run.model_name, 30))]
        quarantine = store.quarantine_frame(run.id)
        return render(
            request,
            "run.html",
            {
                "run": run,
                "histogram": charts.score_histogram(
                    store.score_values(run.id).tolist(), run.threshold
                ),
                "rates": charts.flag_rate_bars(earlier, run.id),
                "quarantine": quarantine.head(500).to_dict("records"),
                "quarantine_total": len(quarantine),
                "health": store.run_health(run.id),
            },
        )

    @router.get("/quality", response_class=HTMLResponse)
    def quality(request: Request):
        return render(request, "quality.html", {"rows": _store(request).quality_by_model()})

    @router.get("/audit", response_class=HTMLResponse)
    def audit(request: Request):
        return render(request, "audit.html", {"entries": _store(request).audit_entries(limit=300)})

    @router.get("/export/labels.{fmt}")
    def export(request: Request, fmt: str):
        return _labels_export(_store(request), fmt)

    @router.get("/admin/users", response_class=HTMLResponse)
    def users(request: Request, msg: str | None = None):
        require(request, "admin")
        return render(
            request,
            "users.html",
            {"users": _store(request).list_users(), "roles": ROLES, "msg": msg},
        )

    @router.post("/admin/users")
    async def add_user(request: Request):
        principal = require(request, "admin")
        form = await request.form()
        name, role = str(form.get("name", "")), str(form.get("role", ""))
        try:
            password_hash = hash_password(str(form.get("password", "")))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        _store(request).add_user(name, role, password_hash, actor=principal.name)
        return RedirectResponse(
            "/admin/users?" + urlencode({"msg": f"User {name} added as {role}."}), 303
        )

    @router.post("/admin/users/{name}")
    async def change_user(request: Request, name: str):
        principal = require(request, "admin")
        form = await request.form()
        role = str(form.get("role") or "") or None
        disabled = {"1": True, "0": False}.get(str(form.get("disabled", "")))
        _store(request).update_user(name, actor=principal.name, role=role, disabled=disabled)
        return RedirectResponse("/admin/users?" + urlencode({"msg": f"User {name} changed."}), 303)

    return router


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _labels_export(store: ResultsStore, fmt: str) -> Response:
    frame = store.labels_frame()
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


# -- JSON API -----------------------------------------------------------------------------


def _api_routes(app: FastAPI) -> APIRouter:
    router = APIRouter(
        prefix="/api", dependencies=[Depends(api_user)], tags=["review"], responses=ERRORS
    )

    @router.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/me", response_model=UserOut)
    def me(request: Request):
        principal: Principal = request.state.principal
        return {"name": principal.name, "role": principal.role, "disabled": False}

    @router.get("/queue", response_model=QueueResponse)
    def queue(
        request: Request,
        filters: Annotated[QueueFilters, Depends(_filters)],
        sort: SortName = "priority",
        cursor: str | None = None,
        limit: int = Query(50, ge=1, le=500),
    ):
        page = _queue_page(request, filters, sort=sort, cursor=cursor, limit=limit)
        return {
            "items": page.items,
            "next_cursor": page.next_cursor,
            "counts": page.counts,
            "sort": page.sort,
        }

    @router.post("/queue/claim-next", response_model=ClaimOut)
    def claim_next(request: Request):
        principal = require(request, "analyst")
        claimed = _store(request).claim_next(principal.name, lock=_lock(request))
        return claimed or {"id": None, "version": None}

    @router.get("/queue/{case_id:int}", response_model=CaseDetail)
    def case(request: Request, case_id: CaseId):
        return _case_with_timeline(_store(request), case_id)

    @router.post("/queue/{case_id:int}/claim", response_model=ClaimOut)
    def claim(request: Request, case_id: CaseId, version: int | None = None):
        principal = require(request, "analyst")
        new_version = _store(request).claim(
            case_id, principal.name, lock=_lock(request), version=version
        )
        return {"id": case_id, "version": new_version}

    @router.post("/queue/{case_id:int}/verdict", response_model=VerdictOut)
    def verdict(request: Request, case_id: CaseId, body: VerdictIn):
        principal = require(request, "analyst")
        return _store(request).give_verdict(
            case_id,
            principal.name,
            body.verdict,
            version=body.version,
            reason_code=body.reason_code or None,
            note=body.note,
            overrides=body.overrides,
        )

    @router.post("/queue/{case_id:int}/undo", response_model=VerdictOut)
    def undo(request: Request, case_id: CaseId, version: int | None = None):
        principal = require(request, "analyst")
        return _store(request).undo_verdict(case_id, principal.name, version=version)

    @router.post("/queue/bulk-verdict", response_model=BulkOut)
    def bulk(request: Request, body: BulkVerdictIn):
        principal = require(request, "analyst")
        overrides = {}
        for key, value in body.overrides.items():
            if not key.isdigit():
                raise HTTPException(422, f"overrides: {key!r} is not a case id")
            overrides[int(key)] = value
        result = _store(request).bulk_verdict(
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

    @router.get("/runs", response_model=list[RunOut])
    def runs(request: Request, limit: int = Query(50, ge=1, le=1000)):
        return [_run_out(r) for r in _store(request).list_runs(limit)]

    @router.get("/runs/{run_id}", response_model=RunOut)
    def run(request: Request, run_id: str):
        found = _store(request).get_run(run_id)
        if found is None:
            raise HTTPException(404, f"no scoring run {run_id}")
        return _run_out(found)

    @router.get("/quality", response_model=list[QualityOut])
    def quality(request: Request):
        return _store(request).quality_by_model()

    @router.get(
        "/labels",
        response_class=Response,
        responses={
            200: {
                "description": "Every label row (the latest per record counts).",
                "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
            }
        },
    )
    def labels(request: Request, format: str = Query("csv", pattern="^(csv|parquet)$")):
        return _labels_export(_store(request), format)

    @router.get("/audit", response_model=list[AuditOut])
    def audit(request: Request, limit: int = Query(100, ge=1, le=1000)):
        return [
            {c: getattr(a, c) for c in AuditOut.model_fields}
            for a in _store(request).audit_entries(limit=limit)
        ]

    @router.get("/users", response_model=list[UserOut])
    def users(request: Request):
        require(request, "admin")
        return [
            {"name": u.name, "role": u.role, "disabled": u.disabled}
            for u in _store(request).list_users()
        ]

    @router.post("/users", response_model=UserOut, status_code=201)
    def add_user(request: Request, body: UserIn):
        principal = require(request, "admin")
        password_hash = hash_password(body.password) if body.password else None
        user = _store(request).add_user(body.name, body.role, password_hash, actor=principal.name)
        return {"name": user.name, "role": user.role, "disabled": user.disabled}

    @router.patch("/users/{name}", response_model=UserOut)
    def change_user(request: Request, name: str, body: UserPatch):
        principal = require(request, "admin")
        user = _store(request).update_user(
            name, actor=principal.name, role=body.role, disabled=body.disabled
        )
        return {"name": user.name, "role": user.role, "disabled": user.disabled}

    return router
