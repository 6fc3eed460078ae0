"""The genuine side of the second card generator (``benchmarks.cardgen2``): cities,
merchants, customers and their habits, trips; no fraud here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# name, country, latitude, longitude, population weight
CITIES: tuple[tuple[str, str, float, float, float], ...] = (
    ("Paris", "FR", 48.857, 2.352, 9.0),
    ("Lyon", "FR", 45.764, 4.836, 2.5),
    ("Marseille", "FR", 43.296, 5.370, 2.0),
    ("Brussels", "BE", 50.847, 4.357, 2.0),
    ("Antwerp", "BE", 51.219, 4.402, 1.2),
    ("Amsterdam", "NL", 52.370, 4.895, 2.5),
    ("Rotterdam", "NL", 51.924, 4.478, 1.5),
    ("Berlin", "DE", 52.520, 13.405, 5.0),
    ("Hamburg", "DE", 53.551, 9.994, 3.0),
    ("Munich", "DE", 48.135, 11.582, 3.0),
    ("Cologne", "DE", 50.938, 6.960, 2.0),
    ("Madrid", "ES", 40.417, -3.704, 5.0),
    ("Barcelona", "ES", 41.385, 2.173, 4.0),
    ("Seville", "ES", 37.389, -5.984, 1.2),
    ("Lisbon", "PT", 38.722, -9.139, 2.0),
    ("Rome", "IT", 41.903, 12.496, 4.0),
    ("Milan", "IT", 45.464, 9.190, 3.5),
    ("Naples", "IT", 40.852, 14.268, 2.0),
    ("Vienna", "AT", 48.208, 16.373, 2.5),
    ("Zurich", "CH", 47.377, 8.541, 1.5),
    ("Warsaw", "PL", 52.230, 21.012, 2.5),
    ("Prague", "CZ", 50.076, 14.438, 1.5),
    ("Stockholm", "SE", 59.329, 18.069, 1.5),
    ("Copenhagen", "DK", 55.676, 12.568, 1.5),
    ("Dublin", "IE", 53.350, -6.260, 1.5),
    ("London", "GB", 51.507, -0.128, 8.0),
    ("Manchester", "GB", 53.481, -2.243, 2.0),
    ("Athens", "GR", 37.984, 23.728, 2.0),
    ("New York", "US", 40.713, -74.006, 0.6),
    ("Dubai", "AE", 25.205, 55.271, 0.4),
)
ONLINE_HUBS: tuple[str, ...] = ("Dublin", "Amsterdam", "London", "Stockholm", "Berlin")


def _profile(peaks: tuple[tuple[float, float, float], ...], base: float = 0.02) -> np.ndarray:
    """24 hour weights from circular bumps (centre hour, width in hours, height)."""
    hours = np.arange(24) + 0.5
    w = np.full(24, base)
    for centre, width, height in peaks:
        d = np.abs(hours - centre)
        d = np.minimum(d, 24 - d)
        w += height * np.exp(-0.5 * (d / width) ** 2)
    return w / w.sum()


@dataclass(frozen=True)
class Category:
    """How payments of one kind of merchant look: amount, channel, hours, days."""

    median: float
    sigma: float
    online: bool
    hours: np.ndarray
    week: tuple[float, ...] = (1, 1, 1, 1, 1, 1, 1)


_SHOP = (0.8, 0.8, 0.8, 0.9, 1.1, 2.0, 0.3)
CATEGORIES: dict[str, Category] = {
    "grocery": Category(
        38, 0.6, False, _profile(((11, 2, 1), (18, 2, 1.5))), (1, 1, 1, 1, 1.2, 1.6, 0.3)
    ),
    "cafe": Category(4.5, 0.35, False, _profile(((8, 1.5, 1.5), (15, 2, 0.6)))),
    "restaurant": Category(
        32, 0.5, False, _profile(((13, 1, 1), (20, 1.5, 1.3))), (0.8, 0.8, 0.9, 1, 1.5, 1.6, 1)
    ),
    "bar": Category(24, 0.6, False, _profile(((23, 2.5, 1),)), (0.4, 0.5, 0.7, 1, 1.8, 2, 0.6)),
    "fuel": Category(55, 0.3, False, _profile(((8, 2, 1), (17, 2, 1))), (1, 1, 1, 1, 1, 1.1, 0.8)),
    "pharmacy": Category(
        16, 0.6, False, _profile(((11, 3, 1), (17, 2, 0.8))), (1, 1, 1, 1, 1, 0.8, 0.2)
    ),
    "clothing": Category(55, 0.7, False, _profile(((14, 3, 1),)), _SHOP),
    "electronics": Category(160, 0.9, False, _profile(((15, 3, 1),)), _SHOP),
    "transit": Category(
        2.8, 0.4, False, _profile(((8, 1, 1.5), (18, 1, 1.2))), (1, 1, 1, 1, 1, 0.4, 0.3)
    ),
    "hotel": Category(130, 0.5, False, _profile(((10, 1.5, 1),))),
    "jewelry": Category(350, 0.8, False, _profile(((14, 3, 1),)), _SHOP),
    "marketplace": Category(35, 0.9, True, _profile(((13, 3, 0.7), (21, 2, 1.2)), 0.05)),
    "digital_goods": Category(9, 0.8, True, _profile(((21, 3, 1),), 0.05)),
    "food_delivery": Category(26, 0.4, True, _profile(((19.5, 1.5, 1), (12.5, 1, 0.4)))),
    "travel_booking": Category(180, 0.6, True, _profile(((12, 4, 1),), 0.05)),
    "streaming": Category(10, 0.3, True, _profile(((4, 1, 1),), 0.0)),
    "gift_cards": Category(50, 0.5, True, _profile(((15, 4, 1),), 0.05)),
    "donation": Category(20, 0.7, True, _profile(((20, 4, 1),), 0.05)),
}
PHYSICAL = [c for c, k in CATEGORIES.items() if not k.online]
_ONLINE = [c for c, k in CATEGORIES.items() if k.online]


@dataclass(frozen=True)
class Segment:
    """A kind of customer: activity, spending level, category mix, clock, weekly rhythm."""

    share: float
    rate: float  # payments a day
    scale: float  # spending level
    shift: int  # hours the day is shifted by
    trips_per_month: float
    mix: str  # "category weight, ..."
    week: tuple[float, ...] = (1, 1, 1, 1, 1, 1, 1)

    @property
    def weights(self) -> dict[str, float]:
        """The category mix as a dict."""
        pairs = (item.split() for item in self.mix.split(","))
        return {name: float(value) for name, value in pairs}


SEGMENTS: dict[str, Segment] = {
    "commuter": Segment(
        0.3, 2.8, 1.0, 0, 0.4,
        "transit 3, cafe 2, grocery 2, restaurant 1, fuel 0.5, marketplace 0.8,"
        " food_delivery 0.5, pharmacy 0.3, clothing 0.3, bar 0.4, digital_goods 0.3,"
        " electronics 0.05, gift_cards 0.05",
        (1.1, 1.1, 1.1, 1.1, 1.1, 0.7, 0.5),
    ),
    "student": Segment(
        0.15, 2.0, 0.6, 2, 0.3,
        "cafe 2, bar 2, food_delivery 1.5, transit 2, grocery 1.5, digital_goods 1,"
        " marketplace 0.6, clothing 0.3, electronics 0.03, gift_cards 0.05, donation 0.03",
        (1, 1, 1, 1.1, 1.3, 1.2, 0.6),
    ),
    "family": Segment(
        0.25, 2.2, 1.2, 0, 0.3,
        "grocery 4, fuel 1.5, pharmacy 1, clothing 0.8, restaurant 0.7, marketplace 1.2,"
        " electronics 0.1, food_delivery 0.4, gift_cards 0.08",
        (0.9, 0.9, 0.9, 0.9, 0.9, 1.5, 0.8),
    ),
    "affluent": Segment(
        0.1, 2.5, 2.0, 0, 1.0,
        "restaurant 2, grocery 1.5, clothing 1, marketplace 1, cafe 1, bar 0.6, electronics 0.2,"
        " jewelry 0.05, fuel 0.8, food_delivery 0.6, gift_cards 0.1, donation 0.1",
        (1, 1, 1, 1, 1, 1.2, 1),
    ),
    "retiree": Segment(
        0.12, 1.2, 0.9, -2, 0.5,
        "grocery 3, pharmacy 1.5, cafe 1, restaurant 0.6, clothing 0.3, fuel 0.5, donation 0.1",
        (1, 1, 1, 1, 1, 0.8, 0.5),
    ),
    "night_worker": Segment(
        0.08, 1.8, 0.9, 9, 0.2,
        "grocery 2, fuel 1.5, food_delivery 1.5, cafe 1, digital_goods 0.6, bar 0.3",
    ),
}  # fmt: skip


@dataclass
class World:
    """Cities and the merchant table (ids, categories, cities, coordinates)."""

    names: list[str]
    lat: np.ndarray
    lon: np.ndarray
    pop: np.ndarray
    # merchant table
    m_id: list[str] = field(default_factory=list)
    m_cat: list[str] = field(default_factory=list)
    m_city: list[int] = field(default_factory=list)
    m_lat: list[float] = field(default_factory=list)
    m_lon: list[float] = field(default_factory=list)
    by_city_cat: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    online_by_cat: dict[str, list[int]] = field(default_factory=dict)

    def add(self, mid: str, cat: str, city: int, lat: float, lon: float) -> int:
        self.m_id.append(mid)
        self.m_cat.append(cat)
        self.m_city.append(city)
        self.m_lat.append(lat)
        self.m_lon.append(lon)
        return len(self.m_id) - 1


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 12742.0 * math.asin(math.sqrt(min(1.0, a)))


def build_world(rng: np.random.Generator, n_cards: int) -> World:
    """Shops in every city (more in bigger ones, at least one of each kind) and a few online
    merchants per online category, registered in hub cities."""
    names = [c[0] for c in CITIES]
    w = World(
        names,
        np.array([c[2] for c in CITIES]),
        np.array([c[3] for c in CITIES]),
        np.array([c[4] for c in CITIES]) / sum(c[4] for c in CITIES),
    )
    shops = max(300, n_cards // 2)
    share = {
        "grocery": 3,
        "cafe": 3,
        "restaurant": 4,
        "bar": 2,
        "fuel": 1.5,
        "pharmacy": 1,
        "clothing": 2,
        "electronics": 0.7,
        "transit": 0.5,
        "hotel": 1.5,
        "jewelry": 0.4,
    }
    total = sum(share.values())
    for ci in range(len(names)):
        for cat in PHYSICAL:
            n = max(1, int(round(shops * w.pop[ci] * share[cat] / total)))
            ids = []
            for _ in range(n):
                r = 6.0 * math.sqrt(rng.uniform())  # km from the centre
                a = rng.uniform(0, 2 * math.pi)
                lat = w.lat[ci] + r * math.cos(a) / 111.0
                lon = w.lon[ci] + r * math.sin(a) / (111.0 * math.cos(math.radians(w.lat[ci])))
                ids.append(w.add(f"m{len(w.m_id):05d}", cat, ci, round(lat, 5), round(lon, 5)))
            w.by_city_cat[(ci, cat)] = ids
    hubs = [names.index(h) for h in ONLINE_HUBS]
    for cat in _ONLINE:
        n = int(rng.integers(4, 11))
        ids = []
        for _ in range(n):
            ci = int(rng.choice(hubs))
            ids.append(w.add(f"w{len(w.m_id):05d}", cat, ci, float(w.lat[ci]), float(w.lon[ci])))
        w.online_by_cat[cat] = ids
    return w


@dataclass
class Card:
    """One card holder's habits, fixed before any payment is drawn."""

    cid: str
    segment: str
    home: int
    work: int
    rate: float
    weights: dict[str, float]
    scale: dict[str, float]
    hours: dict[str, np.ndarray]
    favourites: dict[str, list[int]]
    # merchant, amount, day of month, second of day
    subscriptions: list[tuple[int, float, int, int]]
    trips: list[tuple[float, float, float, float, int]] = field(default_factory=list)
    activity: np.ndarray = field(default_factory=lambda: np.ones(24) / 24)


