"""Values the app hands a browser and must recognise as its own when they come back
(flash messages, the device cookie): HMAC-SHA256 signed and time-stamped.

The key is the ``review_secret_key`` setting; without one each app process draws a
random key, so what it signed is not recognised after a restart or by another process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs a text with its purpose and time; ``unsign`` gives it back only when the
    signature, the purpose and the age all hold."""

    def __init__(self, key: bytes | str | None = None) -> None:
        if key is None:
            key = secrets.token_bytes(32)
        self._key = key.encode() if isinstance(key, str) else key

    def _mac(self, purpose: str, body: str) -> str:
        message = f"{purpose}\x1f{body}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def sign(self, purpose: str, value: str) -> str:
        body = f"{_b64(value.encode())}.{int(time.time())}"
        return f"{body}.{self._mac(purpose, body)}"

    def unsign(self, purpose: str, token: str | None, *, max_age_seconds: float) -> str | None:
        if not token or token.count(".") != 2:
            return None
        encoded, stamp, mac = token.split(".")
        body = f"{encoded}.{stamp}"
        if not hmac.compare_digest(mac, self._mac(purpose, body)) or not stamp.isdigit():
            return None
        if time.time() - int(stamp) > max_age_seconds:
            return None
        try:
            return _unb64(encoded).decode()
        except (ValueError, UnicodeDecodeError):
            return None
