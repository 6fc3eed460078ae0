"""vigil's ML core: tabular encoding, deep anomaly detectors, thresholds and metrics.

Pure torch + numpy + pandas + scikit-learn; no orchestration, tracking or storage code.
Score direction everywhere: higher = more anomalous.

The names below are imported on first use (PEP 562): ``from detectors.context import
...`` or ``from detectors import Threshold`` must not import torch (about half of a
short ``vigil score``'s start-up), and a saved VAE scores without it
(:mod:`detectors.numpy_forward`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers and readers only
    from detectors import metrics
    from detectors.base import BaseDeepDetector, NotFittedError
    from detectors.encoding import TabularEncoder
    from detectors.gan import GANDetector
    from detectors.registry import load_detector
    from detectors.sequence import SequenceGANDetector, SequenceVAEDetector
    from detectors.thresholds import Threshold
    from detectors.vae import VAEDetector

#: Public name -> the module that defines it.
_HOMES = {
    "BaseDeepDetector": "detectors.base",
    "NotFittedError": "detectors.base",
    "TabularEncoder": "detectors.encoding",
    "GANDetector": "detectors.gan",
    "load_detector": "detectors.registry",
    "SequenceGANDetector": "detectors.sequence",
    "SequenceVAEDetector": "detectors.sequence",
    "Threshold": "detectors.thresholds",
    "VAEDetector": "detectors.vae",
}

__all__ = [
    "BaseDeepDetector",
    "GANDetector",
    "NotFittedError",
    "SequenceGANDetector",
    "SequenceVAEDetector",
    "TabularEncoder",
    "Threshold",
    "VAEDetector",
    "load_detector",
    "metrics",
]


def __getattr__(name: str) -> Any:
    if name == "metrics":
        return importlib.import_module("detectors.metrics")
    if name not in _HOMES:
        raise AttributeError(f"module 'detectors' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
