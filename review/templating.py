"""The Jinja2 templates of the pages, and the two ways a page is answered: a rendered
page for the signed-in user, or the error page."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates

from pipelines.store.cases import VERDICTS
from pipelines.store.vocabulary import REASON_CODES
from review import charts, formatting
from review.deps import get_signer
from review.flash import clear_flash, take_flash

HERE = Path(__file__).parent

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.finalize = formatting.visible_controls
templates.env.globals.update(charts=charts, reason_codes=REASON_CODES, verdicts=VERDICTS)
templates.env.filters["when"] = formatting.when
templates.env.filters["pct"] = formatting.pct
templates.env.filters["amount"] = formatting.amount
templates.env.filters["amount_text"] = formatting.amount_text
templates.env.filters["change"] = formatting.change
templates.env.filters["long_text"] = formatting.long_text
templates.env.filters["reason_code"] = formatting.reason_code
templates.env.filters["record_time"] = formatting.record_time
templates.env.filters["shown_fields"] = formatting.shown_fields
templates.env.filters["money"] = formatting.money
templates.env.filters["payment_time"] = formatting.payment_time
templates.env.filters["priority_reason"] = formatting.priority_reason


def render(request: Request, name: str, context: dict, status: int = 200):
    """A page for the signed-in user (the router's authentication set the principal),
    with the message the user's last action left (server-side flash), shown once."""
    principal = request.state.principal
    message = take_flash(request, get_signer(request), principal.name)
    response = templates.TemplateResponse(
        request,
        name,
        {"user": principal, "csrf": principal.csrf, "msg": message, **context},
        status_code=status,
    )
    clear_flash(request, response)
    return response


def render_error(request: Request, message: str, status: int):
    """The error page, with the user's menu when they are signed in."""
    principal = getattr(request.state, "principal", None)
    return templates.TemplateResponse(
        request,
        "error.html",
        {"user": principal, "message": message, "status": status},
        status_code=status,
    )
