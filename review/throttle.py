"""Login throttling that slows a guesser without letting them lock a real user out.

Three limits, as mature login systems layer them (OWASP's authentication advice,
Microsoft's smart lockout, device cookies):

- per address and user name (``review_login_attempts`` in 5 minutes): one address
  guessing one user's password; only that address is refused for that user, so an
  attacker elsewhere cannot lock the user out;
- per address (``review_login_attempts_per_address`` in 5 minutes): one address trying
  many user names (password spraying);
- per user name, from all addresses (``review_login_attempts_per_account`` in an hour):
  many addresses guessing one user. It refuses only browsers that never signed in as
  that user: a browser holding the user's signed device cookie (set at each successful
  login) still may, so the real user keeps working during the attack.

Failures are counted from the audit trail (each one is audited with its address), so
every app process and every restart sees the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from pipelines.store.errors import now_utc

FAILED = "user.login_failed"
WINDOW = timedelta(minutes=5)
ACCOUNT_WINDOW = timedelta(hours=1)
# Audit rows read per check; the windows are short, so the latest rows hold them.
SCAN = 1000


@dataclass(frozen=True)
class LoginLimits:
    per_address_and_user: int
    per_address: int
    per_account: int

    @classmethod
    def from_settings(cls, settings: VigilSettings) -> LoginLimits:
        return cls(
            per_address_and_user=settings.review_login_attempts,
            per_address=settings.review_login_attempts_per_address,
            per_account=settings.review_login_attempts_per_account,
        )


def login_refusal(
    store: ResultsStore,
    name: str,
    address: str,
    limits: LoginLimits,
    *,
    known_browser: bool,
) -> str | None:
    """Why a login for ``name`` from ``address`` is refused now, or None to let it try.

    ``known_browser``: the request carries this user's device cookie.
    """
    name = name[:64]
    since = now_utc() - WINDOW
    mine = _recent_failures(store.audit_entries(entity="user", entity_id=name, limit=SCAN), since)
    if sum(1 for e in mine if _client(e) == address) >= limits.per_address_and_user:
        return "too many failed logins for this user from your address; wait 5 minutes"
    everyone = _recent_failures(store.audit_entries(entity="user", limit=SCAN), since)
    if sum(1 for e in everyone if _client(e) == address) >= limits.per_address:
        return "too many failed logins from your address; wait 5 minutes"
    if not known_browser:
        failures = store.failed_logins_since(name, now_utc() - ACCOUNT_WINDOW)
        if failures >= limits.per_account:
            return (
                "too many failed logins for this user; sign in from a browser you used "
                "before, or wait an hour"
            )
    return None


def _recent_failures(entries, since: datetime) -> list:
    return [e for e in entries if e.action == FAILED and _aware(e.at) >= since]


def _client(entry) -> str | None:
    return (entry.detail or {}).get("client")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
