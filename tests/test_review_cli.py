"""`vigil users ...` (the contract other tools rely on) and the audit entries it leaves."""

from __future__ import annotations

from click.testing import CliRunner
from fastapi.testclient import TestClient

from pipelines.cli import main
from pipelines.settings import get_settings
from pipelines.store import ResultsStore
from review import create_app


def test_users_add_token_role_disable_through_the_cli(unique_name):
    runner = CliRunner()
    name = f"u{unique_name}"
    added = runner.invoke(
        main,
        ["users", "add", name, "--role", "viewer", "--password-stdin"],
        input="a long enough password\n",
    )
    assert added.exit_code == 0, added.output
    again = runner.invoke(
        main, ["users", "add", name, "--role", "viewer", "--password-stdin"], input="x" * 12
    )
    assert again.exit_code == 2 and "already exists" in again.output
    short = runner.invoke(
        main, ["users", "add", f"{name}b", "--role", "viewer", "--password-stdin"], input="short"
    )
    assert short.exit_code == 2 and "at least 10 characters" in short.output

    token = runner.invoke(main, ["users", "token", name])
    assert token.exit_code == 0 and len(token.output.strip().splitlines()) == 1
    store = ResultsStore(get_settings().resolved_database_url)
    api = TestClient(create_app(store), headers={"Authorization": f"Bearer {token.output.strip()}"})
    assert api.get("/api/me").json()["role"] == "viewer"

    assert runner.invoke(main, ["users", "set-role", name, "analyst"]).exit_code == 0
    assert api.get("/api/me").json()["role"] == "analyst"
    disabled = runner.invoke(main, ["users", "disable", name])
    assert disabled.exit_code == 0 and "disabled" in disabled.output
    assert api.get("/api/me").status_code == 401  # its tokens are revoked
    missing = runner.invoke(main, ["users", "disable", "nobody-here"])
    assert missing.exit_code == 2 and "no user" in missing.output

    actions = [a.action for a in store.audit_entries(entity="user", entity_id=name)]
    assert actions.count("user.changed") == 2 and "user.added" in actions
    listed = runner.invoke(main, ["users", "list", "--json"])
    assert f'"name": "{name}"' in listed.output
