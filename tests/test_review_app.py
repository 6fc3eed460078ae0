"""The review app through HTTP: authentication on every route (walked from the route
table), roles, CSRF, login throttling, the JSON API contract, conflicts, exports."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from pipelines.accounts import hash_password
from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from review import create_app
from tests.review_client import PASSWORD, csrf_in, csrf_of, login
from tests.review_fixtures import add_flagged_run

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
PUBLIC = ("/login", "/static")


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 is slow on purpose: hash once per module


@pytest.fixture
def store(tmp_path, password_hash) -> ResultsStore:
    store = ResultsStore(f"sqlite:///{tmp_path / 'review.db'}")
    for name, role in (("ana", "analyst"), ("vic", "viewer"), ("adm", "admin"), ("bob", "analyst")):
        store.add_user(name, role, password_hash, actor="test")
    add_flagged_run(
        store,
        batch_id="b1",
        flags=[("r1", "card1", 4.0), ("r2", "card2", 3.0), ("r3", "card3", 2.0)],
    )
    return store


@pytest.fixture
def app(store, tmp_path):
    return create_app(store, VigilSettings(home=tmp_path))


def _routes(app):
    """Every (method, path template, concrete path) the app answers, included routers
    flattened, so a route added later is walked too."""
    for route in app.routes:
        if isinstance(route, Mount):
            continue
        if hasattr(route, "effective_route_contexts"):  # an included router (FastAPI 0.150)
            found = [(c.path, set(c.methods)) for c in route.effective_route_contexts()]
        else:
            assert isinstance(route, Route)
            found = [(route.path, set(route.methods))]
        for template, methods in found:
            path = (
                template.replace("{case_id:int}", "1")
                .replace("{case_id}", "1")
                .replace("{run_id}", "x")
                .replace("{name}", "ana")
                .replace("{fmt}", "csv")
            )
            for method in sorted(methods - {"HEAD"}):
                yield method, template, path


def test_no_route_answers_without_authentication(app):
    client = TestClient(app, follow_redirects=False)
    walked = 0
    for method, template, path in _routes(app):
        if template.startswith(PUBLIC):
            continue
        response = client.request(method, path)
        walked += 1
        if template.startswith("/api"):
            assert response.status_code == 401, (method, template, response.status_code)
        else:
            assert response.status_code == 303, (method, template, response.status_code)
            assert response.headers["location"].startswith("/login")
    assert walked >= 30
    # A token that does not exist is no better than none.
    bad = TestClient(app, headers={"Authorization": "Bearer vgl_nope"})
    assert bad.get("/api/queue").status_code == 401


def test_a_viewer_cannot_change_anything(app):
    viewer = login(app, "vic")
    csrf = csrf_of(viewer)
    walked = 0
    for method, template, path in _routes(app):
        if method not in STATE_CHANGING or template.startswith(PUBLIC) or path == "/logout":
            continue
        response = viewer.request(
            method,
            path,
            data={"csrf_token": csrf, "verdict": "fraud"}
            if not template.startswith("/api")
            else None,
            json={"verdict": "fraud", "case_ids": [1], "name": "x", "role": "viewer"}
            if template.startswith("/api")
            else None,
            headers={"X-CSRF-Token": csrf},
        )
        walked += 1
        assert response.status_code == 403, (method, template, response.status_code)
    assert walked >= 12
    assert viewer.get("/queue").status_code == 200  # reading is fine


def test_forms_without_the_csrf_token_are_refused(app, store):
    analyst = login(app, "ana")
    case_id = store.queue_page().items[0]["id"]
    refused = analyst.post(f"/cases/{case_id}/verdict", data={"verdict": "fraud"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert store.labels_frame().empty
    wrong = analyst.post(f"/cases/{case_id}/verdict", data={"verdict": "fraud", "csrf_token": "x"})
    assert wrong.status_code == 403
    ok = analyst.post(
        f"/cases/{case_id}/verdict", data={"verdict": "fraud", "csrf_token": csrf_of(analyst)}
    )
    assert ok.status_code == 303
    assert list(store.labels_frame()["verdict"]) == ["fraud"]


def test_login_is_throttled_and_cookies_are_hardened(app, store):
    client = TestClient(app, follow_redirects=False)
    page = client.get("/login")
    csrf = csrf_in(page.text)
    for _ in range(5):
        response = client.post(
            "/login", data={"username": "ana", "password": "wrong password!", "csrf_token": csrf}
        )
        assert response.status_code == 303 and "error" in response.headers["location"]
    blocked = client.post(
        "/login", data={"username": "ana", "password": PASSWORD, "csrf_token": csrf}
    )
    assert blocked.status_code == 429
    other = login(app, "bob")
    cookie = other.cookies.jar
    assert any(c.name == "vigil_session" for c in cookie)
    fresh = TestClient(app, follow_redirects=False)
    page = fresh.get("/login")
    csrf = csrf_in(page.text)
    response = fresh.post(
        "/login", data={"username": "bob", "password": PASSWORD, "csrf_token": csrf}
    )
    set_cookie = response.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    headers = fresh.get("/login").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]


def test_api_contract_queue_and_verdict_with_a_token(app, store):
    token = store.create_token("ana", actor="test")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    queue = api.get("/api/queue").json()
    first = queue["items"][0]
    assert first["record_ids"] == ["r1"] and first["score"] == 4.0
    assert queue["counts"]["open"] == 3
    done = api.post(f"/api/queue/{first['id']}/verdict", json={"verdict": "fraud", "note": "seen"})
    assert done.status_code == 200, done.text
    again = api.post(f"/api/queue/{first['id']}/verdict", json={"verdict": "not_fraud"})
    assert again.status_code == 409 and "already has the verdict" in again.json()["detail"]
    bad = api.post(f"/api/queue/{first['id']}/verdict", json={"verdict": "maybe"})
    assert bad.status_code in (409, 422)
    assert [i["id"] for i in api.get("/api/queue").json()["items"]] != [first["id"]]
    labels = store.labels_frame()
    assert list(labels["verdict"]) == ["fraud"] and labels["note"].iloc[0] == "seen"
    quality = api.get("/api/quality").json()
    assert quality[0]["reviewed"] == 1 and quality[0]["precision"] == 1.0
    exported = api.get("/api/labels?format=parquet")
    frame = pd.read_parquet(io.BytesIO(exported.content))
    assert {"record_id", "verdict", "known_at", "source", "analyst"} <= set(frame.columns)


def test_two_analysts_on_one_item_get_a_conflict(app, store):
    ana, bob = login(app, "ana"), login(app, "bob")
    case_id = store.queue_page().items[0]["id"]
    page_a, page_b = ana.get(f"/cases/{case_id}"), bob.get(f"/cases/{case_id}")
    version = re.search(r'name="version" value="(\d+)"', page_a.text).group(1)
    assert re.search(r'name="version" value="(\d+)"', page_b.text).group(1) == version
    first = ana.post(
        f"/cases/{case_id}/verdict",
        data={"verdict": "fraud", "version": version, "csrf_token": csrf_of(ana)},
    )
    assert first.status_code == 303
    second = bob.post(
        f"/cases/{case_id}/verdict",
        data={"verdict": "not_fraud", "version": version, "csrf_token": csrf_of(bob)},
    )
    assert second.status_code == 409
    assert "changed by someone else" in second.text
    assert list(store.labels_frame()["verdict"]) == ["fraud"]


def test_pages_render_for_an_analyst(app, store):
    ana = login(app, "ana")
    queue = ana.get("/queue")
    assert queue.status_code == 200 and "Claim next" in queue.text
    claimed = ana.post("/queue/claim-next", data={"csrf_token": csrf_of(ana)})
    case_url = claimed.headers["location"]
    case = ana.get(case_url)
    assert case.status_code == 200
    assert "Why it was flagged" in case.text and "<svg" in case.text
    assert "claimed by <b>ana</b>" in case.text
    run_id = store.list_runs()[0].id
    run = ana.get(f"/runs/{run_id}")
    assert run.status_code == 200 and "Score distribution" in run.text
    assert ana.get("/quality").status_code == 200
    assert ana.get("/audit").status_code == 200
    assert ana.get("/admin/users").status_code == 403
    csv = ana.get("/export/labels.csv")
    assert csv.status_code == 200 and csv.text.startswith("label_id,record_id")


def test_the_queue_offers_each_exploration_lane(app):
    ana = login(app, "ana")
    page = ana.get("/queue")
    lanes = re.search(r'<p class="lanes[^>]*>(.*?)</p>', page.text, re.S).group(1)
    for code in ("explore_uncertain", "explore_linked", "exploration"):
        assert f'href="/queue?reason={code}"' in lanes
    linked = ana.get("/queue?reason=explore_linked")
    assert linked.status_code == 200
    assert 'href="/queue?reason=explore_linked" class="active"' in linked.text
    assert "card1" not in linked.text  # none of the fixture's flags is in that lane


def test_admin_manages_users_and_it_is_audited(app, store):
    admin = login(app, "adm")
    csrf = csrf_of(admin)
    added = admin.post(
        "/admin/users",
        data={"name": "newbie", "role": "viewer", "password": "long enough pw", "csrf_token": csrf},
    )
    assert added.status_code == 303
    admin.post("/admin/users/newbie", data={"role": "analyst", "disabled": "1", "csrf_token": csrf})
    user = store.get_user("newbie")
    assert user.role == "analyst" and user.disabled
    (change,) = [
        a
        for a in store.audit_entries(entity="user", entity_id="newbie")
        if a.action == "user.changed"
    ]
    assert change.actor == "adm" and change.before["role"] == "viewer"
    assert change.after == {"role": "analyst", "disabled": True}
