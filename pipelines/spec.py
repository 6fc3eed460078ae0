"""Data-set spec: the one place that decides columns and their types.

A spec is YAML in ``data/specs/`` loaded into :class:`DatasetSpec`. The label column is
used for evaluation and to drop known anomalies from training, never as a model input.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator


class SpecError(ValueError):
    """A spec file that cannot be used, with the file named in the message."""


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
    entity_column: str | None = Field(default=None, description="Sequence data: e.g. card_id.")
    time_column: str | None = Field(default=None, description="Sequence data: event time.")

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError(f"name must be letters, digits, '-' or '_' (got {value!r})")
        return value

    @model_validator(mode="after")
    def _columns_consistent(self) -> DatasetSpec:
        features = self.feature_columns
        if not features:
            raise ValueError("spec lists no numeric_features or categorical_features")
        duplicated = {c for c in features if features.count(c) > 1}
        if duplicated:
            raise ValueError(f"columns listed twice as features: {sorted(duplicated)}")
        for role, column in (("id_column", self.id_column), ("label_column", self.label_column)):
            if column is not None and column in features:
                raise ValueError(f"{role} {column!r} must not also be a feature")
        return self

    @property
    def feature_columns(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features]

    @property
    def required_columns(self) -> list[str]:
        """Columns a batch to score must have (the label is optional at scoring time)."""
        extra = [c for c in (self.entity_column, self.time_column) if c]
        return [
            self.id_column,
            *self.feature_columns,
            *[c for c in extra if c not in self.feature_columns],
        ]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(exclude_none=True), sort_keys=False)

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
    max_categorical_cardinality: int = 50,
) -> DatasetSpec:
    """Propose a spec from a sample: a starting point a person then edits.

    Numbers become numeric features; text and booleans become categorical when they have
    few distinct values. High-cardinality text (free text, other ids) is left out, since
    one-hot encoding it would only memorise values.
    """
    for role, column in (
        ("--id-col", id_column),
        ("--label-col", label_column),
        ("--entity-col", entity_column),
        ("--time-col", time_column),
    ):
        if column is not None and column not in frame.columns:
            raise SpecError(f"{role} {column!r} is not a column (columns: {list(frame.columns)})")
    reserved = {id_column, label_column, entity_column, time_column}
    numeric: list[str] = []
    categorical: list[str] = []
    for column in frame.columns:
        if column in reserved:
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
    return DatasetSpec(
        name=name,
        id_column=id_column,
        label_column=label_column,
        numeric_features=numeric,
        categorical_features=categorical,
        entity_column=entity_column,
        time_column=time_column,
    )