def make_card(rng: np.random.Generator, w: World, idx: int) -> Card:
    """A customer of a random kind with personal category mix, spending, clock and merchants."""
    seg_names = list(SEGMENTS)
    seg_name = seg_names[int(rng.choice(len(seg_names), p=[SEGMENTS[s].share for s in seg_names]))]
    seg = SEGMENTS[seg_name]
    home = int(rng.choice(len(w.names), p=w.pop))
    work = home
    if seg_name == "commuter" and rng.uniform() < 0.5:
        near = [
            c
            for c in range(len(w.names))
            if c != home and haversine_km(w.lat[home], w.lon[home], w.lat[c], w.lon[c]) < 130
        ]
        if near:
            work = int(rng.choice(near))
    weights = {c: v * float(rng.gamma(2.0, 0.5)) for c, v in seg.weights.items()}
    top = max(weights, key=weights.__getitem__)
    weights = {c: v for c, v in weights.items() if c == top or rng.uniform() > 0.2}
    level = seg.scale * float(rng.lognormal(0, 0.3))
    scale = {c: level * float(rng.lognormal(0, 0.25)) for c in CATEGORIES}
    shift = seg.shift + int(round(rng.normal(0, 1)))
    hours = {c: np.roll(k.hours, shift) for c, k in CATEGORIES.items()}
    favourites: dict[str, list[int]] = {}
    for cat in weights:
        pool = w.online_by_cat[cat] if CATEGORIES[cat].online else w.by_city_cat[(home, cat)]
        k = min(len(pool), int(rng.integers(1, 5)))
        favourites[cat] = [int(m) for m in rng.choice(pool, size=k, replace=False)]
    subs = []
    for _ in range(int(rng.choice(4, p=[0.3, 0.35, 0.25, 0.1]))):
        m = int(rng.choice(w.online_by_cat["streaming"]))
        amt = float(rng.choice([4.99, 7.99, 9.99, 12.99, 15.99]))
        subs.append((m, amt, int(rng.integers(1, 29)), int(rng.integers(2 * 3600, 6 * 3600))))
    total = sum(weights.values())
    activity = sum((v / total) * hours[c] for c, v in weights.items())
    return Card(
        f"card{idx:05d}",
        seg_name,
        home,
        work,
        seg.rate * float(rng.lognormal(0, 0.4)),
        weights,
        scale,
        hours,
        favourites,
        subs,
        activity=activity,
    )


