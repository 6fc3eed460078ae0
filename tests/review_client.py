"""The review app as a browser without JavaScript sees it: log in with the form's CSRF
token, read a page's token for the next form. Shared by the review tests."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_in(page: str) -> str:
    """The CSRF token of the (first) form on ``page``."""
    return _CSRF.search(page).group(1)


def csrf_of(client: TestClient, path: str = "/queue") -> str:
    return csrf_in(client.get(path).text)


def try_login(client: TestClient, name: str, password: str = PASSWORD):
    """Post the login form as a browser does; returns the response."""
    token = csrf_in(client.get("/login").text)
    return client.post(
        "/login", data={"username": name, "password": password, "csrf_token": token, "next": "/"}
    )


def login(app, name: str, **client_options) -> TestClient:
    """A client logged in as ``name`` (redirects not followed, so tests see each answer)."""
    client = TestClient(app, follow_redirects=False, **client_options)
    response = try_login(client, name)
    assert response.status_code == 303 and response.headers["location"] == "/", response.text
    return client
