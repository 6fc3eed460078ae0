"""One module per resource; each has a ``pages`` router (HTML for people, behind a login
session) and, where the API offers the resource, an ``api`` router (JSON under ``/api``,
behind a bearer token). :data:`ROUTERS` is the order the app includes them in."""

from __future__ import annotations

from review.routers import (
    audit,
    cases,
    casework,
    exports,
    login,
    openapi,
    quality,
    queue,
    runs,
    users,
)

ROUTERS = (
    login.public,
    login.pages,
    queue.pages,
    cases.pages,
    casework.pages,
    runs.pages,
    quality.pages,
    audit.pages,
    exports.pages,
    users.pages,
    openapi.api,
    queue.api,
    cases.api,
    casework.api,
    runs.api,
    quality.api,
    exports.api,
    audit.api,
    users.api,
)
