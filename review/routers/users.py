"""Users: the caller (``/api/me``) and, for admins, adding users and changing roles."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse

from pipelines.accounts import hash_password
from pipelines.store.accounts import ROLES
from review.deps import AdminUser, CurrentUser, FlashDep, StoreDep
from review.routers.base import api_router, page_router
from review.schemas import UserIn, UserOut, UserPatch
from review.templating import render

pages = page_router()
api = api_router()


def _user_out(user) -> dict:
    return {"name": user.name, "role": user.role, "disabled": user.disabled}


@pages.get("/admin/users", response_class=HTMLResponse)
def users_view(request: Request, _admin: AdminUser, store: StoreDep):
    return render(request, "users.html", {"users": store.list_users(), "roles": ROLES})


@pages.post("/admin/users")
async def add_user_page(request: Request, principal: AdminUser, store: StoreDep, flash: FlashDep):
    form = await request.form()
    name, role = str(form.get("name", "")), str(form.get("role", ""))
    try:
        password_hash = hash_password(str(form.get("password", "")))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    store.add_user(name, role, password_hash, actor=principal.name)
    return flash.redirect("/admin/users", f"User {name} added as {role}.")


@pages.post("/admin/users/{name}")
async def change_user_page(
    request: Request, name: str, principal: AdminUser, store: StoreDep, flash: FlashDep
):
    form = await request.form()
    role = str(form.get("role") or "") or None
    disabled = {"1": True, "0": False}.get(str(form.get("disabled", "")))
    store.update_user(name, actor=principal.name, role=role, disabled=disabled)
    return flash.redirect("/admin/users", f"User {name} changed.")


# -- JSON API ---------------------------------------------------------------------------


@api.get("/me", response_model=UserOut)
def me(principal: CurrentUser):
    return {"name": principal.name, "role": principal.role, "disabled": False}


@api.get("/users", response_model=list[UserOut])
def users(_admin: AdminUser, store: StoreDep):
    return [_user_out(u) for u in store.list_users()]


@api.post("/users", response_model=UserOut, status_code=201)
def add_user(body: UserIn, principal: AdminUser, store: StoreDep):
    password_hash = hash_password(body.password) if body.password else None
    user = store.add_user(body.name, body.role, password_hash, actor=principal.name)
    return _user_out(user)


@api.patch("/users/{name}", response_model=UserOut)
def change_user(name: str, body: UserPatch, principal: AdminUser, store: StoreDep):
    user = store.update_user(name, actor=principal.name, role=body.role, disabled=body.disabled)
    return _user_out(user)
