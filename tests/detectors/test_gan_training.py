"""The GAN's training step computes E and G once and freezes the discriminators for the E/G
update; the trained weights equal those of the plain two-pass ALAD step it replaces."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.ganfit_probe import two_pass_step
from detectors import GANDetector


def _fit(monkeypatch=None) -> GANDetector:
    x = np.random.default_rng(0).normal(size=(700, 6))
    torch.manual_seed(0)
    if monkeypatch is not None:
        monkeypatch.setattr(GANDetector, "_train_batch", two_pass_step)
    return GANDetector(seed=0, epochs=3, patience=None, knn_views=()).fit(x)


def test_one_pass_step_trains_the_same_weights_as_the_two_pass_step(monkeypatch) -> None:
    fast = _fit()
    plain = _fit(monkeypatch)
    for (name, a), (_, b) in zip(
        fast.model_.state_dict().items(), plain.model_.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert fast.history_ == plain.history_
    # The discriminators are trainable again after each E/G update.
    assert all(p.requires_grad for p in fast.model_.d_parameters())
