"""Sequence detectors: score the CURRENT record in the context of its entity's past records.

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
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from detectors.base import BaseDeepDetector, EpochCallback
from detectors.context import time_to_seconds
from detectors.encoding import TabularEncoder, as_frame
from detectors.gan import GANDetector, _ALADNet
from detectors.thresholds import Threshold
from detectors.vae import VAEDetector, mlp

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


class _SequenceMixin(BaseDeepDetector):
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
    def fit(
        self, X: Any, y: Any = None, *, on_epoch: EpochCallback | None = None
    ) -> _SequenceMixin:
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


# ------------------------------------------------------------------ sequence VAE
class _SeqVAENet(nn.Module):
    """GRU context over the previous steps + a conditional VAE of the current record."""

    def __init__(
        self,
        n_features: int,
        context_hidden: int,
        hidden_dims: tuple[int, ...],
        latent_dim: int,
    ) -> None:
        super().__init__()
        hidden = list(hidden_dims)
        self.context_hidden = int(context_hidden)
        self.gru = nn.GRU(n_features + 1, self.context_hidden, batch_first=True)
        self.encoder = mlp([n_features + self.context_hidden, *hidden], last_activation=True)
        width = hidden[-1] if hidden else n_features + self.context_hidden
        self.mu = nn.Linear(width, latent_dim)
        self.logvar = nn.Linear(width, latent_dim)
        self.decoder = mlp([latent_dim + self.context_hidden, *reversed(hidden), n_features])

    def context(self, prev_steps: torch.Tensor) -> torch.Tensor:
        """Last GRU hidden state over ``(b, K-1, d+1)`` steps (zeros when K = 1)."""
        if prev_steps.shape[1] == 0:
            return prev_steps.new_zeros(prev_steps.shape[0], self.context_hidden)
        _, h = self.gru(prev_steps)
        return h[-1]

    def encode(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encoder(torch.cat([x, h], dim=1))
        return self.mu(e), self.logvar(e).clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, h], dim=1))


class SequenceVAEDetector(_SequenceMixin, VAEDetector):
    """Conditional VAE of the current record given its entity's last ``K - 1`` records.

    Input: a frame with the feature columns plus ``entity_column`` and ``time_column``
    (see the module docstring for windows). Model: a GRU (``context_hidden`` units) reads
    the ``K - 1`` previous steps (zero pads included) and its last hidden state ``h`` is
    the context; the encoder MLP maps ``[x_t, h]`` to ``mu, logvar`` and the decoder MLP
    maps ``[z, h]`` to ``x_hat_t``, where ``x_t`` is the ENCODED current record. Training
    is as in ``VAEDetector`` (reconstruction + ``beta_t`` * KL with warm-up and free
    bits, early stopping on the held-out monitor), over the target rows only.

    Score (exactly): ``score = sum_j (x_tj - x_hat_tj(mu, h))^2 / v_j
    + beta * KL(q(z | x_t, h) || N(0, I))`` (the KL term only with ``score_kl``), with
    ``v_j = max(mean over the training rows of that squared error, min_error_variance)``
    (``error_variance_``, unseen-category columns floored at 1e-3; all 1 with
    ``standardize_errors=False``). So a record is anomalous when it does not fit what its
    own entity's recent records predict (e.g. 10x the entity's usual amount, a burst).
    ``explain`` returns the standardised squared errors of the current record's columns
    summed per feature, the KL term shared in proportion, so each row sums to its score.

    This is ``VAEDetector``'s ``score_rule="elbo"``, fixed (set in ``__init__``, not a
    parameter): the ensemble rule is tabular-only for now, so this detector fits and saves
    no ``ensemble_`` statistics.

    ``max_train_rows``: at most this many (seeded random) training rows take gradient
    steps per fit (None: all); context rows are never subsampled.

    ``validation_split``: ``"latest"`` (default) holds out the most recent
    ``validation_fraction`` of the target rows for early stopping and the threshold, so the
    threshold is set on records whose entities have their history, like the ones scored
    next; ``"random"`` is the seeded random hold-out of the tabular detectors.

    ``clean_calibration``: held-out rows whose window holds a labelled anomaly (``y == 1``,
    context only) are left out of early stopping and the threshold (see the mixin).
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ("hidden_dims",)

    def __init__(
        self,
        *,
        entity_column: str,
        time_column: str,
        sequence_length: int = 8,
        history_seconds: float | None = DEFAULT_HISTORY_SECONDS,
        context_hidden: int = 64,
        hidden_dims: tuple[int, ...] = (128, 64),
        latent_dim: int = 8,
        beta: float = 4.0,
        kl_warmup_epochs: int = 5,
        free_bits: float = 0.0,
        weight_decay: float = 0.0,
        standardize_errors: bool = True,
        min_error_variance: float = 0.3,
        score_kl: bool = True,
        max_train_rows: int | None = 200_000,
        validation_split: str = "latest",
        clean_calibration: bool = True,
        epochs: int = 30,
        batch_size: int = 512,
        learning_rate: float = 2e-3,
        validation_fraction: float = 0.2,
        patience: int | None = 5,
        seed: int = 0,
        target_fpr: float = 0.01,
        categorical_features: list[str] | None = None,
        range_features: list[str] | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            hidden_dims=hidden_dims,
            latent_dim=latent_dim,
            beta=beta,
            kl_warmup_epochs=kl_warmup_epochs,
            free_bits=free_bits,
            weight_decay=weight_decay,
            standardize_errors=standardize_errors,
            min_error_variance=min_error_variance,
            score_kl=score_kl,
            score_rule="elbo",
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            validation_fraction=validation_fraction,
            patience=patience,
            seed=seed,
            target_fpr=target_fpr,
            categorical_features=categorical_features,
            range_features=range_features,
            device=device,
        )
        self.entity_column = entity_column
        self.time_column = time_column
        self.sequence_length = sequence_length
        self.history_seconds = history_seconds
        self.context_hidden = context_hidden
        self.max_train_rows = max_train_rows
        self.validation_split = validation_split
        self.clean_calibration = clean_calibration

    def _build_model(self, n_features: int) -> nn.Module:
        return _SeqVAENet(
            n_features, int(self.context_hidden), tuple(self.hidden_dims), int(self.latent_dim)
        )

    def _current_and_context(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net: _SeqVAENet = self.model_  # type: ignore[assignment]
        steps = self._gather(pos)
        return steps[:, -1, :-1], net.context(steps[:, :-1])

    def _train_batch(self, xb: torch.Tensor, epoch: int) -> dict[str, float]:
        net: _SeqVAENet = self.model_  # type: ignore[assignment]
        x, h = self._current_and_context(xb)
        mu, logvar = net.encode(x, h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = (x - net.decode(z, h)).pow(2).sum(dim=1).mean()
        kl = self._kl(mu, logvar)
        loss = recon + self._beta_at(epoch) * kl
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        self._optimizer.step()
        return {
            "train_loss": float(loss.detach()),
            "recon": float(recon.detach()),
            "kl": float(kl.detach()),
        }

    def latent_means(self, X: Any, history: Any = None) -> np.ndarray:
        """The encoder's posterior means given each record's window, shape (n, latent_dim):
        the codes a classifier trained on verdicts reads. ``history`` as in
        :meth:`decision_function`."""
        self._check_fitted()
        net: _SeqVAENet = self.model_  # type: ignore[assignment]

        def means(pos: torch.Tensor) -> torch.Tensor:
            x, h = self._current_and_context(pos)
            return net.encode(x, h)[0].double()

        with self._scoring_data(X, history) as pos:
            return self._batched(means, pos).numpy()

    def _errors_and_kl(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unstandardised squared errors of the current record and its KL, at z = mu."""
        net: _SeqVAENet = self.model_  # type: ignore[assignment]
        x, h = self._current_and_context(pos)
        mu, logvar = net.encode(x, h)
        se = (x - net.decode(mu, h)).pow(2)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return se, kl

    def _validation_loss(self, xv: torch.Tensor, epoch: int) -> float:
        def per_row(pos: torch.Tensor) -> torch.Tensor:
            se, kl = self._errors_and_kl(pos)
            return (se.sum(dim=1) + float(self.beta) * kl).double()

        return float(self._batched(per_row, xv).mean())

    def _squared_errors(self, xb: torch.Tensor) -> torch.Tensor:
        return self._errors_and_kl(xb)[0]

    def _after_fit(self, x_train: torch.Tensor, x_val: torch.Tensor | None) -> None:
        if self.standardize_errors:
            mse = self._batched(self._squared_errors, x_train).double().mean(dim=0)
            self.error_variance_ = self._floored_error_variance(mse)
        else:
            self.error_variance_ = [1.0] * int(self.encoder_.n_features_out_)

    def _recon_terms(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Used by VAEDetector._score_batch / _contributions (score and explain).
        se, kl = self._errors_and_kl(xb)
        var = torch.tensor(self.error_variance_, dtype=se.dtype, device=se.device)
        return se / var, kl

    def _extra_state(self) -> dict[str, Any]:
        # ELBO rule only: none of VAEDetector's ensemble state (same format as before it).
        return {"error_variance": self.error_variance_, **self._fit_counts()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.error_variance_ = [float(v) for v in state["error_variance"]]
        self._load_fit_counts(state)


# ------------------------------------------------------------------ sequence GAN (ALAD)
class SequenceGANDetector(_SequenceMixin, GANDetector):
    """ALAD over flattened windows: the comparison detector for ``SequenceVAEDetector``.

    Each record's window (``K = sequence_length`` steps of ``d + 1`` columns: the encoded
    record and a present flag; zero pads first, the current record last) is flattened into
    one vector ``w`` of ``K * (d + 1)`` values and the ``GANDetector`` ALAD network
    (encoder, generator, three spectrally normalised discriminators) is trained on it with
    ``GANDetector``'s losses (the E/G reconstruction penalty covers the whole window).

    Score (exactly), with ``w' = G(E(w))``, ``f`` = D_xx's last hidden layer and ``x_t``,
    ``x'_t`` the CURRENT step's ``d`` encoded columns of ``w`` and ``w'``:
        ``fm(w)  = sum_k |f(w, w)_k - f(w, w')_k|``  (whole window)
        ``rec(w) = sum_j (x_tj - x'_tj)^2 / v_j``     (current record only)
        ``lat(w) = sum_k E(w)_k^2``                   (whole window)
        ``score = w_fm * fm / fm_scale_ + w_rec * rec / rec_scale_ + w_z * lat / z_scale_``
    with ``v_j`` the floored training mean of the current record's squared error
    (``error_variance_``) and the scales the held-out medians, exactly as in
    ``GANDetector``. Restricting ``rec`` to the current step keeps a past anomalous
    record from flagging the next ``K - 1`` records through reconstruction; ``fm`` and
    ``lat`` see the whole window (the context is what makes them sequence-aware), so a
    strongly anomalous past record can still raise them somewhat.

    ``explain``: ``fm`` and ``lat`` cannot be attributed to single features, so each row's
    score is shared in proportion to the current record's standardised errors
    ``(x_tj - x'_tj)^2 / v_j`` summed per feature (an even split if they are all 0):
    contributions are non-negative and sum to the score, but the non-reconstruction part
    is an attribution by proportion, not an exact decomposition.

    Defaults are ``GANDetector``'s except ``sequence_length=4`` (shorter windows than the
    VAE's: the flattened window is the network's input width), ``epochs=30`` and
    ``max_train_rows=100_000``: with GANDetector's 60 epochs on 200k windows one fit on the
    handbook data ran for over 10 minutes on 2 (shared) cores without finishing; the
    comparison model should not dominate a training run. ``validation_split`` and
    ``clean_calibration`` as in ``SequenceVAEDetector``.
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ("hidden_dims",)

    def __init__(
        self,
        *,
        entity_column: str,
        time_column: str,
        sequence_length: int = 4,
        history_seconds: float | None = DEFAULT_HISTORY_SECONDS,
        max_train_rows: int | None = 100_000,
        validation_split: str = "latest",
        clean_calibration: bool = True,
        hidden_dims: tuple[int, ...] = (64, 32),
        latent_dim: int = 8,
        disc_hidden: int = 64,
        dropout: float = 0.2,
        reconstruction_weight: float = 1.0,
        feature_score_weight: float = 1.0,
        reconstruction_score_weight: float = 1.0,
        latent_score_weight: float = 1.0,
        min_error_variance: float = 0.3,
        epochs: int = 30,
        batch_size: int = 256,
        learning_rate: float = 2e-4,
        validation_fraction: float = 0.2,
        patience: int | None = 15,
        seed: int = 0,
        target_fpr: float = 0.01,
        categorical_features: list[str] | None = None,
        range_features: list[str] | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            hidden_dims=hidden_dims,
            latent_dim=latent_dim,
            disc_hidden=disc_hidden,
            dropout=dropout,
            reconstruction_weight=reconstruction_weight,
            feature_score_weight=feature_score_weight,
            reconstruction_score_weight=reconstruction_score_weight,
            latent_score_weight=latent_score_weight,
            min_error_variance=min_error_variance,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            validation_fraction=validation_fraction,
            patience=patience,
            seed=seed,
            target_fpr=target_fpr,
            categorical_features=categorical_features,
            range_features=range_features,
            device=device,
        )
        self.entity_column = entity_column
        self.time_column = time_column
        self.sequence_length = sequence_length
        self.history_seconds = history_seconds
        self.max_train_rows = max_train_rows
        self.validation_split = validation_split
        self.clean_calibration = clean_calibration

    def _build_model(self, n_features: int) -> nn.Module:
        return _ALADNet(
            self._window_width(n_features),
            tuple(self.hidden_dims),
            int(self.latent_dim),
            int(self.disc_hidden),
            float(self.dropout),
        )

    def _flat_windows(self, pos: torch.Tensor) -> torch.Tensor:
        steps = self._gather(pos)
        return steps.reshape(steps.shape[0], -1)

    def _train_batch(self, xb: torch.Tensor, epoch: int) -> dict[str, float]:
        return super()._train_batch(self._flat_windows(xb), epoch)

    def _parts(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fm over the window, current record's squared errors per column, ||E(w)||^2)."""
        net: _ALADNet = self.model_  # type: ignore[assignment]
        w = self._flat_windows(xb)
        z = net.encoder(w)
        w_rec = net.generator(z)
        fm = (net.d_xx.features(w, w) - net.d_xx.features(w, w_rec)).abs().sum(dim=1)
        d = int(self.encoder_.n_features_out_)
        start = (int(self.sequence_length) - 1) * (d + 1)
        se = (w[:, start : start + d] - w_rec[:, start : start + d]).pow(2)
        if hasattr(self, "error_variance_"):
            se = se / torch.tensor(self.error_variance_, dtype=se.dtype, device=se.device)
        return fm, se, z.pow(2).sum(dim=1)

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), **self._fit_counts()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self._load_fit_counts(state)
