"""The grouped nearest-row search of the numpy forward gives the dense search's distances:
rows near their own group, rows whose nearest row lies in another group, exact repeats of
reference rows, and rows with NaN or inf."""

from __future__ import annotations

import numpy as np

from detectors.numpy_neighbours import NearestRows, nearest_distance


def encoded_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows shaped like the encoder's output: three numeric columns, then two one-hot
    blocks (4 and 3 categories)."""
    numeric = rng.normal(size=(n, 3))
    first = np.eye(4)[rng.integers(0, 4, n)]
    second = np.eye(3)[rng.integers(0, 3, n)]
    return np.hstack([numeric, first, second]).astype(np.float32)


def test_grouped_search_gives_the_dense_distances() -> None:
    rng = np.random.default_rng(0)
    ref = encoded_rows(600, rng)
    index = NearestRows(ref)
    assert len(index._groups) == 12  # the search is grouped, not dense
    q = encoded_rows(2000, rng)
    q[:50] = ref[:50]  # exact repeats: distance 0
    q[50:100, :3] *= 8.0  # far from every row of their group: other groups are searched
    q[100:110, 3:] = 0.5  # 0/1 columns that are neither
    q[110, 0], q[111, 1], q[112, 2] = np.nan, np.inf, -np.inf
    dense = nearest_distance(q, index.prepared)
    grouped = index.distance(q)
    np.testing.assert_allclose(grouped, dense, rtol=1e-5, atol=1e-6)
    assert np.isnan(grouped[110]) == np.isnan(dense[110])
    assert (grouped[:50] < 1e-3).all()
    brute = np.sqrt(((q[113:, None, :].astype(np.float64) - ref[None]) ** 2).sum(axis=2)).min(1)
    np.testing.assert_allclose(grouped[113:], brute, rtol=1e-4, atol=1e-4)


def test_a_reference_without_groups_is_searched_whole() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(200, 5)).astype(np.float32)
    index = NearestRows(ref)
    assert not index._groups
    q = rng.normal(size=(300, 5)).astype(np.float32)
    np.testing.assert_array_equal(index.distance(q), nearest_distance(q, index.prepared))
    assert index.distance(q[:0]).shape == (0,)
