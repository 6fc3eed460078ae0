"""The review app in a real browser (Debian's chromium through Playwright): an analyst works
the queue with the keyboard alone; a viewer cannot give verdicts; a form without its CSRF
token is refused; two analysts on one item get the conflict message. Screenshots of the
queue, case, run and quality pages go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.accounts import hash_password
from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from tests.browser_support import (
    BROWSER_MARKS,
    PASSWORD,
    launched_browser,
    log_in,
    screenshot,
    served,
)

ARTIFACTS = Path(__file__).parent / "artifacts"

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free port over a store holding a real scored demo batch."""

    from detectors import VAEDetector
    from pipelines.demo import DEMO_SPEC, generate_transactions
    from pipelines.intake.ingest import Batch, validate_batch
    from pipelines.modeling.bundle import ScoringBundle
    from pipelines.modeling.registry import ModelRef
    from pipelines.scoring.batch import score_batch
    from pipelines.scoring.run import RunRequest
    from review import create_app
    from tests.conftest import FAST_VAE

    home = tmp_path_factory.mktemp("review-browser")
    store = ResultsStore(f"sqlite:///{home / 'store.db'}")
    detector = VAEDetector(
        **FAST_VAE, target_fpr=0.02, categorical_features=DEMO_SPEC.categorical_features
    )
    detector.fit(generate_transactions(1500, n_anomalies=0, seed=1)[DEMO_SPEC.feature_columns])
    frame = generate_transactions(600, n_anomalies=12, seed=2).astype(str)
    frame.loc[5, "amount"] = "not-a-number"
    batch = Batch(frame=frame, source="tonight.csv", first_row_number=2, row_label="line")
    score_batch(
        store,
        ScoringBundle(DEMO_SPEC, detector),
        batch,
        validate_batch(batch, DEMO_SPEC),
        RunRequest(model=ModelRef("demo-vae", "1", "champion")),
        chunk_size=256,
    )
    password_hash = hash_password(PASSWORD)
    for name, role in (("ana", "analyst"), ("bob", "analyst"), ("vic", "viewer")):
        store.add_user(name, role, password_hash, actor="test")
    with served(create_app(store, VigilSettings(home=home))) as url:
        yield {"url": url, "store": store}


@pytest.fixture(scope="module")
def browser():
    with launched_browser() as browser:
        yield browser


def _login(browser, url: str, name: str):
    return log_in(browser, url, name)


def _shot(page, name: str) -> None:
    screenshot(page, ARTIFACTS, name)


def test_an_analyst_works_the_queue_with_the_keyboard(server, browser):
    url, store = server["url"], server["store"]
    context, page = _login(browser, url, "ana")
    open_before = store.queue_page().counts["open"]
    assert open_before > 0
    page.keyboard.press("j")  # select the first row
    assert page.locator("tr.item.selected").count() == 1
    _shot(page, "queue")
    page.keyboard.press("c")  # claim next
    page.wait_for_url(re.compile(r"/cases/\d+"))
    case_id = int(re.search(r"/cases/(\d+)", page.url).group(1))
    assert page.locator("text=Why it was flagged").first.is_visible()
    assert page.locator("section.flag svg.chart").count() >= 1
    assert page.locator("ul.reasons li").count() >= 1
    assert "claimed by ana" in page.locator(".case-head").inner_text()
    _shot(page, "case")
    page.keyboard.press("e")  # write a note, leave it with Escape, then give the verdict
    page.keyboard.type("amount far above this card's usual")
    page.keyboard.press("Escape")
    page.keyboard.press("f")
    page.wait_for_url(re.compile(rf"/cases/(?!{case_id}\b)\d+"))  # auto-advanced
    assert "fraud" in page.locator(".flash").inner_text()
    labels = store.labels_frame()
    assert list(labels["record_id"]) == store.get_case(case_id)["record_ids"]
    assert labels["verdict"].iloc[0] == "fraud" and labels["analyst"].iloc[0] == "ana"
    assert labels["note"].iloc[0] == "amount far above this card's usual"
    # The item has left the open queue; its audit entry is on the audit page.
    page.goto(f"{url}/queue")
    assert page.locator(f"tr.item[data-id='{case_id}']").count() == 0
    page.goto(f"{url}/audit")
    assert page.locator(f"a[href='/cases/{case_id}']").count() >= 2  # claimed + verdict
    assert "case.verdict" in page.locator("main").inner_text()
    # Undo with the keyboard, from the case page.
    page.goto(f"{url}/cases/{case_id}")
    with page.expect_navigation():
        page.keyboard.press("z")
    assert "undone" in page.locator(".flash").inner_text()
    assert store.labels_frame()["verdict"].iloc[-1] == "withdrawn"
    run_id = store.list_runs()[0].id
    page.goto(f"{url}/runs/{run_id}")
    assert page.locator("svg.chart").count() == 2
    assert "not a number" in page.locator("#quarantine").inner_text()
    _shot(page, "run")
    context.close()


def test_a_viewer_cannot_give_verdicts(server, browser):
    url, store = server["url"], server["store"]
    context, page = _login(browser, url, "vic")
    case_id = store.queue_page().items[0]["id"]
    page.goto(f"{url}/cases/{case_id}")
    assert page.locator("button.v").count() == 0
    assert "not give verdicts" in page.locator("section.decide").inner_text()
    before = len(store.labels_frame())
    page.keyboard.press("f")
    # Even a hand-made request with the viewer's own CSRF token is refused.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    status = page.evaluate(
        """async ([id, csrf]) => (await fetch(`/cases/${id}/verdict`, {method: 'POST',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'},
            body: `verdict=fraud&csrf_token=${encodeURIComponent(csrf)}`})).status""",
        [case_id, csrf],
    )
    assert status == 403
    assert len(store.labels_frame()) == before
    context.close()


def test_a_form_without_its_csrf_token_is_refused(server, browser):
    url, store = server["url"], server["store"]
    context, page = _login(browser, url, "bob")
    case_id = store.queue_page().items[-1]["id"]
    page.goto(f"{url}/cases/{case_id}")
    before = len(store.labels_frame())
    page.evaluate(
        "document.querySelectorAll('#verdict-form input[name=csrf_token]').forEach(e => e.remove())"
    )
    with page.expect_navigation():
        page.click("button.v.not_fraud")
    assert "CSRF" in page.locator("main").inner_text()
    assert len(store.labels_frame()) == before
    context.close()


def test_two_analysts_on_one_item_get_the_conflict_message(server, browser):
    url, store = server["url"], server["store"]
    (ctx_a, page_a), (ctx_b, page_b) = _login(browser, url, "ana"), _login(browser, url, "bob")
    case_id = store.queue_page().items[-1]["id"]
    page_a.goto(f"{url}/cases/{case_id}")
    page_b.goto(f"{url}/cases/{case_id}")
    page_a.keyboard.press("n")
    page_a.wait_for_url(re.compile(r"prev=|/queue"))
    with page_b.expect_navigation():
        page_b.keyboard.press("f")
    conflict = page_b.locator("#conflict")
    assert conflict.is_visible()
    assert "changed by someone else" in conflict.inner_text()
    _shot(page_b, "conflict")
    latest = store.labels_frame()
    verdicts = latest[latest["case_id"] == case_id]["verdict"].tolist()
    assert verdicts == ["not_fraud"] * len(verdicts) and verdicts
    page_a.goto(f"{url}/quality")
    assert "not_fraud" not in page_a.locator("#quality-table").inner_text()
    assert page_a.locator("#quality-table tbody tr").count() >= 1
    _shot(page_a, "quality")
    ctx_a.close()
    ctx_b.close()
