"""Decision thresholds that travel with a model.

A threshold is a small saved component (like anomalib's post-processor) so operators can
re-calibrate it, e.g. to a new false-positive budget or to analyst labels, without
retraining the detector.

Decision rule everywhere: a record is flagged when ``score > value`` (strictly greater).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_METHODS = ("fpr", "f1", "precision", "budget", "combined")


def _scores(a: Any) -> np.ndarray:
    s = np.asarray(a, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("need at least one score")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    return s


def _labelled(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = _scores(scores)
    y = np.asarray(labels).ravel()
    if y.shape != s.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    y = y.astype(np.int64)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomaly)")
    if y.min() == y.max():
        raise ValueError("labels contain a single class; need both normal (0) and anomaly (1)")
    return s, y


def _sweep(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every candidate cut (flag ``score > cut``) return cuts, true and false positives.

    Candidate cuts are the distinct scores plus one just below the minimum (flag all).
    """
    u = np.unique(s)
    cuts = np.concatenate([[np.nextafter(u[0], -np.inf)], u])
    pos = np.sort(s[y == 1])
    neg = np.sort(s[y == 0])
    tp = pos.size - np.searchsorted(pos, cuts, side="right")
    fp = neg.size - np.searchsorted(neg, cuts, side="right")
    return cuts, tp.astype(np.float64), fp.astype(np.float64)


def _midpoint(cuts: np.ndarray, i: int) -> float:
    """Place the threshold half-way to the next distinct score for better generalisation."""
    if i + 1 < cuts.size and i > 0:
        return float((cuts[i] + cuts[i + 1]) / 2.0)
    return float(cuts[i])


@dataclass
class Threshold:
    """A calibrated cut on anomaly scores: flag a record when ``score > value``.

    ``method`` records how it was chosen ("fpr", "f1", "precision", "budget", or
    "combined" for a re-ranked score) and ``target`` the goal (target false-positive rate,
    achieved F1, target precision, flags per day, or the re-ranker's probability cut).
    """

    method: str
    target: float
    value: float

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        self.target = float(self.target)
        self.value = float(self.value)

    # ------------------------------------------------------------ constructors
    @classmethod
    def for_fpr(cls, normal_scores: Any, target_fpr: float = 0.01) -> Threshold:
        """Cut at the (1 - target) quantile of held-out NORMAL scores ("higher" interpolation).

        With the strict ``score > value`` rule the false-positive rate on these scores is
        then at most ``target_fpr``; on fresh normal data it is close to it.
        """
        if not 0.0 <= target_fpr < 1.0:
            raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
        s = _scores(normal_scores)
        value = float(np.quantile(s, 1.0 - target_fpr, method="higher"))
        return cls(method="fpr", target=float(target_fpr), value=value)

    @classmethod
    def best_f1(cls, scores: Any, labels: Any) -> Threshold:
        """Cut that maximises F1 on labelled scores (``target`` holds the F1 reached).

        Among cuts with the same (maximal) F1 the highest is chosen (fewest flags); the value
        sits half-way between the highest unflagged and the lowest flagged score.
        """
        s, y = _labelled(scores, labels)
        cuts, tp, fp = _sweep(s, y)
        n_pos = float((y == 1).sum())
        f1 = 2.0 * tp / (tp + fp + n_pos)
        best = np.flatnonzero(f1 == f1.max())[-1]
        return cls(method="f1", target=float(f1[best]), value=_midpoint(cuts, int(best)))

    @classmethod
    def for_precision(cls, scores: Any, labels: Any, target_precision: float) -> Threshold:
        """Lowest cut (highest recall) whose precision on labelled scores is >= target.

        Raises ``ValueError`` if no cut reaches the target precision.
        """
        if not 0.0 < target_precision <= 1.0:
            raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
        s, y = _labelled(scores, labels)
        cuts, tp, fp = _sweep(s, y)
        flagged = tp + fp
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(flagged > 0, tp / np.maximum(flagged, 1.0), 0.0)
        ok = np.flatnonzero((precision >= target_precision) & (flagged > 0))
        if ok.size == 0:
            raise ValueError(
                f"no threshold reaches precision {target_precision}; best is {precision.max():.3f}"
            )
        i = int(ok[0])
        return cls(method="precision", target=float(target_precision), value=_midpoint(cuts, i))

    # ------------------------------------------------------------------ usage
    def apply(self, scores: Any) -> np.ndarray:
        """0/1 flags (int64) for ``scores``: 1 where ``score > value``."""
        return (np.asarray(scores, dtype=np.float64) > self.value).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Threshold:
        """Inverse of ``to_dict``."""
        return cls(method=str(d["method"]), target=float(d["target"]), value=float(d["value"]))
