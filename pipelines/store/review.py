"""What the review app needs from the store besides :class:`ResultsStore`: the verdicts
and reason codes an analyst may give, the queue's filters, sorts and pages, and the
errors it turns into answers."""

from pipelines.store.cases import VERDICTS
from pipelines.store.errors import Conflict, NotFound, ReviewError, now_utc
from pipelines.store.queue import SORTS, QueueFilters, QueuePage
from pipelines.store.vocabulary import REASON_CODES

__all__ = [
    "REASON_CODES",
    "SORTS",
    "VERDICTS",
    "Conflict",
    "NotFound",
    "QueueFilters",
    "QueuePage",
    "ReviewError",
    "now_utc",
]
