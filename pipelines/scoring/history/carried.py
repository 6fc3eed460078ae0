"""Entity history carried between the chunks of a streamed sequence batch.

A file read in time order is scored chunk by chunk, each chunk against the rows that a
later record can still reach: the kept history the batch started with, then the earlier
chunks' records within the look-back. Memory stays bounded by what the horizon holds
rather than by the file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.context import time_to_seconds
from pipelines.modeling.bundle import ScoringBundle
from pipelines.scoring.history.base import PastRecords


class CarriedHistory:
    """The carried tail of a streamed batch (an :class:`EntityHistory`): ``frame``, the
    rows within the bundle's look-back of the newest record so far, as the kept history
    frames them (id, raw columns, features), for context; and ``windows``, each entity's
    last records (the detector's model input), for a sequence detector's windows.

    Records must come in time order (none earlier than one already carried): then a row
    pruned here is out of reach of every later record. ``history``: the kept records the
    batch starts from (ids the batch repeats left out already)."""

    def __init__(self, bundle: ScoringBundle, history: pd.DataFrame | None) -> None:
        self._bundle = bundle
        self._time = bundle.spec.time_column
        self._reach = float(bundle.look_back_seconds() or 0.0)
        detector = getattr(bundle, "detector", None)
        horizon = getattr(detector, "history_seconds", None)
        self._window_reach = None if horizon is None else float(horizon)
        self.frame: pd.DataFrame | None = None
        self.windows: pd.DataFrame | None = None
        self._seconds = np.empty(0)
        if history is not None and len(history):
            self.frame = history.reset_index(drop=True)
            self._seconds = time_to_seconds(self.frame[self._time], self._time)
            self.windows = bundle.window_history(self.frame, self.frame)

    @property
    def rows(self) -> int:
        return 0 if self.frame is None else len(self.frame)

    def before(self, records: pd.DataFrame) -> PastRecords:
        """The carried rows (ids are unique across a stream's chunks: none is the
        records' own)."""
        if self.frame is None or not len(records):
            return PastRecords.none()
        start = float(np.nanmin(time_to_seconds(records[self._time], self._time)))
        gap = max(0.0, start - float(self._seconds.max()))
        return PastRecords(frame=self.frame, rows=self.rows, gap_seconds=gap)

    def extend(self, state: pd.DataFrame) -> None:
        """Carry records just given their context; drop the rows now out of every later
        record's reach."""
        if not len(state):
            return
        seconds = time_to_seconds(state[self._time], self._time)
        if self.frame is None:
            frame, all_seconds = state.reset_index(drop=True), seconds
        else:
            frame = pd.concat([self.frame, state], ignore_index=True)
            all_seconds = np.concatenate([self._seconds, seconds])
        keep = all_seconds >= float(all_seconds.max()) - self._reach
        if not keep.all():
            frame = frame.loc[keep].reset_index(drop=True)
            all_seconds = all_seconds[keep]
        self.frame, self._seconds = frame, all_seconds

    def windows_for(self, features: pd.DataFrame) -> pd.DataFrame | None:
        """The carried window rows of ``features``' entities (None: the detector reads no
        windows), then carry ``features``' own records for the next ones."""
        bundle = self._bundle
        windows = None if self.windows is None else bundle.window_history(self.windows, features)
        carried = features if self.windows is None else pd.concat([self.windows, features])
        self.windows = bundle.window_history(carried, carried)
        if self.windows is not None and self._window_reach is not None and len(self.windows):
            seconds = time_to_seconds(self.windows[self._time], self._time)
            self.windows = self.windows.loc[seconds >= seconds.max() - self._window_reach]
        return windows
