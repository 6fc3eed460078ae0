"""The dependencies routes declare, as ``Annotated`` aliases: the store, settings and
signer of the app, the authenticated caller at the role a route needs, the caller's
address and scheme (for throttling and Secure cookies), flash messages, queue filters,
the claim lock.

The store, settings and signer are the ones :func:`review.app.create_app` set up; they
are read here and nowhere else, so a route asks for ``store: StoreDep`` instead of
reaching into the application object.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from pipelines.store.queue import QueueFilters
from review.auth import LoginRequired, Principal, check_csrf, check_role, principal_from
from review.flash import Flash
from review.queries import CountsCache, last_verdict
from review.schemas import OptionalIsoDate, OptionalNumber, QueueStatus, VerdictName
from review.signing import Signer


def get_store(request: Request) -> ResultsStore:
    return request.app.state.store


def get_settings(request: Request) -> VigilSettings:
    return request.app.state.settings


def get_counts_cache(request: Request) -> CountsCache:
    return request.app.state.counts_cache


def get_signer(request: Request) -> Signer:
    return request.app.state.signer


StoreDep = Annotated[ResultsStore, Depends(get_store)]
SettingsDep = Annotated[VigilSettings, Depends(get_settings)]
CountsCacheDep = Annotated[CountsCache, Depends(get_counts_cache)]
SignerDep = Annotated[Signer, Depends(get_signer)]


# -- who is asking (router dependencies: every route behind them needs a login) ---------


async def page_user(request: Request, store: StoreDep) -> Principal:
    """Router dependency for HTML pages: a live session (or token), CSRF on changes."""
    principal = principal_from(request, store)
    if principal is None:
        raise LoginRequired()
    await check_csrf(request, principal)
    request.state.principal = principal
    return principal


async def api_user(request: Request, store: StoreDep) -> Principal:
    """Router dependency for the JSON API: a bearer token (or a browser session + CSRF)."""
    principal = principal_from(request, store)
    if principal is None:
        raise HTTPException(
            status_code=401,
            detail="authentication required: send 'Authorization: Bearer TOKEN'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    await check_csrf(request, principal)
    request.state.principal = principal
    return principal


def current_user(request: Request) -> Principal:
    """The caller the router's authentication dependency found."""
    return request.state.principal


def analyst_user(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
    return check_role(principal, "analyst")


def admin_user(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
    return check_role(principal, "admin")


CurrentUser = Annotated[Principal, Depends(current_user)]
AnalystUser = Annotated[Principal, Depends(analyst_user)]
AdminUser = Annotated[Principal, Depends(admin_user)]


# -- request details several routers share --------------------------------------------


def forwarded(request: Request, settings: VigilSettings, header: str) -> str | None:
    """A reverse proxy's X-Forwarded-* value, when the settings say to believe it: the
    last entry, the one the trusted proxy itself added."""
    if not settings.review_trust_proxy_headers:
        return None
    value = request.headers.get(header, "").split(",")[-1].strip()
    return value or None


def secure_cookies(request: Request, settings: SettingsDep) -> bool:
    """Cookies are Secure when the request came over HTTPS (seen by the app, or by a
    trusted proxy in front of it), or when the settings ask for it always."""
    scheme = forwarded(request, settings, "x-forwarded-proto") or request.url.scheme
    return settings.review_secure_cookies or scheme.lower() == "https"


def client_address(request: Request, settings: SettingsDep) -> str:
    """The caller's address: the peer's, or the one a trusted proxy forwarded for."""
    peer = request.client.host if request.client else "?"
    return forwarded(request, settings, "x-forwarded-for") or peer


SecureCookies = Annotated[bool, Depends(secure_cookies)]
ClientAddress = Annotated[str, Depends(client_address)]


def flash(signer: SignerDep, principal: CurrentUser, secure: SecureCookies) -> Flash:
    """Where an action leaves its message for the next page (server-side flash)."""
    return Flash(signer=signer, user=principal.name, secure=secure)


FlashDep = Annotated[Flash, Depends(flash)]


def undo_offer(request: Request, store: ResultsStore) -> dict | None:
    """The caller's last verdict while it can be undone (analysts and admins), for the
    page that opens after it: ``review.queries.last_verdict``."""
    principal = getattr(request.state, "principal", None)
    if principal is None or principal.role not in ("analyst", "admin"):
        return None
    return last_verdict(store, principal.name)


def claim_lock(settings: SettingsDep) -> timedelta:
    """How long a claim keeps an item locked to its analyst."""
    return timedelta(minutes=settings.review_claim_minutes)


ClaimLock = Annotated[timedelta, Depends(claim_lock)]


def queue_filters(
    status: QueueStatus = "open",
    model: str | None = None,
    run: str | None = None,
    assignee: str | None = None,
    min_priority: OptionalNumber = None,
    max_priority: OptionalNumber = None,
    since: Annotated[OptionalIsoDate, Query(description="Flagged on or after YYYY-MM-DD.")] = None,
    until: Annotated[OptionalIsoDate, Query(description="Flagged before (YYYY-MM-DD).")] = None,
    reason: str | None = None,
    verdict: VerdictName | None = None,
    entity: str | None = None,
    tag: str | None = None,
) -> QueueFilters:
    """The queue's filters from the query string (empty fields mean no filter)."""

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
        tag=tag or None,
    )


QueueFiltersDep = Annotated[QueueFilters, Depends(queue_filters)]
