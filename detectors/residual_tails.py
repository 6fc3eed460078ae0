"""The residual statistics of the VAE's ensemble rule: per column, the right tail of the
training residuals' magnitudes (for the tail surprisals), and the residuals' precision
matrix (for the correlation rule)."""

from __future__ import annotations

import math

import torch

#: ``score_rule="ensemble"``: knots of each column's residual tail and the ridge added to
#: the residual covariance before inverting it.
ENSEMBLE_TAIL_KNOTS = 128
ENSEMBLE_COV_RIDGE = 1e-3


def sorted_quantiles(ordered: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Linear-interpolation quantiles ``q`` (k,) of each column of ``ordered`` (n, d), which
    is sorted along dim 0; returns (k, d). Unlike ``torch.quantile`` it has no size limit."""
    n = ordered.shape[0]
    pos = q.to(torch.float64).clamp(0.0, 1.0) * (n - 1)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = (pos - lo.to(torch.float64)).unsqueeze(1)
    return ordered[lo] + frac * (ordered[hi] - ordered[lo])


def residual_statistics(resid: torch.Tensor) -> dict[str, list]:
    """From the training residuals (n, d), float64: per column, the right tail of |r| as
    (value, -log tail probability) knots on a geometric grid of tail probabilities down to
    1/(n+1), and the slope of an exponential tail beyond the largest |r| (the mean excess
    of the top 5%); the precision matrix of the residual vector (+ a ridge)."""
    n, d = resid.shape
    absr = resid.abs()
    levels = torch.logspace(0.0, -math.log10(n + 1), ENSEMBLE_TAIL_KNOTS, dtype=torch.float64)
    ordered = torch.sort(absr, dim=0).values
    knots = sorted_quantiles(ordered, 1.0 - levels).T  # (d, knots)
    knots = torch.cummax(knots, dim=1).values
    top = ordered[int(0.95 * n) :]
    slope = (top - top[:1]).mean(dim=0).clamp_min(1e-6)
    cov = torch.cov(resid.T).reshape(d, d) if n > 1 else torch.eye(d, dtype=torch.float64)
    precision = torch.linalg.inv(cov + ENSEMBLE_COV_RIDGE * torch.eye(d, dtype=torch.float64))
    return {
        "tail_knots": knots.tolist(),
        "tail_logp": (-torch.log(levels)).tolist(),
        "tail_slope": slope.tolist(),
        "precision": precision.tolist(),
    }
