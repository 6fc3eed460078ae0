"""Is a fitted generative detector healthy? Measures a training gate reads on normal
records the model did not train on: how far a GAN's generator covers the data (mode
collapse) and how much each VAE latent unit carries (posterior collapse)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from detectors.gan import GANDetector
from detectors.vae import VAEDetector

#: Rows compared on each side (real hold-out rows, generated rows): the pairwise
#: distances are (rows x rows), a fraction of a second at this size.
DIVERSITY_ROWS = 1000
#: Each real row's neighbourhood is the ball reaching its k-th nearest other real row.
COVERAGE_K = 5


def _pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a.double(), b.double())


def sample_diversity(real: np.ndarray, fake: np.ndarray, k: int = COVERAGE_K) -> dict[str, float]:
    """How much of the real rows' spread and neighbourhoods the generated rows reach.

    ``diversity_ratio``: mean pairwise distance among the generated rows over the same
    among the real rows (1: as spread as the data; near 0: every sample alike).
    ``coverage`` (Naeem et al., 2020): the share of real rows whose ball reaching their
    ``k``-th nearest other real row holds at least one generated row; a generator that
    has collapsed onto a few modes covers only the neighbourhoods around them."""
    r = torch.as_tensor(np.asarray(real, dtype=np.float64))
    f = torch.as_tensor(np.asarray(fake, dtype=np.float64))
    if r.shape[0] < k + 2 or f.shape[0] < 2 or r.shape[1] != f.shape[1]:
        raise ValueError("sample diversity needs k + 2 real rows, 2 generated rows, same width")
    rr = _pairwise(r, r)
    n = r.shape[0]
    real_spread = float(rr.sum() / (n * (n - 1)))
    m = f.shape[0]
    fake_spread = float(_pairwise(f, f).sum() / (m * (m - 1)))
    radius = rr.kthvalue(k + 1, dim=1).values  # the 1st smallest is the row itself
    nearest_fake = _pairwise(r, f).min(dim=1).values
    return {
        "diversity_ratio": fake_spread / real_spread if real_spread > 0 else float("nan"),
        "coverage": float((nearest_fake <= radius).double().mean()),
    }


def _subsample(x: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    if x.shape[0] <= rows:
        return x
    keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], rows, replace=False))
    return x[torch.from_numpy(keep)]


def generator_diversity(
    detector: GANDetector, X: Any, history: Any = None, *, rows: int = DIVERSITY_ROWS
) -> dict[str, float]:
    """``sample_diversity`` of the GAN's generator: ``rows`` samples ``G(z)``, z ~ N(0, I)
    (seeded by the detector's seed), against at most ``rows`` of the records ``X`` in the
    space the networks read (encoded rows; for the sequence GAN, flattened windows, with
    ``history`` as in its ``decision_function``)."""
    detector._check_fitted()
    net = detector.model_
    if hasattr(detector, "_flat_windows"):
        with detector._scoring_data(X, history) as pos:
            real = detector._batched(detector._flat_windows, pos)
    else:
        real = detector._to_tensor(X)
    real = _subsample(real, rows, int(detector.seed))
    gen = torch.Generator().manual_seed(int(detector.seed))
    z = torch.randn(rows, int(detector.latent_dim), generator=gen)
    fake = detector._batched(net.generator, z)
    out = sample_diversity(real.numpy(), fake.numpy())
    out["diversity_rows"] = float(real.shape[0])
    return out


def kl_per_unit(detector: VAEDetector, X: Any, history: Any = None) -> np.ndarray:
    """Mean KL(q(z|x) || N(0, 1)) of each latent unit over the records ``X``, in nats:
    a unit near 0 carries nothing about the record (collapsed to the prior). ``history``
    as in the sequence VAE's ``decision_function``."""
    detector._check_fitted()
    net = detector.model_

    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).double()

    if hasattr(detector, "_current_and_context"):
        with detector._scoring_data(X, history) as pos:
            per_row = detector._batched(
                lambda p: kl(*net.encode(*detector._current_and_context(p))), pos
            )
    else:
        per_row = detector._batched(lambda xb: kl(*net.encode(xb)), detector._to_tensor(X))
    return per_row.mean(dim=0).numpy()