def plan_trips(rng: np.random.Generator, w: World, card: Card, days: int) -> None:
    """Trips as (leave, arrive, leave back, arrive home, city), seconds from the start."""
    seg = SEGMENTS[card.segment]
    n = int(rng.poisson(seg.trips_per_month * days / 30.0))
    day = 1.0
    for _ in range(n):
        day = day + float(rng.uniform(2, max(3.0, days / max(n, 1))))
        length = int(rng.integers(2, 8))
        if day + length + 1 >= days:
            break
        dests = [c for c in range(len(w.names)) if c not in (card.home, card.work)]
        p = w.pop[dests] / w.pop[dests].sum()
        dest = int(rng.choice(dests, p=p))
        km = haversine_km(w.lat[card.home], w.lon[card.home], w.lat[dest], w.lon[dest])
        travel_h = km / 140.0 if km < 600 else km / 750.0 + 2.5
        leave = (int(day) + float(rng.uniform(6, 17)) / 24.0) * 86400.0
        arrive = leave + travel_h * 3600.0
        back = (int(day) + length + float(rng.uniform(9, 19)) / 24.0) * 86400.0
        card.trips.append((leave, arrive, back, back + travel_h * 3600.0, dest))
        day = day + length


def _where(card: Card, t: float) -> int | None:
    """The city the card holder is in at t seconds, None while travelling."""
    for leave, arrive, back, home_again, dest in card.trips:
        if leave <= t < arrive or back <= t < home_again:
            return None
        if arrive <= t < back:
            return dest
    return card.home


