"""A second card-payment generator, written apart from the first, to check defaults on data
nobody tuned on.

The world: cities with real coordinates; merchants of a category in each city (card
present) and online merchants registered in a few hub cities (card not present); customers
of a few kinds (commuter, student, family, affluent, retiree, night worker) with a home
city, a spending level per category, habitual merchants, hours shifted to their own day,
a weekly rhythm, monthly subscriptions charged at night, and trips by plane or train to
other cities (an online booking first, card-present payments there, a hotel at the end or
keyed in ahead). Genuine life also holds what fraud uses, so no column gives fraud away
alone: tiny amounts (coffee, transit), gift cards and donations, keyed-in payments at
shops (phone orders, hotel prepayments), night-time subscription charges, far-away trips.

Planted fraud, with the ground truth in ``fraud_type`` (empty for genuine rows):

- ``account_takeover``: a burst of 3-8 online payments, minutes apart, at merchants and
  categories the card never used, at the card's quiet hours, 3-12 times its usual amount.
- ``card_testing``: 6-25 tiny amounts within minutes at one or two online merchants,
  sometimes followed by a larger purchase.
- ``impossible_travel``: a cloned card used card-present in a city 1,500 km or more from a
  genuine card-present payment made 5-120 minutes before or after it.
- ``compromised_merchant``: the merchant's own payments turn anomalous. A physical shop's
  terminal is taken over at night: for a few hours it takes keyed-in (card not present)
  payments from 4-12 cards that never shopped there, several times the shop's usual
  amount. Each such row is labelled; the cards' other payments stay genuine.
- ``contextual``: one card-present payment of the card's ordinary amount, at its home, but
  in a category it never uses and at an hour it is never active.

The columns are those the CLI path reads for card data: ``transaction_id``, ``card_id``,
``timestamp``, ``merchant_id``, ``merchant_category``, ``amount``, ``latitude``,
``longitude``, ``card_present``, ``is_fraud``, ``fraud_type``. The same seed gives the same
frame; genuine rows do not depend on the fraud settings (fraud draws from its own stream).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from benchmarks.cardgen2_world import (
    CATEGORIES,
    PHYSICAL,
    Card,
    Row,
    World,
    amount_of,
    build_world,
    genuine_rows,
    haversine_km,
    make_card,
    plan_trips,
)

__all__ = ["FRAUD_TYPES", "generate_cards2", "haversine_km"]

FRAUD_TYPES: tuple[str, ...] = (
    "account_takeover",
    "card_testing",
    "impossible_travel",
    "compromised_merchant",
    "contextual",
)
_WARM_UP_DAYS = 7


class _Planter:
    """What every fraud type needs to know about the genuine payments."""

    def __init__(
        self, rng: np.random.Generator, w: World, cards: list[Card], genuine: list[Row], days: int
    ) -> None:
        self.rng, self.w, self.cards, self.genuine = rng, w, cards, genuine
        self.by_card: dict[str, list[Row]] = {}
        for r in genuine:
            self.by_card.setdefault(r[0], []).append(r)
        self.card = {c.cid: c for c in cards}
        self.span = (_WARM_UP_DAYS * 86400.0, days * 86400.0 - 3600.0)
        self.slot = (0, 1)  # event i of n: fraud arrives steadily, each type over the period

    def stretch(self) -> tuple[float, float]:
        """The part of the period (seconds) the current event falls in."""
        i, n = self.slot
        width = (self.span[1] - self.span[0]) / n
        return self.span[0] + i * width, self.span[0] + (i + 1) * width

    def when(self) -> float:
        return float(self.rng.uniform(*self.stretch()))

    def victim(self) -> Card:
        return self.cards[int(self.rng.integers(len(self.cards)))]

    def used(self, card: Card) -> tuple[set[int], set[str]]:
        """Merchants and categories the card pays at, over the whole period."""
        rows = self.by_card.get(card.cid, [])
        return {r[2] for r in rows}, {self.w.m_cat[r[2]] for r in rows}

    def typical(self, card: Card) -> float:
        """The card's median card-present amount."""
        amounts = [r[3] for r in self.by_card.get(card.cid, []) if r[4] == 1]
        return float(np.median(amounts)) if amounts else 30.0

    def day(self) -> float:
        """Midnight of a day in the current event's stretch, in seconds."""
        return float(int(self.when() // 86400) * 86400)

    def quiet_hour(self, card: Card) -> float:
        """A time of day (seconds) within the card's five least active hours."""
        quiet = np.argsort(card.activity)[:5]
        return float(int(self.rng.choice(quiet)) * 3600 + self.rng.uniform(0, 3600))

    def account_takeover(self) -> list[Row]:
        rng, card = self.rng, self.victim()
        seen_m, seen_c = self.used(card)
        kinds = ("gift_cards", "marketplace", "digital_goods", "travel_booking")
        fresh = [c for c in kinds if c not in seen_c] or ["gift_cards"]
        base, t, out = self.typical(card), self.day() + self.quiet_hour(card), []
        for _ in range(int(rng.integers(3, 9))):
            cat = fresh[int(rng.integers(len(fresh)))]
            pool = [m for m in self.w.online_by_cat[cat] if m not in seen_m]
            m = int(rng.choice(pool or self.w.online_by_cat[cat]))
            amount = round(min(2500.0, base * float(rng.uniform(3, 12))), 2)
            out.append((card.cid, t, m, amount, 0, "account_takeover"))
            t += float(rng.uniform(2, 15)) * 60.0
        return out

    def card_testing(self) -> list[Row]:
        rng, card = self.rng, self.victim()
        t, out = self.when(), []
        pool = self.w.online_by_cat["donation" if rng.uniform() < 0.5 else "digital_goods"]
        merchants = [int(m) for m in rng.choice(pool, size=int(rng.integers(1, 3)), replace=False)]
        for _ in range(int(rng.integers(6, 26))):
            if rng.uniform() < 0.5:
                amount = float(rng.choice([1.0, 0.5, 0.01, 2.0]))
            else:
                amount = round(float(rng.uniform(0.1, 3)), 2)
            m = merchants[int(rng.integers(len(merchants)))]
            out.append((card.cid, t, m, amount, 0, "card_testing"))
            t += float(rng.uniform(5, 40))
        if rng.uniform() < 0.4:  # the card works: cash it out
            t += float(rng.uniform(5, 60)) * 60.0
            m = int(rng.choice(self.w.online_by_cat["marketplace"]))
            out.append((card.cid, t, m, round(float(rng.uniform(150, 900)), 2), 0, "card_testing"))
        return out

    def impossible_travel(self, present: list[Row]) -> list[Row]:
        rng, w = self.rng, self.w
        lo, hi = self.stretch()
        near = [r for r in present if lo <= r[1] < hi] or present
        g = near[int(rng.integers(len(near)))]
        glat, glon = w.m_lat[g[2]], w.m_lon[g[2]]
        far = [
            c for c in range(len(w.names)) if haversine_km(glat, glon, w.lat[c], w.lon[c]) >= 1500
        ]
        city, card = int(rng.choice(far)), self.card[g[0]]
        sign = 1.0 if rng.uniform() < 0.75 else -1.0  # the clone pays after, or before
        t, out = g[1] + sign * float(rng.uniform(5, 120)) * 60.0, []
        for _ in range(int(rng.integers(1, 4))):
            cat = str(rng.choice(["electronics", "jewelry", "clothing", "fuel", "grocery"]))
            m = int(rng.choice(w.by_city_cat[(city, cat)]))
            amount = amount_of(rng, cat, card.scale[cat] * float(rng.uniform(1, 2.5)))
            out.append((card.cid, t, m, amount, 1, "impossible_travel"))
            t += sign * float(rng.uniform(3, 20)) * 60.0
        return out

    def compromised_merchant(self, shops: dict[int, list[float]]) -> list[Row]:
        rng = self.rng
        m = int(rng.choice(list(shops)))
        median = float(np.median(shops[m]))
        customers = {r[0] for r in self.genuine if r[2] == m}
        others = [c for c in self.cards if c.cid not in customers]
        size = min(len(others), int(rng.integers(4, 13)))
        t, out = self.day() + float(rng.uniform(0, 4)) * 3600.0, []
        for v in rng.choice(len(others), size=size, replace=False):
            amount = round(median * float(rng.uniform(3, 8)), 2)
            out.append((others[int(v)].cid, t, m, amount, 0, "compromised_merchant"))
            t += float(rng.uniform(2, 15)) * 60.0
        return out

    def contextual(self) -> list[Row]:
        rng, card = self.rng, self.victim()
        seen_m, seen_c = self.used(card)
        base = self.typical(card)
        unused = [c for c in PHYSICAL if c not in seen_c and c != "hotel"] or ["bar"]
        cands = [c for c in unused if 0.3 < CATEGORIES[c].median / base < 3.5] or unused
        cat = str(rng.choice(cands))
        shops = self.w.by_city_cat[(card.home, cat)]
        m = int(rng.choice([m for m in shops if m not in seen_m] or shops))
        t = self.day() + self.quiet_hour(card)
        return [(card.cid, t, m, round(base * float(rng.lognormal(0, 0.2)), 2), 1, "contextual")]


def _plant(planter: _Planter, share: float, min_events: int) -> list[Row]:
    """Fraud rows for each type; each type gets about an equal share of the fraud rows."""
    budget = share * len(planter.genuine) / len(FRAUD_TYPES)
    w, span = planter.w, planter.span
    out: list[Row] = []

    def events(n: int) -> Iterator[int]:
        for i in range(n):
            planter.slot = (i, n)
            yield i

    for _ in events(max(min_events, round(budget / 5.5))):
        out += planter.account_takeover()
    for _ in events(max(min_events, round(budget / 16))):
        out += planter.card_testing()
    present = [r for r in planter.genuine if r[4] == 1 and span[0] < r[1] < span[1]]
    for _ in events(max(min_events, round(budget / 2))):
        out += planter.impossible_travel(present)
    amounts: dict[int, list[float]] = {}
    for r in planter.genuine:
        if r[4] == 1:
            amounts.setdefault(r[2], []).append(r[3])
    everyday = ("cafe", "restaurant", "fuel", "pharmacy", "grocery")
    shops = {m: a for m, a in amounts.items() if len(a) >= 10 and w.m_cat[m] in everyday}
    for _ in events(max(min_events, round(budget / 8))):
        out += planter.compromised_merchant(shops)
    for _ in events(max(min_events, round(budget))):
        out += planter.contextual()
    return out


def generate_cards2(
    *,
    n_cards: int = 1000,
    days: int = 30,
    seed: int = 0,
    fraud_share: float = 0.005,
    min_events: int = 12,
    start: str = "2026-03-02",
) -> pd.DataFrame:
    """Generate card payments with planted fraud; one row per payment, sorted by time.

    ``fraud_share`` is the target share of fraud rows, split evenly across the five types
    (each gets at least ``min_events`` events, spread evenly over the period after a first
    week without fraud, so that every card has history and every stretch of time its share).
    """
    if n_cards < 20:
        raise ValueError("n_cards must be at least 20: fraud needs cards that never met a merchant")
    if days < 10:
        raise ValueError("days must be at least 10: the first week is kept free of fraud")
    world_seq, cards_seq, fraud_seq = np.random.SeedSequence(seed).spawn(3)
    w = build_world(np.random.default_rng(world_seq), n_cards)
    cards: list[Card] = []
    genuine: list[Row] = []
    t0 = pd.Timestamp(start)
    for i, s in enumerate(cards_seq.spawn(n_cards)):
        rng = np.random.default_rng(s)
        card = make_card(rng, w, i)
        plan_trips(rng, w, card, days)
        cards.append(card)
        genuine.extend(genuine_rows(rng, w, card, days, t0.weekday()))
    planter = _Planter(np.random.default_rng(fraud_seq), w, cards, genuine, days)
    fraud = _plant(planter, fraud_share, min_events)
    rows = [r for r in genuine + fraud if 0 <= r[1] < days * 86400.0]
    card_col, secs, merch, amount, present, kind = (list(x) for x in zip(*rows, strict=True))
    m = np.array(merch)
    df = pd.DataFrame(
        {
            "card_id": card_col,
            "timestamp": t0 + pd.to_timedelta(np.floor(np.array(secs)), unit="s"),
            "merchant_id": np.array(w.m_id)[m],
            "merchant_category": np.array(w.m_cat)[m],
            "amount": amount,
            "latitude": np.array(w.m_lat)[m],
            "longitude": np.array(w.m_lon)[m],
            "card_present": present,
            "fraud_type": kind,
        }
    )
    order = ["timestamp", "card_id", "merchant_id", "amount"]
    df = df.sort_values(order, kind="stable").reset_index(drop=True)
    df["is_fraud"] = (df["fraud_type"] != "").astype(int)
    df.insert(0, "transaction_id", [f"p{i:08d}" for i in range(len(df))])
    df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    first = ["transaction_id", "card_id", "timestamp", "merchant_id", "merchant_category"]
    rest = ["amount", "latitude", "longitude", "card_present", "is_fraud", "fraud_type"]
    return df[first + rest]
