"""Entity history in sequence mode: the earlier records a batch is scored against."""

from pipelines.scoring.history.carried import CarriedTail
from pipelines.scoring.history.kept import (
    EntityHistory,
    HistoryParts,
    context_signature,
    load_entity_history,
    load_history_before,
    prune_entity_history,
    save_entity_history,
)
from pipelines.scoring.history.live import LiveHistory

__all__ = [
    "CarriedTail",
    "EntityHistory",
    "HistoryParts",
    "LiveHistory",
    "context_signature",
    "load_entity_history",
    "load_history_before",
    "prune_entity_history",
    "save_entity_history",
]
