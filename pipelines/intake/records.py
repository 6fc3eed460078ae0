"""Validation of a few JSON records (``vigil api``) without pandas' per-call overhead.

:func:`~pipelines.intake.ingest.validate_batch` is built for chunks of 50,000 rows: a
few hundred whole-column pandas operations, about 25 ms whatever the row count. A
real-time request holds one record, so :func:`validate_records` types the common case
(ids and texts as strings, numbers as numbers, ISO 8601 times) in plain Python and builds
the clean frame once, column by column, with the dtypes ``validate_batch`` gives.

Anything it is not sure about (a value of another type, a number given as text, a time in
another format, a missing or duplicated id, mixed time zones, anything that would be
quarantined) makes it return ``None``, and the caller runs ``validate_batch``: the fast
path never decides a rejection and never types a value differently (a test compares the
two on generated records).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from pipelines.intake.ingest import MAX_ID_CHARS, QUARANTINE_COLUMNS, ValidationResult
from pipelines.intake.spec import DatasetSpec

#: The ISO 8601 forms whose parse by ``datetime.fromisoformat`` equals pandas' (seconds
#: at most to the microsecond, an optional Z or +hh:mm zone).
_ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?P<zone>Z|[+-]\d{2}:\d{2})?"
)
#: Integers beyond this lose digits as float64; pandas would type them otherwise.
_EXACT_INT = 2**53


def validate_records(records: list[dict[str, Any]], spec: DatasetSpec) -> ValidationResult | None:
    """The clean frame of ``records``, or ``None`` when the full validator must decide."""
    layout = _layout(spec)
    if not records or len(records) > 64:
        return None
    columns: dict[str, list] = {name: [] for name, _ in layout}
    seen: set[str] = set()
    zones: set[bool] = set()
    for record in records:
        for name, kind in layout:
            if name not in record:
                if kind == "label":
                    continue
                return None  # validate_batch names the missing column
            value = _typed(record[name], kind)
            if value is _REFUSED:
                return None
            if kind == "id":
                if value in seen:
                    return None
                seen.add(value)
            elif kind == "time":
                zones.add(value.tzinfo is not None)
            columns[name].append(value)
    if len(zones) > 1:
        return None
    labels_given = [len(columns[name]) for name, kind in layout if kind == "label"]
    if labels_given and labels_given[0] not in (0, len(records)):
        return None
    clean = pd.DataFrame(
        {name: _column(columns[name], kind) for name, kind in layout if columns[name]}
    )
    n = len(records)
    return ValidationResult(
        clean=clean, quarantined=_NOTHING, rows_in=n, clean_row_numbers=np.arange(1, n + 1)
    )


def record_layout(spec: DatasetSpec) -> list[tuple[str, str]]:
    """The columns :func:`typed_record` reads and how it types each (work it out once
    per spec, not per record)."""
    return _layout(spec)


def typed_record(
    record: dict[str, Any], spec: DatasetSpec, layout: list[tuple[str, str]] | None = None
) -> dict[str, Any] | None:
    """One record's values typed as :func:`validate_records` types them (column ->
    value: texts as str or ``pd.NA``, numbers as float, times as datetime), without a
    frame; ``None`` when the full validator must decide. ``layout``:
    :func:`record_layout` of ``spec``, when the caller keeps it."""
    typed: dict[str, Any] = {}
    for name, kind in layout or _layout(spec):
        if name not in record:
            if kind == "label":
                continue
            return None
        value = _typed(record[name], kind)
        if value is _REFUSED:
            return None
        typed[name] = value
    return typed


#: The (read-only) empty quarantine of every accepted request: building an empty frame
#: per request costs more than the rest of this module.
_NOTHING = pd.DataFrame(columns=QUARANTINE_COLUMNS)


class _Refused:
    """Marks a value the fast path leaves to ``validate_batch``."""


_REFUSED = _Refused()


def _typed(value: Any, kind: str) -> Any:
    if kind in ("id", "text", "entity"):
        if isinstance(value, str):
            text = value.strip()
        elif isinstance(value, int) and not isinstance(value, bool) and kind == "id":
            text = str(value)
        elif value is None and kind == "text":
            return None
        else:
            return _REFUSED
        if not text:
            return pd.NA if kind == "text" else _REFUSED
        if kind == "id" and len(text) > MAX_ID_CHARS:
            return _REFUSED
        return text
    if kind == "number":
        if value is None:
            return np.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _REFUSED
        if isinstance(value, int) and abs(value) >= _EXACT_INT:
            return _REFUSED
        number = float(value)
        return number if np.isfinite(number) else _REFUSED
    if kind == "label":
        return value if type(value) is int and value in (0, 1) else _REFUSED
    if kind == "time":
        if not isinstance(value, str):
            return _REFUSED
        text = value.strip()
        match = _ISO_TIME.fullmatch(text)
        if match is None:
            return _REFUSED
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if match.group("zone") else parsed
    raise AssertionError(kind)


def _column(values: list, kind: str) -> pd.Series:
    if kind == "number":
        return pd.Series(np.asarray(values, dtype="float64"))
    if kind == "label":
        return pd.Series(np.asarray(values, dtype="int64"))
    if kind == "time":
        if values[0].tzinfo is not None:
            naive = [v.replace(tzinfo=None) for v in values]
            return pd.Series(np.asarray(naive, dtype="datetime64[us]")).dt.tz_localize("UTC")
        return pd.Series(np.asarray(values, dtype="datetime64[us]"))
    return pd.Series(values, dtype=object)


def _layout(spec: DatasetSpec) -> list[tuple[str, str]]:
    """The clean frame's columns in ``validate_batch``'s order, each with how it is typed."""
    layout = [(spec.id_column, "id")]
    context = spec.context
    numeric = [*spec.numeric_features]
    if context:
        extra = (context.amount_column, context.latitude_column, context.longitude_column)
        numeric += [c for c in extra if c and c not in numeric]
    layout += [(c, "number") for c in numeric]
    layout += [(c, "text") for c in spec.categorical_features]
    if spec.label_column:
        layout.append((spec.label_column, "label"))
    named = {name for name, _ in layout}
    carried = (spec.entity_column, *spec.secondary_entity_columns, *spec.raw_context_columns)
    for column in (*carried, *spec.display_only_columns):
        if column and column not in named and column != spec.time_column:
            named.add(column)
            kind = "entity" if spec.is_sequence and column == spec.entity_column else "text"
            layout.append((column, kind))
    if spec.time_column:
        layout.append((spec.time_column, "time"))
    return layout
