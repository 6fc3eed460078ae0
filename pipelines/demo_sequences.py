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

from detectors.context import HISTORY_COUNT_CAP, ContextConfig
from pipelines.intake.spec import DatasetSpec

CATEGORIES = ["grocery", "restaurant", "fuel", "pharmacy", "electronics", "travel", "online"]
SEQUENCE_SPEC = DatasetSpec(
    name="demo_card_sequences",
    description="Synthetic per-card transaction sequences (pipelines/demo_sequences.py).",
    id_column="transaction_id",
    label_column="is_fraud",
    numeric_features=["amount"],
    categorical_features=["merchant_category"],
    range_checked_features=["amount"],
    context=ContextConfig(
        entity_column="card_id",
        time_column="timestamp",
        secondary_entity_columns=["merchant_id"],
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


# ------------------------------------------------------------------ typology set
#: Expected rows per planted event, so ``fraud_share`` holds whichever types are planted.
_ROWS_PER_EVENT = {
    "point_amount": 1.0,
    "card_testing": 7.5,
    "impossible_travel": 1.5,
    "account_takeover": 5.0,
    "contextual": 1.0,
    "compromised_merchant": 1.0,
}
#: Cities the cards live in, travel to and online merchants have their head office in.
CITIES = {
    "brussels": (50.85, 4.35),
    "paris": (48.86, 2.35),
    "amsterdam": (52.37, 4.90),
    "berlin": (52.52, 13.40),
    "madrid": (40.42, -3.70),
    "rome": (41.90, 12.50),
    "lisbon": (38.72, -9.14),
    "warsaw": (52.23, 21.01),
    "stockholm": (59.33, 18.07),
    "athens": (37.98, 23.73),
    "dublin": (53.35, -6.26),
    "vienna": (48.21, 16.37),
}
#: Everyday categories a card draws its usual ones from, and the rare, high-value ones.
EVERYDAY = [
    "grocery",
    "restaurant",
    "fuel",
    "pharmacy",
    "clothing",
    "transport",
    "bakery",
    "bar",
    "books",
    "hardware",
]
HIGH_VALUE = ["jewellery", "electronics", "luxury", "gift_cards"]
ONLINE = ["marketplace", "streaming", "games", "fashion_web", "food_delivery", "software"]
TYPOLOGIES = ("point_amount", "card_testing", "impossible_travel", "account_takeover", "contextual")
TYPOLOGY_SPEC = DatasetSpec(
    name="card_typologies",
    description="Synthetic cards with five fraud typologies and hard legitimate behaviours "
    "(pipelines/demo_sequences.py, generate_typology_set).",
    id_column="transaction_id",
    label_column="is_fraud",
    numeric_features=["amount", "card_present"],
    categorical_features=["merchant_category"],
    range_checked_features=["amount"],
    context=ContextConfig(
        entity_column="card_id",
        time_column="timestamp",
        secondary_entity_columns=["merchant_id"],
        amount_column="amount",
        novelty_columns=["merchant_id", "merchant_category"],
        latitude_column="latitude",
        longitude_column="longitude",
        located_column="card_present",
        travel_window="1h",
        novelty_windows=["1h", "6h"],
        history="30D",
        baseline_gap="14D",
        event_noun="payment",
        entity_noun="card",
        history_count_cap=HISTORY_COUNT_CAP,
    ),
)


def generate_typology_set(
    *,
    n_cards: int = 2000,
    days: int = 60,
    seed: int = 0,
    fraud_share: float = 0.005,
    start: str = "2026-01-05",
    typologies: tuple[str, ...] = TYPOLOGIES,
) -> pd.DataFrame:
    """Card payments with five fraud typologies (``fraud_kind``) among hard legitimate ones.

    Legitimate behaviour a detector must not flag: each card has a home city, 3-5 usual
    everyday categories with their own amount levels, regular merchants near home, a daily
    rhythm (one card in ten is a night owl), online shopping (``card_present`` = 0) at
    shared web merchants whose coordinates are their head office in another city (mostly
    in the evening for a third of the cards; one online payment in eight at a web shop
    new to the card, often in a category it never used, sometimes well above its usual
    amount), monthly subscriptions charged at night, and trips (a flight to another
    city, then several days of card-present payments at new merchants there; the flight
    takes hours, so the implied speed stays below ~900 km/h).

    Frauds (``is_fraud`` = 1; about ``fraud_share`` of rows, on cards drawn at random,
    at any time after the first week):

    * ``point_amount``: one payment 6-15x the card's usual amount in a high-value
      category the card never uses, at its usual time of day;
    * ``card_testing``: 5-10 payments of 0.5-3 online at new merchants, 5-60 s apart;
    * ``impossible_travel``: 1-2 card-present payments in a city 900+ km away within
      20-90 minutes of a genuine card-present payment (ordinary amounts, usual categories);
    * ``account_takeover``: an evening-to-night run (19:00-02:00) of 3-7 online payments
      at shared web shops (merchants other cards use) in online categories new to the
      card, at 1.2-2.5x its usual amount, while the card's genuine payments go on: each
      payment alone looks like a genuine new-shop purchase;
    * ``contextual``: one ordinary amount at an hour the card never uses and in an
      everyday category it never uses, card-present at home.

    ``typologies`` chooses which of them are planted (events take turns in that order);
    one more is available:

    * ``compromised_merchant``: a web merchant no card has used before is breached and
      cashes out stolen cards: each victim pays it once, at night within a few hours of
      the breach (three breaches, each on its own day), 1.5-4x the card's usual amount,
      card not present. Each payment alone is one ordinary-sized online purchase; only
      the merchant's sudden traffic and the card's odd hour and shop give it away.

    Sorted by time; ``transaction_id`` in time order, ``timestamp`` as text (seconds).
    """
    rng = np.random.default_rng(seed)
    origin = pd.Timestamp(start)
    names = list(CITIES)
    coords = np.array([CITIES[c] for c in names])
    web = pd.DataFrame(
        {
            "merchant_id": [f"web{k:03d}" for k in range(60)],
            "category": rng.choice(ONLINE, 60),
            "city": rng.integers(0, len(names), 60),
        }
    )
    horizon = days * 86400.0
    frames: list[pd.DataFrame] = []
    for card in range(n_cards):
        frames.append(_legit_card(card, rng, names, coords, web, days))
    legit = pd.concat(frames, ignore_index=True)
    legit = legit[legit["seconds"] < horizon].reset_index(drop=True)
    n_fraud_rows = fraud_share * len(legit)
    # Expected rows per event: point 1, testing 7.5, travel 1.5, takeover 5, contextual 1.
    per_event = np.array([_ROWS_PER_EVENT[k] for k in typologies])
    n_events = int(round(n_fraud_rows / per_event.mean()))
    if "compromised_merchant" in typologies:  # drawn only then: other sets keep their bytes
        web = web.assign(breach=np.nan)
        breached = pd.DataFrame(
            {
                "merchant_id": [f"web_new{k}" for k in range(3)],
                "category": rng.choice(["electronics", "gift_cards", "marketplace"], 3),
                "city": rng.integers(0, len(names), 3),
                "breach": (rng.uniform(7, days - 1, 3) // 1) * 86400.0 + 23.5 * 3600.0,
            }
        )
        web = pd.concat([web, breached], ignore_index=True)
    profiles = legit.groupby("card_id", sort=False)
    victims = rng.choice(n_cards, size=min(n_events, n_cards), replace=False)
    frauds = []
    for event, card in enumerate(victims):
        kind = typologies[event % len(typologies)]
        own = profiles.get_group(f"c{card:05d}")
        frauds.append(_typology_fraud(kind, own, rng, names, coords, web, days))
    frame = pd.concat([legit, *frauds], ignore_index=True)
    frame = frame[(frame["seconds"] >= 0) & (frame["seconds"] < horizon)]
    frame = frame.sort_values(["seconds", "card_id"], kind="stable").reset_index(drop=True)
    frame.insert(0, "transaction_id", [f"t{i:07d}" for i in range(len(frame))])
    stamps = origin + pd.to_timedelta(frame.pop("seconds").round(0), unit="s")
    frame.insert(2, "timestamp", stamps.dt.strftime("%Y-%m-%d %H:%M:%S"))
    return frame.drop(columns=["home_lat", "home_lon", "level", "usual_hour"])


def _legit_card(card, rng, names, coords, web, days) -> pd.DataFrame:
    home = int(rng.integers(0, len(names)))
    home_xy = coords[home]
    night_owl = rng.random() < 0.1
    usual_hour = float(rng.uniform(21.5, 25.5) % 24 if night_owl else rng.uniform(9.5, 16.5))
    hour_sd = float(rng.uniform(1.5, 3.0))
    level = float(np.exp(rng.normal(3.3, 0.5)))
    n_usual = int(rng.integers(3, 6))
    usual = rng.choice(EVERYDAY, n_usual, replace=False)
    cat_level = level * np.exp(rng.normal(0, 0.4, n_usual))
    n_local = int(rng.integers(5, 10))
    local_cat = rng.integers(0, n_usual, n_local)
    local_xy = home_xy + rng.normal(0, 0.04, (n_local, 2))
    shops = rng.choice(len(web), int(rng.integers(2, 6)), replace=False)
    rate = float(rng.uniform(2.0, 5.0))  # payments per day
    online_share = float(rng.uniform(0.05, 0.35))
    cid = f"c{card:05d}"

    n = int(rng.poisson(rate * days))
    day = rng.integers(0, days, n)
    hour = np.mod(rng.normal(usual_hour, hour_sd, n), 24.0)
    seconds = day * 86400.0 + hour * 3600.0
    online = rng.random(n) < online_share
    pick = rng.integers(0, n_local, n)
    new_local = rng.random(n) < 0.08  # an occasional new shop nearby, usual category
    merchant = np.array([f"{cid}_m{k}" for k in range(n_local)], dtype=object)[pick]
    merchant[new_local] = [f"{cid}_n{i}" for i in range(int(new_local.sum()))]
    category = usual[local_cat[pick]].astype(object)
    amount = cat_level[local_cat[pick]] * np.exp(rng.normal(0, 0.35, n))
    lat = local_xy[pick, 0] + rng.normal(0, 0.01, n)
    lon = local_xy[pick, 1] + rng.normal(0, 0.01, n)
    # Online: mostly the card's own web shops, sometimes one new to it (any of the shared
    # ones, often in a category it never used); evening shoppers buy online after work.
    explore = rng.random(n) < 0.12
    shop = web.iloc[np.where(explore, rng.integers(0, len(web), n), rng.choice(shops, n))]
    merchant[online] = shop["merchant_id"].to_numpy()[online]
    category[online] = shop["category"].to_numpy()[online]
    amount[online] = (level * np.exp(rng.normal(0.1, 0.5, n) + 0.4 * explore))[online]
    hq = coords[shop["city"].to_numpy()]
    lat[online], lon[online] = hq[online, 0], hq[online, 1]
    if rng.random() < 0.35:
        evening = np.mod(rng.normal(20.5, 1.5, n), 24.0)
        seconds[online] = (day * 86400.0 + evening * 3600.0)[online]
    parts = [
        dict(
            seconds=seconds,
            merchant_id=merchant,
            merchant_category=category,
            amount=amount,
            latitude=lat,
            longitude=lon,
            card_present=(~online).astype(int),
        )
    ]
    # Subscriptions: a fixed amount on a fixed day of the month, charged around 03:00.
    for k in range(int(rng.integers(0, 3))):
        sub = web.iloc[int(rng.integers(0, len(web)))]
        first = float(rng.uniform(0, 30))
        when = np.arange(first, days, 30.0) * 86400.0 + rng.uniform(2.5, 4.0) * 3600.0
        m = len(when)
        xy = coords[int(sub["city"])]
        parts.append(
            dict(
                seconds=when,
                merchant_id=np.full(m, f"sub{k}_{sub['merchant_id']}"),
                merchant_category=np.full(m, "subscription"),
                amount=np.full(m, round(float(rng.uniform(5, 20)), 2)),
                latitude=np.full(m, xy[0]),
                longitude=np.full(m, xy[1]),
                card_present=np.zeros(m, dtype=int),
            )
        )
    # A trip: fly to another city, pay there (new merchants, card present) for days.
    if rng.random() < 0.3:
        dest = int(rng.choice([c for c in range(len(names)) if c != home]))
        km = float(_km(home_xy, coords[dest]))
        leave = float(rng.uniform(7, days - 8)) * 86400.0 + 8 * 3600.0
        arrive = leave + (km / 700.0 + rng.uniform(2.0, 4.0)) * 3600.0
        stay = float(rng.uniform(2, 7)) * 86400.0
        m = int(rng.poisson(rate * stay / 86400.0)) + 2
        when = np.sort(arrive + rng.uniform(0, stay, m))
        when[0] = arrive
        trip_cats = np.array(["restaurant", "hotel", "transport", "bar", *usual])
        parts.append(
            dict(
                seconds=when,
                merchant_id=[f"{cid}_t{i}" for i in range(m)],
                merchant_category=rng.choice(trip_cats, m),
                amount=level * np.exp(rng.normal(0.2, 0.5, m)),
                latitude=coords[dest][0] + rng.normal(0, 0.04, m),
                longitude=coords[dest][1] + rng.normal(0, 0.04, m),
                card_present=np.ones(m, dtype=int),
            )
        )
        # No card-present payment at home while away, nor during the flight back.
        back = arrive + stay + (km / 700.0 + rng.uniform(2.0, 4.0)) * 3600.0
        away = (parts[0]["seconds"] > leave) & (parts[0]["seconds"] < back)
        away &= parts[0]["card_present"] == 1
        parts[0] = {k: np.asarray(v)[~away] for k, v in parts[0].items()}
    frame = pd.concat([pd.DataFrame(p) for p in parts], ignore_index=True)
    frame["seconds"] += rng.uniform(0, 60, len(frame))
    frame["amount"] = np.round(frame["amount"].astype(float), 2).clip(lower=0.5)
    frame["card_id"] = cid
    frame["is_fraud"] = 0
    frame["fraud_kind"] = ""
    frame["home_lat"], frame["home_lon"] = home_xy
    frame["level"] = level
    frame["usual_hour"] = usual_hour
    return frame


def _typology_fraud(kind, own, rng, names, coords, web, days) -> pd.DataFrame:
    cid = own["card_id"].iloc[0]
    level = float(own["level"].iloc[0])
    home_xy = own[["home_lat", "home_lon"]].iloc[0].to_numpy(dtype=float)
    used = set(own["merchant_category"])
    after = own[own["seconds"] > 7 * 86400.0]
    base = {"card_id": cid, "is_fraud": 1, "fraud_kind": kind}
    when = float(rng.uniform(7, days - 0.5)) * 86400.0
    if kind == "point_amount":
        cat = rng.choice([c for c in HIGH_VALUE if c not in used] or HIGH_VALUE)
        present = int(rng.random() < 0.5)
        xy = home_xy + rng.normal(0, 0.04, 2) if present else coords[rng.integers(len(names))]
        hour = (float(own["usual_hour"].iloc[0]) + rng.normal(0, 1.5)) % 24.0
        when = np.floor(when / 86400.0) * 86400.0 + hour * 3600.0
        rows = dict(
            seconds=[when],
            merchant_id=[f"{cid}_pa"],
            merchant_category=[cat],
            amount=[level * rng.uniform(6, 15)],
            latitude=[xy[0]],
            longitude=[xy[1]],
            card_present=[present],
        )
    elif kind == "card_testing":
        n = int(rng.integers(5, 11))
        t = when + np.cumsum(rng.uniform(5, 60, n))
        xy = coords[rng.integers(0, len(names), n)]
        rows = dict(
            seconds=t,
            merchant_id=[f"{cid}_ct{i}" for i in range(n)],
            merchant_category=rng.choice(ONLINE, n),
            amount=rng.uniform(0.5, 3.0, n),
            latitude=xy[:, 0],
            longitude=xy[:, 1],
            card_present=np.zeros(n, int),
        )
    elif kind == "impossible_travel":
        present = after[after["card_present"] == 1]
        anchor = present.iloc[int(rng.integers(len(present)))] if len(present) else None
        t0 = float(anchor["seconds"]) if anchor is not None else when
        xy0 = (
            anchor[["latitude", "longitude"]].to_numpy(dtype=float)
            if anchor is not None
            else home_xy
        )
        far = [c for c in range(len(names)) if _km(xy0, coords[c]) > 900]
        dest = coords[int(rng.choice(far))]
        n = int(rng.integers(1, 3))
        t = (
            t0
            + rng.uniform(20, 90) * 60.0
            + np.concatenate([[0.0], rng.uniform(5, 40, n - 1) * 60])
        )
        rows = dict(
            seconds=np.sort(t),
            merchant_id=[f"{cid}_it{i}" for i in range(n)],
            merchant_category=rng.choice(sorted(used & set(EVERYDAY)), n),
            amount=level * rng.uniform(0.8, 1.8, n),
            latitude=dest[0] + rng.normal(0, 0.03, n),
            longitude=dest[1] + rng.normal(0, 0.03, n),
            card_present=np.ones(n, int),
        )
    elif kind == "account_takeover":
        n = int(rng.integers(3, 8))
        evening = np.floor(when / 86400.0) * 86400.0 + rng.uniform(19, 21) * 3600.0
        t = np.sort(evening + rng.uniform(0, 7 * 3600.0, n))
        # Shared web shops in online categories the card never used: every merchant and
        # category occurs in other cards' normal payments.
        fresh = web[~web["category"].isin(used) & ~web["merchant_id"].str.startswith("web_new")]
        shop = (fresh if len(fresh) else web).sample(
            n, replace=True, random_state=int(rng.integers(1 << 31))
        )
        xy = coords[shop["city"].to_numpy()]
        rows = dict(
            seconds=t,
            merchant_id=shop["merchant_id"].to_numpy(),
            merchant_category=shop["category"].to_numpy(),
            amount=level * rng.uniform(1.2, 2.5, n),
            latitude=xy[:, 0],
            longitude=xy[:, 1],
            card_present=np.zeros(n, int),
        )
    elif kind == "compromised_merchant":
        breached = web[web["merchant_id"].str.startswith("web_new")]
        shop = breached.iloc[int(rng.integers(len(breached)))]
        xy = coords[int(shop["city"])]
        rows = dict(
            seconds=[float(shop["breach"]) + rng.uniform(0, 4 * 3600.0)],
            merchant_id=[shop["merchant_id"]],
            merchant_category=[shop["category"]],
            amount=[level * rng.uniform(1.5, 4.0)],
            latitude=[xy[0]],
            longitude=[xy[1]],
            card_present=[0],
        )
    else:  # contextual
        usual_hour = float(own["usual_hour"].iloc[0])
        hour = (usual_hour + 12.0 + rng.uniform(-1.5, 1.5)) % 24.0
        cat = rng.choice([c for c in EVERYDAY if c not in used])
        xy = home_xy + rng.normal(0, 0.04, 2)
        t = np.floor(when / 86400.0) * 86400.0 + hour * 3600.0
        rows = dict(
            seconds=[t],
            merchant_id=[f"{cid}_cx"],
            merchant_category=[cat],
            amount=[level * rng.uniform(0.7, 1.4)],
            latitude=[xy[0]],
            longitude=[xy[1]],
            card_present=[1],
        )
    frame = pd.DataFrame(rows).assign(**base)
    frame["amount"] = np.round(frame["amount"].astype(float), 2)
    return frame


def _km(a, b) -> float:
    a, b = np.radians(np.asarray(a, float)), np.radians(np.asarray(b, float))
    h = (
        np.sin((b[0] - a[0]) / 2) ** 2
        + np.cos(a[0]) * np.cos(b[0]) * np.sin((b[1] - a[1]) / 2) ** 2
    )
    return float(2 * 6371.0 * np.arcsin(np.sqrt(h)))
