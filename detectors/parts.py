"""Parts the VAE and the GAN detector share: networks, capped row samples, and the
neighbourhood views (k-means reference, k-th nearest distances) both scores read."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from detectors.base import BaseDeepDetector


def mlp(sizes: list[int], last_activation: bool = False) -> nn.Sequential:
    """Linear layers with SiLU activations in between (and optionally after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def own_param(detector: BaseDeepDetector, name: str, default: Any = None) -> Any:
    """``detector.<name>`` if the detector's own class takes it as a constructor parameter
    (so it is saved with the model), else ``default``: subclasses that do not expose an
    option inherited from VAEDetector/GANDetector (the sequence detectors) keep the
    behaviour they were written for."""
    if name not in detector._param_names():
        return default
    return getattr(detector, name, default)


def reference_side(ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``kth_distance``'s work on the reference alone: its float32 mean, the rows centred
    on it and their squared norms. Fixed for a fitted model, so a scorer may keep it."""
    r32 = ref.float()
    centre = r32.mean(dim=0)
    r32 = r32 - centre
    return centre, r32, (r32 * r32).sum(dim=1)


def kth_distance(
    q: torch.Tensor,
    ref: torch.Tensor,
    k: int,
    prepared: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Euclidean distance of each row of ``q`` to its k-th nearest row of ``ref`` (float64).

    Squared distances come from one matrix product (float32, both sides centred on the
    reference mean, ``|q|^2`` added after the selection); ``k == 1`` takes a plain minimum,
    several times cheaper than a top-k over the same distances. ``prepared`` is
    ``reference_side(ref)`` when the caller keeps it (same result, less work per call)."""
    k = max(1, min(int(k), ref.shape[0]))
    centre, r32, r_sq = reference_side(ref) if prepared is None else prepared
    q32 = q.float() - centre
    partial = torch.addmm(r_sq, q32, r32.T, alpha=-2.0)
    if k == 1:
        best = partial.amin(dim=1)
    else:
        best = partial.topk(k, dim=1, largest=False, sorted=False).values.amax(dim=1)
    out = (best + (q32 * q32).sum(dim=1)).clamp_min(0.0).sqrt().double()
    # inf - inf inside the product turns an infinite (not missing) value into NaN; such a
    # row is infinitely far from every reference row, as cdist says. Checked only when a
    # NaN came out: the per-row check of q cost a third of this function on clean rows.
    nan = torch.isnan(out)
    if bool(nan.any()):
        out = out.masked_fill(nan & ~torch.isnan(q).any(dim=1), float("inf"))
    return out


#: Query rows per block of ``nearest_distance``.
NEAREST_BLOCK_ROWS = 512


def nearest_distance(
    q: torch.Tensor,
    ref: torch.Tensor,
    k: int = 1,
    prepared: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Euclidean distance of each row of ``q`` to its k-th nearest row of ``ref`` (float64),
    found like ``kth_distance`` (one float32 matrix product) but measured again directly
    between each row and its k nearest: ``|q|^2 + |r|^2 - 2 q.r`` loses most digits when a
    row nearly repeats a reference row, and a near-duplicate's distance is exactly what a
    nearest-neighbour view must read."""
    k = max(1, min(int(k), ref.shape[0]))
    centre, r32, r_sq = reference_side(ref) if prepared is None else prepared
    out = torch.empty(q.shape[0], dtype=torch.float64, device=q.device)
    # Blocks of query rows keep the (rows x reference) distances in cache.
    for start in range(0, q.shape[0], NEAREST_BLOCK_ROWS):
        q32 = q[start : start + NEAREST_BLOCK_ROWS].float() - centre
        partial = torch.addmm(r_sq, q32, r32.T, alpha=-2.0)
        if k == 1:
            idx = partial.argmin(dim=1, keepdim=True)
        else:
            idx = partial.topk(k, dim=1, largest=False, sorted=False).indices
        diff = q32.unsqueeze(1) - r32[idx]  # (rows, k, d)
        out[start : start + len(q32)] = (diff * diff).sum(dim=2).amax(dim=1).sqrt()
    nan = torch.isnan(out)
    if bool(nan.any()):
        out = out.masked_fill(nan & ~torch.isnan(q).any(dim=1), float("inf"))
    return out


def kmeans_centres(x: torch.Tensor, centres: int, seed: int) -> torch.Tensor:
    """``centres`` k-means centres of the rows of ``x`` (one seeded scikit-learn run): a
    small reference whose nearest-centre distance is cheap to score yet still tells a row
    between normal clusters from one inside them."""
    # Imported here, at fit time: scikit-learn (with SciPy) is ~20% of a short scoring
    # command's start-up, and scoring a saved model never fits k-means.
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    rows = x.detach().cpu().double().numpy()
    m = max(1, min(int(centres), rows.shape[0]))
    with warnings.catch_warnings():
        # Fewer distinct rows than centres (tiny or constant data): duplicated centres.
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=m, n_init=1, max_iter=100, random_state=int(seed)).fit(rows)
    return torch.from_numpy(km.cluster_centers_).to(dtype=x.dtype, device=x.device)


def fit_knn_reference(
    detector: BaseDeepDetector,
    x_train: torch.Tensor,
    encode: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[np.ndarray, int]:
    """Store a detector's kNN reference as buffers of its network and return which training
    rows were sampled for it and its number of prototypes.

    One build for the VAE and the GAN, which differ only in ``encode`` (rows -> latent
    codes): a seeded sample of at most ``knn_reference_rows`` training rows
    (``knn_reference``) and their codes (``knn_latent``), each replaced by
    ``knn_prototypes`` k-means centres when that is above 0."""
    net = detector.model_
    in_ref = reference_mask(x_train.shape[0], detector.knn_reference_rows, detector.seed)
    dev = detector._torch_device()
    sample = x_train[torch.from_numpy(in_ref)].to(dev)
    latent = detector._batched(encode, sample).to(dev)
    prototypes = int(own_param(detector, "knn_prototypes", 0) or 0)
    if prototypes > 0:
        sample = kmeans_centres(sample, prototypes, detector.seed)
        latent = kmeans_centres(latent, prototypes, detector.seed)
    set_buffer(net, "knn_reference", sample.clone())
    set_buffer(net, "knn_latent", latent.clone())
    return in_ref, prototypes


def reference_mask(n: int, rows: int, seed: int) -> np.ndarray:
    """Seeded choice of at most ``rows`` of ``n`` training rows for a kNN reference."""
    m = max(1, min(n, int(rows)))
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng([int(seed), 2]).choice(n, m, replace=False)] = True
    return mask


def set_buffer(module: nn.Module, name: str, value: torch.Tensor) -> None:
    if name in module._buffers:
        module._buffers[name] = value
    else:
        module.register_buffer(name, value)


def capped_epoch_rows(detector: BaseDeepDetector, n: int) -> int:
    """Rows per epoch under ``detector.max_epoch_rows`` (None: all ``n``).

    Applied only when the detector's own class takes ``max_epoch_rows`` as a constructor
    parameter (so the cap is saved with the model): subclasses that do not expose it
    (the sequence detectors, which cap their rows with ``max_train_rows``) train on every
    row per epoch as before.
    """
    cap = own_param(detector, "max_epoch_rows")
    if cap is None:
        return n
    if int(cap) < 1:
        raise ValueError(f"max_epoch_rows must be >= 1 or None, got {cap!r}")
    return min(n, int(cap))


#: Default ``max_calibration_rows`` of VAEDetector and GANDetector: held-out rows and
#: training rows that the passes around training read (seeded samples): all-row statistics
#: made memory and CPU grow with the data (the scale suite's training step); 65,536 rows
#: put the 1% threshold on ~650 exceedances.
FIT_STATISTICS_ROWS = 65536
#: Default ``fit_threads`` of VAEDetector and GANDetector. Their networks are small
#: (batches of 256-512 rows, 64-128 units): one thread fits them with several times less
#: CPU per epoch than torch's default of one per core, most of all on a shared machine
#: (the scale suite's training step).
FIT_THREADS = 1
