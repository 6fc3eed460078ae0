"""The three tests drift watch runs, without importing ``scipy.stats``.

Importing ``scipy.stats`` costs more than a CPU second (it builds every distribution),
which a short ``vigil score`` paid for three small computations. These give the same
numbers as SciPy's ``binom``, ``chisquare`` and ``ks_2samp`` (tested against them) from
``scipy.special`` and numpy. A two-sample KS test whose exact count would take this
module longer than SciPy's compiled one (more than :data:`NUMPY_KS_MAX_CELLS` lattice
points), or that SciPy answers asymptotically, still goes to ``scipy.stats``: there the
batch is large and the import a small share of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

#: SciPy's ``ks_2samp(method="auto")`` counts paths exactly up to this sample size.
EXACT_KS_MAX_N = 10_000
#: Largest ``m * n`` counted here (about 0.1 s on one core); larger goes to SciPy.
NUMPY_KS_MAX_CELLS = 5_000_000


@dataclass(frozen=True)
class TestResult:
    statistic: float
    pvalue: float


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(special.bdtr(k, n, p))


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X > k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 1.0
    if k >= n:
        return 0.0
    return float(special.bdtrc(k, n, p))


def _smallest_k(n: int, holds) -> int:
    """The smallest k in [0, n] for which ``holds(k)`` (monotone in k)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def binom_ppf(q: float, n: int, p: float) -> int:
    """The smallest k with P(X <= k) >= q (``binom.ppf``)."""
    return _smallest_k(n, lambda k: binom_cdf(k, n, p) >= q)


def binom_isf(q: float, n: int, p: float) -> int:
    """The smallest k with P(X > k) <= q (``binom.isf``)."""
    return _smallest_k(n, lambda k: binom_sf(k, n, p) <= q)


def chisquare(observed: np.ndarray, expected: np.ndarray) -> TestResult:
    """Pearson's chi-square goodness of fit, ``k - 1`` degrees of freedom."""
    observed = np.asarray(observed, dtype="float64")
    expected = np.asarray(expected, dtype="float64")
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return TestResult(statistic, float(special.chdtrc(len(observed) - 1, statistic)))


def ks_2samp(reference: np.ndarray, current: np.ndarray) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test, two-sided, as ``scipy.stats.ks_2samp`` with its
    default method (the exact p-value up to :data:`EXACT_KS_MAX_N` rows per sample)."""
    a = np.sort(np.asarray(reference, dtype="float64"))
    b = np.sort(np.asarray(current, dtype="float64"))
    m, n = len(a), len(b)
    if not m or not n:
        raise ValueError("ks_2samp needs two non-empty samples")
    if max(m, n) > EXACT_KS_MAX_N or m * n > NUMPY_KS_MAX_CELLS:
        from scipy import stats  # deferred: large samples only (see module docstring)

        result = stats.ks_2samp(a, b)
        return TestResult(float(result.statistic), float(result.pvalue))
    both = np.concatenate([a, b])
    gap = np.searchsorted(a, both, side="right") / m - np.searchsorted(b, both, side="right") / n
    d = float(max(np.max(gap), np.clip(-np.min(gap), 0, 1)))
    g = math.gcd(m, n)
    # The statistic as a whole number of lattice steps: |n x - m y| / g at its largest.
    h = round(d * (m // g) * n)
    d = h / ((m // g) * n)
    if h == 0:
        return TestResult(d, 1.0)
    return TestResult(d, float(np.clip(1.0 - _share_inside(m, n, g, h), 0.0, 1.0)))


def _share_inside(m: int, n: int, g: int, h: int) -> float:
    """The share of monotone lattice paths from (0, 0) to (m, n) that keep
    ``|(n/g) x - (m/g) y| < h`` at every point: the probability, under the null, that
    the KS statistic stays below ``h g / (m n)``.

    Column by column over the shorter side: a point's count is the one below it plus the
    one to its left, and the allowed points of a column are one run of y, so within it a
    column is the cumulative sum of the column before; counts are rescaled per column
    (their logarithm kept apart) so they never overflow."""
    if m > n:
        m, n = n, m
    mg, ng = m // g, n // g
    y = np.arange(n + 1)
    column = np.where(mg * y < h, 1.0, 0.0)  # x = 0: the straight run up, while allowed
    log_scale = 0.0
    for x in range(1, m + 1):
        allowed = np.abs(ng * x - mg * y) < h
        column = np.where(allowed, np.cumsum(np.where(allowed, column, 0.0)), 0.0)
        top = column.max()
        if top <= 0:
            return 0.0
        column /= top
        log_scale += math.log(top)
    if column[n] <= 0:
        return 0.0
    log_paths = math.lgamma(m + n + 1) - math.lgamma(m + 1) - math.lgamma(n + 1)
    return math.exp(math.log(column[n]) + log_scale - log_paths)
