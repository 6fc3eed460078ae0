"""`vigil review` and `vigil users`: the analysts' app and who may use it."""

from __future__ import annotations

import json
import sys

import click

from pipelines.cli.app import _actor, _fail, _store, main
from pipelines.settings import get_settings
from pipelines.store.vocabulary import Role


@main.command()
@click.option("--host", default=None, help="Bind address (default: VIGIL_REVIEW_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: VIGIL_REVIEW_PORT).")
def review(host, port) -> None:
    """Start the analysts' review app (queue, cases, verdicts, runs, quality)."""
    import uvicorn

    from review import create_app

    settings = get_settings()
    host, port = host or settings.review_host, port or settings.review_port
    app = create_app(_store(), settings)
    click.echo(f"vigil review on http://{host}:{port}/  (stop with Ctrl-C)")
    if not app.state.store.list_users():
        click.echo("no users yet: vigil users add NAME --role analyst --password-stdin")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@main.group()
def users() -> None:
    """Review-app users: viewer reads, analyst also gives verdicts, admin manages users."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice([role.value for role in Role]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--no-password", is_flag=True, help="API-token-only user (cannot log in).")
def users_add(name, role, password_stdin, no_password) -> None:
    """Add a user."""
    from pipelines.accounts import hash_password
    from pipelines.store.errors import ReviewError

    password_hash = None if no_password else hash_password(_read_password(password_stdin))
    try:
        _store().add_user(name, role, password_hash, actor=_actor())
    except ReviewError as exc:
        _fail(str(exc))
    click.echo(f"added {name} ({role})")


def _change_user(name: str, done: str, **changes) -> None:
    """Apply a user change through the store (audited there) and say what happened."""
    from pipelines.store.errors import ReviewError

    try:
        _store().update_user(name, actor=_actor(), **changes)
    except ReviewError as exc:
        _fail(str(exc))
    click.echo(done)


@users.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_set_password(name, password_stdin) -> None:
    """Set a user's password."""
    from pipelines.accounts import hash_password

    password_hash = hash_password(_read_password(password_stdin))
    _change_user(name, f"password of {name} changed", password_hash=password_hash)


@users.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice([role.value for role in Role]))
def users_set_role(name, role) -> None:
    """Change a user's role."""
    _change_user(name, f"{name} is now {role}", role=role)


@users.command("disable")
@click.argument("name")
def users_disable(name) -> None:
    """Disable a user: ends their sessions and revokes their API tokens."""
    _change_user(name, f"{name} disabled", disabled=True)


@users.command("enable")
@click.argument("name")
def users_enable(name) -> None:
    """Enable a disabled user again (tokens stay revoked: issue a new one)."""
    _change_user(name, f"{name} enabled", disabled=False)


@users.command("token")
@click.argument("name")
def users_token(name) -> None:
    """Print a new API token for the user (one line; only its hash is kept)."""
    from pipelines.store.errors import ReviewError

    try:
        click.echo(_store().create_token(name, actor=_actor()))
    except ReviewError as exc:
        _fail(str(exc))


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def users_list(as_json) -> None:
    """List users with their roles."""
    rows = [{"name": u.name, "role": u.role, "disabled": u.disabled} for u in _store().list_users()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']:24} {r['role']:8} {'disabled' if r['disabled'] else 'active'}")