# card, seconds from the start, merchant index, amount, card_present, fraud_type
Row = tuple[str, float, int, float, int, str]


def amount_of(rng: np.random.Generator, cat: str, scale: float) -> float:
    """A payment amount of the category, at the given spending level."""
    k = CATEGORIES[cat]
    return round(max(0.5, float(rng.lognormal(math.log(k.median * scale), k.sigma))), 2)


def genuine_rows(
    rng: np.random.Generator, w: World, card: Card, days: int, weekday0: int
) -> list[Row]:
    """The card holder's own payments: daily life by weekday and hour, at home, at work or
    on a trip; subscriptions; each trip's booking and hotel."""
    rows: list[Row] = []
    seg = SEGMENTS[card.segment]
    cats = list(card.weights)
    base = np.array([card.weights[c] for c in cats])
    for d in range(days):
        wd = (weekday0 + d) % 7
        n = int(rng.poisson(card.rate * seg.week[wd]))
        if n:
            p = base * np.array([CATEGORIES[c].week[wd] for c in cats])
            p = p / p.sum()
            for ci in rng.choice(len(cats), size=n, p=p):
                cat = cats[int(ci)]
                t = (
                    d * 86400.0
                    + int(rng.choice(24, p=card.hours[cat])) * 3600.0
                    + float(rng.uniform(0, 3600))
                )
                online = CATEGORIES[cat].online
                where = _where(card, t)
                if online:
                    favs = card.favourites[cat]
                    m = favs[0] if rng.uniform() < 0.5 else int(rng.choice(favs))
                    if rng.uniform() < 0.05:
                        m = int(rng.choice(w.online_by_cat[cat]))
                elif where is None:
                    continue
                elif where != card.home or (
                    card.work != card.home
                    and wd < 5
                    and 8 <= (t % 86400) / 3600 < 18
                    and rng.uniform() < 0.6
                ):
                    city = where if where != card.home else card.work
                    m = int(rng.choice(w.by_city_cat[(city, cat)]))
                else:
                    favs = card.favourites[cat]
                    m = (
                        int(rng.choice(favs))
                        if rng.uniform() < 0.9
                        else int(rng.choice(w.by_city_cat[(where, cat)]))
                    )
                amount = amount_of(rng, cat, card.scale[cat])
                if rng.uniform() < 0.01:  # the occasional genuine splurge
                    amount = round(amount * float(rng.uniform(3, 6)), 2)
                # a phone order at a restaurant is keyed in (card not present) at the shop
                keyed = cat == "restaurant" and rng.uniform() < 0.03
                rows.append((card.cid, t, m, amount, 0 if online or keyed else 1, ""))
        for m, amt, dom, sec in card.subscriptions:
            if (d % 30) + 1 == dom:
                rows.append((card.cid, d * 86400.0 + sec, m, amt, 0, ""))
    for leave, arrive, back, _home, dest in card.trips:
        booked = leave - float(rng.uniform(3, 40)) * 86400.0
        if booked > 0:
            m = int(rng.choice(w.online_by_cat["travel_booking"]))
            rows.append(
                (
                    card.cid,
                    booked,
                    m,
                    amount_of(rng, "travel_booking", card.scale["travel_booking"]),
                    0,
                    "",
                )
            )
        hotel = int(rng.choice(w.by_city_cat[(dest, "hotel")]))
        nights = max(1, int((back - arrive) // 86400))
        amt = round(amount_of(rng, "hotel", card.scale["hotel"]) * nights, 2)
        if booked > 0 and rng.uniform() < 0.4:  # paid in advance, keyed in by the hotel
            rows.append((card.cid, booked + float(rng.uniform(60, 3600)), hotel, amt, 0, ""))
        else:
            t = max(arrive + 3600.0, back - float(rng.uniform(1, 4)) * 3600.0)
            rows.append((card.cid, t, hotel, amt, 1, ""))
    return rows
