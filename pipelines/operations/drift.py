"""Drift watch: is tonight's batch still the kind of data the model was trained on?

Four checks per scoring run, each against the model's training reference
(:mod:`pipelines.operations.reference`), written with numpy and the tests of
:mod:`pipelines.operations.drift_tests` (SciPy's numbers without importing ``scipy.stats``):

- the score distribution: PSI on the reference's deciles and a two-sample KS test;
- the flag rate against the expected rate: a binomial control limit (two-sided), so a
  jump from 0.5% to 2% alarms while day-to-day noise does not;
- per-feature drift: KS (numeric) and chi-square (categorical) tests with
  Benjamini-Hochberg false-discovery-rate control across features, and an effect-size
  floor (a p-value alone alarms on trivia when batches are large);
- the share of rows holding a category value never seen in training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.operations import drift_tests
from pipelines.operations.reference import TrainingReference
from pipelines.settings import DriftPolicy
from pipelines.store.vocabulary import HealthStatus


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index on the reference's quantile bins (0 = same; > 0.2 is
    the usual 'significant shift')."""
    reference = np.asarray(reference, dtype="float64")
    current = np.asarray(current, dtype="float64")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1
    )
    cur_counts = np.bincount(
        np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1
    )
    eps = 1e-4
    p = np.clip(ref_counts / ref_counts.sum(), eps, None)
    q = np.clip(cur_counts / cur_counts.sum(), eps, None)
    return float(np.sum((q - p) * np.log(q / p)))


