"""Drift watch's tests give SciPy's numbers without importing SciPy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from pipelines.operations import drift_tests


def test_ks_2samp_matches_scipy_exact_p_values():
    rng = np.random.default_rng(0)
    for trial in range(120):
        m, n = int(rng.integers(1, 200)), int(rng.integers(1, 200))
        if trial % 7 == 0:
            n = m  # SciPy's equal-size branch
        a = rng.normal(size=m)
        b = rng.normal(loc=float(rng.choice([0.0, 0.3, 1.0])), size=n)
        if trial % 5 == 0:  # ties
            a, b = np.round(a, 1), np.round(b, 1)
        ours, theirs = drift_tests.ks_2samp(a, b), stats.ks_2samp(a, b)
        assert ours.statistic == pytest.approx(theirs.statistic, abs=1e-12)
        assert ours.pvalue == pytest.approx(theirs.pvalue, rel=1e-6, abs=1e-9), (m, n)


def test_ks_2samp_large_samples_go_to_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=drift_tests.EXACT_KS_MAX_N + 1), rng.normal(0.02, size=300)
    ours, theirs = drift_tests.ks_2samp(a, b), stats.ks_2samp(a, b)
    assert ours.pvalue == pytest.approx(theirs.pvalue, rel=1e-9)
    with pytest.raises(ValueError, match="non-empty"):
        drift_tests.ks_2samp(a, [])


def test_binomial_limits_and_tails_match_scipy():
    rng = np.random.default_rng(2)
    for _ in range(600):
        n = int(rng.integers(1, 200_000))
        p = float(rng.uniform(1e-6, 0.2))
        q = float(rng.choice([0.001, 0.01, 0.05])) / 2
        assert drift_tests.binom_ppf(q, n, p) == stats.binom.ppf(q, n, p)
        assert drift_tests.binom_isf(q, n, p) == stats.binom.isf(q, n, p)
        k = int(rng.integers(0, n + 1))
        sf, cdf = stats.binom.sf(k - 1, n, p), stats.binom.cdf(k, n, p)
        assert drift_tests.binom_sf(k - 1, n, p) == pytest.approx(sf, rel=1e-8, abs=1e-290)
        assert drift_tests.binom_cdf(k, n, p) == pytest.approx(cdf, rel=1e-8, abs=1e-290)
    assert drift_tests.binom_ppf(0.0005, 0, 0.01) == stats.binom.ppf(0.0005, 0, 0.01)
    assert drift_tests.binom_isf(0.0005, 0, 0.01) == stats.binom.isf(0.0005, 0, 0.01)


def test_chi2_tail_matches_scipy_for_even_and_odd_degrees_of_freedom():
    for df in range(1, 40):
        for x in (0.01, 0.5, 3.0, 10.0, 50.0, 200.0, 1000.0):
            assert drift_tests.chi2_sf(x, df) == pytest.approx(
                stats.chi2.sf(x, df), rel=1e-9, abs=1e-300
            ), (x, df)


def test_chisquare_matches_scipy():
    rng = np.random.default_rng(3)
    for _ in range(60):
        k = int(rng.integers(2, 12))
        observed = rng.integers(0, 50, size=k).astype(float)
        expected = rng.uniform(1, 10, size=k)
        expected = expected / expected.sum() * observed.sum()
        ours = drift_tests.chisquare(observed, expected)
        theirs = stats.chisquare(observed, expected)
        assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12)
        assert ours.pvalue == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-300)


def test_a_small_batch_assessment_does_not_import_scipy():
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "from pipelines.operations.drift import assess_drift\n"
        "from pipelines.operations.reference import TrainingReference\n"
        "rng = np.random.default_rng(0)\n"
        "ref = TrainingReference(reference_scores=rng.normal(size=500), expected_flag_rate=0.01,\n"
        "    threshold=2.0, numeric=pd.DataFrame({'x': rng.normal(size=500)}),\n"
        "    categories={'c': {'a': 0.5, 'b': 0.5}})\n"
        "h = assess_drift(ref, scores=rng.normal(size=60), flagged=np.zeros(60, bool),\n"
        "    features=pd.DataFrame({'x': rng.normal(size=60), 'c': ['a', 'b'] * 30}))\n"
        "assert h['features'] and h['score']['ks_p'] > 0, h\n"
        "print('scipy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
