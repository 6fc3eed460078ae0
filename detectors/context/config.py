"""The context configuration: which context features to build from which raw columns,
and the durations and names they are built with."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

PREFIX = "ctx_"


#: The cap `spec init` proposes for the entity's count of earlier records: enough to say
#: "new or established", and reached inside any training period of a few days.
HISTORY_COUNT_CAP = 10
#: ``hour_offset`` stops here: past six spreads an hour is simply "never this card's",
#: and the rare normal values up to twelve (a tight card's night subscription) made the
#: column's skew sit at the encoder's log threshold, so whether it was logged (which
#: shrinks the far values a detector must see) flipped from one data set to the next.
HOUR_OFFSET_CAP = 6.0


class ContextConfig(BaseModel):
    """Which context features to build from which raw columns.

    This is the sequence-mode section of a data-set spec (``context:`` in its YAML), and
    the detectors read it as it is. The spec names the entity, time and secondary entity
    columns at its top level and hands them to this section; in a notebook they are given
    here. Durations (``windows``, ``history``, ...) are pandas durations ("10min", "1h",
    "1d", "7d", "30d"). ``history`` bounds every look-back, and is the state a scorer
    must keep per entity.
    """

    model_config = ConfigDict(frozen=True)

    entity_column: str = Field(description="The entity whose history is context (card_id).")
    time_column: str = Field(description="Event time (numbers in seconds, or datetimes).")
    secondary_entity_columns: list[str] = Field(
        default_factory=list,
        description="Other entities with a history (terminal, merchant id): their recent "
        "activity is counted across the main entities.",
    )
    amount_column: str | None = Field(
        default=None, description="Amounts: window sums and amount vs the entity's history."
    )
    windows: list[str] = Field(
        default_factory=lambda: ["10min", "1h", "1D", "7D"],
        description="Trailing windows for counts and amount sums.",
    )
    history: str = Field(default="30D", description="Longest look-back of any feature.")
    baseline_gap: str | None = Field(
        default=None,
        description="Also compare amounts with the entity's baseline: its records between "
        "history and baseline_gap ago. A takeover that has been spending for days inflates "
        "the recent average it is compared with; a baseline older than the gap stays clean.",
    )
    novelty_columns: list[str] = Field(
        default_factory=list, description="'First time at this value' flags (merchant, country)."
    )
    latitude_column: str | None = None
    longitude_column: str | None = None
    located_column: str | None = Field(
        default=None,
        description="Column that is 1/true where the record was made where the entity "
        "physically was (card-present); only those count for distance and speed: an online "
        "payment carries the merchant's head-office coordinates, which say nothing about "
        "where the card is.",
    )
    travel_window: str | None = Field(
        default=None,
        description="Also the highest implied speed among the entity's located records in "
        "this trailing window (this one included): the second payment in a far city, "
        "minutes after the first, is slow from it but sits in a window with an impossible "
        "jump.",
    )
    profile_columns: list[str] = Field(
        default_factory=list,
        description="Profile: for each column, the share of the entity's earlier records "
        "(in history) with this record's value (0 = a value it never uses).",
    )
    profile_hours: bool = Field(
        default=False,
        description="Profile: share of the entity's earlier records within one hour of "
        "this time of day.",
    )
    hour_offset: bool = Field(
        default=False,
        description="How far this record's time of day is from the entity's usual one: "
        "the circular distance (hours) to the mean hour of its earlier records in history, "
        "over their circular spread (at least one hour), capped at 6. A payment at 03:00 on "
        "a card that pays around 14:00 is far; on a card that pays at any hour it is not.",
    )
    novelty_windows: list[str] = Field(
        default_factory=list,
        description="Windows over which the records that were first at their novelty value "
        "are counted (a run of payments at merchants new to the card).",
    )
    novelty_rate: Literal["all", "unlocated"] | None = Field(
        default=None,
        description="For each novelty column and window, the entity's records first at their "
        "value in the window against its own rate of them: count / ((earlier count + 1) x "
        "window / (history / 2 - window)), the earlier count taken over [t - history / 2, "
        "t - window]. 'unlocated': only records not located (card-not-present payments at "
        "new merchants, a takeover's run); 'all': every record. A card that often tries "
        "new web shops is not surprising when it tries one more.",
    )
    robust_baseline: bool = Field(
        default=False,
        description="Amount / median of the entity's earlier amounts in history: robust to "
        "a minority of inflated amounts (a takeover) and to one huge past payment.",
    )
    level_windows: list[str] = Field(
        default_factory=list,
        description="For each window, the entity's mean amount over the window (this record "
        "included) / its mean over the older records of history: a compromised period "
        "raises a whole run of amounts, including the ones that alone stay in range.",
    )
    min_history: int = Field(
        default=3,
        ge=1,
        description="Earlier records needed before an amount is compared with them: against "
        "one or two records a ratio says more about chance than about the entity.",
    )
    history_count_cap: int | None = Field(
        default=None,
        ge=1,
        description="The entity's count of earlier records in history is given up to this "
        "many (None: uncapped; `spec init` proposes HISTORY_COUNT_CAP; a spec without it, "
        "e.g. inside a model trained before it existed, keeps the uncapped count). "
        "Uncapped, the count grows through any training period "
        "shorter than history while it stays at its full level when scoring: every scored "
        "record of a busy entity then looks unlike training. Capped, it says 'new or "
        "established' the same way in both.",
    )
    calendar: bool = Field(default=True, description="Hour of day and weekday, cyclic.")
    secondary_windows: list[str] = Field(
        default_factory=lambda: ["1D", "7D"],
        description="Trailing windows for the secondary entities' counts.",
    )
    event_noun: str = Field(default="record", description="Word for one record in reasons.")
    entity_noun: str = Field(default="entity", description="Word for the entity in reasons.")

    @model_validator(mode="after")
    def _consistent(self) -> ContextConfig:
        for name in (*self.windows, self.history, *self.secondary_windows):
            _seconds(name)
        if self.baseline_gap is not None and not (
            0 < _seconds(self.baseline_gap) < _seconds(self.history)
        ):
            raise ValueError(f"baseline_gap={self.baseline_gap!r} must be shorter than history")
        if self.history_count_cap is not None and self.history_count_cap < self.min_history:
            raise ValueError(
                f"history_count_cap={self.history_count_cap} must be at least "
                f"min_history={self.min_history}"
            )
        if self.baseline_gap is not None and not self.amount_column:
            raise ValueError("baseline_gap compares amounts: it needs amount_column")
        if (self.latitude_column is None) != (self.longitude_column is None):
            raise ValueError("give both latitude_column and longitude_column, or neither")
        horizon = _seconds(self.history)
        if self.travel_window is not None and not self.latitude_column:
            raise ValueError("travel_window needs coordinates")
        if self.travel_window is not None and _seconds(self.travel_window) >= _seconds(
            self.history
        ):
            raise ValueError("travel_window must be shorter than history")
        if self.located_column and not self.latitude_column:
            raise ValueError("located_column says which coordinates count: it needs coordinates")
        if self.robust_baseline and not self.amount_column:
            raise ValueError("robust_baseline compares amounts: it needs amount_column")
        if self.level_windows and not self.amount_column:
            raise ValueError("level_windows compare amounts: they need amount_column")
        if any(_seconds(w) >= _seconds(self.history) for w in self.level_windows):
            raise ValueError("level_windows must be shorter than history")
        if self.novelty_windows and not self.novelty_columns:
            raise ValueError("novelty_windows count new values: it needs novelty_columns")
        if any(_seconds(w) >= _seconds(self.history) for w in self.novelty_windows):
            raise ValueError("novelty_windows must be shorter than history")
        if self.novelty_rate is not None:
            if not self.novelty_windows:
                raise ValueError("novelty_rate compares novelty_windows' counts: it needs them")
            if self.novelty_rate == "unlocated" and not self.located_column:
                raise ValueError("novelty_rate='unlocated' needs located_column")
            if any(2 * _seconds(w) >= _seconds(self.history) for w in self.novelty_windows):
                raise ValueError("novelty_rate needs novelty_windows shorter than history / 2")
        longest = max(
            (_seconds(w) for w in (*self.windows, *self.secondary_windows, *self.novelty_windows)),
            default=0,
        )
        if longest > horizon:
            raise ValueError(
                f"a window ({longest / 86400:g} days) is longer than history={self.history!r}; "
                "history bounds every look-back"
            )
        return self

    def replace(self, **changes: Any) -> ContextConfig:
        """A copy with ``changes``, validated as a new config is (``model_copy`` is not)."""
        return type(self).model_validate({**self.model_dump(), **changes})

    @property
    def history_seconds(self) -> float:
        return _seconds(self.history)

    @property
    def raw_columns(self) -> list[str]:
        """Raw columns the features are built from (the state a scorer keeps per record)."""
        columns = [self.entity_column, self.time_column]
        for column in (
            self.amount_column,
            *self.novelty_columns,
            *self.secondary_entity_columns,
            self.latitude_column,
            self.longitude_column,
            self.located_column,
            *self.profile_columns,
        ):
            if column and column not in columns:
                columns.append(column)
        return columns

    def feature_names(self) -> list[str]:
        """Names of the built feature columns, in output order."""
        names = [f"{PREFIX}secs_since_prev", f"{PREFIX}history_count"]
        names += [f"{PREFIX}count_{_slug(w)}" for w in self.windows]
        if self.amount_column:
            names += [f"{PREFIX}amount_sum_{_slug(w)}" for w in self.windows]
            names += [f"{PREFIX}amount_ratio", f"{PREFIX}amount_z"]
            if self.baseline_gap:
                names += [f"{PREFIX}amount_baseline_ratio", f"{PREFIX}amount_baseline_z"]
            if self.robust_baseline:
                names.append(f"{PREFIX}amount_median_ratio")
            names += [f"{PREFIX}amount_level_{_slug(w)}" for w in self.level_windows]
        names += [f"{PREFIX}new_{_slug(c)}" for c in self.novelty_columns]
        names += [
            f"{PREFIX}new_{_slug(c)}_count_{_slug(w)}"
            for c in self.novelty_columns
            for w in self.novelty_windows
        ]
        if self.novelty_rate:
            names += [
                f"{PREFIX}new_{_slug(c)}_rate_{_slug(w)}"
                for c in self.novelty_columns
                for w in self.novelty_windows
            ]
        names += [f"{PREFIX}share_{_slug(c)}" for c in self.profile_columns]
        if self.profile_hours:
            names.append(f"{PREFIX}share_hour")
        if self.hour_offset:
            names.append(f"{PREFIX}hour_offset")
        if self.calendar:
            names += [
                f"{PREFIX}{n}" for n in ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")
            ]
        if self.latitude_column:
            names += [f"{PREFIX}km_from_prev", f"{PREFIX}kmh_from_prev"]
            if self.travel_window:
                names.append(f"{PREFIX}kmh_max_{_slug(self.travel_window)}")
        for column in self.secondary_entity_columns:
            names += [f"{PREFIX}{_slug(column)}_count_{_slug(w)}" for w in self.secondary_windows]
            if self.amount_column:
                names.append(f"{PREFIX}{_slug(column)}_amount_ratio")
        return names

    def to_dict(self) -> dict:
        """Plain values (lists, strings, numbers): JSON as it is."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: Mapping) -> ContextConfig:
        return cls.model_validate(dict(data))


def _seconds(text: str) -> float:
    """A duration in seconds; remembered, since every feature build and every config
    validation reads the same few windows again."""
    return _seconds_of(str(text))


@functools.lru_cache(maxsize=256)
def _seconds_of(text: str) -> float:
    try:
        # pandas deprecates the lower-case day unit ("7d"); people write it anyway.
        seconds = pd.Timedelta(re.sub(r"(?<=\d)d$", "D", str(text).strip())).total_seconds()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a duration: {text!r} (use e.g. '10min', '1h', '7d')") from exc
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


@functools.lru_cache(maxsize=1024)
def _slug(text: str) -> str:
    """A name part of a feature (remembered: the reasons of every flag rebuild names)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", str(text)).strip("_").lower()
