"""Causal per-entity context features for sequence data (card transactions and the like).

A card-testing burst or a payment 800 km from the last one is invisible in a single row;
it shows only against the entity's own past. :func:`build_context_features` turns raw
columns into features that describe each record *in the context of its entity's history*:
time since the previous record, counts and amount sums over trailing windows, the amount
relative to the entity's own history, first time at a merchant/category, time of day and
weekday (cyclic), distance and implied speed from the previous located record, and the
recent activity of secondary entities (terminals, merchants).

Two properties hold by construction and are what make batch scoring honest:

* **Causal**: a record's features use only records that come before it (time, then input
  order for ties) plus itself, never a later one.
* **Bounded**: nothing looks further back than ``history`` (default 30 days). So scoring a
  batch alone, given the records of the ``history`` before its first record, gives the
  same features as computing them inside one big file. The pipelines keep exactly that
  tail per data set between batches.

Everything is vectorised numpy/pandas (sort + searchsorted + cumulative sums); there is no
per-row Python.

:class:`ContextConfig` (:mod:`.config`) says which features to build; it is also the
``context`` section of a pipelines data-set spec, read as it is. :mod:`.features` builds
them, :mod:`.reasons` puts one record's in words.
"""

from detectors.context.config import HISTORY_COUNT_CAP, PREFIX, ContextConfig
from detectors.context.features import build_context_features, time_to_seconds
from detectors.context.reasons import context_reading, describe_context

__all__ = [
    "PREFIX",
    "HISTORY_COUNT_CAP",
    "ContextConfig",
    "build_context_features",
    "context_reading",
    "describe_context",
    "time_to_seconds",
]
