"""The three tests drift watch runs, without importing ``scipy.stats``.

Importing ``scipy.stats`` costs more than a CPU second (it builds every distribution),
which a short ``vigil score`` paid for three small computations. These give the same
numbers as SciPy's ``binom``, ``chisquare`` and ``ks_2samp`` (tested against them) from
numpy and ``math`` alone. A two-sample KS test whose exact count would take this
module longer than SciPy's compiled one (more than :data:`NUMPY_KS_MAX_CELLS` lattice
points), or that SciPy answers asymptotically, still goes to ``scipy.stats``: there the
batch is large and the import a small share of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: SciPy's ``ks_2samp(method="auto")`` counts paths exactly up to this sample size.
EXACT_KS_MAX_N = 10_000
#: Largest ``m * n`` counted here (about 0.1 s on one core); larger goes to SciPy.
NUMPY_KS_MAX_CELLS = 5_000_000


@dataclass(frozen=True)
class TestResult:
    statistic: float
    pvalue: float


def _binom_log_pmf(k: int, n: int, p: float) -> float:
    return (
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + k * math.log(p) + (n - k) * math.log1p(-p)
    )  # fmt: skip


#: Below this log-probability a term underflows to zero in double precision.
_UNDERFLOW = -750.0


def _binom_window(n: int, p: float) -> tuple[int, np.ndarray]:
    """The binomial pmf where it does not underflow: ``(lo, pmf)`` with
    ``pmf[i] = P(X = lo + i)``; every k outside has a probability below 1e-320."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    reach = 40 * sd + 50
    hi = min(n, math.ceil(mean + reach))
    while hi < n and _binom_log_pmf(hi, n, p) > _UNDERFLOW:
        reach *= 2
        hi = min(n, math.ceil(mean + reach))
    reach = 40 * sd + 50
    lo = max(0, math.floor(mean - reach))
    while lo > 0 and _binom_log_pmf(lo, n, p) > _UNDERFLOW:
        reach *= 2
        lo = max(0, math.floor(mean - reach))
    k = np.arange(lo, hi, dtype="float64")
    steps = np.log(n - k) - np.log(k + 1) + (math.log(p) - math.log1p(-p))
    log_pmf = _binom_log_pmf(lo, n, p) + np.concatenate([[0.0], np.cumsum(steps)])
    return lo, np.exp(log_pmf)


def _binom_tails(n: int, p: float) -> tuple[int, np.ndarray, np.ndarray]:
    """``(lo, cdf, sf)`` over the window: each tail summed from its own end, so a small
    tail probability keeps its precision."""
    lo, pmf = _binom_window(n, p)
    cdf = np.cumsum(pmf)
    sf = np.concatenate([np.cumsum(pmf[::-1])[::-1][1:], [0.0]])
    return lo, np.minimum(cdf, 1.0), np.minimum(sf, 1.0)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    lo, cdf, _ = _binom_tails(n, p)
    return float(cdf[min(k - lo, len(cdf) - 1)]) if k >= lo else 0.0


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X > k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 1.0
    if k >= n:
        return 0.0
    lo, _, sf = _binom_tails(n, p)
    if k < lo:
        return 1.0
    return float(sf[k - lo]) if k - lo < len(sf) else 0.0


def binom_ppf(q: float, n: int, p: float) -> int:
    """The smallest k with P(X <= k) >= q (``binom.ppf``)."""
    lo, cdf, _ = _binom_tails(n, p)
    return min(n, lo + int(np.searchsorted(cdf, q, side="left")))


def binom_isf(q: float, n: int, p: float) -> int:
    """The smallest k with P(X > k) <= q (``binom.isf``)."""
    lo, _, sf = _binom_tails(n, p)
    return min(n, lo + int(np.argmax(sf <= q)))


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square with ``df`` (a whole number) degrees of freedom, from
    the closed forms: a Poisson tail for even ``df``; for odd, erfc plus half-integer
    terms."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        terms = [j * math.log(half) - math.lgamma(j + 1) for j in range(df // 2)]
        return min(1.0, sum(math.exp(t - half) for t in terms))
    terms = [(j - 0.5) * math.log(half) - math.lgamma(j + 0.5) for j in range(1, (df + 1) // 2)]
    return min(1.0, math.erfc(math.sqrt(half)) + sum(math.exp(t - half) for t in terms))


def chisquare(observed: np.ndarray, expected: np.ndarray) -> TestResult:
    """Pearson's chi-square goodness of fit, ``k - 1`` degrees of freedom."""
    observed = np.asarray(observed, dtype="float64")
    expected = np.asarray(expected, dtype="float64")
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return TestResult(statistic, chi2_sf(statistic, len(observed) - 1))


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
