"""Accounts and the audit trail: users, API tokens, browser sessions, failed logins.

Split from the review store (``review.py``) so each file holds one job; the review,
label and operations mixins write the audit trail through :meth:`_audit`. Passwords never
reach this layer: callers hash them (``pipelines.accounts``); tokens and session cookies
are kept only as SHA-256 hashes.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pipelines.store.errors import NotFound, ReviewError, aware, now_utc, sha256
from pipelines.store.models import ApiToken, AuditEvent, User, WebSession

ROLES = ("viewer", "analyst", "admin")


class AccountStoreMixin:
    """Mixed into ``ResultsStore`` (through the review mixin); relies on its ``session()``."""

    engine: sa.engine.Engine

    def session(self):  # pragma: no cover - provided by ResultsStore
        raise NotImplementedError

    # -- audit ------------------------------------------------------------------------

    @staticmethod
    def _audit(
        session: Session,
        actor: str,
        action: str,
        entity: str,
        entity_id: object,
        *,
        before: dict | None = None,
        after: dict | None = None,
        detail: dict | None = None,
    ) -> None:
        session.add(
            AuditEvent(
                actor=actor,
                action=action,
                entity=entity,
                entity_id=str(entity_id),
                before=before,
                after=after,
                detail=detail or {},
            )
        )

    def audit_entries(
        self, *, entity: str | None = None, entity_id: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        with self.session() as session:
            query = sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if entity:
                query = query.where(AuditEvent.entity == entity)
            if entity_id is not None:
                query = query.where(AuditEvent.entity_id == str(entity_id))
            return list(session.scalars(query))

    # -- users, tokens, sessions --------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str | None, *, actor: str) -> User:
        if role not in ROLES:
            raise ReviewError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if (
            not name
            or len(name) > 64
            or not name.replace("-", "").replace("_", "").replace(".", "").isalnum()
        ):
            raise ReviewError("user name: 1-64 letters, digits, '.', '-' or '_'")
        with self.session() as session:
            if session.scalar(sa.select(User.id).where(User.name == name)) is not None:
                raise ReviewError(f"user {name!r} already exists")
            user = User(name=name, role=role, password_hash=password_hash, disabled=False)
            session.add(user)
            session.flush()
            self._audit(
                session, actor, "user.added", "user", name, after={"role": role, "disabled": False}
            )
            return user

    def get_user(self, name: str) -> User | None:
        with self.session() as session:
            return session.scalar(sa.select(User).where(User.name == name))

    def list_users(self) -> list[User]:
        with self.session() as session:
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
        if role is not None and role not in ROLES:
            raise ReviewError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        with self.session() as session:
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
            self._audit(session, actor, "user.changed", "user", name, before=before, after=after)
            return user

    def create_token(self, name: str, *, actor: str) -> str:
        """A new API token for the user; returned once, only its hash is kept."""
        raw = "vgl_" + secrets.token_urlsafe(32)
        with self.session() as session:
            user = session.scalar(sa.select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user {name!r}")
            if user.disabled:
                raise ReviewError(f"user {name!r} is disabled")
            session.add(ApiToken(user_id=user.id, token_hash=sha256(raw)))
            self._audit(session, actor, "user.token_created", "user", name, after={"token": "new"})
        return raw

    def user_for_token(self, raw: str) -> User | None:
        with self.session() as session:
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
        with self.session() as session:
            session.add(
                WebSession(
                    session_hash=sha256(raw),
                    user_id=user.id,
                    csrf_token=csrf,
                    expires_at=now_utc() + ttl,
                )
            )
            self._audit(session, user.name, "user.login", "user", user.name)
        return raw, csrf

    def session_user(self, raw: str) -> tuple[User, str] | None:
        """The (user, CSRF token) of a live session cookie, or None."""
        with self.session() as session:
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
        with self.session() as session:
            session.execute(sa.delete(WebSession).where(WebSession.session_hash == sha256(raw)))

    def record_failed_login(self, name: str, client: str) -> None:
        with self.session() as session:
            self._audit(
                session,
                name[:64] or "?",
                "user.login_failed",
                "user",
                name[:64],
                detail={"client": client},
            )

    def failed_logins_since(self, name: str, since: datetime) -> int:
        with self.session() as session:
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
