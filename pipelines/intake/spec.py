"""Data-set spec: the one place that decides columns and their types.

A spec is YAML in ``data/specs/`` loaded into :class:`DatasetSpec`. The label column is
used for evaluation and to drop known anomalies from training, never as a model input.

In sequence mode the spec's ``context`` section *is* the detectors' configuration
(:class:`detectors.context.ContextConfig`), not a copy of it: the spec hands it the
entity, time and secondary entity columns it names at its top level, and leaves them
out of the section when it is written, so spec files read as they always have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from detectors.context import HISTORY_COUNT_CAP, ContextConfig
from pipelines.intake.display import DisplayColumns, QueuePriority, propose_display


class SpecError(ValueError):
    """A spec file that cannot be used, with the file named in the message."""


#: Columns the spec names at its top level and hands to its context section.
SPEC_COLUMNS = ("entity_column", "time_column", "secondary_entity_columns")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class DatasetSpec(BaseModel):
    """Columns of one data set and what each one is for."""

    name: str = Field(description="Short identifier, used in registered model names.")
    description: str = ""
    id_column: str
    label_column: str | None = Field(
        default=None, description="1 = anomaly, 0 = normal; evaluation only, never a feature."
    )
    numeric_features: list[str] = Field(default_factory=list)
    categorical_features: list[str] = Field(default_factory=list)
    range_checked_features: list[str] = Field(
        default_factory=list,
        description="Numeric features whose values beyond the range seen in normal training "
        "data are novel by definition (an amount no normal customer ever reaches).",
    )
    entity_column: str | None = Field(default=None, description="Sequence data: e.g. card_id.")
    time_column: str | None = Field(default=None, description="Sequence data: event time.")
    secondary_entity_columns: list[str] = Field(
        default_factory=list,
        description="Sequence data: other entities with a history (terminal, merchant id).",
    )
    context: ContextConfig | None = Field(
        default=None,
        description="Sequence mode: per-entity context features (needs entity and time); "
        "the detectors read this section as it is.",
    )
    display_columns: DisplayColumns | None = Field(
        default=None,
        description="The payment analysts see: entity, time, merchant, amount, currency.",
    )
    priority: QueuePriority | None = Field(
        default=None,
        description="How the review queue ranks: optionally weighed by the amount at stake.",
    )

    @model_validator(mode="before")
    @classmethod
    def _context_gets_the_spec_columns(cls, data: Any) -> Any:
        """The spec decides the entity, time and secondary entity columns; its context
        section reads them from it. A section built with them (in Python) hands them to a
        spec that does not name them; where both name one, they must agree."""
        if not isinstance(data, dict) or data.get("context") is None:
            return data
        context = data["context"]
        if isinstance(context, ContextConfig):
            section = context.model_dump(exclude_unset=True)
        elif isinstance(context, Mapping):
            section = dict(context)
        else:
            return data  # not a section: the field's own validation says why
        data = dict(data)
        for key in SPEC_COLUMNS:
            spec_value, own = data.get(key), section.get(key)
            if own is None:
                if spec_value is not None:
                    section[key] = spec_value
            elif spec_value is None:
                data[key] = own
            elif _plain(own) != _plain(spec_value):
                raise ValueError(f"context.{key} {own!r} differs from the spec's {spec_value!r}")
        if not (section.get("entity_column") and section.get("time_column")):
            raise ValueError("context (sequence mode) needs entity_column and time_column")
        data["context"] = section
        return data

    @field_serializer("context", mode="wrap")
    def _context_without_the_spec_columns(self, context: Any, handler: Any) -> Any:
        """Written out, the section leaves the spec's columns to the spec."""
        dumped = handler(context)
        if isinstance(dumped, dict):
            for key in SPEC_COLUMNS:
                dumped.pop(key, None)
        return dumped

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError(f"name must be letters, digits, '-' or '_' (got {value!r})")
        return value

    @model_validator(mode="after")
    def _columns_consistent(self) -> DatasetSpec:
        features = self.feature_columns
        if not features and self.context is None:
            raise ValueError("spec lists no numeric_features or categorical_features")
        duplicated = {c for c in features if features.count(c) > 1}
        if duplicated:
            raise ValueError(f"columns listed twice as features: {sorted(duplicated)}")
        unchecked = [c for c in self.range_checked_features if c not in self.numeric_features]
        if unchecked:
            raise ValueError(f"range_checked_features must be numeric_features: {unchecked}")
        for role, column in (("id_column", self.id_column), ("label_column", self.label_column)):
            if column is not None and column in features:
                raise ValueError(f"{role} {column!r} must not also be a feature")
        if self.priority and self.priority.weigh_by_amount:
            if not (self.display_columns and self.display_columns.amount):
                raise ValueError("priority.weigh_by_amount needs display_columns.amount")
        if self.display_columns and self.label_column in self.display_columns.columns:
            raise ValueError(f"label_column {self.label_column!r} must not be shown to analysts")
        return self

    @property
    def feature_columns(self) -> list[str]:
        """Raw feature columns as they appear in the data."""
        return [*self.numeric_features, *self.categorical_features]

    @property
    def is_sequence(self) -> bool:
        return self.context is not None

    @property
    def context_feature_columns(self) -> list[str]:
        return self.context.feature_names() if self.context else []

    @property
    def model_feature_columns(self) -> list[str]:
        """What the detectors see: raw features, then context features in sequence mode."""
        return [*self.feature_columns, *self.context_feature_columns]

    @property
    def raw_context_columns(self) -> list[str]:
        """Raw columns the context features read (kept per record as entity history)."""
        return self.context.raw_columns if self.context else []

    @property
    def required_columns(self) -> list[str]:
        """Columns a batch to score must have (the label is optional at scoring time)."""
        extra = [c for c in (self.entity_column, self.time_column, *self.raw_context_columns) if c]
        extra += self.display_only_columns
        columns = [self.id_column, *self.feature_columns]
        for column in extra:
            if column not in columns:
                columns.append(column)
        return columns

    @property
    def display_only_columns(self) -> list[str]:
        """Display columns no other role reads: carried into the snapshot as text."""
        if self.display_columns is None:
            return []
        named = {
            self.id_column, self.entity_column, self.time_column, *self.feature_columns,
            *self.secondary_entity_columns, *self.raw_context_columns,
        }  # fmt: skip
        return [c for c in self.display_columns.columns if c not in named]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path


