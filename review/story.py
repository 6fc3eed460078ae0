"""An entity's story: its recent records as points in time, ready for the timeline chart.

The store hands over the entity's records as it kept them (flags with their snapshots,
and in sequence mode the kept history). Which field is the record's time and which its
amount is read from the records themselves: a field named like a time whose values read
as times, and a field named like an amount whose values are numbers. Where no amount is
found the chart shows the score; where no time is found, the records' order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

TIME_NAMES = ("timestamp", "time", "event_time", "datetime", "date", "created_at", "ts")
TIME_SUFFIXES = ("_at", "_time", "_ts", "timestamp", "_date")
AMOUNT_NAMES = ("amount", "amt", "value", "price", "total")
CURRENCY_NAMES = ("currency", "currency_code", "ccy")


@dataclass
class StoryPoint:
    """One record on the timeline."""

    record_id: str
    at: datetime | None
    value: float | None
    score: float | None
    flagged: bool
    verdict: str | None
    in_case: bool
    case_id: int | None


@dataclass
class Story:
    """The points oldest first, and what the axes show."""

    points: list[StoryPoint]
    time_column: str | None
    value_column: str | None  # None: the value is the score
    currency: str | None

    @property
    def value_label(self) -> str:
        if self.value_column is None:
            return "score"
        return self.value_column + (f" ({self.currency})" if self.currency else "")


def parse_time(value: object) -> datetime | None:
    """A record's time field as an aware UTC time, or None when it does not read as one."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and 8 <= len(value) <= 40 and value[:4].isdigit():
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def number(value: object) -> float | None:
    """A finite number, or None (text that reads as a number counts)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.replace(",", ""))
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _named_like(key: str, names: tuple[str, ...], suffixes: tuple[str, ...] = ()) -> int | None:
    """How well a field name matches (lower is better), None when it does not."""
    low = key.lower()
    if low in names:
        return names.index(low)
    if any(low.endswith(s) for s in suffixes):
        return len(names)
    if any(name in low for name in names[:1]):
        return len(names) + 1
    return None


def _pick(records: list[dict], names, suffixes, reads) -> str | None:
    """The best-named field whose values mostly read (``reads``) in these records."""
    keys = dict.fromkeys(k for r in records for k in r if not str(k).startswith("_"))
    ranked = sorted(
        (rank, i, key)
        for i, key in enumerate(keys)
        if (rank := _named_like(str(key), names, suffixes)) is not None
    )
    for _, _, key in ranked:
        present = [r[key] for r in records if r.get(key) is not None]
        if present and sum(reads(v) is not None for v in present) * 2 > len(present):
            return key
    return None


def entity_story(timeline: list[dict], case_record_ids: list[str]) -> Story:
    """The timeline's records as points, oldest first."""
    records = [e.get("record") or {} for e in timeline]
    time_column = _pick(records, TIME_NAMES, TIME_SUFFIXES, parse_time)
    value_column = _pick(records, AMOUNT_NAMES, ("_amount",), number)
    currency_column = _pick(
        records, CURRENCY_NAMES, (), lambda v: v if isinstance(v, str) else None
    )
    currencies = {
        str(r.get(currency_column)) for r in records if currency_column and r.get(currency_column)
    }
    mine = set(case_record_ids)
    points = []
    for event, record in zip(timeline, records, strict=True):
        score = number(event.get("score"))
        label = event.get("label") or {}
        points.append(
            StoryPoint(
                record_id=str(event.get("record_id")),
                at=parse_time(record.get(time_column)) if time_column else None,
                value=number(record.get(value_column)) if value_column else score,
                score=score,
                flagged=bool(event.get("flagged")),
                verdict=label.get("verdict"),
                in_case=str(event.get("record_id")) in mine,
                case_id=event.get("case_id"),
            )
        )
    if time_column:
        points.sort(key=lambda p: (p.at is None, p.at or datetime.min.replace(tzinfo=UTC)))
    else:  # the store lists the newest first
        points.reverse()
    return Story(
        points=points,
        time_column=time_column,
        value_column=value_column,
        currency=currencies.pop() if len(currencies) == 1 else None,
    )


def story_summary(story: Story) -> dict:
    """What the chart says in words: how many records over what span, how many flagged,
    the verdicts given, and this case's largest value against the others' median."""
    points = story.points
    times = [p.at for p in points if p.at is not None]
    verdicts: dict[str, int] = {}
    for p in points:
        if p.verdict:
            verdicts[p.verdict] = verdicts.get(p.verdict, 0) + 1
    others = sorted(p.value for p in points if not p.in_case and p.value is not None)
    mine = [p.value for p in points if p.in_case and p.value is not None]
    median = None
    if others:
        middle = len(others) // 2
        median = others[middle] if len(others) % 2 else (others[middle - 1] + others[middle]) / 2
    peak = max(mine) if mine else None
    return {
        "records": len(points),
        "first": min(times) if times else None,
        "last": max(times) if times else None,
        "flagged": sum(p.flagged for p in points),
        "verdicts": verdicts,
        "median_others": median,
        "case_peak": peak,
        "ratio": peak / median if peak is not None and median and median > 0 else None,
    }
