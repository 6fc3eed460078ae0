"""How values read on the pages: times, shares, audit changes (Jinja filters), and the
small conversions the routes share."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup

from pipelines.store.vocabulary import REASON_CODES
from review.story import parse_time

#: Characters that reorder the text around them (embeddings, overrides, isolates, marks).
#: Data carrying one could reverse the app's own sentence; each is shown as a visible
#: escape instead, so the analyst also sees that the data held it.
BIDI_CONTROLS = {
    code: f"[U+{code:04X}]"
    for code in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}
#: Banners and messages longer than this show their start, with the rest on demand.
SHORT_TEXT = 240


def when(value: datetime | None) -> str:
    """A time as 'YYYY-MM-DD HH:MM UTC' (a naive time is taken to be UTC)."""
    if value is None:
        return "–"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def amount(value: float | None) -> str:
    """A money amount with thousands separators and two decimals ('9,999,999.00')."""
    return "–" if value is None else f"{value:,.2f}"


def amount_text(value: object) -> str:
    """A record's amount field as an amount when it reads as a number, else as it is."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    try:
        return amount(float(value))
    except (TypeError, ValueError):
        return str(value)


def money(value: object, currency: str | None = None) -> str:
    """An amount with its currency in front ('USD 9,999,999.00'); the amount alone when
    the currency is unknown, '–' when there is no amount."""
    shown = amount_text(value)
    return f"{currency} {shown}" if currency and shown != "–" else shown


def whole_money(value: float | None, currency: str | None = None) -> str:
    """An amount at stake to the unit ('USD 9,999,999'): a ranking figure, not a ledger."""
    if value is None:
        return "–"
    shown = f"{value:,.0f}"
    return f"{currency} {shown}" if currency else shown


def priority_reason(reason: dict | None) -> str:
    """Why a case ranks where it does: 'priority: 1.05 × USD 9,999,999' (the score over
    the threshold times the amount at stake) or 'priority: 2.10 × the threshold'."""
    if not reason:
        return ""
    ratio = f"{reason['score_ratio']:.2f}"
    if reason.get("stake") is None:
        return f"priority: score {ratio} × the threshold"
    return f"priority: score {ratio} × {whole_money(reason['stake'], reason.get('stake_currency'))}"


def payment_time(value: object, short: bool = False) -> Markup:
    """A payment's time in UTC, with a slot the page's script fills with the analyst's
    own zone (browser-local); without the script the UTC time stands alone. ``short``
    (the queue's rows): to the minute, and the local time without its zone's name."""
    if value is None or value == "":
        return Markup("–")
    moment = parse_time(value)
    if moment is None:
        return Markup("<bdi>{}</bdi>").format(visible_controls(str(value)))
    iso = moment.isoformat().replace("+00:00", "Z")
    shown = moment.strftime("%Y-%m-%d %H:%M UTC" if short else "%Y-%m-%d %H:%M:%S UTC")
    return Markup(
        '<time class="utc" datetime="{}">{}</time>'
        '<span class="local-time muted small" data-utc="{}"{}></span>'
    ).format(iso, shown, iso, Markup(' data-short="1"') if short else "")


def visible_controls(value: object) -> object:
    """Every value a page prints (the templates' ``finalize``): bidirectional control
    characters replaced by visible escapes; markup stays markup, other values untouched."""
    if isinstance(value, str) and not value.isascii():
        cleaned = value.translate(BIDI_CONTROLS)
        return Markup(cleaned) if isinstance(value, Markup) else cleaned
    return value


def long_text(value: object, limit: int = SHORT_TEXT) -> Markup:
    """A text that may run long (a banner, an alarm, a message): short ones as they are,
    longer ones cut at ``limit`` characters with the full text in a <details> to open.
    Each text is isolated (<bdi>) so right-to-left data cannot reorder what is around it."""
    text = visible_controls("" if value is None else str(value))
    if len(text) <= limit:
        return Markup("<bdi>{}</bdi>").format(text)
    return Markup(
        '<details class="long"><summary><bdi>{}</bdi>… <span class="muted small">'
        '(all {:,} characters)</span></summary><div class="full"><bdi>{}</bdi></div></details>'
    ).format(text[:limit], len(text), text)


def shown_fields(record: dict | None) -> list[tuple[str, object, int | None]]:
    """A record snapshot as the analyst sees it: (field, value, full length when the
    snapshot cut the value). Internal fields (a leading underscore, such as the
    ``_truncated`` note of cut fields) are left out."""
    record = record or {}
    cut = record.get("_truncated") if isinstance(record.get("_truncated"), dict) else {}
    return [
        (key, value, cut.get(key)) for key, value in record.items() if not str(key).startswith("_")
    ]


def record_time(value: object) -> str:
    """A record's time field as 'YYYY-MM-DD HH:MM UTC' when it reads as a time, else as
    it is (a time without a zone is taken to be UTC, as the scoring runs read it)."""
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-":
        try:
            return when(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    return "–" if value is None else str(value)


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal, '–' when unknown."""
    return "–" if value is None else f"{value:.1%}"


def change(before: dict | None, after: dict | None) -> str:
    """'field: old → new' for what an audit entry changed (unchanged fields left out);
    times read as 'YYYY-MM-DD HH:MM UTC', not as the ISO text the entry keeps."""
    before, after = before or {}, after or {}
    parts = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if old != new:
            parts.append(f"{key}: {_audit_value(old)} → {_audit_value(new)}")
    return "; ".join(parts)


def _audit_value(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, str) and len(value) >= 16 and value[4:5] == "-" and "T" in value:
        try:
            return when(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    return str(value)


def reason_code(detail: dict | None) -> str:
    """An audit entry's reason code as the analyst chose it ('Card testing pattern
    (card_testing)'); empty when the entry has none."""
    code = (detail or {}).get("reason_code")
    if not code:
        return ""
    text = REASON_CODES.get(code)
    return f"{text} ({code})" if text else str(code)


def int_or_none(value) -> int | None:
    """A form field as an int, or None when it is empty or not a number."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
