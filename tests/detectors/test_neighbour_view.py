"""The VAE's nearest-neighbour view: the distance of the encoded row to its nearest row of a
bounded sample of training rows, read exactly (near-duplicates included), saved with the
model and scored the same by the numpy forward."""

from __future__ import annotations

import json

import numpy as np
import torch
from detector_data import make_normals

from detectors import VAEDetector
from detectors.numpy_forward import load_numpy_vae
from detectors.parts import kth_distance, nearest_distance

TINY = {"epochs": 3, "kl_warmup_epochs": 1, "patience": None}


def test_nearest_distance_is_exact_for_near_duplicates() -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(300, 9, generator=gen) * 40 + 500  # far from 0: |q|^2 dwarfs the gap
    q = torch.cat([ref[:50] + 1e-3 * torch.randn(50, 9, generator=gen), ref[50:60] + 5.0])
    expected = torch.cdist(q.double(), ref.double()).sort(dim=1).values
    torch.testing.assert_close(nearest_distance(q, ref), expected[:, 0], rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(nearest_distance(q, ref, 2), expected[:, 1], rtol=1e-3, atol=1e-5)
    # The product alone loses the near-duplicates' distances.
    assert (kth_distance(q[:50], ref, 1) - expected[:50, 0]).abs().max() > 1e-2


def test_neighbour_view_is_the_distance_to_the_nearest_reference_row(tmp_path) -> None:
    X = make_normals(400, seed=51)
    det = VAEDetector(**TINY, neighbour_rows=64, neighbour_weight=3.0).fit(X)
    reference = det.model_.neighbour_reference
    assert reference.shape[0] == 64 == det.ensemble_["neighbour_rows"]
    assert det.ensemble_["neighbour_weight"] == 3.0
    queries = make_normals(30, seed=52)
    encoded = torch.from_numpy(det.encoder_.transform(queries))
    with torch.inference_mode():
        rules = det._ensemble_rules(encoded)[0]
    brute = torch.cdist(encoded.double(), reference.double()).min(dim=1).values
    torch.testing.assert_close(rules[:, -1], brute, rtol=1e-4, atol=1e-5)
    # The view weighs neighbour_weight: its share of the score is w * d / scale.
    share = 3.0 * rules[:, -1] / det.ensemble_["scales"][-1]
    without = det.decision_function(queries) - share.numpy()
    others = (rules[:, :-1] / torch.tensor(det.ensemble_["scales"][:-1])).sum(dim=1)
    np.testing.assert_allclose(without, others.numpy(), rtol=1e-6)
    # Saved and loaded, by torch and by the numpy forward, it scores the same.
    det.save(tmp_path / "m")
    numpy_det = load_numpy_vae(tmp_path / "m")
    assert numpy_det is not None
    np.testing.assert_allclose(
        numpy_det.decision_function(queries), det.decision_function(queries), rtol=1e-3
    )
    loaded = VAEDetector.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.decision_function(queries), det.decision_function(queries))


def test_saved_before_the_neighbour_view_loads_without_it(tmp_path) -> None:
    X = make_normals(300, seed=53)
    det = VAEDetector(**TINY, neighbour_rows=0).fit(X)
    assert "neighbour_rows" not in det.ensemble_
    det.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["params"]["neighbour_rows"], cfg["params"]["neighbour_weight"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    loaded = VAEDetector.load(tmp_path / "m")
    assert loaded.neighbour_rows == 0
    np.testing.assert_array_equal(loaded.decision_function(X), det.decision_function(X))
