"""Score a saved ``VAEDetector`` with numpy alone: no torch import.

Importing torch was about half of a 10-row ``vigil score``'s start-up, yet scoring a
fitted VAE is a few small matrix products plus the residual statistics kept in its
config.json. ``VAEDetector.save`` therefore also writes ``weights.npz`` (the same arrays
as ``weights.pt``, with weights.pt's SHA-256) and :func:`load_numpy_vae` builds a
:class:`NumpyVAE` from it that computes what the torch detector computes at scoring time
(``decision_function``, ``predict``, ``explain``, ``latent_means``), in the same order of
operations and dtypes (the network in float32, the rules in float64).

The torch detector stays the reference: tests/detectors/test_numpy_forward.py checks both
give the same scores, flags and contributions. The numpy forward never guesses: anything
it does not reproduce (another class, a non-CPU device, a missing or stale
``weights.npz``, an unexpected layer, score rule or kNN view, an unfitted ensemble) makes
:func:`load_numpy_vae` answer None, and the caller loads the torch detector.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detectors.encoding import as_frame, per_feature_frame
from detectors.layout import (
    CONFIG_FILE,
    FORMAT_VERSION,
    MAX_TAIL_SOFTNESS,
    WEIGHTS_FILE,
    restore_fitted_state,
    rule_weights,
)
from detectors.numpy_neighbours import NearestRows, kth_distance, reference_side
from detectors.thresholds import Threshold

#: Beside weights.pt in a saved detector's folder.
NUMPY_WEIGHTS_FILE = "weights.npz"
#: Layout of weights.npz; a file of another layout is not read (torch loads the model).
NUMPY_FORMAT = 1
_DIGEST_KEY = "__weights_pt_sha256__"
_FORMAT_KEY = "__format__"
#: Rows per forward pass: bounds memory like the torch path's batches.
_ROWS_PER_PASS = 8192
#: Rows per pass of the network within a pass: its widest activations (rows x 128 float32)
#: stay in a core's L2 cache.
_NETWORK_ROWS = 1024
_SCORE_RULES = ("elbo", "ensemble")
_KNN_VIEWS = ("input", "latent")


def export_numpy_weights(folder: Path, state: Mapping[str, np.ndarray]) -> Path:
    """Write ``weights.npz`` (``state``: the network's state_dict as numpy arrays) beside
    the ``weights.pt`` already saved in ``folder``, stamped with that file's digest so a
    later, different weights.pt is never scored with these arrays."""
    arrays = {key: np.ascontiguousarray(value) for key, value in state.items()}
    arrays[_DIGEST_KEY] = np.array(_sha256((folder / WEIGHTS_FILE).read_bytes()))
    arrays[_FORMAT_KEY] = np.array(NUMPY_FORMAT)
    path = folder / NUMPY_WEIGHTS_FILE
    with path.open("wb") as out:
        np.savez(out, **arrays)
    return path


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def load_numpy_vae(path: str | Path, config: dict[str, Any] | None = None) -> NumpyVAE | None:
    """The numpy scorer of the ``VAEDetector`` saved in ``path``, or None where the torch
    detector must load it (see the module docstring). ``config``: its config.json, when
    the caller has read it already."""
    folder = Path(path)
    npz_path = folder / NUMPY_WEIGHTS_FILE
    if not npz_path.is_file():
        return None
    if config is None:
        config = json.loads((folder / CONFIG_FILE).read_text())
    weights_pt = (folder / WEIGHTS_FILE).read_bytes()
    npz_bytes = npz_path.read_bytes()
    with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    digest = arrays.pop(_DIGEST_KEY, None)
    layout = arrays.pop(_FORMAT_KEY, None)
    if digest is None or str(digest) != _sha256(weights_pt):
        return None
    if layout is None or int(layout) != NUMPY_FORMAT:
        return None
    try:
        plan = _plan(config, arrays)
        if plan is None:
            return None
        files = {WEIGHTS_FILE: weights_pt, npz_path.name: npz_bytes}
        return NumpyVAE(config, arrays, plan, files=files)
    except (KeyError, TypeError, ValueError):
        return None  # a config this module does not know: the torch detector says what


def _plan(config: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """What the forward needs from the config, or None where this module does not
    reproduce the torch detector's scoring exactly."""
    if config.get("class_name") != "VAEDetector" or config.get("format_version") != FORMAT_VERSION:
        return None
    params = config.get("params", {})
    state = config.get("extra_state", {})
    needed = ("hidden_dims", "latent_dim", "beta", "score_kl", "score_rule", "device")
    if any(name not in params for name in needed) or "error_variance" not in state:
        return None
    if str(params["device"]) != "cpu":
        return None
    # As VAEDetector._load_extra_state: a model saved before score rules scores by ELBO.
    rule = str(params["score_rule"]) if "ensemble" in state else "elbo"
    ensemble = dict(state.get("ensemble", {}))
    if rule not in _SCORE_RULES or (rule == "ensemble" and not ensemble):
        return None
    views = list(ensemble.get("knn_views", [])) if rule == "ensemble" else []
    if not set(views) <= set(_KNN_VIEWS):
        return None
    n_out = int(config["n_features_out"])
    hidden = [int(h) for h in params["hidden_dims"]]
    latent = int(params["latent_dim"])
    width = hidden[-1] if hidden else n_out
    expected: dict[str, tuple[int, ...]] = {}

    def linear(prefix: str, n_in: int, n_out_: int) -> None:
        expected[f"{prefix}.weight"] = (n_out_, n_in)
        expected[f"{prefix}.bias"] = (n_out_,)

    sizes = [n_out, *hidden]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        linear(f"encoder.{2 * i}", a, b)
    linear("mu", width, latent)
    linear("logvar", width, latent)
    sizes = [latent, *reversed(hidden), n_out]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        linear(f"decoder.{2 * i}", a, b)
    knn_rows = int(ensemble.get("knn_rows", 0))
    if knn_rows:
        expected["knn_reference"] = (knn_rows, n_out)
        expected["knn_latent"] = (knn_rows, latent)
    if views and not knn_rows:
        return None
    neighbour_rows = int(ensemble.get("neighbour_rows", 0)) if rule == "ensemble" else 0
    if neighbour_rows:
        expected["neighbour_reference"] = (neighbour_rows, n_out)
    if set(arrays) != set(expected):
        return None
    for key, shape in expected.items():
        if arrays[key].shape != shape or arrays[key].dtype != np.float32:
            return None
    if len(state["error_variance"]) != n_out:
        return None
    return {
        "rule": rule,
        "ensemble": ensemble,
        "views": views,
        "neighbours": bool(neighbour_rows),
        "encoder_layers": len(hidden),
        "decoder_layers": len(hidden) + 1,
    }


def _linear(x: np.ndarray, weight_t: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``nn.Linear`` (``weight_t`` is its weight transposed), bias added in place."""
    out = x @ weight_t
    out += bias
    return out


def _silu(x: np.ndarray) -> np.ndarray:
    """``x * sigmoid(x)`` as ``x / (1 + exp(-x))`` (float32), in one scratch array."""
    scratch = np.negative(x)
    with np.errstate(over="ignore"):
        np.exp(scratch, out=scratch)
    scratch += np.float32(1.0)
    return np.divide(x, scratch, out=scratch)


class NumpyVAE:
    """A saved ``VAEDetector``'s scoring side in numpy (see the module docstring).

    Same scoring surface as the torch detector: ``decision_function``, ``predict``,
    ``explain``, ``latent_means``, ``set_threshold``, ``threshold_``, ``encoder_``,
    ``feature_names_in_``, ``get_params`` and ``save`` (writes the files it was loaded
    from, with the current threshold). It cannot be fitted: load the torch detector for
    that.
    """

    def __init__(
        self,
        config: dict[str, Any],
        arrays: dict[str, np.ndarray],
        plan: dict[str, Any],
        files: dict[str, bytes],
    ) -> None:
        self._config = config
        self._files = files
        self._params = dict(config["params"])
        for name, value in self._params.items():
            setattr(self, name, tuple(value) if isinstance(value, list) else value)
        restore_fitted_state(self, config)
        self.score_rule = plan["rule"]
        self.error_variance_ = [float(v) for v in config["extra_state"]["error_variance"]]
        self.ensemble_ = plan["ensemble"]
        self._beta = float(self._params["beta"])
        self._score_kl = bool(self._params["score_kl"])
        self._encoder = [
            (arrays[f"encoder.{2 * i}.weight"].T, arrays[f"encoder.{2 * i}.bias"])
            for i in range(plan["encoder_layers"])
        ]
        self._mu = (arrays["mu.weight"].T, arrays["mu.bias"])
        self._logvar = (arrays["logvar.weight"].T, arrays["logvar.bias"])
        self._decoder = [
            (arrays[f"decoder.{2 * i}.weight"].T, arrays[f"decoder.{2 * i}.bias"])
            for i in range(plan["decoder_layers"])
        ]
        self._views = plan["views"]
        self._references = {}
        if self._views:
            self._references = {
                "input": reference_side(arrays["knn_reference"]),
                "latent": reference_side(arrays["knn_latent"]),
            }
        self._neighbours = None
        if plan["neighbours"]:
            self._neighbours = NearestRows(arrays["neighbour_reference"])
        e = self.ensemble_
        if self.score_rule == "ensemble":
            self._var64 = np.asarray(self.error_variance_, dtype=np.float64)
            self._knots = np.asarray(e["tail_knots"], dtype=np.float64)  # (d, knots)
            self._last_knot = self._knots[:, -1].copy()
            self._logp = np.asarray(e["tail_logp"], dtype=np.float64)
            self._slope = np.asarray(e["tail_slope"], dtype=np.float64)
            self._precision = np.asarray(e["precision"], dtype=np.float64)
            self._scales = np.asarray(e["scales"], dtype=np.float64)
            self._rule_scales = self._scales / np.asarray(rule_weights(e), dtype=np.float64)
        self._var32 = np.asarray(self.error_variance_, dtype=np.float32)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"NumpyVAE(VAEDetector({args}))"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The saved VAEDetector's constructor parameters."""
        return {name: getattr(self, name) for name in self._params}

    # -- the network (float32, as the torch modules) ---------------------------------------

    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = x
        for weight_t, bias in self._encoder:
            h = _silu(_linear(h, weight_t, bias))
        mu = _linear(h, *self._mu)
        logvar = np.clip(_linear(h, *self._logvar), -10.0, 10.0)
        return mu, logvar

    def _decode(self, z: np.ndarray) -> np.ndarray:
        last = len(self._decoder) - 1
        for i, (weight_t, bias) in enumerate(self._decoder):
            z = _linear(z, weight_t, bias)
            if i < last:
                z = _silu(z)
        return z

    def _residuals_kl_mu(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Residuals and KL term (float64) and posterior means (float32), the network run
        ``_NETWORK_ROWS`` rows at a time so its activations stay in the core's cache."""
        n = x.shape[0]
        resid = np.empty(x.shape, dtype=np.float64)
        kl = np.empty(n, dtype=np.float64)
        mu = np.empty((n, self._mu[0].shape[1]), dtype=np.float32)
        for start in range(0, n, _NETWORK_ROWS):
            stop = min(start + _NETWORK_ROWS, n)
            xb = x[start:stop]
            mu_b, logvar = self._encode(xb)
            kl[start:stop] = 0.5 * (mu_b * mu_b + np.exp(logvar) - 1.0 - logvar).sum(axis=1)
            resid[start:stop] = xb - self._decode(mu_b)
            mu[start:stop] = mu_b
        return resid, kl, mu

    def _tails(self, absr: np.ndarray) -> np.ndarray:
        """Per-column tail surprisal of ``|r|`` (n, d), float64: the knots' -log tail
        probability interpolated linearly (0 below the first knot), an exponential tail
        beyond the last; one ``np.interp`` per column."""
        columns = np.ascontiguousarray(absr.T)
        tail = np.empty_like(columns)
        logp, last_logp = self._logp, self._logp[-1]
        rows = zip(columns, self._knots, self._last_knot, self._slope, strict=True)
        for j, (column, knots, last, slope) in enumerate(rows):
            tail[j] = np.interp(column, knots, logp, left=0.0)
            beyond = column > last
            if beyond.any():
                tail[j, beyond] = last_logp + (column[beyond] - last) / slope
        if np.isnan(columns).any():  # a NaN residual reads the last knot, as it always did
            tail[np.isnan(columns)] = last_logp
        return tail.T

    # -- the score rules (as VAEDetector._ensemble_rules / _elbo_terms) --------------------

    def _ensemble_rules(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        resid, kl, mu = self._residuals_kl_mu(x)
        sq = resid * resid / self._var64
        tail = self._tails(np.abs(resid))
        beta_kl = self._beta * kl
        parts = [
            sq.sum(axis=1) + beta_kl,
            tail.max(axis=1),
            tail.sum(axis=1) + beta_kl,
            ((resid @ self._precision) * resid).sum(axis=1) + beta_kl,
        ]
        k_nearest = int(self.ensemble_.get("knn_k", 1))
        views = {"input": x, "latent": mu}
        for view in self._views:
            parts.append(kth_distance(views[view], self._references[view], k_nearest))
        if self._neighbours is not None:
            parts.append(self._neighbours.distance(x))
        return np.stack(parts, axis=1), sq, tail

    def _score_terms(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-column terms and the per-row non-column rest of the score."""
        if self.score_rule == "ensemble":
            rules, sq, tail = self._ensemble_rules(x)
            score = (rules / self._rule_scales).sum(axis=1)
            top = np.exp((tail - tail.max(axis=1, keepdims=True)) / MAX_TAIL_SOFTNESS)
            top /= top.sum(axis=1, keepdims=True)
            s = self._scales
            terms = sq / s[0] + tail * top / s[1] + tail / s[2]
            return terms, score - terms.sum(axis=1)
        mu, logvar = self._encode(x)
        terms = (x - self._decode(mu)) ** 2 / self._var32
        kl = 0.5 * (mu * mu + np.exp(logvar) - 1.0 - logvar).sum(axis=1)
        if self._score_kl:
            return terms, self._beta * kl.astype(np.float64)
        return terms, np.zeros(kl.shape, dtype=np.float64)

    def _score_batch(self, x: np.ndarray) -> np.ndarray:
        if self.score_rule == "ensemble":
            return (self._ensemble_rules(x)[0] / self._rule_scales).sum(axis=1)
        terms, extra = self._score_terms(x)
        return terms.astype(np.float64).sum(axis=1) + extra

    def _contributions(self, x: np.ndarray) -> np.ndarray:
        terms, extra = self._score_terms(x)
        terms = terms.astype(np.float64)
        recon = np.maximum(terms.sum(axis=1, keepdims=True), 1e-12)
        return (terms * (1.0 + extra[:, None] / recon)).astype(np.float32)

    # -- the detector's scoring surface ----------------------------------------------------

    def _encoded(self, X: Any) -> np.ndarray:
        return self.encoder_.transform(as_frame(X, self.feature_names_in_))

    def _batched(self, fn, x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        parts = [fn(x[i : i + _ROWS_PER_PASS]) for i in range(0, x.shape[0], _ROWS_PER_PASS)]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)

    def decision_function(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Anomaly score per row (float64); higher = more anomalous."""
        return self._batched(self._score_batch, self._encoded(X))

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """0/1 flags (int64) using ``threshold_`` (1 where score > threshold value)."""
        return self.threshold_.apply(self.decision_function(X))

    def explain(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Per-original-feature contributions to each row's score (as the torch detector)."""
        contrib = self._batched(self._contributions, self._encoded(X))
        return per_feature_frame(contrib, self.encoder_.output_groups_, self.feature_names_in_, X)

    def latent_means(self, X: Any) -> np.ndarray:
        """The encoder's posterior means, shape (n, latent_dim), float64."""
        return self._batched(lambda xb: self._encode(xb)[0], self._encoded(X))

    def set_threshold(self, threshold: Threshold) -> NumpyVAE:
        """Swap the decision threshold without retraining (e.g. after labelled feedback)."""
        if not isinstance(threshold, Threshold):
            raise TypeError(f"expected a Threshold, got {type(threshold).__name__}")
        self.threshold_ = threshold
        return self

    def save(self, path: str | Path) -> Path:
        """Write the saved detector back (config.json with the current threshold, and the
        weight files byte for byte), as the torch detector's ``save`` would."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        config = dict(self._config, threshold=self.threshold_.to_dict())
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        for name, content in self._files.items():
            (out / name).write_bytes(content)
        return out
