"""Reasons against normal: what a flagged record's value is, next to what normal looks like.

A reason that only names a column ("country = AE") leaves the analyst to guess whether
AE is odd. Each reading here pairs the record's value with a reference: the training
distribution (the encoder's per-column summaries, see
:func:`detectors.encoding.column_summary`) or, in sequence mode, the entity's own history
(:mod:`detectors.context.reasons`). A reason is a dict an app or an export can use as
data, and its ``text`` is rendered from that dict:

``feature``, ``value`` (the record's value), ``contribution`` and ``share`` (of the
anomaly score), ``observed`` (the value as the sentence writes it), ``normal`` (the
reference in words), ``reference`` (the figures it was built from, kept with the flag so
the sentence stays true after the model is retrained), ``kind``, ``level`` and ``text``.

The order an analyst reads them in is by ``level`` first, then by share (:func:`rank`):

0. ``new``: a value never seen in training, beyond every training value, or new for
   this entity (its first payment in this country);
1. ``strong``: beyond 99.9% of training values, a rare category, an amount at least
   5x (or at most a fifth of) the entity's usual amount;
2. ``unusual``: beyond 99% of training values, a category under 1% of training records,
   at least 2x (or at most half) the entity's usual amount;
3. ``mild``: everything else (within the usual range, or nothing to compare with).

So a never-seen country with 20% of the score is read before a slightly high amount with
60%; the share stays in every sentence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Names of the levels, in the order an analyst reads them.
LEVELS = ("new", "strong", "unusual", "mild")
NEW, STRONG, UNUSUAL, MILD = range(4)

#: Characters that would reorder the sentence around a value (bidirectional embeddings,
#: overrides, isolates, marks) or break its line: written as visible escapes instead.
_CONTROLS = {
    code: f"[U+{code:04X}]"
    for code in (
        0x061C,
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        *range(0x00, 0x20),
        0x7F,
    )
}


@dataclass
class Reading:
    """What one reason says before its share is known: a ``statement`` about the record
    ("country AE") and, where known, what ``normal`` looks like ("0.01% of training
    records"), with the ``reference`` figures behind it."""

    kind: str
    level: int
    statement: str
    observed: str | None = None
    normal: str | None = None
    reference: dict[str, Any] = field(default_factory=dict)


def visible(value: object) -> str:
    """A value as a sentence may quote it: control characters that could reverse or break
    the sentence around it are written as visible escapes ("[U+202E]")."""
    text = "missing" if value is None else format_value(value)
    return text.translate(_CONTROLS)


def format_value(value: object) -> str:
    """A number with thousands separators (two decimals unless whole), else the text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "missing"
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
    return str(value)


def percent(share: float) -> str:
    """A share as few digits as still tell it apart from zero: 91%, 4.5%, 0.01%."""
    if share >= 0.1 or share == 0:
        return f"{share:.0%}"
    if share >= 0.01:
        return f"{share:.1%}"
    return f"{share:.2%}" if share >= 0.0001 else "under 0.01%"


def reason(
    feature: str, value: object, contribution: float, share: float, reading: Reading
) -> dict[str, Any]:
    """The reason dict of one reading (see the module docstring), its text rendered."""
    return {
        "feature": feature,
        "value": value,
        "contribution": round(contribution, 6),
        "share": round(share, 4),
        "observed": reading.observed,
        "normal": reading.normal,
        "reference": reading.reference,
        "kind": reading.kind,
        "level": LEVELS[reading.level],
        "text": render(reading.statement, reading.normal, share),
    }


def render(statement: str, normal: str | None, share: float) -> str:
    """'country AE: 0.01% of training records (91% of the anomaly score)'."""
    said = f"{statement}: {normal}" if normal else statement
    return f"{said} ({share:.0%} of the anomaly score)"


def rank(reasons: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reasons in the order an analyst reads them: by level (new, strong, unusual, mild),
    then by share of the score. Reasons without a level (a re-ranker's) come first: they
    sum up the others."""
    order = {name: i for i, name in enumerate(LEVELS)}

    def key(r: dict[str, Any]) -> tuple[int, float]:
        level = r.get("level")
        return (order.get(level, -1) if level else -1, -float(r.get("share") or 0.0))

    return sorted(reasons, key=key)


def training_reading(
    feature: str,
    value: object,
    summary: Mapping[str, Any] | None,
    *,
    noun: str = "record",
    bounds: tuple[float, float] | None = None,
) -> Reading:
    """A raw column's value against its training summary (``summary`` as the encoder keeps
    it; None for a column it has none of: the value alone is said)."""
    observed = visible(value)
    statement = f"{feature} {observed}"
    if not summary:
        return Reading("value", MILD, statement, observed)
    rows = int(summary.get("rows") or 0)
    base = {"source": "training", "rows": rows}
    if value is None:
        missing = float(summary.get("missing") or 0.0)
        reference = {**base, "missing": missing}
        if missing <= 0:
            return Reading(
                "missing", STRONG, statement, observed, "never missing in training", reference
            )
        return Reading(
            "missing",
            MILD,
            statement,
            observed,
            f"missing in {percent(missing)} of training {noun}s",
            reference,
        )
    if "shares" in summary:
        return _category_reading(statement, observed, str(value), summary, base, noun)
    number = _number(value)
    if number is None:
        return Reading("value", MILD, statement, observed)
    if bounds is not None:
        low, high = bounds
        if number > high:
            return Reading(
                "beyond_range",
                NEW,
                statement,
                observed,
                f"above every normal value seen in training (max {high:,.2f})",
                {**base, "max": high},
            )
        if number < low:
            return Reading(
                "beyond_range",
                NEW,
                statement,
                observed,
                f"below every normal value seen in training (min {low:,.2f})",
                {**base, "min": low},
            )
    placed = quantile_phrase(number, summary, noun, format_value)
    if placed is None:
        return Reading("value", MILD, statement, observed)
    level, normal, reference = placed
    return Reading("training_percentile", level, statement, observed, normal, {**base, **reference})


def _category_reading(
    statement: str, observed: str, value: str, summary: Mapping[str, Any], base: dict, noun: str
) -> Reading:
    shares: Mapping[str, float] = summary.get("shares") or {}
    if value in shares:
        share = float(shares[value])
        level = UNUSUAL if share < 0.01 else MILD
        normal = f"{percent(share)} of training {noun}s"
        return Reading(
            "training_share", level, statement, observed, normal, {**base, "share": share}
        )
    other = float(summary.get("other") or 0.0)
    if other <= 0:
        return Reading(
            "never_seen", NEW, statement, observed, "never seen in training", {**base, "share": 0.0}
        )
    normal = (
        f"rare in training (not among its {len(shares)} common values; all rarer values "
        f"together: {percent(other)} of training {noun}s)"
    )
    return Reading(
        "rare_category", STRONG, statement, observed, normal, {**base, "rare_share": other}
    )


def quantile_phrase(
    number: float, summary: Mapping[str, Any], noun: str, shown=format_value
) -> tuple[int, str, dict[str, Any]] | None:
    """Where ``number`` lies in a numeric summary: (level, 'usually ≤ 1,310 (99.9% of
    training records)', the percentile cited); None without percentiles."""
    percentiles = summary.get("percentiles") or {}
    if not percentiles:
        return None
    q = {float(k): float(v) for k, v in percentiles.items()}
    for share, level in ((99.9, STRONG), (99.0, UNUSUAL), (95.0, MILD)):
        if share in q and number > q[share]:
            return (
                level,
                f"usually ≤ {shown(q[share])} ({share:g}% of training {noun}s)",
                {"percentile": share, "at_most": q[share]},
            )
    for low, level in ((0.1, STRONG), (1.0, UNUSUAL), (5.0, MILD)):
        if low in q and number < q[low]:
            return (
                level,
                f"usually ≥ {shown(q[low])} ({100 - low:g}% of training {noun}s)",
                {"percentile": low, "at_least": q[low]},
            )
    if 5.0 in q and 95.0 in q:
        return (
            MILD,
            f"usual range {shown(q[5.0])}–{shown(q[95.0])} (90% of training {noun}s)",
            {"percentile": [5.0, 95.0], "range": [q[5.0], q[95.0]]},
        )
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
