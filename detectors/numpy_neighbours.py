"""The numpy forward's distances to reference rows (the VAE's kNN and nearest-neighbour
views), computed as the torch detector computes them (:mod:`detectors.parts`).

The nearest-neighbour view reads up to a few thousand training rows, and one float32
product of every scored row with all of them was the forward's largest cost. Encoded rows
are mostly one-hot blocks, so :class:`NearestRows` groups the reference rows by their 0/1
columns: the squared distance between two rows is the sum over the 0/1 columns plus the
sum over the others, so the 0/1 part alone bounds a row's distance to every row of a group
from below. Each scored row is compared with the rows of its own group (the one whose 0/1
part is nearest) only, and where another group's bound does not clear the distance found
(with a margin for float32 rounding), the row is scored against every reference row as
before. The nearest row is chosen from the same float32 products as before (only fewer of
them) and its distance measured the same way, so the result is the dense one.
"""

from __future__ import annotations

import numpy as np

#: Query rows per block of the dense nearest-neighbour search: the (rows x reference)
#: block stays in cache.
NEAREST_BLOCK_ROWS = 512
#: :class:`NearestRows` groups the reference only where its 0/1 columns take at most this
#: many patterns, with at least ``_MIN_GROUP_ROWS`` rows per pattern on average.
_MAX_GROUPS = 256
_MIN_GROUP_ROWS = 4
#: Another group is searched when its bound is within this share of the distance found
#: (plus a term for the rounding of the row's own squared norm): float32 rounding is
#: about 1e-7 of either.
_BOUND_MARGIN = 1e-3


def reference_side(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As ``detectors.parts.reference_side``: float32 mean, centred rows, squared norms."""
    centre = ref.mean(axis=0, dtype=np.float32)
    centred = ref - centre
    return centre, centred, (centred * centred).sum(axis=1)


def nearest_distance(
    q: np.ndarray, prepared: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    """As ``detectors.parts.nearest_distance`` with k = 1 (the nearest row found from float32
    products, its distance measured directly), in blocks of ``NEAREST_BLOCK_ROWS`` query
    rows so the (rows x reference) block stays in cache."""
    centre, centred, r_sq = prepared
    centred_t = centred.T * np.float32(-2.0)  # (d, rows): one small copy per pass
    out = np.empty(q.shape[0], dtype=np.float64)
    for start in range(0, q.shape[0], NEAREST_BLOCK_ROWS):
        part = q[start : start + NEAREST_BLOCK_ROWS].astype(np.float32, copy=False) - centre
        partial = part @ centred_t
        partial += r_sq
        diff = part - centred[partial.argmin(axis=1)]
        out[start : start + len(part)] = np.sqrt((diff * diff).sum(axis=1))
    nan = np.isnan(out)
    if nan.any():
        out[nan & ~np.isnan(q).any(axis=1)] = np.inf
    return out


def kth_distance(
    q: np.ndarray, prepared: tuple[np.ndarray, np.ndarray, np.ndarray], k: int
) -> np.ndarray:
    """As ``detectors.parts.kth_distance`` (float32 products, float64 result)."""
    centre, centred, r_sq = prepared
    k = max(1, min(int(k), centred.shape[0]))
    q32 = q.astype(np.float32, copy=False) - centre
    partial = r_sq - np.float32(2.0) * (q32 @ centred.T)
    if k == 1:
        best = partial.min(axis=1)
    else:
        best = np.partition(partial, k - 1, axis=1)[:, k - 1]
    out = np.sqrt(np.maximum(best + (q32 * q32).sum(axis=1), np.float32(0.0))).astype(np.float64)
    nan = np.isnan(out)
    if nan.any():
        out[nan & ~np.isnan(q).any(axis=1)] = np.inf
    return out


class NearestRows:
    """The distance of each row to its nearest reference row, as :func:`nearest_distance`
    gives it, searching the reference by groups of equal 0/1 columns (see the module
    docstring); a reference without such groups is searched whole."""

    def __init__(self, ref: np.ndarray) -> None:
        self.prepared = reference_side(ref)
        self._groups: list[np.ndarray] = []
        binary = np.all((ref == 0) | (ref == 1), axis=0)
        if not binary.any():
            return
        keys, group_of = np.unique(ref[:, binary], axis=0, return_inverse=True)
        n_groups = keys.shape[0]
        if not 2 <= n_groups <= min(_MAX_GROUPS, ref.shape[0] // _MIN_GROUP_ROWS):
            return
        _, centred, r_sq = self.prepared
        self._binary = np.flatnonzero(binary)
        keys = keys.astype(np.float32)
        self._keys_t = np.ascontiguousarray(keys.T * np.float32(-2.0))  # (binary, groups)
        self._keys_sq = (keys * keys).sum(axis=1)
        group_of = group_of.reshape(-1)
        self._groups = [np.flatnonzero(group_of == g) for g in range(n_groups)]
        self._centred_t = [
            np.ascontiguousarray(centred[rows].T * np.float32(-2.0)) for rows in self._groups
        ]
        self._r_sq = [r_sq[rows] for rows in self._groups]

    def distance(self, q: np.ndarray) -> np.ndarray:
        """Distance (float64) of each row of ``q`` to its nearest reference row."""
        if not self._groups or not len(q):
            return nearest_distance(q, self.prepared)
        centre, centred, _ = self.prepared
        q32 = q.astype(np.float32, copy=False)
        part = q32 - centre
        n = part.shape[0]
        # Squared distance of each row's 0/1 part to each group's: a lower bound of its
        # squared distance to every row of the group.
        q_binary = q32[:, self._binary]
        bound = q_binary @ self._keys_t
        bound += self._keys_sq
        bound += (q_binary * q_binary).sum(axis=1)[:, None]
        home = bound.argmin(axis=1)
        nearest = np.zeros(n, dtype=np.int64)
        order = np.argsort(home, kind="stable")
        counts = np.bincount(home, minlength=len(self._groups))
        ends = np.cumsum(counts)
        for g in np.flatnonzero(counts).tolist():
            rows = order[ends[g] - counts[g] : ends[g]]
            partial = part[rows] @ self._centred_t[g]
            partial += self._r_sq[g]
            nearest[rows] = self._groups[g][partial.argmin(axis=1)]
        diff = part - centred[nearest]
        found = (diff * diff).sum(axis=1)
        bound[np.arange(n), home] = np.inf
        margin = np.float32(_BOUND_MARGIN) * (found + (part * part).sum(axis=1) + 1)
        unsure = ~(bound.min(axis=1) > found + margin)  # NaN and inf rows too
        out = np.sqrt(found).astype(np.float64)
        if unsure.any():
            out[unsure] = nearest_distance(q[unsure], self.prepared)
        return out
