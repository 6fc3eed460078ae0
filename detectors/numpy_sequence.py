"""A fitted ``SequenceVAEDetector``'s scoring of one window, in numpy.

A real-time scorer holds an entity's last records and scores one new record against
them: a GRU over at most ``sequence_length - 1`` steps and two small MLPs. Through the
torch detector that is a DataFrame, a window build and a dozen module calls (about a
millisecond); here it is a few small matrix products on arrays the scorer already holds.

:class:`NumpySequenceVAE` copies the network's weights out of the loaded detector
(``from_detector``) and reproduces ``decision_function`` and ``explain`` for windows
given as encoded rows, in the torch detector's order of operations and dtypes (the
network in float32, the score in float64). The torch detector stays the reference: a
test compares both on the same windows. Anything else (the GAN, a non-ELBO rule, an
unexpected layer) makes ``from_detector`` answer None and the caller uses torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.encoding import UNKNOWN, TabularEncoder

_ONE = np.float32(1.0)


_HALF = np.float32(0.5)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` written with tanh: no overflow, so no error-state switch
    (which cost more than the arithmetic on vectors this small)."""
    return _HALF * (_ONE + np.tanh(_HALF * x))


def _silu(x: np.ndarray) -> np.ndarray:
    return x * _sigmoid(x)


class RowEncoder:
    """``TabularEncoder.transform`` for rows given as plain value lists (the encoder's
    ``feature_names_in_`` order): no DataFrame per call."""

    def __init__(self, encoder: TabularEncoder) -> None:
        self.encoder = encoder
        self.plan = encoder.plan()
        names = list(encoder.feature_names_in_)
        self.numeric = [names.index(n) for n in self.plan.numeric_names]
        self.categorical = [
            (names.index(c["name"]), j, {cat: i for i, cat in enumerate(c["categories"])})
            for c, j in self.plan.categorical
        ]
        self.width = int(encoder.n_features_out_)

    def transform(self, rows: list[list[Any]]) -> np.ndarray:
        n = len(rows)
        out = np.empty((n, self.width), dtype=np.float32)
        if self.numeric:
            block = np.array(
                [[_float(row[i]) for i in self.numeric] for row in rows], dtype=np.float64
            ).reshape(n, len(self.numeric))
            TabularEncoder.encode_numeric_block(block, self.plan, out)
        for i, j, lookup in self.categorical:
            k = len(lookup)
            out[:, j : j + k + 1] = 0.0
            for r, row in enumerate(rows):
                value = row[i]
                code = k if _is_missing(value) else lookup.get(str(value), k)
                out[r, j + code] = 1.0
        return out


