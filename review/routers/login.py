"""Signing in and out: the login form and its check (public), and logout."""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from pipelines.accounts import verify_password
from review.auth import DEVICE_COOKIE, DEVICE_DAYS, LOGIN_CSRF_COOKIE, SESSION_COOKIE, set_cookie
from review.deps import ClientAddress, SecureCookies, SettingsDep, SignerDep, StoreDep
from review.routers.base import page_router
from review.templating import templates
from review.throttle import LoginLimits, login_refusal

public = APIRouter(include_in_schema=False)
pages = page_router()


@public.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, secure: SecureCookies, next: str = "/queue", error: str | None = None
):
    token = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(
        request, "login.html", {"user": None, "csrf": token, "next": next, "error": error}
    )
    set_cookie(response, LOGIN_CSRF_COOKIE, token, max_age=3600, secure=secure)
    return response


@public.post("/login")
async def login(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    signer: SignerDep,
    address: ClientAddress,
    secure: SecureCookies,
):
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
    device = signer.unsign(
        "device", request.cookies.get(DEVICE_COOKIE), max_age_seconds=DEVICE_DAYS * 86400
    )
    refusal = login_refusal(
        store, name, address, LoginLimits.from_settings(settings), known_browser=device == name
    )
    if refusal:
        raise HTTPException(429, refusal)
    user = store.get_user(name)
    # Check a password whoever is named: an unknown user is checked against a dummy hash
    # (verify_password does that for a missing hash), so the time to answer does not
    # tell which user names exist, nor which are disabled.
    password_ok = verify_password(password, user.password_hash if user is not None else None)
    if user is None or user.disabled or not password_ok:
        store.record_failed_login(name, address)
        return RedirectResponse(
            "/login?" + urlencode({"next": target, "error": "wrong user name or password"}),
            status_code=303,
        )
    raw, _csrf = store.create_session(user, ttl=timedelta(hours=settings.review_session_hours))
    response = RedirectResponse(target, status_code=303)
    set_cookie(
        response,
        SESSION_COOKIE,
        raw,
        max_age=int(settings.review_session_hours * 3600),
        secure=secure,
    )
    # This browser has now proved the password: it stays exempt from the per-user limit.
    set_cookie(
        response,
        DEVICE_COOKIE,
        signer.sign("device", user.name),
        max_age=DEVICE_DAYS * 86400,
        secure=secure,
        path="/login",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@pages.post("/logout")
def logout(request: Request, store: StoreDep):
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        store.end_session(raw)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
