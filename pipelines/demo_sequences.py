"""Seeded card-transaction *sequences* with the frauds a row-by-row model cannot see.

Each card has a home, a typical amount, a few regular merchants nearby and a daily
rhythm. Planted (labelled) frauds, each only visible against the card's own history:

* ``card_testing``: a burst of 5-8 tiny payments within ~10 minutes at new merchants;
* ``impossible_travel``: an in-person payment 800-2,000 km from the previous one,
  within an hour of it;
* ``takeover``: for a day, payments at 6-10x the card's usual amount at new merchants.

Used by the tests (the batch-alone = whole-file equality) and ``vigil demo-data``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.intake.spec import ContextSpec, DatasetSpec

CATEGORIES = ["grocery", "restaurant", "fuel", "pharmacy", "electronics", "travel", "online"]
SEQUENCE_SPEC = DatasetSpec(
    name="demo_card_sequences",
    description="Synthetic per-card transaction sequences (pipelines/demo_sequences.py).",
    id_column="transaction_id",
    label_column="is_fraud",
    numeric_features=["amount"],
    categorical_features=["merchant_category"],
    range_checked_features=["amount"],
    entity_column="card_id",
    time_column="timestamp",
    secondary_entity_columns=["merchant_id"],
    context=ContextSpec(
        amount_column="amount",
        novelty_columns=["merchant_id"],
        latitude_column="latitude",
        longitude_column="longitude",
        history="14D",
        event_noun="payment",
        entity_noun="card",
    ),
)


def generate_card_sequences(
    *, n_cards: int = 60, days: int = 21, seed: int = 0, start: str = "2026-03-02"
) -> pd.DataFrame:
    """Transactions sorted by time, ``is_fraud`` = 1 for planted frauds (about 1%)."""
    rng = np.random.default_rng(seed)
    origin = pd.Timestamp(start)
    rows: list[pd.DataFrame] = []
    for card in range(n_cards):
        home = np.array([50.85 + rng.normal(0, 0.5), 4.35 + rng.normal(0, 0.7)])
        level = float(np.exp(rng.normal(3.4, 0.5)))
        merchants = [f"m{card:03d}_{k}" for k in range(6)]
        merchant_category = rng.choice(CATEGORIES[:-1], size=len(merchants))
        n = int(rng.poisson(2.2 * days)) + days
        day = rng.integers(0, days, n)
        hour = np.clip(rng.normal(14, 3.0, n), 7, 22.9)
        seconds = day * 86400 + hour * 3600 + rng.uniform(0, 60, n)
        pick = rng.integers(0, len(merchants), n)
        online = rng.random(n) < 0.15
        lat = np.where(online, np.nan, home[0] + rng.normal(0, 0.05, n))
        lon = np.where(online, np.nan, home[1] + rng.normal(0, 0.05, n))
        rows.append(
            pd.DataFrame(
                {
                    "card_id": f"card{card:03d}",
                    "merchant_id": np.where(online, "web_shop", np.array(merchants)[pick]),
                    "merchant_category": np.where(online, "online", merchant_category[pick]),
                    "seconds": seconds,
                    "amount": np.round(level * np.exp(rng.normal(0, 0.35, n)), 2),
                    "latitude": lat,
                    "longitude": lon,
                    "is_fraud": 0,
                    "fraud_kind": "",
                }
            )
        )
        if card % 4 == 0:
            rows.append(_fraud(card, home, level, days, rng))
    frame = pd.concat(rows, ignore_index=True).sort_values("seconds", kind="stable")
    frame = frame.reset_index(drop=True)
    frame.insert(0, "transaction_id", [f"t{i:06d}" for i in range(len(frame))])
    stamps = origin + pd.to_timedelta(frame.pop("seconds").round(0), unit="s")
    frame.insert(2, "timestamp", stamps.dt.strftime("%Y-%m-%d %H:%M:%S"))
    return frame


def _fraud(card: int, home: np.ndarray, level: float, days: int, rng) -> pd.DataFrame:
    kind = ("card_testing", "impossible_travel", "takeover")[(card // 4) % 3]
    when = float(rng.integers(days // 2, days) * 86400 + rng.uniform(9, 20) * 3600)
    if kind == "card_testing":
        n = int(rng.integers(5, 9))
        seconds = when + np.sort(rng.uniform(0, 600, n))
        amount = np.round(rng.uniform(0.5, 2.0, n), 2)
        lat = lon = np.full(n, np.nan)
        merchant = [f"x{card:03d}_{k}" for k in range(n)]
        category = ["online"] * n
    elif kind == "impossible_travel":
        n = 1
        seconds = np.array([when])
        distance_deg = rng.uniform(8, 16)
        lat = np.array([home[0] + distance_deg * 0.6])
        lon = np.array([home[1] + distance_deg])
        amount = np.round(np.array([level * rng.uniform(0.8, 1.5)]), 2)
        merchant = [f"far{card:03d}"]
        category = ["electronics"]
    else:
        n = int(rng.integers(3, 6))
        seconds = when + np.sort(rng.uniform(0, 20 * 3600, n))
        amount = np.round(level * rng.uniform(6, 10, n), 2)
        lat = home[0] + rng.normal(0, 0.05, n)
        lon = home[1] + rng.normal(0, 0.05, n)
        merchant = [f"y{card:03d}_{k}" for k in range(n)]
        category = ["electronics"] * n
    frame = pd.DataFrame(
        {
            "card_id": f"card{card:03d}",
            "merchant_id": merchant,
            "merchant_category": category,
            "seconds": seconds,
            "amount": amount,
            "latitude": lat,
            "longitude": lon,
            "is_fraud": 1,
            "fraud_kind": kind,
        }
    )
    if kind == "impossible_travel":
        # The payment just before, at home: the pair is what is impossible.
        before = frame.copy()
        before["seconds"] = when - rng.uniform(600, 3000)
        before["latitude"], before["longitude"] = home[0], home[1]
        before["merchant_id"], before["merchant_category"] = f"m{card:03d}_0", "grocery"
        before["is_fraud"], before["fraud_kind"] = 0, ""
        frame = pd.concat([before, frame], ignore_index=True)
    return frame
