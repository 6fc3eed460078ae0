"""vigil's ML core: tabular encoding, deep anomaly detectors, thresholds and metrics.

Pure torch + numpy + pandas + scikit-learn; no orchestration, tracking or storage code.
Score direction everywhere: higher = more anomalous.
"""

from detectors import metrics
from detectors.base import BaseDeepDetector, NotFittedError
from detectors.encoding import TabularEncoder
from detectors.gan import GANDetector
from detectors.registry import load_detector
from detectors.sequence import SequenceGANDetector, SequenceVAEDetector
from detectors.thresholds import Threshold
from detectors.vae import VAEDetector

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