def flag_rate_check(flagged: int, n: int, expected: float, alpha: float) -> dict:
    """Binomial control limits for ``flagged`` of ``n`` when the expected rate is
    ``expected``; ``alarm`` when the count falls outside them."""
    expected = float(min(max(expected, 1e-6), 1 - 1e-6))
    lower = drift_tests.binom_ppf(alpha / 2, n, expected)
    upper = drift_tests.binom_isf(alpha / 2, n, expected)
    p_high = drift_tests.binom_sf(flagged - 1, n, expected)
    p_low = drift_tests.binom_cdf(flagged, n, expected)
    p_value = min(1.0, 2 * min(p_high, p_low))
    return {
        "flagged": int(flagged),
        "rows": int(n),
        "observed_rate": flagged / n if n else 0.0,
        "expected_rate": expected,
        "lower_limit": lower,
        "upper_limit": upper,
        "p_value": p_value,
        "alarm": bool(n and (flagged > upper or flagged < lower)),
    }


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values), in the input order."""
    p = np.asarray(p_values, dtype="float64")
    m = len(p)
    if not m:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.clip(adjusted, 0, 1)
    return out


def feature_drift(
    reference: TrainingReference, features: pd.DataFrame, policy: DriftPolicy
) -> tuple[list[dict], dict]:
    """Per-feature tests with FDR control, and the unseen-category share."""
    rows: list[dict] = []
    for column in reference.numeric.columns:
        if column not in features.columns:
            continue
        current = pd.to_numeric(features[column], errors="coerce").dropna().to_numpy()
        ref = reference.numeric[column].dropna().to_numpy()
        if len(current) < 2 or len(ref) < 2:
            continue
        result = drift_tests.ks_2samp(ref, current)
        rows.append(
            {
                "feature": column,
                "kind": "numeric",
                "test": "ks",
                "effect": float(result.statistic),
                "p_value": float(result.pvalue),
                "reference_median": float(np.median(ref)),
                "current_median": float(np.median(current)),
            }
        )
    unseen_any = np.zeros(len(features), dtype=bool)
    unseen_by: dict[str, dict] = {}
    for column, shares in reference.categories.items():
        if column not in features.columns or not shares:
            continue
        values = features[column].astype("string")
        present = values.notna().to_numpy()
        seen_anywhere = set(shares) | set(reference.known_values.get(column, ()))
        unseen = present & ~values.isin(seen_anywhere).fillna(False).to_numpy(dtype=bool)
        known = values.isin(list(shares)).fillna(False).to_numpy(dtype=bool)
        unseen_any |= unseen
        if unseen.any():
            counts = values[unseen].value_counts()
            unseen_by[column] = {
                "share": float(unseen.mean()),
                "values": {str(k): int(v) for k, v in counts.head(5).items()},
            }
        seen = values[known]
        if len(seen) < 2:
            continue
        categories = list(shares)
        observed = seen.value_counts().reindex(categories, fill_value=0).to_numpy("float64")
        expected = np.array([shares[c] for c in categories], dtype="float64")
        expected = expected / expected.sum() * observed.sum()
        p_value = drift_tests.chisquare(observed, expected).pvalue
        tvd = 0.5 * float(np.abs(observed / observed.sum() - expected / expected.sum()).sum())
        rows.append(
            {
                "feature": column,
                "kind": "categorical",
                "test": "chi2",
                "effect": tvd,
                "p_value": float(p_value),
            }
        )
    if rows:
        q_values = benjamini_hochberg(np.array([r["p_value"] for r in rows]))
        for row, q in zip(rows, q_values, strict=True):
            row["q_value"] = float(q)
            row["drifted"] = bool(q < policy.feature_fdr and row["effect"] >= policy.min_effect)
    unseen = {
        "share": float(unseen_any.mean()) if len(features) else 0.0,
        "rows": int(unseen_any.sum()),
        "by_feature": unseen_by,
    }
    return rows, unseen


def assess_drift(
    reference: TrainingReference,
    *,
    scores: np.ndarray,
    flagged: np.ndarray,
    features: pd.DataFrame,
    policy: DriftPolicy | None = None,
) -> dict:
    """The run's health against the training reference: numbers, alarms and one line."""
    policy = policy or DriftPolicy()
    scores = np.asarray(scores, dtype="float64")
    n = len(scores)
    alarms: list[str] = []
    score_check: dict = {"rows": n}
    if n >= policy.min_rows and len(reference.reference_scores) >= policy.min_rows:
        ks = drift_tests.ks_2samp(reference.reference_scores, scores)
        score_check.update(
            psi=psi(reference.reference_scores, scores),
            ks=float(ks.statistic),
            ks_p=float(ks.pvalue),
            reference_median=float(np.median(reference.reference_scores)),
            current_median=float(np.median(scores)),
        )
        if score_check["psi"] >= policy.psi_alarm or (
            score_check["ks_p"] < policy.ks_alpha and score_check["ks"] >= policy.min_effect
        ):
            alarms.append(
                f"score distribution shifted (PSI {score_check['psi']:.2f}, "
                f"KS {score_check['ks']:.2f}, p={score_check['ks_p']:.1g})"
            )
    rate = flag_rate_check(
        int(np.sum(flagged)), n, reference.expected_flag_rate, policy.flag_rate_alpha
    )
    if rate["alarm"]:
        alarms.append(
            f"flag rate {rate['observed_rate']:.2%} outside its control limits "
            f"({rate['lower_limit']}-{rate['upper_limit']} of {n} flags for an expected "
            f"{rate['expected_rate']:.2%})"
        )
    features_checked: list[dict] = []
    unseen: dict = {"share": 0.0, "rows": 0, "by_feature": {}}
    if len(features):
        features_checked, unseen = feature_drift(reference, features, policy)
        if n < policy.min_rows:
            for row in features_checked:
                row["drifted"] = False
    drifted = [r for r in features_checked if r.get("drifted")]
    if drifted:
        names = ", ".join(
            f"{r['feature']} ({r['test']} {r['effect']:.2f}, q={r['q_value']:.1g})" for r in drifted
        )
        alarms.append(f"{len(drifted)} feature(s) drifted: {names}")
    if unseen["rows"] and unseen["share"] > policy.unseen_share_alarm:
        which = "; ".join(f"{c}: {', '.join(v['values'])}" for c, v in unseen["by_feature"].items())
        alarms.append(
            f"{unseen['share']:.1%} of rows hold categories never seen in training ({which})"
        )
    status = HealthStatus.ALARM if alarms else HealthStatus.OK
    summary = (
        "drift alarm: " + "; ".join(alarms)
        if alarms
        else f"no drift (score PSI {score_check.get('psi', float('nan')):.2f}, flag rate "
        f"{rate['observed_rate']:.2%} vs {rate['expected_rate']:.2%} expected)"
    )
    return {
        "status": status,
        "alarms": alarms,
        "summary": summary,
        "score": score_check,
        "flag_rate": rate,
        "features": features_checked,
        "unseen": unseen,
        "policy": policy.model_dump(),
    }