def load_spec(path: str | Path) -> DatasetSpec:
    """Read a spec YAML file; errors name the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: spec file not found") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping of spec fields")
    try:
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise SpecError(f"{path}: {details}") from exc


def infer_spec(
    frame: pd.DataFrame,
    *,
    name: str,
    id_column: str,
    label_column: str | None = None,
    entity_column: str | None = None,
    time_column: str | None = None,
    ignore_columns: list[str] | None = None,
    max_categorical_cardinality: int = 50,
) -> DatasetSpec:
    """Propose a spec from a sample: a starting point a person then edits.

    Numbers become numeric features; text and booleans become categorical when they have
    few distinct values. High-cardinality text (free text, other ids) is left out, since
    one-hot encoding it would only memorise values. With an entity and a time column the
    spec is in sequence mode and context features are proposed from the names and types
    found (see :func:`propose_context`). The columns analysts see (``display_columns``)
    are proposed by name and type (see :func:`pipelines.intake.display.propose_display`).
    """
    ignore_columns = list(ignore_columns or [])
    for role, column in (
        ("--id-col", id_column),
        ("--label-col", label_column),
        ("--entity-col", entity_column),
        ("--time-col", time_column),
        *(("--ignore-col", c) for c in ignore_columns),
    ):
        if column is not None and column not in frame.columns:
            raise SpecError(f"{role} {column!r} is not a column (columns: {list(frame.columns)})")
    if (entity_column is None) != (time_column is None):
        raise SpecError("sequence mode needs both --entity-col and --time-col")
    reserved = {id_column, label_column, entity_column, time_column, *ignore_columns}
    sequence = entity_column is not None
    if sequence:
        reserved |= set(_time_like_columns(frame, time_column, reserved))
    numeric: list[str] = []
    categorical: list[str] = []
    id_like: list[str] = []
    for column in frame.columns:
        if column in reserved:
            continue
        if sequence and _looks_like_id(column):
            id_like.append(column)
            continue
        series = frame[column]
        if pd.api.types.is_bool_dtype(series):
            categorical.append(column)
        elif pd.api.types.is_numeric_dtype(series):
            numeric.append(column)
        elif pd.api.types.is_datetime64_any_dtype(series):
            continue
        else:
            series = series.replace("", None)
            converted = pd.to_numeric(series, errors="coerce")
            if converted.notna().sum() >= 0.95 * series.notna().sum() and series.notna().any():
                numeric.append(column)
            elif series.nunique(dropna=True) <= max_categorical_cardinality:
                categorical.append(column)
    context = None
    if sequence:
        assert entity_column is not None and time_column is not None
        context = propose_context(
            frame, numeric, categorical, id_like, entity_column=entity_column,
            time_column=time_column,
        )  # fmt: skip
        coordinates = {context.latitude_column, context.longitude_column}
        numeric = [c for c in numeric if c not in coordinates]
    ranged = [context.amount_column] if context and context.amount_column in numeric else []
    label_free = frame.drop(columns=[c for c in (label_column,) if c])
    display = propose_display(label_free, entity_column=entity_column, time_column=time_column)
    return DatasetSpec(
        name=name,
        id_column=id_column,
        label_column=label_column,
        numeric_features=numeric,
        categorical_features=categorical,
        range_checked_features=ranged,
        entity_column=entity_column,
        time_column=time_column,
        context=context,
        display_columns=display,
    )


_AMOUNT_WORDS = ("amount", "amt", "value", "price", "total", "sum")
_LATITUDE_WORDS = ("lat", "latitude")
_LONGITUDE_WORDS = ("lon", "lng", "long", "longitude")
_NOVELTY_WORDS = ("merchant", "category", "mcc", "country", "city", "channel", "terminal")
_LOCATED_WORDS = ("present", "located", "physical", "inperson", "pos")


def propose_context(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    id_like: list[str],
    *,
    entity_column: str,
    time_column: str,
) -> ContextConfig:
    """Context features for the raw columns found, by name and type.

    Amount: a non-negative numeric column named like an amount. Coordinates: numeric
    columns named lat/lon (distance and speed from the previous located record), and a
    two-valued column named like card_present / located says which records they count for;
    with coordinates, the highest speed in the last hour too (``travel_window``).
    Secondary entities: other id columns (terminal, merchant), which also get a
    'first time at this ...' flag, as do categorical columns named like a merchant,
    category or country; with such flags, the records at values new to the entity are
    also counted over the last hour and six hours (``novelty_windows``: a takeover's run
    of new shops).
    """

    def words(column: str) -> list[str]:
        return [w for w in re.split(r"[^a-z0-9]+", column.lower()) if w]

    amount = next(
        (
            c
            for c in numeric
            if any(w in _AMOUNT_WORDS for w in words(c))
            and pd.to_numeric(frame[c], errors="coerce").min() >= 0
        ),
        None,
    )
    latitude = next((c for c in numeric if any(w in _LATITUDE_WORDS for w in words(c))), None)
    longitude = next((c for c in numeric if any(w in _LONGITUDE_WORDS for w in words(c))), None)
    if latitude is None or longitude is None:
        latitude = longitude = None
    located = next(
        (
            c
            for c in [*numeric, *categorical]
            if latitude and any(w in _LOCATED_WORDS for w in words(c)) and frame[c].nunique() <= 2
        ),
        None,
    )
    novelty = [*id_like]
    novelty += [c for c in categorical if any(w in _NOVELTY_WORDS for w in words(c))]
    return ContextConfig(
        entity_column=entity_column,
        time_column=time_column,
        secondary_entity_columns=list(id_like),
        amount_column=amount,
        latitude_column=latitude,
        longitude_column=longitude,
        located_column=located,
        travel_window="1h" if latitude else None,
        novelty_columns=novelty,
        novelty_windows=["1h", "6h"] if novelty else [],
        history_count_cap=HISTORY_COUNT_CAP,
        hour_offset=_has_time_of_day(frame[time_column]),
    )


def _has_time_of_day(times: pd.Series) -> bool:
    """Whether the times carry a time of day (not only dates or day counters): only then
    can a record be at an hour unusual for its entity (``hour_offset``)."""
    numeric = None
    if not pd.api.types.is_datetime64_any_dtype(times):
        numeric = pd.to_numeric(times, errors="coerce")
    if numeric is not None and numeric.notna().mean() >= 0.95:
        seconds = numeric.dropna().to_numpy(dtype="float64")
    else:
        parsed = pd.to_datetime(times, errors="coerce", format="mixed").dropna()
        seconds = parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
        seconds = seconds.astype("datetime64[ns]").astype("int64").to_numpy() / 1e9
    return bool(len(seconds)) and bool((seconds % 86400.0 != 0.0).mean() > 0.5)


def _looks_like_id(column: str) -> bool:
    lowered = column.lower()
    camel = len(column) > 2 and column.endswith(("Id", "ID")) and column[-3].islower()
    return lowered == "id" or lowered.endswith(("_id", " id", "-id")) or camel


def _time_like_columns(frame: pd.DataFrame, time_column: str | None, reserved: set) -> list[str]:
    """Numeric columns that only restate the time (seconds or day counters): as features
    they would let a model key on *when* a record is, which never repeats."""
    if time_column is None:
        return []
    raw_time = frame[time_column]
    time = pd.to_numeric(raw_time, errors="coerce")
    if time.isna().all():
        time = pd.to_datetime(raw_time, errors="coerce", format="mixed").astype("int64")
    out = []
    for column in frame.columns:
        if column in reserved:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().mean() < 0.95 or values.nunique() < 3:
            continue
        if abs(values.corr(time.astype("float64"), method="spearman")) > 0.99:
            out.append(column)
    return out
