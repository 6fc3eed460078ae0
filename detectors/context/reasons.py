"""Context features in words: the sentence an analyst reads for a flagged record."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from detectors.context.config import PREFIX, ContextConfig, _seconds, _slug
from detectors.context.features import _MIN_HOURS_FOR_SPEED


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
