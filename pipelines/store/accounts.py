"""Accounts: users, API tokens, browser sessions, failed logins.

Passwords never reach this layer: callers hash them (``pipelines.accounts``); tokens and
session cookies are kept only as SHA-256 hashes. Every change is an audit entry.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from pipelines.store.audit import record_audit
from pipelines.store.database import Repository
from pipelines.store.errors import NotFound, ReviewError, aware, now_utc, sha256
from pipelines.store.models import ApiToken, AuditEvent, User, WebSession
from pipelines.store.vocabulary import Role

#: The role names, as the review app and the CLI list them.
ROLES = tuple(role.value for role in Role)


class AccountRepository(Repository):
    """Users, API tokens, browser sessions and failed logins."""

    # -- users, tokens, sessions --------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str | None, *, actor: str) -> User:
        _check_role(role)
        if (
            not name
            or len(name) > 64
            or not name.replace("-", "").replace("_", "").replace(".", "").isalnum()
        ):
            raise ReviewError("user name: 1-64 letters, digits, '.', '-' or '_'")
        with self.db.session() as session:
            if session.scalar(sa.select(User.id).where(User.name == name)) is not None:
                raise ReviewError(f"user {name!r} already exists")
            user = User(name=name, role=role, password_hash=password_hash, disabled=False)
            session.add(user)
            session.flush()
            record_audit(
                session, actor, "user.added", "user", name, after={"role": role, "disabled": False}
            )
            return user

    def get_user(self, name: str) -> User | None:
        with self.db.session() as session:
            return session.scalar(sa.select(User).where(User.name == name))

    def list_users(self) -> list[User]:
        with self.db.session() as session:
            return list(session.scalars(sa.select(User).order_by(User.name)))

    def update_user(
        self,
        name: str,
        *,
        actor: str,
        role: str | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> User:
        """Change a user's role, disabled flag or password; disabling also ends their
        sessions and revokes their tokens."""
        if role is not None:
            _check_role(role)
        with self.db.session() as session:
            user = session.scalar(sa.select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user {name!r}")
            before = {"role": user.role, "disabled": user.disabled}
            if role is not None:
                user.role = role
            if disabled is not None:
                user.disabled = disabled
            if password_hash is not None:
                user.password_hash = password_hash
            user.updated_at = now_utc()
            if disabled:
                session.execute(sa.delete(WebSession).where(WebSession.user_id == user.id))
                session.execute(
                    sa.update(ApiToken)
                    .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                    .values(revoked_at=now_utc())
                )
            after = {"role": user.role, "disabled": user.disabled}
            if password_hash is not None:
                after["password"] = "changed"
            record_audit(session, actor, "user.changed", "user", name, before=before, after=after)
            return user

    def create_token(self, name: str, *, actor: str) -> str:
        """A new API token for the user; returned once, only its hash is kept."""
        raw = "vgl_" + secrets.token_urlsafe(32)
        with self.db.session() as session:
            user = session.scalar(sa.select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user {name!r}")
            if user.disabled:
                raise ReviewError(f"user {name!r} is disabled")
            session.add(ApiToken(user_id=user.id, token_hash=sha256(raw)))
            record_audit(session, actor, "user.token_created", "user", name, after={"token": "new"})
        return raw

    def user_for_token(self, raw: str) -> User | None:
        with self.db.session() as session:
            row = session.execute(
                sa.select(User, ApiToken)
                .join(ApiToken, ApiToken.user_id == User.id)
                .where(ApiToken.token_hash == sha256(raw), ApiToken.revoked_at.is_(None))
            ).one_or_none()
            if row is None or row[0].disabled:
                return None
            row[1].last_used_at = now_utc()
            return row[0]

    def create_session(self, user: User, *, ttl: timedelta) -> tuple[str, str]:
        """Start a browser session: returns (cookie value, CSRF token)."""
        raw, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.db.session() as session:
            session.add(
                WebSession(
                    session_hash=sha256(raw),
                    user_id=user.id,
                    csrf_token=csrf,
                    expires_at=now_utc() + ttl,
                )
            )
            record_audit(session, user.name, "user.login", "user", user.name)
        return raw, csrf

    def session_user(self, raw: str) -> tuple[User, str] | None:
        """The (user, CSRF token) of a live session cookie, or None."""
        with self.db.session() as session:
            row = session.execute(
                sa.select(User, WebSession)
                .join(WebSession, WebSession.user_id == User.id)
                .where(WebSession.session_hash == sha256(raw))
            ).one_or_none()
            if row is None:
                return None
            user, web = row
            if user.disabled or aware(web.expires_at) < now_utc():
                return None
            return user, web.csrf_token

    def end_session(self, raw: str) -> None:
        with self.db.session() as session:
            session.execute(sa.delete(WebSession).where(WebSession.session_hash == sha256(raw)))

    def record_failed_login(self, name: str, client: str) -> None:
        with self.db.session() as session:
            record_audit(
                session,
                name[:64] or "?",
                "user.login_failed",
                "user",
                name[:64],
                detail={"client": client},
            )

    def failed_logins_since(self, name: str, since: datetime) -> int:
        with self.db.session() as session:
            return int(
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(AuditEvent)
                    .where(
                        AuditEvent.action == "user.login_failed",
                        AuditEvent.entity_id == name[:64],
                        AuditEvent.at >= since,
                    )
                )
            )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ReviewError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
