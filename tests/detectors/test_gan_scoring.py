"""The GAN's scoring shortcuts (chunks, in-place layers, kept reference side) give the same
scores as the plain module calls they replace."""

from __future__ import annotations

import numpy as np
import torch

import detectors.gan as gan
from detectors import GANDetector
from detectors.parts import kth_distance, reference_side


def _data(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, size=(n, 5))


def _fit(x: np.ndarray, **kw) -> GANDetector:
    torch.manual_seed(0)
    return GANDetector(seed=0, epochs=2, patience=None, **kw).fit(x)


def test_eval_forward_equals_the_modules() -> None:
    det = _fit(_data(600, 0))
    net = det.model_
    x = det._to_tensor(_data(300, 1))
    with torch.inference_mode():
        z = net.encoder(x)
        pairs = [
            (net.encoder, x),
            (net.generator, z),
            (net.d_xx.body, torch.cat([x, net.generator(z)], dim=1)),
        ]
        for seq, h in pairs:
            before = h.clone()
            assert torch.equal(gan._eval_forward(seq, h), seq(h))
            assert torch.equal(h, before)  # the caller's tensor is never overwritten


def test_chunked_scores_equal_one_pass(monkeypatch) -> None:
    x = _data(600, 0)
    test = _data(700, 2)
    for kw in ({}, {"knn_views": ()}):
        det = _fit(x, **kw)
        whole = det.decision_function(test)
        monkeypatch.setattr(gan, "SCORE_CHUNK_ROWS", 64)
        chunked = det.decision_function(test)
        monkeypatch.undo()
        assert np.array_equal(whole, chunked)


def test_kept_reference_side_follows_a_refit() -> None:
    det = _fit(_data(600, 0))
    det.decision_function(_data(50, 3))  # fills the kept reference side
    torch.manual_seed(0)
    det.fit(_data(600, 4, shift=3.0))
    fresh = _fit(_data(600, 4, shift=3.0))
    test = _data(200, 5, shift=3.0)
    assert np.array_equal(det.decision_function(test), fresh.decision_function(test))


def test_kth_distance_with_a_prepared_reference() -> None:
    g = torch.Generator().manual_seed(0)
    q, ref = torch.randn(50, 4, generator=g), torch.randn(16, 4, generator=g)
    for k in (1, 3):
        assert torch.equal(kth_distance(q, ref, k), kth_distance(q, ref, k, reference_side(ref)))
