"""Who is asking, and may they: session cookies for pages, bearer tokens for the API,
CSRF tokens on every state-changing request made by a browser, roles, cookies.

Authentication is a dependency of the page and API routers as a whole (``review.deps``),
so a new route cannot be added without it (tests walk the route table to prove it).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response

from pipelines.store import ResultsStore, User

SESSION_COOKIE = "vigil_session"
LOGIN_CSRF_COOKIE = "vigil_login_csrf"
# A browser that signed in as a user before (see review.throttle); only the login reads it.
DEVICE_COOKIE = "vigil_device"
DEVICE_DAYS = 180
ROLE_RANK = {"viewer": 0, "analyst": 1, "admin": 2}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller; ``csrf`` is set for browser sessions only."""

    name: str
    role: str
    csrf: str | None
    via: str  # "session" | "token"

    def can(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class LoginRequired(Exception):
    """A page asked for without a live session: the app redirects to the login page."""


def principal_from(request: Request, store: ResultsStore) -> Principal | None:
    """The caller named by a bearer token or, failing that, a live session cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = store.user_for_token(header[7:].strip())
        return _as_principal(user, None, "token") if user else None
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = store.session_user(cookie)
        if found:
            return _as_principal(found[0], found[1], "session")
    return None


def _as_principal(user: User, csrf: str | None, via: str) -> Principal:
    return Principal(name=user.name, role=user.role, csrf=csrf, via=via)


async def check_csrf(request: Request, principal: Principal) -> None:
    """Browser sessions must send the session's CSRF token with every state change (form
    field ``csrf_token`` or header ``X-CSRF-Token``); bearer-token calls carry no cookie."""
    if request.method not in STATE_CHANGING or principal.via != "session":
        return
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = (await request.form()).get("csrf_token")
    if not sent or not principal.csrf or not hmac.compare_digest(str(sent), principal.csrf):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token; reload the page")


def check_role(principal: Principal, role: str) -> Principal:
    """The caller, if their role allows ``role``'s actions; else 403."""
    if not principal.can(role):
        raise HTTPException(
            status_code=403,
            detail=f"your role ({principal.role}) cannot do this; it needs {role}",
        )
    return principal


def set_cookie(
    response: Response, name: str, value: str, *, max_age: int, secure: bool, path: str = "/"
) -> None:
    """A cookie scripts cannot read, sent back only to this site's own pages."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
        path=path,
    )
