"""Where the running entity state lives: in the process, or in Redis for several.

A payment reads and updates one card's state and one state per secondary entity value
(merchant, terminal). :class:`MemoryStateStore` holds them as objects in the process (the
embedded default). :class:`RedisStateStore` holds them in Redis, one key each, so several
``vigil api`` processes behind a load balancer (and a batch job) share one state; an
update is optimistic (WATCH, MULTI/EXEC): a payment whose card or merchant changed under
it in another process is computed again from the new state.

Bounded memory, deterministically: an entity whose newest record is older than
``history`` before the newest record seen holds nothing a later record can read, and is
dropped (exactly: it scores the same as a new one); beyond ``max_entities`` the least
recently updated go first (a card idle longest then starts from no state, the one
approximation). Redis keys expire ``history`` (wall-clock) after their last update.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from detectors.context.running import EntityState, KeyState
from pipelines.scoring.entity_state.resp import RespConnection


@dataclass
class CardState:
    """One entity's running state: its context numbers and its last model rows
    (time, values in the encoder's order) for the sequence model's window."""

    context: EntityState
    steps: list[tuple[float, list]] = field(default_factory=list)
    #: The last records' (id, result): a re-sent id (a client's retry) gets its answer
    #: again instead of counting twice.
    recent: list[tuple[str, dict]] = field(default_factory=list)
    #: The steps as the model encodes them, in this process only (not serialised).
    encoded: list = field(default_factory=list, repr=False)
    #: The model ``encoded`` was made for.
    encoded_for: Any = field(default=None, repr=False)

    @property
    def newest(self) -> float:
        return self.context.last

    def to_bytes(self) -> bytes:
        payload = {"c": self.context.to_dict(), "s": self.steps, "r": self.recent}
        return json.dumps(payload).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CardState:
        payload = json.loads(data)
        steps = [(float(t), list(row)) for t, row in payload["s"]]
        recent = [(str(i), dict(r)) for i, r in payload.get("r", [])]
        return cls(EntityState.from_dict(payload["c"]), steps, recent)

    def nbytes(self) -> int:
        """An estimate of its size in memory (Python objects included)."""
        rows = sum(120 + 40 * len(row) for _, row in self.steps)
        rows += sum(112 + e.nbytes for e in self.encoded)
        rows += sum(300 + 200 * len(r["reasons"]) for _, r in self.recent)
        return self.context.nbytes() + rows + 100


@dataclass
class Loaded:
    """The states one payment reads and updates."""

    entity_key: str
    card: CardState
    secondary: dict[str, KeyState | None]
    secondary_keys: dict[str, str]
    token: Any = None


class StateStore(Protocol):
    def load(self, entity: str, secondary: dict[str, str | None], new_card) -> Loaded: ...

    def commit(self, loaded: Loaded) -> bool:
        """Write the updated states; False when another writer got there first (the
        caller computes the payment again from a fresh :meth:`load`)."""
        ...


def secondary_key(column: str, value: str) -> str:
    return f"{column}\x1f{value}"


class MemoryStateStore:
    """The running state in this process (see the module docstring)."""

    def __init__(self, horizon: float, *, max_entities: int = 1_000_000) -> None:
        self.horizon = horizon
        self.max_entities = max_entities
        self.cards: OrderedDict[str, CardState] = OrderedDict()
        self.keys: OrderedDict[str, KeyState] = OrderedDict()
        self.newest = -math.inf
        self.evicted = 0
        self._commits = 0

    def load(self, entity: str, secondary: dict[str, str | None], new_card) -> Loaded:
        card = self.cards.get(entity)
        if card is None:
            card = self.cards[entity] = new_card()
        states: dict[str, KeyState | None] = {}
        keys: dict[str, str] = {}
        for column, value in secondary.items():
            if value is None:
                states[column] = None
                continue
            key = keys[column] = secondary_key(column, value)
            state = self.keys.get(key)
            if state is None:
                state = self.keys[key] = KeyState()
            states[column] = state
        return Loaded(entity, card, states, keys)

    def commit(self, loaded: Loaded) -> bool:
        self.cards.move_to_end(loaded.entity_key)
        for key in loaded.secondary_keys.values():
            self.keys.move_to_end(key)
        self.newest = max(self.newest, loaded.card.newest)
        self._commits += 1
        if len(self.cards) > self.max_entities:
            self._drop_oldest(self.cards, len(self.cards) - self.max_entities)
        if len(self.keys) > self.max_entities:
            self._drop_oldest(self.keys, len(self.keys) - self.max_entities)
        if self._commits % 10_000 == 0:
            self.age_out()
        return True

    def put(self, entity: str, card: CardState) -> None:
        self.cards[entity] = card
        self.newest = max(self.newest, card.newest)

    def put_key(self, key: str, state: KeyState) -> None:
        self.keys[key] = state

    def age_out(self) -> int:
        """Drop entities and keys with nothing within ``history`` of the newest record
        (exact: they score as new ones would). Returns how many went."""
        cutoff = self.newest - self.horizon
        stale = [k for k, c in self.cards.items() if c.newest < cutoff]
        for key in stale:
            del self.cards[key]
        stale_keys = [k for k, s in self.keys.items() if s.newest < cutoff]
        for key in stale_keys:
            del self.keys[key]
        return len(stale) + len(stale_keys)

    def _drop_oldest(self, states: OrderedDict, n: int) -> None:
        for _ in range(n):
            states.popitem(last=False)
            self.evicted += 1

    def nbytes(self) -> dict[str, float]:
        """Estimated bytes of the state: total, per entity and per secondary key."""
        cards = sum(c.nbytes() for c in self.cards.values())
        keys = sum(k.nbytes() + 100 for k in self.keys.values())
        return {
            "entities": len(self.cards),
            "keys": len(self.keys),
            "bytes": cards + keys,
            "bytes_per_entity": cards / max(len(self.cards), 1),
            "bytes_per_key": keys / max(len(self.keys), 1),
        }


class RedisStateStore:
    """The running state in Redis, shared by every process that uses the same
    ``prefix`` (see the module docstring)."""

    def __init__(
        self, url: str, prefix: str, horizon: float, *, connection: RespConnection | None = None
    ) -> None:
        self.connection = connection or RespConnection(url)
        self.prefix = prefix
        self.ttl = max(int(horizon), 1)
        self.conflicts = 0

    def _card_key(self, entity: str) -> str:
        return f"{self.prefix}:e:{entity}"

    def _other_key(self, key: str) -> str:
        return f"{self.prefix}:k:{key}"

    def load(self, entity: str, secondary: dict[str, str | None], new_card) -> Loaded:
        keys = {c: secondary_key(c, v) for c, v in secondary.items() if v is not None}
        names = [self._card_key(entity), *(self._other_key(k) for k in keys.values())]
        _, values = self.connection.pipeline([("WATCH", *names), ("MGET", *names)])
        card = CardState.from_bytes(values[0]) if values[0] else new_card()
        states: dict[str, KeyState | None] = {c: None for c in secondary}
        for (column, _), raw in zip(keys.items(), values[1:], strict=True):
            states[column] = KeyState.from_dict(json.loads(raw)) if raw else KeyState()
        return Loaded(entity, card, states, keys, token=names)

    def commit(self, loaded: Loaded) -> bool:
        commands: list[tuple] = [("MULTI",)]
        commands.append(
            ("SET", self._card_key(loaded.entity_key), loaded.card.to_bytes(), "EX", self.ttl)
        )
        for column, key in loaded.secondary_keys.items():
            state = loaded.secondary[column]
            payload = json.dumps(state.to_dict()).encode()
            commands.append(("SET", self._other_key(key), payload, "EX", self.ttl))
        commands.append(("EXEC",))
        replies = self.connection.pipeline(commands)
        if replies[-1] is None:  # a watched key changed: compute again
            self.conflicts += 1
            return False
        return True

    def release(self) -> None:
        self.connection.command("UNWATCH")

    def put_many(self, cards: Iterable[tuple[str, CardState]], keys) -> int:
        """Write rebuilt states (start-up from kept history), in pipelined batches."""
        written = 0
        batch: list[tuple] = []
        for entity, card in cards:
            batch.append(("SET", self._card_key(entity), card.to_bytes(), "EX", self.ttl))
            written += 1
            if len(batch) >= 500:
                self.connection.pipeline(batch)
                batch = []
        for key, state in keys:
            payload = json.dumps(state.to_dict()).encode()
            batch.append(("SET", self._other_key(key), payload, "EX", self.ttl))
            if len(batch) >= 500:
                self.connection.pipeline(batch)
                batch = []
        if batch:
            self.connection.pipeline(batch)
        return written

    def clear(self) -> int:
        """Delete every key of this prefix (a state to rebuild from scratch)."""
        cursor, deleted = b"0", 0
        while True:
            cursor, keys = self.connection.command(
                "SCAN", cursor, "MATCH", f"{self.prefix}:*", "COUNT", 1000
            )
            if keys:
                deleted += self.connection.command("DEL", *keys)
            if cursor == b"0":
                return deleted

    def is_empty(self) -> bool:
        cursor = b"0"
        while True:
            cursor, keys = self.connection.command(
                "SCAN", cursor, "MATCH", f"{self.prefix}:*", "COUNT", 1000
            )
            if keys:
                return False
            if cursor == b"0":
                return True

    def close(self) -> None:
        self.connection.close()
