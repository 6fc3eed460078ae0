"""Windows over an entity's records, and what both sequence detectors share.

A sequence frame holds one row per record with the feature columns plus an entity column
(e.g. ``card_id``) and a time column (float/int seconds, datetimes, or date strings).
For every record the detectors look at a *window*: up to ``sequence_length - 1`` previous
records of the same entity within ``history_seconds`` before it, followed by the record
itself. "Previous" means strictly earlier in the order (entity, time, input position):
records with equal times are ordered by their position in the input (history rows first,
then ``X`` rows, at scoring time).

Each window step is the encoded record (``TabularEncoder`` output, fitted on the training
target rows) followed by a 1.0 "present" flag; missing (padding) steps are all zeros and
come first, so the most recent record is always the step just before the current one.

A record's score depends only on its own features and its window. Hence scoring a new
batch with ``history=`` the earlier records gives the same scores as scoring everything
at once, and rows marked ``y == 1`` at fit time can serve as context without ever being
learned as normal.

Both detectors keep the template of ``BaseDeepDetector``: the base training loop, early
stopping, threshold calibration and persistence run on int64 tensors of ROW POSITIONS; the
batch hooks gather each position's window from an encoded matrix that lives on the
detector only while ``fit`` / scoring runs (so fitted detectors pickle and save small).
Scoring therefore is not thread-safe on one detector instance (use one per thread).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch

from detectors.base import BaseDeepDetector, EpochCallback
from detectors.context import time_to_seconds
from detectors.encoding import TabularEncoder, as_frame
from detectors.thresholds import Threshold

#: Default look-back horizon of a window: 30 days.
DEFAULT_HISTORY_SECONDS = 30 * 86400.0


# ------------------------------------------------------------------ window building
def build_windows(
    entities: Any,
    times: Any,
    sequence_length: int,
    history_seconds: float | None = None,
    pad_index: int | None = None,
) -> np.ndarray:
    """Indices of each row's previous records of the same entity (vectorised, no row loops).

    Rows are ordered by (entity, time, input position) with a stable sort. Row ``i``'s
    window holds the input indices of up to ``sequence_length - 1`` rows that come
    strictly before it in that order, belong to the same entity and have
    ``time >= time_i - history_seconds`` (``None``: no horizon). The result has shape
    ``(n, sequence_length - 1)`` in INPUT row order; within a row the previous records are
    oldest first (the last column is the immediately preceding record) and missing slots
    at the front hold ``pad_index`` (default ``n``, i.e. one past the last row, handy to
    index an appended padding row). Missing entity keys (NaN/None) never share a window.
    """
    k = int(sequence_length)
    if k < 1:
        raise ValueError(f"sequence_length must be >= 1, got {sequence_length}")
    ent = pd.Series(entities).reset_index(drop=True)
    t = np.asarray(times, dtype=np.float64).ravel()
    n = t.shape[0]
    if len(ent) != n:
        raise ValueError(f"entities has {len(ent)} rows but times has {n}")
    if not np.isfinite(t).all():
        raise ValueError("times contain missing or non-finite values")
    pad = n if pad_index is None else int(pad_index)
    codes, uniques = pd.factorize(ent)
    codes = codes.astype(np.int64)
    missing = codes < 0
    if missing.any():  # every record with an unknown entity is its own entity
        codes[missing] = len(uniques) + np.arange(int(missing.sum()))
    order = np.lexsort((np.arange(n), t, codes))  # last key is the primary one
    c_s, t_s = codes[order], t[order]
    horizon = np.inf if history_seconds is None else float(history_seconds)
    out_sorted = np.full((n, max(k - 1, 0)), pad, dtype=np.int64)
    pos = np.arange(n)
    for lag in range(1, k):  # a loop over lags (k - 1 vectorised passes), not over rows
        j = pos - lag
        jc = np.maximum(j, 0)
        valid = (j >= 0) & (c_s[jc] == c_s) & (t_s[jc] >= t_s - horizon)
        out_sorted[:, k - 1 - lag] = np.where(valid, order[jc], pad)
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    return out


# ------------------------------------------------------------------ shared machinery
#: Row counts a fit records (``<name>_`` attributes), saved with the model.
_FIT_COUNTS = (
    "n_target_rows",
    "n_train_rows",
    "n_val_rows",
    "n_context_rows",
    "n_val_excluded_rows",
)


class SequenceMixin(BaseDeepDetector):
    """Frame handling, window data and the fit/score/explain API shared by both detectors.

    Subclasses (mixin first in the bases, a concrete detector after it) build
    their nets from ``n_features`` = the encoder's output width ``d``; each window step has
    ``d + 1`` columns (the present flag) and ``_gather`` returns ``(b, K, d + 1)``.
    """

    entity_column: str
    time_column: str
    sequence_length: int
    history_seconds: float | None
    max_train_rows: int | None
    validation_split: str
    clean_calibration: bool

    # ---------------------------------------------------------- frames
    def _check_sequence_params(self) -> None:
        if int(self.sequence_length) < 1:
            raise ValueError(f"sequence_length must be >= 1, got {self.sequence_length}")
        if self.entity_column == self.time_column:
            raise ValueError("entity_column and time_column must be different columns")
        if self.history_seconds is not None and not float(self.history_seconds) >= 0:
            raise ValueError("history_seconds must be >= 0 (or None for no horizon)")
        if self.max_train_rows is not None and int(self.max_train_rows) < 2:
            raise ValueError("max_train_rows must be >= 2 (or None for no limit)")
        if self.validation_split not in ("latest", "random"):
            raise ValueError(
                f"validation_split must be 'latest' or 'random', got {self.validation_split!r}"
            )

    def _time_split(self, secs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(training, held-out) positions among the target rows with times ``secs``.

        ``latest`` holds out the most recent ``validation_fraction`` of them: the threshold
        is calibrated (and early stopping judged) on the data most like what comes next.
        A random hold-out mixes in each entity's first records (short, padded windows;
        features of an entity with little history yet), which are the most unusual normal
        records of a training period and set a 1% threshold that later data, where every
        entity has its history, rarely crosses.
        """
        if self.validation_split == "random":
            return self._split(len(secs))
        n = len(secs)
        n_val = int(round(self.validation_fraction * n)) if self.validation_fraction > 0 else 0
        if self.validation_fraction > 0:
            n_val = max(n_val, 1)
        order = np.argsort(secs, kind="stable")
        return np.sort(order[: n - n_val]), np.sort(order[n - n_val :])

    def _clean_held_out(
        self, val_pos: np.ndarray, target: np.ndarray, entities: pd.Series, secs: np.ndarray
    ) -> np.ndarray:
        """The held-out rows whose window holds no known anomaly (``clean_calibration``).

        A normal record just after a labelled fraud carries the fraud in its window, and
        its score shows the fraud, not how unusual the record is: such records were 0.5% of
        seq_gan's calibration sample on the typology set but set its 99th percentile
        (without them the next period's FPR went 0.72% -> 0.91%). Falls back to every
        held-out row when none would be left.
        """
        self.n_val_excluded_rows_ = 0
        if not self.clean_calibration or target.all() or not len(val_pos):
            return val_pos
        n = len(target)
        prev = build_windows(
            entities, secs, int(self.sequence_length), self.history_seconds, pad_index=n
        )
        anomaly = np.append(~target, False)  # the pad index is no anomaly
        clean = val_pos[~anomaly[prev[val_pos]].any(axis=1)]
        if not len(clean):
            return val_pos
        self.n_val_excluded_rows_ = len(val_pos) - len(clean)
        return clean

    def _split_frame(self, X: Any, what: str = "X") -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
        """(feature frame, entity keys, float seconds) of one sequence frame."""
        if not isinstance(X, pd.DataFrame):
            X = as_frame(X)
        cols = {str(c): c for c in X.columns}
        for role, name in (("entity", self.entity_column), ("time", self.time_column)):
            if name not in cols:
                raise ValueError(
                    f"{role} column {name!r} is missing from {what} (columns: {list(cols)[:20]})"
                )
        ent = X[cols[self.entity_column]].reset_index(drop=True)
        secs = time_to_seconds(X[cols[self.time_column]], self.time_column)
        roles = (cols[self.entity_column], cols[self.time_column])
        feats = X[[c for c in X.columns if c not in roles]]
        if feats.shape[1] == 0:
            raise ValueError(f"{what} has no feature columns besides the entity and time columns")
        return feats, ent, secs

    # ---------------------------------------------------------- window data
    def _window_width(self, n_features: int) -> int:
        return int(self.sequence_length) * (int(n_features) + 1)

    @contextlib.contextmanager
    def _window_data(
        self, encoded: np.ndarray, entities: pd.Series, secs: np.ndarray
    ) -> Iterator[None]:
        """Keep the step matrix and window indices on ``self`` for the duration of a block.

        ``_seq_steps``: (n + 1, d + 1) float32, encoded rows + present flag, last row = pad.
        ``_seq_windows``: (n, K) int32, each row's previous records then itself.
        """
        n = encoded.shape[0]
        steps = np.zeros((n + 1, encoded.shape[1] + 1), dtype=np.float32)
        steps[:n, :-1] = encoded
        steps[:n, -1] = 1.0
        prev = build_windows(
            entities, secs, int(self.sequence_length), self.history_seconds, pad_index=n
        )
        windows = np.concatenate([prev, np.arange(n, dtype=np.int64)[:, None]], axis=1)
        dev = self._torch_device()
        self._seq_steps = torch.from_numpy(steps).to(dev)
        self._seq_windows = torch.from_numpy(windows.astype(np.int32)).to(dev)
        try:
            yield
        finally:
            del self._seq_steps, self._seq_windows

    def _gather(self, pos: torch.Tensor) -> torch.Tensor:
        """Window steps ``(b, K, d + 1)`` of the rows at positions ``pos`` (oldest first)."""
        if not hasattr(self, "_seq_steps"):
            raise RuntimeError("window data is only available inside fit/scoring")
        idx = self._seq_windows[pos.to(self._seq_windows.device)].long()
        return self._seq_steps[idx]

    @contextlib.contextmanager
    def _scoring_data(self, X: Any, history: Any) -> Iterator[torch.Tensor]:
        """Encode ``history`` + ``X`` as one sequence; yields the positions of X's rows."""
        feats, ent, secs = self._split_frame(X, "X")
        parts = [(feats, ent, secs)]
        if history is not None:
            parts.insert(0, self._split_frame(history, "history"))
        encoded = np.concatenate([self.encoder_.transform(p[0]) for p in parts], axis=0)
        entities = pd.concat([p[1] for p in parts], ignore_index=True)
        all_secs = np.concatenate([p[2] for p in parts])
        n_hist = encoded.shape[0] - len(feats)
        with self._window_data(encoded, entities, all_secs):
            yield torch.arange(n_hist, encoded.shape[0], dtype=torch.int64)

    # ---------------------------------------------------------- fit
    def fit(self, X: Any, y: Any = None, *, on_epoch: EpochCallback | None = None) -> SequenceMixin:
        """Train on the sequence frame ``X``; returns ``self``.

        Rows with ``y == 1`` are CONTEXT ONLY: they appear in other rows' windows but are
        never trained on and never used for early stopping or threshold calibration. The
        other rows (targets) are split into training and held-out rows
        (``validation_fraction``: the latest ones by default, see ``validation_split``;
        held-out rows with a known anomaly in their window are dropped, see
        ``clean_calibration``, and counted in ``n_val_excluded_rows_``);
        at most ``max_train_rows`` training rows (a seeded random sample) take gradient
        steps. The encoder is fitted on those training rows. Records
        ``n_target_rows_``, ``n_train_rows_``, ``n_val_rows_`` and ``n_context_rows_``.
        """
        t0 = time.perf_counter()
        self._check_sequence_params()
        feats, ent, secs = self._split_frame(X, "X")
        n = len(feats)
        target = np.ones(n, dtype=bool)
        if y is not None:
            y_arr = np.asarray(y).ravel()
            if y_arr.shape[0] != n:
                raise ValueError(f"X has {n} rows but y has {y_arr.shape[0]}")
            target = ~(y_arr == 1)
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in [0, 1)")
        warm = self._warmup_rows(secs)
        if (target & ~warm).sum() >= 2:
            target = target & ~warm
        target_pos = np.flatnonzero(target)
        train_i, val_i = self._time_split(secs[target_pos])
        train_pos, val_pos = target_pos[train_i], target_pos[val_i]
        val_pos = self._clean_held_out(val_pos, target, ent, secs)
        if self.max_train_rows is not None and len(train_pos) > int(self.max_train_rows):
            rng = np.random.default_rng([int(self.seed), 1])
            train_pos = np.sort(rng.choice(train_pos, int(self.max_train_rows), replace=False))
        if len(train_pos) < 2:
            raise ValueError(
                f"need at least 2 training rows after the split, got {len(target_pos)} target rows"
            )

        self.encoder_ = TabularEncoder(
            categorical_features=self.categorical_features, range_features=self.range_features
        )
        self.encoder_.fit(feats.iloc[train_pos])
        self.feature_names_in_: list[str] = list(self.encoder_.feature_names_in_)
        self.n_features_in_: int = len(self.feature_names_in_)
        encoded = self.encoder_.transform(feats)

        x_train = torch.from_numpy(train_pos.astype(np.int64))
        x_val = torch.from_numpy(val_pos.astype(np.int64)) if len(val_pos) else None
        dev = self._torch_device()
        fork_devices = [dev.index or 0] if dev.type == "cuda" else []
        with self._window_data(encoded, ent, secs), torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(int(self.seed))
            self.model_ = self._build_model(self.encoder_.n_features_out_).to(dev)
            self._configure_optimizers()
            self._train_loop(x_train, x_val, on_epoch)
            self._after_fit(x_train, x_val)
            calib = x_val if x_val is not None else x_train
            cal = self._batched(self._score_batch, calib)
        self.threshold_ = Threshold.for_fpr(cal.numpy().astype(np.float64), self.target_fpr)
        self.n_target_rows_: int = len(target_pos)
        self.n_train_rows_: int = len(train_pos)
        self.n_val_rows_: int = len(val_pos)
        self.n_context_rows_: int = n - len(target_pos)
        self.fit_seconds_: float = time.perf_counter() - t0
        return self

    def _warmup_rows(self, secs: np.ndarray) -> np.ndarray:
        """The records of the first ``warmup_fraction`` of the data's time span: context
        only. Their entities' look-back is not yet covered by the data, so every one of
        them looks new (no earlier payment, first merchant, empty windows) in a way the
        records scored later, which have their kept history, do not; trained on as
        normal, they teach the model that a burst of novelty is ordinary."""
        share = float(getattr(self, "warmup_fraction", 0.0) or 0.0)
        if not 0.0 <= share < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {share}")
        if share == 0.0 or not len(secs):
            return np.zeros(len(secs), dtype=bool)
        start, end = float(np.min(secs)), float(np.max(secs))
        return secs < start + share * (end - start)

    def _fit_counts(self) -> dict[str, int]:
        return {k: int(getattr(self, f"{k}_", 0)) for k in _FIT_COUNTS}

    def _load_fit_counts(self, state: dict[str, Any]) -> None:
        for k in _FIT_COUNTS:
            if k in state:
                setattr(self, f"{k}_", int(state[k]))

    # ---------------------------------------------------------- scoring
    def decision_function(self, X: Any, history: Any = None) -> np.ndarray:
        """Anomaly score (float64) of each row of ``X``, in ``X``'s order.

        ``history``: optional frame with the same columns holding EARLIER records that only
        serve as window context (they are not scored). Rows of ``X`` are context for later
        rows of ``X`` too. ``history`` must not repeat ``X``'s records (a repeated record
        would sit in its own window); on equal times history rows count as earlier. A
        record's score depends only on its features and its window, so scoring a batch
        with ``history=`` the records before it equals scoring everything at once.
        """
        self._check_fitted()
        with self._scoring_data(X, history) as pos:
            scores = self._batched(self._score_batch, pos)
        return scores.numpy().astype(np.float64, copy=False)

    def predict(self, X: Any, history: Any = None) -> np.ndarray:
        """0/1 flags (int64) using ``threshold_`` (1 where score > threshold value)."""
        self._check_fitted()
        return self.threshold_.apply(self.decision_function(X, history=history))

    def explain(self, X: Any, history: Any = None) -> pd.DataFrame:
        """Non-negative per-feature contributions of each CURRENT record (see the class).

        Columns are ``feature_names_in_`` (the feature columns, without entity and time);
        rows keep ``X``'s order and index. ``history`` as in ``decision_function``.
        """
        self._check_fitted()
        with self._scoring_data(X, history) as pos:
            contrib = self._explain_outputs(pos)
        return self._per_feature_frame(contrib, X)
