"""Context features in words: the sentence an analyst reads for a flagged record, and
(:func:`context_reading`) what normal looks like for this entity: its own history where
the record's context holds it ("amount 12.0× this card's median over 30 days (35.00)",
"new for this card"), else the training distribution of the context feature ("7 payments
in 10 minutes: usually ≤ 2 (99.9% of training payments)")."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from detectors.context.config import PREFIX, ContextConfig, _seconds, _slug
from detectors.context.features import _MIN_HOURS_FOR_SPEED
from detectors.reasons import (
    MILD,
    NEW,
    STRONG,
    UNUSUAL,
    Reading,
    format_value,
    percent,
    quantile_phrase,
    visible,
)

#: Amount ratios against the entity's own history, most robust first: (feature, what the
#: amount is compared with).
_AMOUNT_REFERENCES = (
    ("amount_median_ratio", "median"),
    ("amount_baseline_ratio", "usual amount"),
    ("amount_ratio", "average"),
)


def context_reading(
    feature: str,
    values: Mapping,
    config: ContextConfig,
    summaries: Mapping[str, Mapping[str, Any]],
) -> Reading | None:
    """One reason of a sequence-mode record against normal, or None where neither the
    entity's history nor the context says more than the training distribution does.

    ``feature`` is a context feature or a raw column the context knows (the amount, a
    novelty or profile column); ``values`` maps the record's feature and raw column names
    to its values; ``summaries`` maps feature names to their training summaries."""
    if not feature.startswith(PREFIX):
        return _raw_column_reading(feature, values, config)
    name = feature.removeprefix(PREFIX)
    statement = describe_context(feature, values, config)
    if statement is None:
        return None
    value = _number(values.get(feature))
    noun = config.event_noun
    if name == "amount_baseline_z":
        name = "amount_baseline_ratio"
    for ratio_name, compared in _AMOUNT_REFERENCES:
        if name == ratio_name:
            reading = _amount_reading(values, config, ratio_name, compared)
            if reading is not None:
                return reading
            return Reading("entity_history", MILD, statement, reference={"source": "history"})
    if value is None:
        return Reading("entity_history", MILD, statement, reference={"source": "history"})
    reference: dict[str, Any] = {"source": "history", "value": value}
    if name.startswith("share_"):
        level = NEW if value <= 0 else UNUSUAL if value < 0.1 else MILD
        return Reading("entity_share", level, statement, reference=reference)
    if name == "amount_z":
        size = abs(value)
        level = STRONG if size >= 5 else UNUSUAL if size >= 3 else MILD
        return Reading("entity_history", level, statement, reference=reference)
    if name.endswith("_amount_ratio") or name.startswith("amount_level_"):
        return Reading("entity_history", _ratio_level(value), statement, reference=reference)
    if name in ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos"):
        return Reading("calendar", MILD, statement)
    for column in config.novelty_columns:
        if name == f"new_{_slug(column)}":
            return _novelty_reading(feature, value, statement, values, config, summaries, column)
    summary = summaries.get(feature)
    placed = quantile_phrase(value, summary, noun, _shown_for(name)) if summary else None
    if placed is None:
        return Reading("context", MILD, statement)
    level, normal, figures = placed
    rows = int(summary.get("rows") or 0)
    return Reading(
        "context_percentile",
        level,
        statement,
        format_value(value),
        normal,
        {"source": "training", "rows": rows, **figures},
    )


def _raw_column_reading(feature: str, values: Mapping, config: ContextConfig) -> Reading | None:
    """The amount against the entity's own amounts; a novelty or profile column's value
    against the entity's own values. None where the history is too short to say."""
    if feature == config.amount_column:
        for ratio_name, compared in _AMOUNT_REFERENCES:
            reading = _amount_reading(values, config, ratio_name, compared)
            if reading is not None:
                return reading
        return None
    earlier = _number(values.get(f"{PREFIX}history_count"))
    if earlier is None or earlier < config.min_history:
        return None
    entity, noun = config.entity_noun, config.event_noun
    history = _duration_words(config.history)
    observed = visible(values.get(feature))
    label = _column_words(feature)
    statement = f"{feature} {observed}"
    if feature in config.profile_columns:
        share = _number(values.get(f"{PREFIX}share_{_slug(feature)}"))
        if share is not None:
            level = NEW if share <= 0 else UNUSUAL if share < 0.1 else MILD
            normal = (
                _new_for(feature, config)
                if share <= 0
                else f"{percent(share)} of this {entity}'s {noun}s in {history}"
            )
            reference = {"source": "history", "share": share, "history": config.history}
            return Reading("entity_share", level, statement, observed, normal, reference)
    if feature in config.novelty_columns:
        new = _number(values.get(f"{PREFIX}new_{_slug(feature)}"))
        if new is not None:
            reference = {"source": "history", "new": new >= 0.5, "history": config.history}
            if new >= 0.5:
                normal = _new_for(feature, config)
                return Reading("entity_new", NEW, statement, observed, normal, reference)
            normal = f"this {entity} has used this {label} before (in {history})"
            return Reading("entity_new", MILD, statement, observed, normal, reference)
    return None


