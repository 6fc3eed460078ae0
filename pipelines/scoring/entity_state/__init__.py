"""Running per-entity state for one-record scoring (``vigil api``).

Instead of reading an entity's kept rows for every payment, a real-time scorer keeps per
card and per secondary entity value only the numbers the context features read
(:mod:`detectors.context.running`) and the sequence model's last rows, updated per
payment: in the process (:class:`MemoryStateStore`) or in Redis for several processes
(:class:`RedisStateStore`). The state is rebuilt from the store's kept history at start
(:func:`rebuild`), and the scored records go back to it (:class:`HistoryWriter`), so
batch scoring and a restarted scorer see them.
"""

from pipelines.scoring.entity_state.rebuild import kept_frame, rebuild
from pipelines.scoring.entity_state.stores import (
    CardState,
    Loaded,
    MemoryStateStore,
    RedisStateStore,
    StateStore,
    secondary_key,
)
from pipelines.scoring.history.writer import HistoryWriter

__all__ = [
    "CardState",
    "HistoryWriter",
    "Loaded",
    "MemoryStateStore",
    "RedisStateStore",
    "StateStore",
    "kept_frame",
    "rebuild",
    "secondary_key",
]
