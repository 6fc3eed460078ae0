"""Entity history in sequence mode: the earlier records a batch is scored against.

A record's context features (and a sequence detector's windows) read its entity's past,
at most the context's ``history`` back. That past lives in one of three places, behind
one interface, :class:`EntityHistory`: ``before(records)`` gives the earlier records
``records`` are scored against (:class:`PastRecords`), ``extend(state)`` keeps the
records just scored for the ones after them.

- :class:`KeptHistory`: the results store's kept segments, read once per batch by batch
  scoring and written after it (and after training, the tail of the training records).
- :class:`CarriedHistory`: a streamed file's carried tail, the kept history plus the
  earlier chunks' records still within reach.
- :class:`LiveHistory`: the store's history held in memory by the one-record API, kept
  records written back in batches.

Each gives a record the rows the others would give it, so it scores the same on every
path. The results store holds the kept segments (its history methods: save, load, list,
prune); this package decides which rows a batch sees, which it keeps (a streamed batch's
one per chunk: :class:`HistoryParts`) and when they go.
"""

from pipelines.scoring.history.base import EntityHistory, PastRecords, context_signature
from pipelines.scoring.history.carried import CarriedHistory
from pipelines.scoring.history.kept import HistoryParts, KeptHistory
from pipelines.scoring.history.live import LiveHistory

__all__ = [
    "CarriedHistory",
    "EntityHistory",
    "HistoryParts",
    "KeptHistory",
    "LiveHistory",
    "PastRecords",
    "context_signature",
]
