"""What the running context keeps per key: an entity's or a secondary entity value's
records within ``history``, and the few extra marks some features read.

Every structure is bounded by time: records older than ``history`` (or than the window
a mark serves) before the key's newest record are dropped as records arrive, so an
entity holds at most its records of the last ``history`` and a few small arrays. The
states serialise to plain JSON values (arrays as base64 of their float64 bytes) for a
snapshot or Redis.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from bisect import bisect_left, bisect_right

#: Dropping a state's expired head waits until it holds this many records (amortises the
#: copy), or half the state.
TRIM_BLOCK = 64


class KeyState:
    """The records of one key (an entity or a secondary entity value) within ``history``:
    their times in order, and prefix sums of their amounts (missing = 0) and squares."""

    __slots__ = ("cum", "sq", "t")

    def __init__(self) -> None:
        self.t = array("d")
        self.cum = array("d", [0.0])
        self.sq = array("d", [0.0])

    @property
    def newest(self) -> float:
        return self.t[-1] if self.t else -math.inf

    def add(self, seconds: float, amount: float) -> int:
        """Add a record; its position among the earlier-or-equal times (arrival order
        kept among equal times)."""
        t = self.t
        if not t or seconds >= t[-1]:
            t.append(seconds)
            self.cum.append(self.cum[-1] + amount)
            self.sq.append(self.sq[-1] + amount * amount)
            return len(t) - 1
        pos = bisect_right(t, seconds)
        # A late record: the prefix sums after it are rebuilt (rare, O(records kept)).
        cum, sq = self.cum, self.sq
        amounts = [amount, *(cum[i + 1] - cum[i] for i in range(pos, len(t)))]
        squares = [amount * amount, *(sq[i + 1] - sq[i] for i in range(pos, len(t)))]
        t.insert(pos, seconds)
        new_cum, new_sq = cum[: pos + 1], sq[: pos + 1]
        total, total_sq = cum[pos], sq[pos]
        for a, q in zip(amounts, squares, strict=True):
            total += a
            total_sq += q
            new_cum.append(total)
            new_sq.append(total_sq)
        self.cum, self.sq = new_cum, new_sq
        return pos

    def span(self, start: float, end: int, *, inclusive: bool) -> tuple[int, int]:
        """Positions [left, end) of the records before position ``end`` with time > start
        (>= start with ``inclusive``)."""
        left = (
            bisect_left(self.t, start, 0, end) if inclusive else bisect_right(self.t, start, 0, end)
        )
        return left, end

    def totals(self, left: int, right: int) -> tuple[int, float, float]:
        return right - left, self.cum[right] - self.cum[left], self.sq[right] - self.sq[left]

    def amounts(self, left: int, right: int) -> list[float]:
        """The amounts of the records at positions [left, right) (from the prefix sums:
        exact to the sums' rounding, far below any feature's tolerance)."""
        cum = self.cum
        return [cum[i + 1] - cum[i] for i in range(left, right)]

    def trim(self, before: float) -> int:
        """Forget records older than ``before`` (in blocks); how many were dropped."""
        k = bisect_left(self.t, before)
        if k >= TRIM_BLOCK or (k and 2 * k >= len(self.t)):
            del self.t[:k]
            self.cum, self.sq = rebased(self.cum, k), rebased(self.sq, k)
            return k
        return 0

    def to_dict(self) -> dict:
        """Plain JSON values; the arrays as base64 of their float64 bytes (exact, and
        several times faster to write and read than lists of numbers)."""
        return {k: packed(getattr(self, k)) for k in ("t", "cum", "sq")}

    @classmethod
    def from_dict(cls, data: dict) -> KeyState:
        state = cls()
        state.t, state.cum, state.sq = (unpacked(data[k]) for k in ("t", "cum", "sq"))
        return state

    def nbytes(self) -> int:
        return 3 * 64 + 8 * (len(self.t) + len(self.cum) + len(self.sq))


class EntityState(KeyState):
    """An entity's records within ``history`` (a :class:`KeyState`), the last time each
    novelty value was seen, its last located record, its last record's time, and

    * ``marks``: named sorted time arrays some features count in a window: the records
      first at a novelty value (``new:i:j``, ``rated:i:j``, ``base:i``), the located
      records of the travel window with their speeds (``travel`` / ``speed``), the
      records per hour of day (``hour:b``);
    * ``profile``: per profile column, the times of the records at each value;
    * ``hour_sin`` / ``hour_cos``: with the usual hour on, prefix sums of the sine and
      cosine of each record's hour-of-day angle, aligned with ``t`` like ``cum``.
    """

    __slots__ = ("hour_cos", "hour_sin", "last", "located", "marks", "profile", "seen")

    def __init__(self, n_novelty: int = 0, n_profile: int = 0) -> None:
        super().__init__()
        self.last = -math.inf
        self.seen: list[dict[str, float]] = [{} for _ in range(n_novelty)]
        self.located: tuple[float, float, float] | None = None
        self.marks: dict[str, array] = {}
        self.profile: list[dict[str, array]] = [{} for _ in range(n_profile)]
        self.hour_sin = array("d", [0.0])
        self.hour_cos = array("d", [0.0])

    def add_hour(self, pos: int, angle: float) -> None:
        """Record the hour angle of the record just added at position ``pos``."""
        self.hour_sin = _inserted(self.hour_sin, pos, math.sin(angle))
        self.hour_cos = _inserted(self.hour_cos, pos, math.cos(angle))

    def hour_sums(self, left: int, right: int) -> tuple[float, float] | None:
        """(sum of sines, sum of cosines) of the hour angles at positions [left, right);
        None where the sums do not cover every record (a state kept without them)."""
        if len(self.hour_sin) != len(self.cum):
            return None
        sin, cos = self.hour_sin, self.hour_cos
        return sin[right] - sin[left], cos[right] - cos[left]

    def trim(self, before: float) -> int:
        k = super().trim(before)
        if k and len(self.hour_sin) > k:
            self.hour_sin, self.hour_cos = rebased(self.hour_sin, k), rebased(self.hour_cos, k)
        return k

    def mark(self, name: str, seconds: float, keep_after: float) -> int:
        """Add ``seconds`` to the mark ``name`` (dropping its times before
        ``keep_after``); its position there."""
        times = self.marks.get(name)
        if times is None:
            times = self.marks[name] = array("d")
        return insert_time(times, seconds, keep_after)

    def add_speed(self, seconds: float, speed: float, keep_after: float) -> None:
        """Add a located record's time and implied speed to the travel window's marks."""
        times = self.marks.get("travel")
        if times is None:
            times = self.marks["travel"] = array("d")
            self.marks["speed"] = array("d")
        speeds = self.marks["speed"]
        if not times or seconds >= times[-1]:
            times.append(seconds)
            speeds.append(speed)
        else:
            pos = bisect_right(times, seconds)
            times.insert(pos, seconds)
            speeds.insert(pos, speed)
        if times[0] < keep_after:
            k = bisect_left(times, keep_after)
            del times[:k], speeds[:k]

    def to_dict(self) -> dict:
        return {
            **super().to_dict(),
            "last": self.last if math.isfinite(self.last) else None,
            "seen": self.seen,
            "located": list(self.located) if self.located else None,
            "marks": {k: packed(v) for k, v in self.marks.items()},
            "profile": [{k: packed(v) for k, v in p.items()} for p in self.profile],
            "hour_sin": packed(self.hour_sin),
            "hour_cos": packed(self.hour_cos),
        }

    @classmethod
    def from_dict(cls, data: dict) -> EntityState:
        state = cls(len(data["seen"]), len(data.get("profile", [])))
        state.t, state.cum, state.sq = (unpacked(data[k]) for k in ("t", "cum", "sq"))
        state.last = -math.inf if data["last"] is None else float(data["last"])
        state.seen = [dict(s) for s in data["seen"]]
        state.located = tuple(data["located"]) if data["located"] else None
        state.marks = {k: unpacked(v) for k, v in data.get("marks", {}).items()}
        state.profile = [{k: unpacked(v) for k, v in p.items()} for p in data.get("profile", [])]
        if "hour_sin" in data:
            state.hour_sin, state.hour_cos = unpacked(data["hour_sin"]), unpacked(data["hour_cos"])
        return state

    def nbytes(self) -> int:
        seen = sum(48 + 100 * len(s) for s in self.seen)
        marks = sum(120 + 8 * len(v) for v in self.marks.values())
        profile = sum(48 + sum(150 + 8 * len(v) for v in p.values()) for p in self.profile)
        hours = 128 + 8 * (len(self.hour_sin) + len(self.hour_cos))
        return super().nbytes() + seen + marks + profile + hours + 200


def rebased(prefix: array, k: int) -> array:
    """Prefix sums ``prefix`` without their first ``k`` records (restarted at 0)."""
    base = prefix[k]
    return array("d", (v - base for v in prefix[k:]))


def _inserted(prefix: array, pos: int, value: float) -> array:
    """Prefix sums with ``value`` inserted as the record at ``pos`` (appended: O(1); a
    late record rebuilds the sums after it)."""
    if pos == len(prefix) - 1:
        prefix.append(prefix[-1] + value)
        return prefix
    values = [value, *(prefix[i + 1] - prefix[i] for i in range(pos, len(prefix) - 1))]
    out = prefix[: pos + 1]
    total = prefix[pos]
    for v in values:
        total += v
        out.append(total)
    return out


def insert_time(times: array, seconds: float, keep_after: float) -> int:
    """Insert ``seconds`` into the sorted ``times`` (after equal ones) and drop the times
    before ``keep_after``; the position it went to."""
    if not times or seconds >= times[-1]:
        times.append(seconds)
        pos = len(times) - 1
    else:
        pos = bisect_right(times, seconds)
        times.insert(pos, seconds)
    if times[0] < keep_after:
        k = bisect_left(times, keep_after)
        del times[:k]
        pos -= k
    return pos


def count_between(times: array | None, low: float, high: float, *, closed: bool) -> int:
    """How many of the sorted ``times`` lie in (low, high] ([low, high] with ``closed``)."""
    if not times:
        return 0
    left = bisect_left(times, low) if closed else bisect_right(times, low)
    return bisect_right(times, high) - left


def packed(values: array) -> str:
    """float64 little-endian bytes, base64 (the same text on any machine)."""
    if sys.byteorder == "big":
        values = array("d", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def unpacked(data: str | list) -> array:
    if isinstance(data, list):
        return array("d", data)
    values = array("d")
    values.frombytes(base64.b64decode(data))
    if sys.byteorder == "big":
        values.byteswap()
    return values
