"""The carried tail of a streamed sequence batch: what later chunks can still reach of
the chunks before them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.context import time_to_seconds
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle


class CarriedTail:
    """What later records can still reach of the records before them: ``frame``, the
    rows within the bundle's look-back of the newest record so far, as the kept history
    frames them (id, raw columns, features), for context; and ``windows``, each entity's
    last records (the detector's model input), for a sequence detector's windows.

    Records must come in time order (none earlier than one already carried): then a row
    pruned here is out of reach of every later record."""

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

    def prepare(self, clean: pd.DataFrame) -> PreparedRecords:
        """Records' features in the context of the carried rows, which then carry them
        (``history`` is left to :meth:`window_history`)."""
        prepared = self._bundle.prepare(clean, self.frame)
        prepared.history = None
        self._carry(prepared.state)
        return prepared

    def _carry(self, state: pd.DataFrame) -> None:
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

    def window_history(self, features: pd.DataFrame) -> pd.DataFrame | None:
        """The carried window rows of ``features``' entities (None: no windows), then
        carry ``features``' own records for the next ones."""
        bundle = self._bundle
        windows = None if self.windows is None else bundle.window_history(self.windows, features)
        carried = features if self.windows is None else pd.concat([self.windows, features])
        self.windows = bundle.window_history(carried, carried)
        if self.windows is not None and self._window_reach is not None and len(self.windows):
            seconds = time_to_seconds(self.windows[self._time], self._time)
            self.windows = self.windows.loc[seconds >= seconds.max() - self._window_reach]
        return windows
