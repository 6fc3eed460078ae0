"""What a saved detector's folder holds (read without importing torch)."""

from __future__ import annotations

from typing import Any

from detectors.encoding import TabularEncoder
from detectors.thresholds import Threshold

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
#: ``format_version`` in config.json.
FORMAT_VERSION = 1

#: ``score_rule="ensemble"`` explains its max-tail rule by sharing it among the columns
#: near the maximum with weights ``softmax(tail / MAX_TAIL_SOFTNESS)`` (tail surprisals in
#: nats), not by handing it all to ``argmax``: two columns whose tails tie within float
#: rounding then get (almost) the same share on every CPU and in both forwards, instead
#: of the whole share jumping to whichever rounding happens to win. A column one nat
#: below the maximum gets e^-2 of its share; the score itself is unchanged.
MAX_TAIL_SOFTNESS = 0.5


def rule_weights(ensemble: dict[str, Any]) -> list[float]:
    """The weight of each column of the VAE ensemble's rules: 1 for the four residual
    rules, ``knn_weight`` for each prototype view, ``neighbour_weight`` for the
    nearest-neighbour view (the last column, when fitted). One reading for the torch
    detector and the numpy forward."""
    weights = [1.0] * 4
    weights += [float(ensemble.get("knn_weight", 1.0))] * len(ensemble.get("knn_views", []))
    if ensemble.get("neighbour_rows"):
        weights.append(float(ensemble["neighbour_weight"]))
    return weights


def restore_fitted_state(target: Any, config: dict) -> None:
    """Set the fitted attributes every saved detector carries (encoder, input columns,
    threshold, training history, fit facts) on ``target`` from its config.json: one
    reading for the torch detectors and the numpy forward."""
    target.encoder_ = TabularEncoder.from_dict(config["encoder"])
    target.feature_names_in_ = list(config["feature_names_in"])
    target.n_features_in_ = len(target.feature_names_in_)
    target.threshold_ = Threshold.from_dict(config["threshold"])
    target.history_ = list(config.get("history", []))
    target.best_epoch_ = int(config.get("best_epoch", 0))
    target.fit_seconds_ = float(config.get("fit_seconds", 0.0))
    target.fit_info_ = dict(config.get("fit_info", {}))