def _amount_reading(
    values: Mapping, config: ContextConfig, ratio_name: str, compared: str
) -> Reading | None:
    """'amount 4,200.00: 12.0× this card's median over 30 days (350.00)'; None where the
    entity has no such reference (too little history)."""
    ratio = _number(values.get(f"{PREFIX}{ratio_name}"))
    if ratio is None or (ratio_name == "amount_baseline_ratio" and not config.baseline_gap):
        return None
    amount = _number(values.get(config.amount_column)) if config.amount_column else None
    history = _duration_words(config.history)
    span = f"over {history}"
    if ratio_name == "amount_baseline_ratio":
        span = f"({_duration_words(config.baseline_gap)} to {history} ago)"
    entity = config.entity_noun
    reference: dict[str, Any] = {"source": "history", "ratio": ratio, "history": config.history}
    normal = f"{_times(ratio)} this {entity}'s {compared} {span}"
    if amount is not None and ratio > 0:
        usual = amount / ratio
        reference[compared.replace(" ", "_")] = round(usual, 2)
        normal += f" ({usual:,.2f})"
    observed = format_value(amount) if amount is not None else None
    statement = f"amount {observed}" if observed else "amount"
    return Reading("entity_amount", _ratio_level(ratio), statement, observed, normal, reference)


def _novelty_reading(
    feature: str,
    value: float,
    statement: str,
    values: Mapping,
    config: ContextConfig,
    summaries: Mapping[str, Mapping[str, Any]],
    column: str,
) -> Reading:
    """First at this value for the entity, said with the raw value when the record holds
    it, and how common such firsts were in training."""
    raw = values.get(column)
    if value < 0.5:
        return Reading("entity_new", MILD, statement, reference={"source": "history", "new": False})
    reference: dict[str, Any] = {"source": "history", "new": True, "history": config.history}
    said: list[str] = []
    observed = visible(raw) if raw is not None else None
    if observed is not None:
        said.append(_new_for(column, config))
        statement = f"{column} {observed}"
    summary = summaries.get(feature) or {}
    mean = summary.get("mean")
    if isinstance(mean, int | float):
        reference["training_share"] = float(mean)
        said.append(
            f"{percent(float(mean))} of training {config.event_noun}s were at a "
            f"{_column_words(column)} new to their {config.entity_noun}"
        )
    return Reading("entity_new", NEW, statement, observed, "; ".join(said) or None, reference)


def _new_for(column: str, config: ContextConfig) -> str:
    """'new for this card (no earlier payment with this merchant in 30 days)'."""
    return (
        f"new for this {config.entity_noun} (no earlier {config.event_noun} with this "
        f"{_column_words(column)} in {_duration_words(config.history)})"
    )


def _ratio_level(ratio: float) -> int:
    if ratio >= 5 or ratio <= 0.2:
        return STRONG
    if ratio >= 2 or ratio <= 0.5:
        return UNUSUAL
    return MILD


def _times(ratio: float) -> str:
    if ratio < 0.1:
        return f"{ratio:.2f}×"
    return f"{ratio:,.1f}×" if ratio < 100 else f"{ratio:,.0f}×"


def _shown_for(name: str) -> Callable[[float], str]:
    """How a context feature's training figures read: counts whole, sums as money,
    gaps as durations, distances in km."""
    if name == "secs_since_prev":
        return _duration
    if name.startswith("amount_sum_"):
        return lambda v: f"{v:,.2f}"
    if "count" in name:
        return lambda v: f"{v:,.0f}"
    if name.startswith("kmh_"):
        return lambda v: f"{v:,.0f} km/h"
    if name.startswith("km_"):
        return lambda v: f"{v:,.0f} km"
    return lambda v: f"{v:,.2f}"


