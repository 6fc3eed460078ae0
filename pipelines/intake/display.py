"""What analysts see first: the payment (who, when, where, how much), not the features.

The spec's ``display_columns`` name the record's entity, time, merchant and amount with
its currency (a currency column, or one fixed code); its ``priority`` section may weigh
the queue by the amount at stake, normalised to one currency through a rate table.

Each flag keeps its payment in its snapshot under ``_payment`` (the values, not the
column names), built here when the record is flagged, so the review app shows it without
knowing the spec, and the sentence stays true whatever the spec says later.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The key under which a flag's snapshot keeps its payment (hidden as a record field).
PAYMENT_KEY = "_payment"
#: The least amount at stake a flagged payment counts for: a zero-amount authorisation
#: still ranks by its score instead of falling to priority zero.
MIN_STAKE = 1.0

_CODE = re.compile(r"^[A-Z]{3}$")


def _currency_code(value: str | None) -> str | None:
    if value is None:
        return None
    code = value.strip().upper()
    if not _CODE.match(code):
        raise ValueError(f"currency must be a three-letter code such as USD (got {value!r})")
    return code


class DisplayColumns(BaseModel):
    """The columns that make up the payment an analyst sees in the queue and on the case."""

    model_config = ConfigDict(extra="forbid")

    entity: str | None = Field(default=None, description="Whose payment: card, customer.")
    time: str | None = Field(default=None, description="When the payment was made.")
    merchant: str | None = Field(default=None, description="Where: merchant id or name.")
    amount: str | None = Field(default=None, description="How much (a number).")
    currency_column: str | None = Field(
        default=None, description="The amount's currency, per record (ISO code)."
    )
    currency: str | None = Field(
        default=None, description="One fixed currency code when the data has no such column."
    )

    @field_validator("currency")
    @classmethod
    def _currency_is_a_code(cls, value: str | None) -> str | None:
        return _currency_code(value)

    @model_validator(mode="after")
    def _one_currency_source(self) -> DisplayColumns:
        if self.currency_column and self.currency:
            raise ValueError("give either currency_column or a fixed currency, not both")
        return self

    @property
    def columns(self) -> list[str]:
        """The data columns named (each once)."""
        named = (self.entity, self.time, self.merchant, self.amount, self.currency_column)
        return list(dict.fromkeys(c for c in named if c))


class QueuePriority(BaseModel):
    """How the queue ranks cases. By default by how far the score is over the threshold;
    with ``weigh_by_amount`` by that times the amount at stake (an expected-loss order:
    a barely-flagged large payment comes before a clearly-flagged small one)."""

    model_config = ConfigDict(extra="forbid")

    weigh_by_amount: bool = False
    currency: str | None = Field(
        default=None, description="The one currency amounts at stake are normalised to."
    )
    rates: dict[str, float] = Field(
        default_factory=dict,
        description="Units of `currency` per one unit of each other currency (EUR: 1.08).",
    )

    @field_validator("currency")
    @classmethod
    def _currency_is_a_code(cls, value: str | None) -> str | None:
        return _currency_code(value)

    @field_validator("rates")
    @classmethod
    def _rates_are_positive(cls, rates: dict[str, float]) -> dict[str, float]:
        out = {}
        for code, rate in rates.items():
            if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
                raise ValueError(f"rate for {code} must be a positive number (got {rate!r})")
            out[_currency_code(code)] = float(rate)
        return out

    @model_validator(mode="after")
    def _rates_need_a_currency(self) -> QueuePriority:
        if self.rates and not self.currency:
            raise ValueError("rates need the currency they convert to (priority.currency)")
        return self

    def stake(self, amount: float, currency: str | None) -> tuple[float, str | None]:
        """The amount at stake and its currency: converted to ``currency`` where the rate
        table allows, else left in the payment's own currency (and said so by its code)."""
        if self.currency and currency and currency != self.currency:
            rate = self.rates.get(currency)
            if rate is not None:
                return max(amount * rate, MIN_STAKE), self.currency
            return max(amount, MIN_STAKE), currency
        return max(amount, MIN_STAKE), currency or self.currency


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(str(value).replace(",", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def payment_snapshot(
    values: dict, display: DisplayColumns | None, priority: QueuePriority | None = None
) -> dict | None:
    """The payment of one flagged record (its snapshot's ``values``) as the review app
    shows it: entity, time, merchant, amount, currency, and with amount weighting the
    amount at stake (``stake``, ``stake_currency``). None without display columns."""
    if display is None:
        return None
    payment: dict[str, Any] = {
        "entity": _text(values.get(display.entity)) if display.entity else None,
        "time": _text(values.get(display.time)) if display.time else None,
        "merchant": _text(values.get(display.merchant)) if display.merchant else None,
        "amount": _number(values.get(display.amount)) if display.amount else None,
        "currency": (
            (_text(values.get(display.currency_column)) or "").upper() or None
            if display.currency_column
            else display.currency
        ),
    }
    if priority is not None and priority.weigh_by_amount and payment["amount"] is not None:
        payment["stake"], payment["stake_currency"] = priority.stake(
            abs(payment["amount"]), payment["currency"]
        )
    return payment


# -- proposing them from a sample (``vigil spec init``) ------------------------------------

_AMOUNT_WORDS = ("amount", "amt", "value", "price", "total", "sum")
_CURRENCY_WORDS = ("currency", "ccy", "cur", "curr")
_MERCHANT_WORDS = ("merchant", "payee", "shop", "store", "seller", "terminal", "mcc")


def _words(column: str) -> list[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", column)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def _named(column: str, words: tuple[str, ...]) -> int | None:
    """How early in ``words`` the column's name matches (lower is better), or None."""
    ranks = [words.index(w) for w in _words(column) if w in words]
    return min(ranks) if ranks else None


def _best(columns: list[str], words: tuple[str, ...], accept) -> str | None:
    ranked = sorted(
        (rank, i, c)
        for i, c in enumerate(columns)
        if (rank := _named(c, words)) is not None and accept(c)
    )
    return ranked[0][2] if ranked else None


def propose_display(
    frame: pd.DataFrame, *, entity_column: str | None, time_column: str | None
) -> DisplayColumns | None:
    """Display columns for a sample, by name and type: entity and time as given; the
    amount a numeric column named like one; the currency a text column named like one
    whose values read as three-letter codes; the merchant a column named like a merchant,
    payee or terminal (a name before a category code). None when nothing is found."""
    columns = [str(c) for c in frame.columns]

    def numeric(column: str) -> bool:
        values = pd.to_numeric(frame[column], errors="coerce")
        return bool(values.notna().mean() >= 0.95) if len(values) else False

    def currency_codes(column: str) -> bool:
        text = frame[column].dropna().astype(str).str.strip().str.upper()
        return bool(len(text)) and bool(text.str.fullmatch(r"[A-Z]{3}").mean() >= 0.95)

    skip = {entity_column, time_column}
    candidates = [c for c in columns if c not in skip]
    amount = _best(candidates, _AMOUNT_WORDS, numeric)
    currency = _best([c for c in candidates if c != amount], _CURRENCY_WORDS, currency_codes)
    merchant = _best(
        [c for c in candidates if c not in (amount, currency)], _MERCHANT_WORDS, lambda c: True
    )
    display = DisplayColumns(
        entity=entity_column,
        time=time_column,
        merchant=merchant,
        amount=amount,
        currency_column=currency,
    )
    return display if display.columns else None


def describe_display(display: DisplayColumns | None) -> str:
    """One line for ``vigil spec init``: what was picked."""
    if display is None:
        return "none found (name them under display_columns: entity, time, merchant, amount)"
    if display.currency_column:
        currency = f"column {display.currency_column}"
    else:
        currency = display.currency or "none found (set display_columns.currency: USD)"
    return (
        f"entity {display.entity or '-'}, time {display.time or '-'}, merchant "
        f"{display.merchant or '-'}, amount {display.amount or '-'}, currency {currency}"
    )
