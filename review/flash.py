"""Messages the app shows once after an action ("Case #12: fraud."): server-side flash.

The action puts its message in a short-lived cookie, signed for the signed-in user, and
redirects; the next page shows it and deletes the cookie. A message therefore cannot be
planted with a link (a URL parameter would let anyone make the app say "session expired,
log in at ..."), nor with a cookie the app did not sign for this user.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from review.auth import set_cookie
from review.signing import Signer

FLASH_COOKIE = "vigil_flash"
FLASH_SECONDS = 120


def _purpose(user: str) -> str:
    return f"flash:{user}"


@dataclass(frozen=True)
class Flash:
    """What an action needs to leave a message for the next page (see ``FlashDep``)."""

    signer: Signer
    user: str
    secure: bool

    def redirect(self, url: str, message: str) -> RedirectResponse:
        """A 303 to ``url`` that shows ``message`` there."""
        response = RedirectResponse(url, status_code=303)
        set_cookie(
            response,
            FLASH_COOKIE,
            self.signer.sign(_purpose(self.user), message),
            max_age=FLASH_SECONDS,
            secure=self.secure,
        )
        return response


def take_flash(request: Request, signer: Signer, user: str) -> str | None:
    """The message waiting for ``user``, if the app signed one for them."""
    return signer.unsign(
        _purpose(user), request.cookies.get(FLASH_COOKIE), max_age_seconds=FLASH_SECONDS
    )


def clear_flash(request: Request, response: Response) -> None:
    """Delete the message cookie once a page was rendered (shown or not)."""
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE)