def describe_context(feature: str, values: Mapping, config: ContextConfig) -> str | None:
    """A sentence an analyst reads for one context feature of one record, or None.

    ``values`` maps feature (and raw column) names to this record's values, so a sentence
    can combine several (distance with the time gap, say).
    """
    if not feature.startswith(PREFIX):
        return None
    value = _number(values.get(feature))
    noun, entity = config.event_noun, config.entity_noun
    name = feature.removeprefix(PREFIX)
    history = _duration_words(config.history)
    if value is None:
        if name == "secs_since_prev":
            return f"first {noun} of this {entity} in {history}"
        if name in ("amount_ratio", "amount_z"):
            return f"no earlier {noun} of this {entity} in {history} to compare the amount with"
        if name in ("amount_baseline_ratio", "amount_baseline_z"):
            return f"no baseline {noun}s of this {entity} to compare the amount with"
        return None
    for window in config.windows:
        if name == f"count_{_slug(window)}":
            return f"{_count(value, noun)} in {_duration_words(window)}"
        if name == f"amount_sum_{_slug(window)}":
            count = _number(values.get(f"{PREFIX}count_{_slug(window)}"))
            over = f" over {_count(count, noun)}" if count is not None else ""
            return f"{_money(value)} in {_duration_words(window)}{over}"
    for column in config.secondary_entity_columns:
        label = _column_words(column)
        for window in config.secondary_windows:
            if name == f"{_slug(column)}_count_{_slug(window)}":
                return f"{_count(value, noun)} at this {label} in {_duration_words(window)}"
        if name == f"{_slug(column)}_amount_ratio":
            return f"amount {value:,.1f}x this {label}'s average over {history}"
    for column in config.novelty_columns:
        for window in config.novelty_windows:
            if name == f"new_{_slug(column)}_count_{_slug(window)}":
                return (
                    f"{_count(value, noun)} at a {_column_words(column)} new to this {entity} "
                    f"in {_duration_words(window)}"
                )
            if name == f"new_{_slug(column)}_rate_{_slug(window)}":
                which = "unlocated " if config.novelty_rate == "unlocated" else ""
                return (
                    f"{which}{noun}s at a {_column_words(column)} new to this {entity} in "
                    f"{_duration_words(window)}: {value:,.1f}x its own rate of them"
                )
    for column in config.profile_columns:
        if name == f"share_{_slug(column)}":
            if value <= 0:
                return f"this {entity} has not used this {_column_words(column)} in {history}"
            label = _column_words(column)
            return f"{value:.0%} of this {entity}'s {noun}s in {history} at this {label}"
    if name == "share_hour":
        if value <= 0:
            return f"no {noun} of this {entity} within an hour of this time of day in {history}"
        return (
            f"{value:.0%} of this {entity}'s {noun}s in {history} "
            "within an hour of this time of day"
        )
    if name == "hour_offset":
        return (
            f"time of day {value:,.1f}x this {entity}'s usual spread away from its usual "
            f"hour (over {history})"
        )
    if config.travel_window and name == f"kmh_max_{_slug(config.travel_window)}":
        return (
            f"a jump at {value:,.0f} km/h between this {entity}'s located {noun}s "
            f"in the last {_duration_words(config.travel_window)}"
        )
    for window in config.level_windows:
        if name == f"amount_level_{_slug(window)}":
            return (
                f"{noun}s in the last {_duration_words(window)} average {value:,.1f}x this "
                f"{entity}'s earlier amounts (up to {history})"
            )
    if name == "amount_median_ratio":
        return f"amount {value:,.1f}x this {entity}'s median over {history}"
    for column in config.novelty_columns:
        if name == f"new_{_slug(column)}":
            if value >= 0.5:
                return f"first {noun} at this {_column_words(column)} in {history}"
            return f"{noun} at a {_column_words(column)} seen before"
    if name == "secs_since_prev":
        return f"{_duration(value)} after the previous {noun}"
    if name == "history_count":
        cap = config.history_count_cap
        if cap and value >= cap:
            return f"{cap} or more earlier {noun}s of this {entity} in {history}"
        return f"{_count(value, 'earlier ' + noun)} of this {entity} in {history}"
    if name == "amount_ratio":
        return f"amount {value:,.1f}x this {entity}'s average over {history}"
    if name in ("amount_baseline_ratio", "amount_baseline_z") and config.baseline_gap:
        ratio = _number(values.get(f"{PREFIX}amount_baseline_ratio"))
        span = f"{_duration_words(config.baseline_gap)} to {history} ago"
        if ratio is None:
            return None
        return f"amount {ratio:,.1f}x this {entity}'s usual amount ({span})"
    if name == "amount_z":
        return f"amount {value:+,.1f} standard deviations from this {entity}'s {history} history"
    if name in ("hour_sin", "hour_cos"):
        sin, cos = (
            _number(values.get(f"{PREFIX}hour_sin")),
            _number(values.get(f"{PREFIX}hour_cos")),
        )
        if sin is None or cos is None:
            return None
        minutes = round((math.atan2(sin, cos) / (2 * math.pi) * 24 * 60) % (24 * 60))
        return f"at {minutes // 60:02d}:{minutes % 60:02d}, an unusual time of day"
    if name in ("weekday_sin", "weekday_cos"):
        return f"on an unusual day of the week for this {entity}"
    if name in ("km_from_prev", "kmh_from_prev"):
        km = _number(values.get(f"{PREFIX}km_from_prev"))
        kmh = _number(values.get(f"{PREFIX}kmh_from_prev"))
        if km is None:
            return None
        text = f"{km:,.0f} km from the previous {noun}"
        if kmh is not None and kmh > 0:
            hours = max(km / kmh, _MIN_HOURS_FOR_SPEED)
            text += f" {_duration(hours * 3600)} earlier ({kmh:,.0f} km/h)"
        return text
    return None


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _count(value: float, noun: str) -> str:
    count = int(round(value))
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _money(value: float) -> str:
    return f"{value:,.2f} spent"


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _duration_words(text: str) -> str:
    seconds = _seconds(text)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" + ("" if count == 1 else "s")
    return text


def _column_words(column: str) -> str:
    words = re.sub(r"(_id|_ID|Id|ID)$", "", column).replace("_", " ").strip()
    return words.lower() or column