class NumpySequenceVAE:
    """Score one window at a time like a fitted ``SequenceVAEDetector`` (see module)."""

    def __init__(self, detector: Any, arrays: dict[str, np.ndarray]) -> None:
        self.sequence_length = int(detector.sequence_length)
        self.history_seconds = detector.history_seconds
        self.rows = RowEncoder(detector.encoder_)
        self.feature_names_in_ = list(detector.feature_names_in_)
        self.groups = np.asarray(detector.encoder_.output_groups_, dtype=np.int64)
        self.variance = np.asarray(detector.error_variance_, dtype=np.float32)
        self.beta = float(detector.beta)
        self.score_kl = bool(detector.score_kl)
        self.hidden = int(detector.context_hidden)
        a = arrays
        self.w_ih, self.w_hh = a["gru.weight_ih_l0"].T.copy(), a["gru.weight_hh_l0"].T.copy()
        self.b_ih, self.b_hh = a["gru.bias_ih_l0"], a["gru.bias_hh_l0"]
        self.encoder = _layers(a, "encoder")
        self.mu = (a["mu.weight"].T.copy(), a["mu.bias"])
        self.logvar = (a["logvar.weight"].T.copy(), a["logvar.bias"])
        self.decoder = _layers(a, "decoder")

    @classmethod
    def from_detector(cls, detector: Any) -> NumpySequenceVAE | None:
        """The numpy scorer of a fitted torch ``SequenceVAEDetector``, or None where this
        module does not reproduce it."""
        if type(detector).__name__ != "SequenceVAEDetector":
            return None
        if getattr(detector, "score_rule", "elbo") != "elbo" or str(detector.device) != "cpu":
            return None
        state = detector.model_.state_dict()
        arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in state.items()}
        expected = {"gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0"}
        if not expected <= set(arrays) or any(
            k.startswith("gru.") and k.endswith("l1") for k in arrays
        ):
            return None
        try:
            return cls(detector, arrays)
        except (KeyError, ValueError):
            return None

    def _context(self, previous: np.ndarray) -> np.ndarray:
        """The GRU's last hidden state over ``previous`` steps (K-1, d+1)."""
        h = np.zeros(self.hidden, dtype=np.float32)
        if previous.shape[0] == 0:
            return h
        gates_x = previous @ self.w_ih + self.b_ih
        n = self.hidden
        for x in gates_x:
            gh = h @ self.w_hh + self.b_hh
            rz = _sigmoid(x[: 2 * n] + gh[: 2 * n])
            z = rz[n:]
            candidate = np.tanh(x[2 * n :] + rz[:n] * gh[2 * n :])
            h = (_ONE - z) * candidate + z * h
        return h

    def terms(self, encoded: np.ndarray, present: int) -> tuple[np.ndarray, float]:
        """Per-column terms and the non-column rest of the LAST row's score;
        ``encoded``: the window's rows (oldest first, the record last), ``present`` of
        the previous ones real (the rest are padding before them)."""
        k = self.sequence_length
        d = encoded.shape[1]
        steps = np.zeros((k, d + 1), dtype=np.float32)
        rows = encoded[-(present + 1) :]
        steps[k - len(rows) :, :-1] = rows
        steps[k - len(rows) :, -1] = 1.0
        x = steps[-1, :-1]
        h = self._context(steps[:-1])
        e = np.concatenate([x, h])
        for weight, bias in self.encoder:
            e = _silu(e @ weight + bias)
        mu = e @ self.mu[0] + self.mu[1]
        logvar = np.minimum(np.maximum(e @ self.logvar[0] + self.logvar[1], -10.0), 10.0)
        out = np.concatenate([mu, h])
        last = len(self.decoder) - 1
        for i, (weight, bias) in enumerate(self.decoder):
            out = out @ weight + bias
            if i < last:
                out = _silu(out)
        terms = (x - out) ** 2 / self.variance
        kl = np.float32(0.5) * (mu * mu + np.exp(logvar) - _ONE - logvar).sum(dtype=np.float32)
        extra = self.beta * float(kl) if self.score_kl else 0.0
        return terms, extra

    def score(self, encoded: np.ndarray, present: int) -> float:
        terms, extra = self.terms(encoded, present)
        return float(terms.astype(np.float64).sum()) + extra

    def contributions(self, encoded: np.ndarray, present: int) -> np.ndarray:
        """Per-feature contributions of the last row (``explain``'s row), float64."""
        terms, extra = self.terms(encoded, present)
        t64 = terms.astype(np.float64)
        scaled = (t64 * (1.0 + extra / max(t64.sum(), 1e-12))).astype(np.float32)
        per = np.zeros(len(self.feature_names_in_), dtype=np.float64)
        np.add.at(per, self.groups, scaled.astype(np.float64))
        return np.maximum(per, 0.0)


def _layers(arrays: dict[str, np.ndarray], prefix: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The Linear layers of an ``mlp`` (Sequential: Linear, SiLU, Linear, ...) in order."""
    indices = sorted(
        {
            int(k.split(".")[1])
            for k in arrays
            if k.startswith(f"{prefix}.") and k.endswith("weight")
        }
    )
    return [
        (arrays[f"{prefix}.{i}.weight"].T.copy(), arrays[f"{prefix}.{i}.bias"]) for i in indices
    ]


def _float(value: Any) -> float:
    if value is None:
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return str(value) == "<NA>"


__all__ = ["UNKNOWN", "NumpySequenceVAE", "RowEncoder"]
