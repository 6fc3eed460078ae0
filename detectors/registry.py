"""Load any saved detector by the class name recorded in its config.json."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectors.layout import CONFIG_FILE
from detectors.numpy_forward import load_numpy_vae

if TYPE_CHECKING:  # pragma: no cover
    from detectors.base import BaseDeepDetector
    from detectors.numpy_forward import NumpyVAE

#: The only classes ``load_detector`` will build, and the module of each (imported on
#: first use: torch with them); names are never imported from what a file says.
_HOMES: dict[str, str] = {
    "VAEDetector": "detectors.vae",
    "GANDetector": "detectors.gan",
    "SequenceVAEDetector": "detectors.sequence",
    "SequenceGANDetector": "detectors.sequence",
}


def detector_class(name: str) -> type[BaseDeepDetector]:
    """The detector class saved as ``name`` (one of ``_HOMES``)."""
    return getattr(importlib.import_module(_HOMES[name]), name)


def load_detector(
    path: str | Path, device: str | None = None, *, numpy_forward: bool = False
) -> BaseDeepDetector | NumpyVAE:
    """Load a detector directory written by ``save`` without knowing its class in advance.

    ``numpy_forward=True``: a VAE saved with ``weights.npz`` comes back as a
    :class:`~detectors.numpy_forward.NumpyVAE` (same scores, no torch import) when it is
    to run on the CPU; anything else loads the torch detector as usual.
    """
    config = json.loads((Path(path) / CONFIG_FILE).read_text())
    name = config.get("class_name")
    if name not in _HOMES:
        raise ValueError(f"unknown detector class {name!r} in {path}; known: {sorted(_HOMES)}")
    if numpy_forward and device in (None, "cpu"):
        scorer = load_numpy_vae(path, config)
        if scorer is not None:
            return scorer
    return detector_class(name).load(path, device=device)


def __getattr__(name: str) -> Any:
    if name == "DETECTORS":  # name -> class, for readers; importing it imports torch
        return {known: detector_class(known) for known in _HOMES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
