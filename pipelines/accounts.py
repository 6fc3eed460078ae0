"""Password hashing for review-app users (argon2 through pwdlib).

Lives below the store and the app so the CLI (`vigil users`) and the web app hash the
same way; the store only ever sees hashes.
"""

from __future__ import annotations

from functools import lru_cache

from pwdlib import PasswordHash

MIN_PASSWORD_LENGTH = 10


@lru_cache(maxsize=1)
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()


def hash_password(password: str) -> str:
    """An argon2 hash; refuses passwords too short to survive a guess."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher().hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """True when the password matches; a user without a password never logs in."""
    if not password_hash:
        # Spend the same time as a real check, so a missing user is not told apart by timing.
        _hasher().verify(password, _dummy_hash())
        return False
    try:
        return _hasher().verify(password, password_hash)
    except Exception:  # noqa: BLE001 - a malformed stored hash is a failed login, not a crash
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash("vigil-dummy-password")
