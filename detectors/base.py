"""Shared machinery for deep (torch) anomaly detectors.

``BaseDeepDetector`` is a template method in the spirit of PyOD's deep base detector and
scikit-learn estimators: configuration lives only in ``__init__``, learned state lives in
attributes ending with ``_``, ``fit`` returns ``self``. The base class owns everything that
must behave the same for every detector (encoding, the train/validation split, seeding,
early stopping, threshold calibration, batching, persistence); a subclass writes only its
network and its forwards:

* ``_build_model(n_features)`` -> ``nn.Module`` holding all trainable parts,
* ``_configure_optimizers()`` -> create optimisers for ``self.model_``,
* ``_train_batch(xb, epoch)`` -> one optimisation step, returns ``{"train_loss": ...}``,
* ``_validation_loss(xv, epoch)`` -> the early-stopping monitor (lower is better),
* ``_contributions(xb)`` -> non-negative per-encoded-column contributions, shape (n, d_out),
* ``_score_batch(xb)`` -> anomaly scores (default: row sums of ``_contributions``).

Score direction everywhere: higher = more anomalous.
"""

from __future__ import annotations

import inspect
import json
import math
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from detectors.encoding import (
    BEYOND_RANGE_SUFFIX,
    UNKNOWN,
    TabularEncoder,
    as_frame,
    per_feature_frame,
)
from detectors.layout import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, restore_fitted_state
from detectors.thresholds import Threshold

EpochCallback = Callable[[int, int, dict[str, float]], None]

#: Rows per forward pass at scoring time (bounded memory, no per-row Python).
SCORE_BATCH_SIZE = 8192
#: Rows encoded per step when a fit encodes its training and held-out rows.
ENCODE_CHUNK_ROWS = 65536
#: Random streams (``[seed, stream]``) of the samples read around training: held-out rows
#: and training-row statistics (1 and 2 are the sequence detectors' and the kNN reference's).
STREAM_HELD_OUT = 3
STREAM_STATISTICS = 4
#: How ``fit_info_`` describes the samples (saved in config.json, logged to MLflow).
SAMPLING_NOTE = (
    "each epoch: a fresh seeded sample of rows_per_epoch training rows; monitor, threshold "
    "and scales: a seeded sample of held_out_rows_used held-out rows; statistics: a seeded "
    "sample of statistics_rows training rows (all rows where the counts are equal)"
)
#: Relative improvement of the monitor needed to reset the early-stopping patience.
_REL_MIN_DELTA = 1e-4
#: Error-variance floor of "unseen category" columns: they are ~never set in training, so
#: a record that sets one is novel by definition and should weigh heavily.
NOVELTY_ERROR_VARIANCE = 1e-3


class NotFittedError(ValueError, AttributeError):
    """A detector used before ``fit``: the same bases as scikit-learn's NotFittedError
    (``except ValueError`` / ``AttributeError`` catch both), defined here so that loading
    and scoring a detector never imports scikit-learn (and SciPy with it)."""


