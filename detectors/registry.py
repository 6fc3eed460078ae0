"""Load any saved detector by the class name recorded in its config.json."""

from __future__ import annotations

import json
from pathlib import Path

from detectors.base import CONFIG_FILE, BaseDeepDetector
from detectors.gan import GANDetector
from detectors.sequence import SequenceGANDetector, SequenceVAEDetector
from detectors.vae import VAEDetector

#: The only classes ``load_detector`` will build; names are never imported dynamically.
DETECTORS: dict[str, type[BaseDeepDetector]] = {
    "VAEDetector": VAEDetector,
    "GANDetector": GANDetector,
    "SequenceVAEDetector": SequenceVAEDetector,
    "SequenceGANDetector": SequenceGANDetector,
}


def load_detector(path: str | Path, device: str | None = None) -> BaseDeepDetector:
    """Load a detector directory written by ``save`` without knowing its class in advance."""
    config = json.loads((Path(path) / CONFIG_FILE).read_text())
    name = config.get("class_name")
    if name not in DETECTORS:
        raise ValueError(f"unknown detector class {name!r} in {path}; known: {sorted(DETECTORS)}")
    return DETECTORS[name].load(path, device=device)
