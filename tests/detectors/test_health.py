"""The health measures a training gate reads: a generator's spread and coverage of the
real rows, and the KL each VAE latent unit carries."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.health import sample_diversity


def test_samples_from_the_data_spread_and_cover_like_it_and_one_repeated_row_does_not():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 4))
    alike = sample_diversity(real, rng.normal(size=(300, 4)))
    assert 0.9 < alike["diversity_ratio"] < 1.1 and alike["coverage"] > 0.8
    one = sample_diversity(real, np.tile(real[:1], (300, 1)))
    assert one["diversity_ratio"] == 0.0 and one["coverage"] < 0.05
    # a generator stuck on two of the data's three clusters covers about two thirds
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    clusters = centres[rng.integers(0, 3, 600)] + rng.normal(size=(600, 2))
    two = centres[rng.integers(0, 2, 600)] + rng.normal(size=(600, 2))
    assert 0.55 < sample_diversity(clusters, two)["coverage"] < 0.75
    with pytest.raises(ValueError, match="same width"):
        sample_diversity(real, real[:, :2])
