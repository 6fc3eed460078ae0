"""The demo's card stream, its files, and the rules a fraud team would start from.

A seeded stream of card payments (``generate_typology_set`` with five fraud types: card
testing, account takeover, impossible travel, a compromised merchant and contextual
anomalies; trips, subscriptions, night owls and online shopping as the normal behaviour
that must not be flagged). It is generated at run time from :data:`DEMO_SEED`; the
settings here are fixed and never tuned on the models' results.

The stream is cut the way a team lives it: two weeks of history (with the chargebacks
known for them) to train on, the next week to score and review, and one more day on
which spending has shifted (a sale: every amount higher) for the drift watch. The truth
of the scored week and day is kept apart in its own file, never in the files scored.

The rules baseline is what a team has before any model: an amount rule (the payment
against the card's median so far) and a velocity rule (the card's payments in the last
ten minutes), as one score so it can be held to the same alert rate as the models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.demo_sequences import TYPOLOGY_SPEC, generate_typology_set
from pipelines.intake.display import DisplayColumns

#: The demo's seed and sizes: fixed, never tuned on what the models score.
DEMO_SEED = 2026
FRAUD_TYPES = (
    "card_testing",
    "account_takeover",
    "impossible_travel",
    "compromised_merchant",
    "contextual",
)
FULL_CARDS = 1500
TRAIN_DAYS, WEEK_DAYS = 14, 7
DAYS = TRAIN_DAYS + WEEK_DAYS + 1
#: The next day's shift in spending (every amount times this): a sale, not fraud.
SPENDING_SHIFT = 1.8
#: The alert rate the models and the rules are compared at.
ALERT_RATE = 0.01
#: The rules: a payment this many times the card's median so far, or this many payments
#: by the card within ten minutes.
AMOUNT_RULE, VELOCITY_RULE = 5.0, 4

CARD_SPEC = TYPOLOGY_SPEC.model_copy(
    update={
        "name": "demo_cards",
        "description": "The demo's seeded card stream (pipelines/demo_cards.py).",
        # What the analysts see first: the payment (the generated amounts are dollars).
        "display_columns": DisplayColumns(
            entity="card_id",
            time="timestamp",
            merchant="merchant_id",
            amount="amount",
            currency="USD",
        ),
    }
)


def card_stream(*, n_cards: int = FULL_CARDS, seed: int = DEMO_SEED) -> pd.DataFrame:
    """The whole stream, in time order, with ``is_fraud`` and ``fraud_kind``."""
    return generate_typology_set(
        n_cards=n_cards, days=DAYS, seed=seed, start="2026-03-02", typologies=FRAUD_TYPES
    )


def split_stream(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Training fortnight, the week to score, and the next day with shifted spending."""
    day = (pd.to_datetime(frame["timestamp"]) - pd.Timestamp("2026-03-02")).dt.days
    next_day = frame[day >= TRAIN_DAYS + WEEK_DAYS].copy()
    next_day["amount"] = (next_day["amount"] * SPENDING_SHIFT).round(2)
    return {
        "train": frame[day < TRAIN_DAYS],
        "week": frame[(day >= TRAIN_DAYS) & (day < TRAIN_DAYS + WEEK_DAYS)],
        "next_day": next_day,
    }


def write_card_files(folder: Path, *, n_cards: int = FULL_CARDS, seed: int = DEMO_SEED) -> dict:
    """Write the stream's files and spec into ``folder``; same seed and size, same bytes.

    ``train.csv`` keeps ``is_fraud`` (the history's chargebacks are known); ``week.csv``
    and ``next_day.csv`` hold only what a feed carries; ``truth.csv`` is their truth."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = split_stream(card_stream(n_cards=n_cards, seed=seed))
    paths = {
        "train": folder / "train.csv",
        "week": folder / "week.csv",
        "next_day": folder / "next_day.csv",
        "truth": folder / "truth.csv",
        "spec": folder / "demo_cards.yaml",
    }
    parts["train"].drop(columns=["fraud_kind"]).to_csv(paths["train"], index=False)
    for name in ("week", "next_day"):
        parts[name].drop(columns=["is_fraud", "fraud_kind"]).to_csv(paths[name], index=False)
    truth = pd.concat([parts["week"], parts["next_day"]])
    truth[["transaction_id", "is_fraud", "fraud_kind"]].to_csv(paths["truth"], index=False)
    CARD_SPEC.save(paths["spec"])
    return paths


def rules_scores(frame: pd.DataFrame) -> np.ndarray:
    """The rules as one score to rank under an alert budget: payments where a rule fires
    (the card's payments in ten minutes >= 4, or the amount >= 5x the card's median so
    far) first, velocity hits before amount hits, each by the amount's ratio to the
    median. ``frame`` holds the cards' earlier payments too (rules read history, like the
    models)."""
    data = frame[["card_id", "timestamp", "amount"]].copy()
    data["t"] = (pd.to_datetime(data["timestamp"]) - pd.Timestamp(0)) / pd.Timedelta("1s")
    data["order"] = np.arange(len(data))
    data = data.sort_values(["card_id", "t", "order"], kind="stable")
    grouped = data.groupby("card_id", sort=False)["amount"]
    median = grouped.transform(lambda a: a.expanding().median().shift(1))
    ratio = (data["amount"] / median).fillna(1.0).to_numpy()
    velocity = np.zeros(len(data))
    t = data["t"].to_numpy()
    starts = np.r_[
        0, np.flatnonzero(data["card_id"].to_numpy()[1:] != data["card_id"].to_numpy()[:-1]) + 1
    ]
    for a, b in zip(starts, np.r_[starts[1:], len(data)], strict=True):
        times = t[a:b]
        velocity[a:b] = np.arange(b - a) - np.searchsorted(times, times - 600.0) + 1
    # A velocity hit outranks any amount: a rules engine alerts on every rule that fires;
    # under a fixed alert budget the firing rules go first, the largest ratio next.
    fired = (velocity >= VELOCITY_RULE) | (ratio >= AMOUNT_RULE)
    score = fired * 1000.0 + (velocity >= VELOCITY_RULE) * 100.0 + np.minimum(ratio, 99.0)
    out = np.empty(len(data))
    out[data["order"].to_numpy()] = score
    return out


def catches(scores: np.ndarray, kinds: np.ndarray, rate: float = ALERT_RATE) -> dict[str, tuple]:
    """Per fraud type: (caught, total) in the top ``rate`` of ``scores`` (ties broken by
    order), plus ``"normal"``: the normal records alerted."""
    k = max(1, int(round(rate * len(scores))))
    alerted = np.zeros(len(scores), dtype=bool)
    alerted[np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:k]] = True
    out = {t: (int((alerted & (kinds == t)).sum()), int((kinds == t).sum())) for t in FRAUD_TYPES}
    out["normal"] = (int((alerted & (kinds == "")).sum()), int((kinds == "").sum()))
    return out


def beats_rules(table: dict[str, dict[str, tuple]], model: str) -> list[str]:
    """The fraud types on which ``model`` catches more than the rules."""
    return [t for t in FRAUD_TYPES if table[model][t][0] > table["rules"][t][0]]
