"""How values read on the pages: times, shares, audit changes (Jinja filters), and the
small conversions the routes share."""

from __future__ import annotations

from datetime import UTC, datetime


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


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal, '–' when unknown."""
    return "–" if value is None else f"{value:.1%}"


def change(before: dict | None, after: dict | None) -> str:
    """'field: old → new' for what an audit entry changed (unchanged fields left out)."""
    before, after = before or {}, after or {}
    parts = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if old != new:
            parts.append(f"{key}: {'–' if old is None else old} → {'–' if new is None else new}")
    return "; ".join(parts)


def int_or_none(value) -> int | None:
    """A form field as an int, or None when it is empty or not a number."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
