"""The one interface of entity history, and what its three homes share.

:class:`EntityHistory` is what batch scoring, streamed scoring and the one-record API
ask of the past: ``before(records)``, the earlier records that ``records`` are scored
against, and ``extend(state)``, the records just scored joining it. :class:`PastRecords`
is what ``before`` answers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from detectors.context import ContextConfig, build_context_features
from pipelines.intake.spec import DatasetSpec


@dataclass
class PastRecords:
    """The earlier records a batch is scored against, and how well they cover the time
    before it.

    ``frame``: the records as kept (id, raw columns, the features they were given when
    they were new), in time order; None when there are none.
    """

    frame: pd.DataFrame | None
    rows: int
    #: Seconds between the newest kept record and the batch's first record (None: no history).
    gap_seconds: float | None
    #: Kept under another context config, and their features recomputed.
    stale: bool = False

    @classmethod
    def none(cls, gap_seconds: float | None = None) -> PastRecords:
        return cls(frame=None, rows=0, gap_seconds=gap_seconds)

    def describe(self) -> str:
        if self.gap_seconds is None:
            return "no entity history kept yet: context comes from this batch alone"
        text = f"{self.rows} earlier records as context"
        if self.gap_seconds > 86400:
            text += f"; history ends {self.gap_seconds / 86400:.1f} days before this batch"
        if self.stale:
            text += "; kept with another context config, features recomputed"
        return text


class EntityHistory(Protocol):
    """Earlier records of a data set's entities, as context for the records scored next.

    Implemented over the results store for a batch (:class:`~.kept.KeptHistory`), over
    the earlier chunks of a streamed file (:class:`~.carried.CarriedHistory`) and in
    memory for one-record requests (:class:`~.live.LiveHistory`); each gives the rows
    the others would give for the same records, so a record scores the same on every
    path.
    """

    def before(self, records: pd.DataFrame) -> PastRecords:
        """The records of the context's ``history`` before ``records``' first one, none
        of ``records``' own ids, each id's last copy."""
        ...

    def extend(self, state: pd.DataFrame) -> None:
        """Keep records just scored (``PreparedRecords.state``: id, raw columns,
        features) for the records after them."""
        ...


def context_signature(spec: DatasetSpec) -> str:
    """Identifies the context features a record was given (changes when the spec does)."""
    config = spec.context
    payload = {"context": config.to_dict() if config else None, "features": spec.feature_columns}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def with_features_of(config: ContextConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s rows (in time order) with their context features rebuilt under
    ``config``: rows kept under another config carry features the model does not read.
    The oldest rows then lack part of their own history."""
    context = build_context_features(frame[config.raw_columns], config)
    return pd.concat([frame.drop(columns=context.columns, errors="ignore"), context], axis=1)
