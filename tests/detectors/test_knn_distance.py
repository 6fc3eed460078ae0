"""The kNN view's fast k-th distance (one centred float32 matrix product) agrees with the
whole cdist matrix and top-k, to float32 precision, and treats non-finite rows the same."""

from __future__ import annotations

import pytest
import torch

from detectors.parts import kth_distance


def _reference(q: torch.Tensor, ref: torch.Tensor, k: int) -> torch.Tensor:
    """What the kNN views computed before: the whole cdist matrix, then top-k."""
    k = max(1, min(int(k), ref.shape[0]))
    dist = torch.cdist(q.float(), ref.float())
    return dist.topk(k, dim=1, largest=False).values[:, -1].double()


@pytest.mark.parametrize(
    ("rows", "refs", "width", "k"),
    [(3000, 2048, 19, 5), (8192, 300, 8, 6), (10, 20, 4, 5), (40, 7, 3, 9), (1, 2048, 19, 5)],
)
def test_kth_distance_agrees_with_cdist_topk(rows, refs, width, k):
    generator = torch.Generator().manual_seed(rows + refs)
    q = torch.randn(rows, width, generator=generator, dtype=torch.float64)
    ref = torch.randn(refs, width, generator=generator, dtype=torch.float64)
    same = min(5, rows, refs)
    q[:same] = ref[:same]  # exact matches: squared distances round to small negatives
    fast, slow = kth_distance(q, ref, k), _reference(q, ref, k)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=2e-3)


def test_kth_distance_keeps_non_finite_rows_as_cdist_does():
    q = torch.randn(64, 6, dtype=torch.float64)
    q[3, 2] = float("inf")
    q[7, 0] = float("nan")
    ref = torch.randn(100, 6, dtype=torch.float64)
    fast, slow = kth_distance(q, ref, 5), _reference(q, ref, 5)
    assert torch.equal(fast.isnan(), slow.isnan())
    finite = ~slow.isnan()
    torch.testing.assert_close(fast[finite], slow[finite], rtol=1e-4, atol=2e-3)