def _version_of(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


class BaseDeepDetector:
    """Template for torch detectors trained on normal records (see module docstring).

    Parameters common to all detectors
    ----------------------------------
    epochs: maximum number of passes over the training rows.
    batch_size: rows per optimisation step.
    learning_rate: Adam step size.
    validation_fraction: share of the normal rows held out (seeded) for early stopping and
        threshold calibration. With 0, early stopping is off and the threshold is calibrated
        on training scores (optimistic: expect more false positives than ``target_fpr``).
    patience: stop after this many epochs without validation improvement (None: never).
    seed: seeds the split, weight initialisation, shuffling and sampling; the global torch
        RNG state is restored after ``fit``.
    target_fpr: false-positive rate the fitted threshold aims at on normal data.
    categorical_features: columns to one-hot even if their dtype is numeric.
    range_features: numeric columns whose values beyond the range seen in training are
        novel, like an unseen category (e.g. an amount above any normal amount); see
        ``TabularEncoder``.
    device: torch device for training and scoring ("cpu", "cuda", ...).
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        epochs: int = 100,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        validation_fraction: float = 0.2,
        patience: int | None = 10,
        seed: int = 0,
        target_fpr: float = 0.01,
        categorical_features: list[str] | None = None,
        range_features: list[str] | None = None,
        device: str = "cpu",
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.seed = seed
        self.target_fpr = target_fpr
        self.categorical_features = categorical_features
        self.range_features = range_features
        self.device = device

    # --------------------------------------------------------------- params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (scikit-learn convention); ``deep`` is accepted for API parity."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseDeepDetector:
        """Set constructor parameters (takes effect at the next ``fit``)."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------------- hooks
    def _build_model(self, n_features: int) -> nn.Module:
        raise NotImplementedError

    def _configure_optimizers(self) -> None:
        raise NotImplementedError

    def _train_batch(self, xb: torch.Tensor, epoch: int) -> dict[str, float]:
        raise NotImplementedError

    def _contributions(self, xb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _score_batch(self, xb: torch.Tensor) -> torch.Tensor:
        """Per-row anomaly score; default: the row sum of the contributions (in float64)."""
        return self._contributions(xb).double().sum(dim=1)

    def _validation_loss(self, xv: torch.Tensor, epoch: int) -> float:
        """Early-stopping monitor on held-out normal rows; default: their mean score."""
        return float(self._batched(self._score_batch, xv).mean())

    def _min_epochs(self) -> int:
        """Epochs during which early stopping may not trigger (e.g. a KL warm-up)."""
        return 0

    def _rows_per_epoch(self, n: int) -> int:
        """Training rows visited per epoch (a fresh seeded sample each epoch); default all
        ``n``. Subclasses with a ``max_epoch_rows`` cap bound the cost of one epoch."""
        return n

    def _statistics_rows(self) -> int | None:
        """Most held-out rows and most training rows that the passes around training read
        (the early-stopping monitor, the threshold, ``_after_fit``'s statistics), each a
        seeded sample; default None: all of them. Subclasses with a
        ``max_calibration_rows`` cap bound the cost and memory of those passes."""
        return None

    def _fit_threads(self) -> int | None:
        """Torch threads while fitting (lowered for the fit, then restored); default None:
        torch's own setting."""
        return None

    def _after_fit(self, x_train: torch.Tensor, x_val: torch.Tensor | None) -> None:
        """Hook run once the best weights are restored, before threshold calibration.

        ``x_train`` holds the training rows the statistics read: all of them, or a seeded
        sample of ``_statistics_rows()`` of them (``fit_info_["statistics_rows"]``)."""

    def _floored_error_variance(self, mse: torch.Tensor) -> list[float]:
        """Per-column normal error variance with a floor (``min_error_variance``).

        The floor stops rare-but-seen one-hot columns (tiny variance) from outweighing real
        numeric deviations; ``__unknown__`` columns keep a tiny floor so an unseen category
        still dominates the score.
        """
        floors = torch.full_like(mse, float(self.min_error_variance))
        for j, name in enumerate(self.encoder_.output_names_):
            if name.endswith((f"={UNKNOWN}", BEYOND_RANGE_SUFFIX)):
                floors[j] = NOVELTY_ERROR_VARIANCE
        return torch.maximum(mse, floors).tolist()

    def _extra_state(self) -> dict[str, Any]:
        """Learned non-tensor state to store in config.json (JSON-serialisable)."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``_extra_state``."""

    # -------------------------------------------------------------- helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit() first"
            )

    def _torch_device(self) -> torch.device:
        return torch.device(self.device)

    def _to_tensor(self, X: Any) -> torch.Tensor:
        arr = self.encoder_.transform(as_frame(X, self.feature_names_in_))
        return torch.from_numpy(arr)

    def _batched(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Apply ``fn`` in eval mode over row batches; returns the concatenated CPU result."""
        dev = self._torch_device()
        self.model_.eval()
        outs = []
        with torch.inference_mode():
            for start in range(0, x.shape[0], SCORE_BATCH_SIZE):
                xb = x[start : start + SCORE_BATCH_SIZE].to(dev)
                outs.append(fn(xb).cpu())
        if not outs:
            return torch.empty(0, dtype=torch.float64)
        return torch.cat(outs)

    def _sample_positions(self, n: int, stream: int) -> np.ndarray | None:
        """Sorted seeded choice of ``_statistics_rows()`` of ``n`` positions (random stream
        ``[seed, stream]``), or None when all ``n`` are kept (same rows, same order)."""
        cap = self._statistics_rows()
        if cap is None or n <= int(cap):
            return None
        if int(cap) < 1:
            raise ValueError(f"max_calibration_rows must be >= 1 or None, got {cap!r}")
        rng = np.random.default_rng([int(self.seed), stream])
        return np.sort(rng.choice(n, int(cap), replace=False))

    def _encode_rows(self, df: pd.DataFrame, positions: np.ndarray) -> torch.Tensor:
        """The rows of ``df`` at ``positions``, encoded ``ENCODE_CHUNK_ROWS`` at a time into
        one float32 matrix: no copy of the frame's rows and no per-column float64
        intermediates of all rows (the encoding is row by row, so the result is the same)."""
        out = np.empty((len(positions), self.encoder_.n_features_out_), dtype=np.float32)
        for start in range(0, len(positions), ENCODE_CHUNK_ROWS):
            part = positions[start : start + ENCODE_CHUNK_ROWS]
            out[start : start + len(part)] = self.encoder_.transform(df.iloc[part])
        return torch.from_numpy(out)

    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(n)
        n_val = int(round(self.validation_fraction * n)) if self.validation_fraction > 0 else 0
        if self.validation_fraction > 0:
            n_val = max(n_val, 1)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: pd.DataFrame | np.ndarray,
        y: Any = None,
        *,
        on_epoch: EpochCallback | None = None,
    ) -> BaseDeepDetector:
        """Train on normal records ``X``; returns ``self``.

        If ``y`` is given, rows with ``y == 1`` (known anomalies) are DROPPED before
        training: the model must learn only what normal looks like. ``on_epoch(epoch,
        total_epochs, metrics)`` is called after every epoch (``epoch`` counts from 1;
        ``metrics`` holds at least ``train_loss`` and ``val_loss``) so callers can draw
        progress. Training keeps the weights with the best validation monitor and then
        calibrates ``threshold_`` to ``target_fpr`` on the held-out normal scores.
        Where the class caps them (``_statistics_rows``), the held-out rows and the
        training rows its statistics read are seeded samples; ``fit_info_`` records the
        row counts each step used (saved with the model).
        """
        t0 = time.perf_counter()
        df = as_frame(X)
        if y is not None:
            y_arr = np.asarray(y).ravel()
            if y_arr.shape[0] != len(df):
                raise ValueError(f"X has {len(df)} rows but y has {y_arr.shape[0]}")
            df = df.loc[~(y_arr == 1)]
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in [0, 1)")
        train_idx, val_idx = self._split(len(df))
        if len(train_idx) < 2:
            raise ValueError(f"need at least 2 training rows after the split, got {len(df)} rows")
        n_held_out = len(val_idx)
        # Held-out rows beyond the cap are never encoded: a seeded sample of them is what
        # the monitor, the threshold and the score scales read.
        val_keep = self._sample_positions(len(val_idx), STREAM_HELD_OUT)
        if val_keep is not None:
            val_idx = val_idx[val_keep]
        self.encoder_ = TabularEncoder(
            categorical_features=self.categorical_features, range_features=self.range_features
        )
        self.encoder_.fit(df.iloc[train_idx])
        x_train = self._encode_rows(df, train_idx)
        x_val = self._encode_rows(df, val_idx) if len(val_idx) else None
        self.feature_names_in_: list[str] = list(self.encoder_.feature_names_in_)
        self.n_features_in_: int = len(self.feature_names_in_)
        stats_keep = self._sample_positions(x_train.shape[0], STREAM_STATISTICS)
        x_stats = x_train if stats_keep is None else x_train[torch.from_numpy(stats_keep)]

        dev = self._torch_device()
        fork_devices = [dev.index or 0] if dev.type == "cuda" else []
        threads = self._fit_threads()
        torch_threads = torch.get_num_threads()
        try:
            if threads is not None and 0 < int(threads) < torch_threads:
                torch.set_num_threads(int(threads))
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(self.seed)
                self.model_ = self._build_model(self.encoder_.n_features_out_).to(dev)
                self._configure_optimizers()
                self._train_loop(x_train, x_val, on_epoch, x_monitor=x_stats)
                self._after_fit(x_stats, x_val)
            calib = x_val if x_val is not None else x_stats
            cal_scores = self._batched(self._score_batch, calib).numpy().astype(np.float64)
        finally:
            torch.set_num_threads(torch_threads)
        self.threshold_ = Threshold.for_fpr(cal_scores, self.target_fpr)
        cap = self._statistics_rows()
        self.fit_info_: dict[str, Any] = {
            "rows": len(df),
            "train_rows": int(x_train.shape[0]),
            "rows_per_epoch": int(self._rows_per_epoch(int(x_train.shape[0]))),
            "held_out_rows": n_held_out,
            "held_out_rows_used": len(val_idx),
            "statistics_rows": int(x_stats.shape[0]),
            "max_calibration_rows": None if cap is None else int(cap),
            "sampling": SAMPLING_NOTE,
            "fit_threads": min(int(threads), torch_threads) if threads else torch_threads,
        }
        self.fit_seconds_: float = time.perf_counter() - t0
        return self

    def _train_loop(
        self,
        x_train: torch.Tensor,
        x_val: torch.Tensor | None,
        on_epoch: EpochCallback | None,
        *,
        x_monitor: torch.Tensor | None = None,
    ) -> None:
        """Epochs of ``_train_batch`` steps; early stopping reads ``x_val`` (without held-out
        rows: ``x_monitor``, default all of ``x_train``) and keeps the best weights."""
        dev = self._torch_device()
        gen = torch.Generator().manual_seed(self.seed)
        n = x_train.shape[0]
        bs = max(1, min(int(self.batch_size), n))
        best_val = math.inf
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch = 0
        stale = 0
        self.history_: list[dict[str, float]] = []
        for epoch in range(1, int(self.epochs) + 1):
            self.model_.train()
            perm = torch.randperm(n, generator=gen)[: self._rows_per_epoch(n)]
            n_epoch = int(perm.numel())
            sums: dict[str, float] = {}
            for start in range(0, n_epoch, bs):
                idx = perm[start : start + bs]
                if idx.numel() < 2 and start > 0:  # avoid a degenerate 1-row final step
                    continue
                out = self._train_batch(x_train[idx].to(dev), epoch)
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v * idx.numel()
            record: dict[str, float] = {k: v / n_epoch for k, v in sums.items()}
            monitor_x = (
                x_val if x_val is not None else (x_train if x_monitor is None else x_monitor)
            )
            val = self._validation_loss(monitor_x, epoch)
            record["val_loss"] = val
            self.history_.append({"epoch": float(epoch), **record})
            if on_epoch is not None:
                on_epoch(epoch, int(self.epochs), dict(record))
            if not math.isfinite(record.get("train_loss", 0.0)) or not math.isfinite(val):
                if best_state is None:
                    raise RuntimeError(f"training diverged at epoch {epoch} (non-finite loss)")
                warnings.warn(
                    f"{type(self).__name__}: non-finite loss at epoch {epoch}; "
                    f"keeping the weights of epoch {best_epoch}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                break
            tol = _REL_MIN_DELTA * abs(best_val) if math.isfinite(best_val) else 0.0
            improved = val < best_val - tol
            if improved:
                best_val, best_epoch, stale = val, epoch, 0
                best_state = {k: v.detach().clone() for k, v in self.model_.state_dict().items()}
            else:
                stale += 1
            if (
                x_val is not None
                and self.patience is not None
                and epoch > self._min_epochs()
                and stale >= self.patience
            ):
                break
        if best_state is not None:
            self.model_.load_state_dict(best_state)
        self.best_epoch_: int = best_epoch
        self.model_.eval()

    # -------------------------------------------------------------- scoring
    def decision_function(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Anomaly score per row (float64); higher = more anomalous."""
        self._check_fitted()
        x = self._to_tensor(X)
        return self._batched(self._score_batch, x).numpy().astype(np.float64, copy=False)

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """0/1 flags (int64) using ``threshold_`` (1 where score > threshold value)."""
        self._check_fitted()
        return self.threshold_.apply(self.decision_function(X))

    def set_threshold(self, threshold: Threshold) -> BaseDeepDetector:
        """Swap the decision threshold without retraining (e.g. after labelled feedback)."""
        self._check_fitted()
        if not isinstance(threshold, Threshold):
            raise TypeError(f"expected a Threshold, got {type(threshold).__name__}")
        self.threshold_ = threshold
        return self

    def _explain_outputs(self, x: torch.Tensor) -> np.ndarray:
        """Per-encoded-column contributions (n, d_out), float64; subclasses may rescale."""
        return self._batched(lambda xb: self._contributions(xb).double(), x).numpy()

    def explain(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Non-negative per-ORIGINAL-feature contributions to each row's score.

        Contributions of one-hot and missing-indicator columns are summed back to their
        source column (via the encoder's ``output_groups_``). Rows keep the input order
        (and the index, for DataFrame input); columns are ``feature_names_in_``.
        """
        self._check_fitted()
        return self._per_feature_frame(self._explain_outputs(self._to_tensor(X)), X)

    def _per_feature_frame(self, contrib: np.ndarray, X: Any) -> pd.DataFrame:
        """Sum per-encoded-column contributions back to their source features (clipped at
        0); rows keep ``X``'s index when it is a DataFrame."""
        return per_feature_frame(contrib, self.encoder_.output_groups_, self.feature_names_in_, X)

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` + ``weights.pt`` (a state_dict) into directory ``path``."""
        self._check_fitted()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        params = self.get_params()
        for k, v in params.items():
            if isinstance(v, tuple):
                params[k] = list(v)
        config = {
            "format_version": FORMAT_VERSION,
            "class_name": type(self).__name__,
            "params": params,
            "n_features_out": self.encoder_.n_features_out_,
            "feature_names_in": list(self.feature_names_in_),
            "encoder": self.encoder_.to_dict(),
            "threshold": self.threshold_.to_dict(),
            "extra_state": self._extra_state(),
            "history": self.history_,
            "best_epoch": self.best_epoch_,
            "fit_seconds": self.fit_seconds_,
            "fit_info": getattr(self, "fit_info_", {}),
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "pandas": pd.__version__,
                "scikit-learn": _version_of("scikit-learn"),
            },
        }
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        state = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        torch.save(state, out / WEIGHTS_FILE)
        return out

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> BaseDeepDetector:
        """Load a detector saved with ``save``; weights are read with ``weights_only=True``."""
        config = json.loads((Path(path) / CONFIG_FILE).read_text())
        if config.get("class_name") != cls.__name__:
            raise ValueError(
                f"{path} holds a {config.get('class_name')!r}, not a {cls.__name__}; "
                "use detectors.load_detector() to dispatch on the saved class"
            )
        return cls._from_config(Path(path), config, device)

    @classmethod
    def _from_config(
        cls, path: Path, config: dict[str, Any], device: str | None
    ) -> BaseDeepDetector:
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported model format {config.get('format_version')!r}")
        params = dict(config["params"])
        for name in cls._tuple_params:
            if isinstance(params.get(name), list):
                params[name] = tuple(params[name])
        if device is not None:
            params["device"] = device
        det = cls(**params)
        restore_fitted_state(det, config)
        try:
            det._load_extra_state(config.get("extra_state", {}))
        except KeyError as exc:
            raise ValueError(
                f"{path}: model state lacks {exc}; it was saved by an incompatible version"
            ) from exc
        model = det._build_model(int(config["n_features_out"]))
        state = torch.load(path / WEIGHTS_FILE, map_location=det._torch_device(), weights_only=True)
        model.load_state_dict(state)
        det.model_ = model.to(det._torch_device()).eval()
        return det
