"""ALAD-style adversarially learned anomaly detector (Zenati et al., 2018)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from detectors.base import BaseDeepDetector
from detectors.parts import (
    FIT_STATISTICS_ROWS,
    FIT_THREADS,
    capped_epoch_rows,
    fit_knn_reference,
    kth_distance,
    mlp,
    nearest_distance,
    own_param,
    reference_mask,
    reference_side,
    set_buffer,
)
from detectors.vae import KNN_VIEWS

#: Rows per pass of the scoring networks within one scoring batch (``SCORE_BATCH_SIZE``,
#: 8192): a layer's activations (rows x 64 floats) are 512 kB instead of 2 MB, fewer fresh
#: pages and cache misses per layer. The scores are identical (each row is computed
#: alone); the gain depends on the allocator.
SCORE_CHUNK_ROWS = 2048


def _eval_forward(seq: nn.Sequential, h: torch.Tensor) -> torch.Tensor:
    """``seq(h)`` for scoring, with the modules' own arithmetic: each Linear as a matrix
    product with its bias added in place, then its activation in place (Dropout is the
    identity in eval mode). The GAN scored ~1.15x faster (shuttle, cardio): ``F.linear``
    first broadcasts the bias into every output row and each activation allocates a new
    tensor. Scores were bit-identical to the module calls on the tested sets; with very
    wide inputs (1,555 columns) the product sums in blocks and they differ by up to 5e-6
    relative. Only without autograd; with it, or for any other module, ``seq(h)``."""
    if torch.is_grad_enabled() or seq.training:
        return seq(h)
    fresh = False  # never overwrite the caller's tensor
    for m in seq:
        if isinstance(m, nn.Linear):
            h = torch.matmul(h, m.weight.T)
            if m.bias is not None:
                h.add_(m.bias)
            fresh = True
        elif isinstance(m, nn.SiLU) and fresh:
            h = F.silu(h, inplace=True)
        elif isinstance(m, nn.LeakyReLU) and fresh:
            h = F.leaky_relu_(h, m.negative_slope)
        elif not isinstance(m, nn.Dropout):
            h, fresh = m(h), False
    return h


def _sn_linear(a: int, b: int) -> nn.Module:
    return spectral_norm(nn.Linear(a, b))


class _Disc(nn.Module):
    """Spectrally normalised MLP discriminator over a pair; exposes its last hidden features."""

    def __init__(self, in_a: int, in_b: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _sn_linear(in_a + in_b, hidden),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            _sn_linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
        )
        self.head = _sn_linear(hidden, 1)

    def features(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([a, b], dim=1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(a, b)).squeeze(1)


class _ALADNet(nn.Module):
    def __init__(
        self,
        n_features: int,
        hidden_dims: tuple[int, ...],
        latent_dim: int,
        disc_hidden: int,
        dropout: float,
    ) -> None:
        super().__init__()
        hidden = list(hidden_dims)
        self.encoder = mlp([n_features, *hidden, latent_dim])
        self.generator = mlp([latent_dim, *reversed(hidden), n_features])
        self.d_xz = _Disc(n_features, latent_dim, disc_hidden, dropout)
        self.d_xx = _Disc(n_features, n_features, disc_hidden, dropout)
        self.d_zz = _Disc(latent_dim, latent_dim, disc_hidden, dropout)

    def eg_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.generator.parameters()]

    def d_parameters(self) -> list[nn.Parameter]:
        return [*self.d_xz.parameters(), *self.d_xx.parameters(), *self.d_zz.parameters()]


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class GANDetector(BaseDeepDetector):
    """ALAD (BiGAN with cycle-consistency discriminators) with an encoder, for tabular rows.

    Networks: encoder E(x) -> z, generator G(z) -> x, and three spectrally normalised
    discriminators: D_xz on (x, z) pairs (BiGAN joint: (x, E(x)) real vs (G(z), z) fake),
    D_xx on (x, x) real vs (x, G(E(x))) fake, and D_zz on (z, z) real vs (z, E(G(z))) fake,
    with z ~ N(0, I). Discriminators and E/G are updated alternately with Adam
    (betas 0.5, 0.999) using ALAD's non-saturating losses. To stabilise training the E/G
    loss also contains ``reconstruction_weight * mean_rows(sum_j (x_j - G(E(x))_j)^2)``.
    All inputs are ENCODED rows (``TabularEncoder`` output).

    Score (exactly), with ``x' = G(E(x))`` and ``f`` = D_xx's last hidden layer:
        ``fm(x)  = sum_k |f(x, x)_k - f(x, x')_k|``  (ALAD feature-matching L1 distance)
        ``rec(x) = sum_j (x_j - x'_j)^2 / v_j``      (standardised input-space error)
        ``lat(x) = sum_k E(x)_k^2``                   (latent energy under the N(0, I) prior)
        ``score(x) = w_fm * fm / fm_scale_ + w_rec * rec / rec_scale_ + w_z * lat / z_scale_``
    with ``v_j = max(mean over the TRAINING rows of (x_j - x'_j)^2, min_error_variance)``
    (``error_variance_``; puts every encoded column in units of its normal error),
    weights ``feature_score_weight``, ``reconstruction_score_weight``, ``latent_score_weight``
    (default 1 each) and the scales the medians of each term on the held-out normal rows
    after training (so the terms are unit-free and comparable); weights (1, 0, 0) give the
    pure ALAD score. The adversarial features alone vary between runs and the
    reconstruction alone misses anomalies the generator reproduces; the latent term uses
    what the BiGAN objective teaches the encoder (map normal rows onto the prior), and was
    the single strongest term on the tabular benchmark (cardio AUROC: fm 0.70, rec 0.80,
    latent 0.97; the sum 0.96).
    Neighbourhood views (``knn_views``, default both), added to the score:
    ``knn_weight * (d_in(x) / s_in + d_z(x) / s_z)`` with ``d_in`` the distance of the
    encoded row to its ``knn_k``-th (1st) nearest reference row, ``d_z`` the same between
    codes E(x), and ``s_in``, ``s_z`` their medians on the held-out normal rows. The
    reference is drawn from a seeded sample of at most ``knn_reference_rows`` (2048)
    training rows: ``knn_prototypes`` (64) k-means centres of the sample and of its codes,
    buffers in weights.pt (``knn_prototypes=0``: the sample itself). They catch records
    between normal clusters that the generator reproduces well (see ``VAEDetector``).
    ``knn_weight`` 6, the top of the grid screened across the dev pool (the devpool
    suite): there the GAN's own three terms are the weaker part, while on the five shared
    sets they carry the score, so both are kept. 256 centres scored a little higher on the
    pool but cost more of the scoring speed than 64.
    Nearest-neighbour view (``neighbour_rows``, default 2048), added to the score:
    ``neighbour_weight * d_nn(x) / s_nn`` with ``d_nn`` the distance of the encoded row to
    its nearest row of a seeded sample of at most ``neighbour_rows`` training rows (a
    buffer in weights.pt) and ``s_nn`` its median on the held-out rows, as in
    ``VAEDetector``. ``neighbour_weight`` 16: chosen on half of the dev pool's sets
    (seed 0) and confirmed on the other half, both ways (benchmarks/devpool_views).
    Models saved before the view load without it (``neighbour_rows=0``).
    Early stopping monitors the mean unstandardised ``sum_j (x_j - x'_j)^2`` on held-out
    normal rows (GAN losses are not meaningful as a convergence signal). On the five
    tabular sets that monitor still improves at epoch 60 (so patience never stops the fit),
    and every earlier stop tried (also without dropout, with larger batches, or at a
    smaller learning rate) lost AUROC on at least one set or seed: ``epochs`` stays 60. A
    training step computes E and G once (the discriminator update does not change them)
    and freezes the discriminators for the E/G update (their gradients were discarded):
    the same weights as the two-pass step, for less CPU per step.
    ``max_epoch_rows`` (default 8192): each epoch trains on a fresh seeded sample of at
    most this many training rows (None: all), which bounds the cost of an epoch on large
    data (shuttle's ~22k training rows: 32 instead of 86 steps per epoch); saved with the
    model's parameters. ``max_calibration_rows`` (65536) and ``fit_threads`` (1) as in
    ``VAEDetector``: the monitor, threshold, term and kNN scales read a seeded sample of at
    most that many held-out rows, the error variances and the kNN reference one of
    training rows (``fit_info_`` records the counts).

    ``explain``: the standardised per-column errors ``(x_j - x'_j)^2 / v_j`` summed per
    source feature, rescaled so that each row's contributions sum to its score (shares of
    the input-space error times the total score; an even split if the error is exactly 0).
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ("hidden_dims", "knn_views")

    def __init__(
        self,
        *,
        hidden_dims: tuple[int, ...] = (64, 32),
        latent_dim: int = 8,
        disc_hidden: int = 64,
        dropout: float = 0.2,
        reconstruction_weight: float = 1.0,
        feature_score_weight: float = 1.0,
        reconstruction_score_weight: float = 1.0,
        latent_score_weight: float = 1.0,
        min_error_variance: float = 0.3,
        knn_views: tuple[str, ...] = ("input", "latent"),
        knn_k: int = 1,
        knn_weight: float = 6.0,
        knn_reference_rows: int = 2048,
        knn_prototypes: int = 64,
        neighbour_rows: int = 2048,
        neighbour_weight: float = 16.0,
        max_epoch_rows: int | None = 8192,
        max_calibration_rows: int | None = FIT_STATISTICS_ROWS,
        fit_threads: int | None = FIT_THREADS,
        epochs: int = 60,
        batch_size: int = 256,
        learning_rate: float = 2e-4,
        validation_fraction: float = 0.2,
        patience: int | None = 15,
        seed: int = 0,
        target_fpr: float = 0.01,
        categorical_features: list[str] | None = None,
        range_features: list[str] | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            validation_fraction=validation_fraction,
            patience=patience,
            seed=seed,
            target_fpr=target_fpr,
            categorical_features=categorical_features,
            range_features=range_features,
            device=device,
        )
        self.hidden_dims = hidden_dims
        self.latent_dim = latent_dim
        self.disc_hidden = disc_hidden
        self.dropout = dropout
        self.reconstruction_weight = reconstruction_weight
        self.feature_score_weight = feature_score_weight
        self.reconstruction_score_weight = reconstruction_score_weight
        self.latent_score_weight = latent_score_weight
        self.min_error_variance = min_error_variance
        self.knn_views = knn_views
        self.knn_k = knn_k
        self.knn_weight = knn_weight
        self.knn_reference_rows = knn_reference_rows
        self.knn_prototypes = knn_prototypes
        self.neighbour_rows = neighbour_rows
        self.neighbour_weight = neighbour_weight
        self.max_epoch_rows = max_epoch_rows
        self.max_calibration_rows = max_calibration_rows
        self.fit_threads = fit_threads

    # --------------------------------------------------------------- model
    def _build_model(self, n_features: int) -> nn.Module:
        bad = set(own_param(self, "knn_views") or ()) - set(KNN_VIEWS)
        if bad:
            raise ValueError(f"knn_views must be drawn from {KNN_VIEWS}, got {sorted(bad)}")
        net = _ALADNet(
            n_features,
            tuple(self.hidden_dims),
            int(self.latent_dim),
            int(self.disc_hidden),
            float(self.dropout),
        )
        rows = int(self.__dict__.pop("_knn_rows_to_load", 0))
        if rows:
            # Loading a fitted model: its kNN reference rows travel in weights.pt.
            net.register_buffer("knn_reference", torch.zeros(rows, n_features))
            net.register_buffer("knn_latent", torch.zeros(rows, int(self.latent_dim)))
        neighbours = int(self.__dict__.pop("_neighbour_rows_to_load", 0))
        if neighbours:
            net.register_buffer("neighbour_reference", torch.zeros(neighbours, n_features))
        return net

    def _configure_optimizers(self) -> None:
        # Called at the start of every fit: forget the error variances of a previous fit.
        self.__dict__.pop("error_variance_", None)
        net: _ALADNet = self.model_  # type: ignore[assignment]
        betas = (0.5, 0.999)
        self._opt_d = torch.optim.Adam(net.d_parameters(), lr=self.learning_rate, betas=betas)
        self._opt_eg = torch.optim.Adam(net.eg_parameters(), lr=self.learning_rate, betas=betas)

    def _train_batch(self, xb: torch.Tensor, epoch: int) -> dict[str, float]:
        net: _ALADNet = self.model_  # type: ignore[assignment]
        z = torch.randn(xb.shape[0], int(self.latent_dim), device=xb.device)

        n = xb.shape[0]
        real_fake = torch.cat([torch.ones(n, device=xb.device), torch.zeros(n, device=xb.device)])
        fake_real = 1.0 - real_fake

        def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(logits, target)

        # E and G once per step, with autograd: the discriminator step below changes only
        # the discriminators' weights, so these are also the E/G step's outputs (the same
        # values as recomputing them after it; the older step computed them twice).
        z_hat = net.encoder(xb)
        x_fake = net.generator(z)
        x_rec = net.generator(z_hat)
        z_rec = net.encoder(x_fake)

        # Discriminator step on the detached outputs. Real and fake pairs go through each
        # discriminator as one batch; spectral-norm weights are computed once per step.
        with parametrize.cached():
            d_loss = (
                bce(
                    net.d_xz(torch.cat([xb, x_fake.detach()]), torch.cat([z_hat.detach(), z])),
                    real_fake,
                )
                + bce(net.d_xx(torch.cat([xb, xb]), torch.cat([xb, x_rec.detach()])), real_fake)
                + bce(net.d_zz(torch.cat([z, z]), torch.cat([z, z_rec.detach()])), real_fake)
            )
            self._opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
        self._opt_d.step()

        # Encoder/generator step: fool D_xz with flipped labels, make cycles look real.
        # The discriminators' weights are frozen for it: their gradients would be thrown
        # away (the next discriminator step starts from zero), and skipping them leaves
        # the gradients reaching E and G unchanged.
        d_params = net.d_parameters()
        for p in d_params:
            p.requires_grad_(False)
        try:
            with parametrize.cached():
                adv = (
                    bce(net.d_xz(torch.cat([xb, x_fake]), torch.cat([z_hat, z])), fake_real)
                    + 0.5 * _bce(net.d_xx(xb, x_rec), 1.0)
                    + 0.5 * _bce(net.d_zz(z, z_rec), 1.0)
                )
        finally:
            for p in d_params:
                p.requires_grad_(True)
        rec = (xb - x_rec).pow(2).sum(dim=1).mean()
        eg_loss = adv + float(self.reconstruction_weight) * rec
        self._opt_eg.zero_grad(set_to_none=True)
        eg_loss.backward()
        nn.utils.clip_grad_norm_(net.eg_parameters(), 10.0)
        self._opt_eg.step()
        return {
            "train_loss": float(eg_loss.detach()),
            "d_loss": float(d_loss.detach()),
            "rec": float(rec.detach()),
        }

    def _rows_per_epoch(self, n: int) -> int:
        return capped_epoch_rows(self, n)

    def _statistics_rows(self) -> int | None:
        return own_param(self, "max_calibration_rows")

    def _fit_threads(self) -> int | None:
        return own_param(self, "fit_threads")

    # ------------------------------------------------------------- scoring
    def _parts(
        self, xb: torch.Tensor, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fm, squared errors per column, ||E(x)||^2) for a batch, in eval mode; ``z`` is
        E(xb) when the caller has it already."""
        net: _ALADNet = self.model_  # type: ignore[assignment]
        z = _eval_forward(net.encoder, xb) if z is None else z
        x_rec = _eval_forward(net.generator, z)
        body = net.d_xx.body  # D_xx's last hidden features f, on (x, x) and on (x, x')
        fm = _eval_forward(body, torch.cat([xb, xb], dim=1))
        fm = fm.sub_(_eval_forward(body, torch.cat([xb, x_rec], dim=1))).abs_().sum(dim=1)
        se = (xb - x_rec).pow_(2)
        if hasattr(self, "error_variance_"):
            se = se.div_(torch.tensor(self.error_variance_, dtype=se.dtype, device=se.device))
        return fm, se, z.pow(2).sum(dim=1)

    def _squared_errors(self, xb: torch.Tensor) -> torch.Tensor:
        """``_parts``' squared errors alone: without its two D_xx passes (the feature
        matching term), which the monitor and the error variances do not read. A subclass
        with its own ``_parts`` (the sequence GAN's windows) gets those parts' errors."""
        if type(self)._parts is not GANDetector._parts:
            return self._parts(xb)[1]
        net: _ALADNet = self.model_  # type: ignore[assignment]
        x_rec = _eval_forward(net.generator, _eval_forward(net.encoder, xb))
        se = (xb - x_rec).pow_(2)
        if hasattr(self, "error_variance_"):
            se = se.div_(torch.tensor(self.error_variance_, dtype=se.dtype, device=se.device))
        return se

    def _validation_loss(self, xv: torch.Tensor, epoch: int) -> float:
        rec = self._batched(lambda xb: self._squared_errors(xb).double().sum(dim=1), xv)
        return float(rec.mean())

    def _after_fit(self, x_train: torch.Tensor, x_val: torch.Tensor | None) -> None:
        mse = self._batched(self._squared_errors, x_train).double().mean(dim=0)
        self.error_variance_ = self._floored_error_variance(mse)
        ref = x_val if x_val is not None else x_train

        def terms(xb: torch.Tensor) -> torch.Tensor:
            fm, se, zn = self._parts(xb)
            return torch.stack([fm.double(), se.double().sum(dim=1), zn.double()], dim=1)

        med = self._batched(terms, ref).median(dim=0).values
        self.fm_scale_, self.rec_scale_, self.z_scale_ = (
            float(m) if float(m) > 0 else 1.0 for m in med
        )
        self.knn_ = self._fit_knn(x_train, x_val) if own_param(self, "knn_views") else {}
        self.neighbours_ = {}
        if int(own_param(self, "neighbour_rows", 0) or 0) > 0:
            self.neighbours_ = self._fit_neighbours(x_train, x_val)

    def _fit_neighbours(self, x_train: torch.Tensor, x_val: torch.Tensor | None) -> dict:
        """The nearest-neighbour reference (a seeded sample of at most ``neighbour_rows``
        training rows, a buffer of the network) and its scale: the median distance of the
        held-out rows to their nearest reference row (of the training rows, skipping
        themselves, when there are none), as the other terms' scales."""
        in_ref = reference_mask(x_train.shape[0], int(self.neighbour_rows), self.seed)
        mask = torch.from_numpy(in_ref)
        reference = x_train[mask].to(self._torch_device()).clone()
        set_buffer(self.model_, "neighbour_reference", reference)
        self.__dict__.pop("_neighbour_side_cache", None)
        if x_val is not None:
            dist = self._batched(self._neighbour_distance, x_val)
        else:
            dist = self._batched(lambda xb: self._neighbour_distance(xb, 2), x_train[mask])
        median = float(dist.median()) if dist.numel() else 1.0
        return {
            "rows": int(reference.shape[0]),
            "weight": float(self.neighbour_weight),
            "scale": median if median > 0 else 1.0,
        }

    def _neighbour_distance(self, xb: torch.Tensor, k: int = 1) -> torch.Tensor:
        """Distance of each encoded row to its nearest neighbour reference row."""
        ref = self.model_.neighbour_reference
        cache = self.__dict__.setdefault("_neighbour_side_cache", {})
        if xb.device not in cache:
            cache[xb.device] = reference_side(ref)
        return nearest_distance(xb, ref, k, cache[xb.device])

    def _neighbour_part(self, xb: torch.Tensor) -> torch.Tensor | float:
        """``neighbour_weight * nearest-neighbour distance / its scale``, or 0."""
        nb = getattr(self, "neighbours_", None)
        if not nb:
            return 0.0
        return self._neighbour_distance(xb).mul_(float(nb["weight"]) / float(nb["scale"]))

    def _fit_knn(self, x_train: torch.Tensor, x_val: torch.Tensor | None) -> dict[str, Any]:
        """kNN reference (buffers of the network) and each view's scale: the median k-th
        neighbour distance of the held-out normal rows (training rows, skipping themselves
        in a sample reference, when there are none). The reference is drawn from a seeded
        sample of at most ``knn_reference_rows`` training rows: ``knn_prototypes`` k-means
        centres of the sample and of its codes E(x), or with 0 the sample itself."""
        net: _ALADNet = self.model_  # type: ignore[assignment]
        _, prototypes = fit_knn_reference(self, x_train, net.encoder)
        self.__dict__.pop("_knn_side_cache", None)  # new reference rows
        self.knn_ = {
            "views": list(self.knn_views),
            "k": int(self.knn_k),
            "weight": float(self.knn_weight),
            "rows": int(net.knn_reference.shape[0]),
            "prototypes": prototypes,
        }
        skip = x_val is None and prototypes == 0
        rows = x_train if x_val is None else x_val
        dist = self._batched(lambda xb: self._knn_distances(xb, skip), rows)
        med = dist.median(dim=0).values
        self.knn_["scales"] = [float(m) if float(m) > 0 else 1.0 for m in med]
        return self.knn_

    def _knn_distances(
        self, xb: torch.Tensor, skip_self: bool = False, z: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(n, views) k-th nearest reference distances; ``z`` is E(xb) when known."""
        net: _ALADNet = self.model_  # type: ignore[assignment]
        k = int(self.knn_["k"]) + int(skip_self)
        out = []
        for view in self.knn_["views"]:
            if view == "input":
                q, ref = xb, net.knn_reference
            else:
                q, ref = net.encoder(xb) if z is None else z, net.knn_latent
            out.append(kth_distance(q, ref, k, self._reference_side(view, ref)))
        return torch.stack(out, dim=1)

    def _reference_side(
        self, view: str, ref: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``reference_side`` of a view's reference, kept until the next fit or load (per
        scoring chunk it was four of the views' ~twenty tensor operations)."""
        cache = self.__dict__.setdefault("_knn_side_cache", {})
        key = (view, ref.device)
        if key not in cache:
            cache[key] = reference_side(ref)
        return cache[key]

    def _knn_part(self, xb: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor | float:
        """``knn_weight * sum over views of (k-th neighbour distance / its scale)``, or 0."""
        knn = getattr(self, "knn_", None)
        if not knn or not knn.get("views"):
            return 0.0
        dist = self._knn_distances(xb, z=z)
        total = dist[:, 0] / float(knn["scales"][0])
        for i in range(1, dist.shape[1]):
            total = total.add_(dist[:, i] / float(knn["scales"][i]))
        return total.mul_(float(knn["weight"]))

    def _extra_state(self) -> dict[str, Any]:
        return {
            "fm_scale": self.fm_scale_,
            "rec_scale": self.rec_scale_,
            "z_scale": self.z_scale_,
            "error_variance": self.error_variance_,
            "knn": getattr(self, "knn_", {}),
            "neighbours": getattr(self, "neighbours_", {}),
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.__dict__.pop("_knn_side_cache", None)
        self.error_variance_ = [float(v) for v in state["error_variance"]]
        self.fm_scale_ = float(state["fm_scale"])
        self.rec_scale_ = float(state["rec_scale"])
        self.z_scale_ = float(state["z_scale"])
        if "knn" not in state and "knn_views" in self._param_names():
            # Saved before the kNN views existed: fitted without them.
            self.knn_views = ()
        self.knn_ = dict(state.get("knn", {}))
        if "prototypes" not in self.knn_ and "knn_prototypes" in self._param_names():
            # Saved before prototypes: its reference is a sample of training rows.
            self.knn_prototypes = 0
        self.neighbours_ = dict(state.get("neighbours", {}))
        if not self.neighbours_ and "neighbour_rows" in self._param_names():
            # Saved before the nearest-neighbour view: fitted without it.
            self.neighbour_rows = 0
        self.__dict__.pop("_neighbour_side_cache", None)
        # _build_model (called next by load) gives the network buffers of these sizes.
        self._knn_rows_to_load = int(self.knn_.get("rows", 0))
        self._neighbour_rows_to_load = int(self.neighbours_.get("rows", 0))

    def _combine(self, fm: torch.Tensor, se: torch.Tensor, zn: torch.Tensor) -> torch.Tensor:
        rec = se.sum(dim=1, dtype=torch.float64)
        return (
            float(self.feature_score_weight) * fm.double() / self.fm_scale_
            + float(self.reconstruction_score_weight) * rec / self.rec_scale_
            + float(self.latent_score_weight) * zn.double() / self.z_scale_
        )

    def _score_batch(self, xb: torch.Tensor) -> torch.Tensor:
        """Scores of a scoring batch, computed ``SCORE_CHUNK_ROWS`` rows at a time."""
        with parametrize.cached():  # the spectral norms once per batch, not per pass
            if xb.shape[0] <= SCORE_CHUNK_ROWS:
                return self._score_chunk(xb)
            return torch.cat([self._score_chunk(c) for c in xb.split(SCORE_CHUNK_ROWS)])

    def _score_chunk(self, xb: torch.Tensor) -> torch.Tensor:
        knn = getattr(self, "knn_", None)
        if not knn or not knn.get("views"):
            return self._combine(*self._parts(xb)) + self._neighbour_part(xb)
        z = _eval_forward(self.model_.encoder, xb)  # once: GAN terms and the latent view
        return self._combine(*self._parts(xb, z)) + self._knn_part(xb, z) + self._neighbour_part(xb)

    def _contributions(self, xb: torch.Tensor) -> torch.Tensor:
        return self._parts(xb)[1]

    def _explain_outputs(self, x: torch.Tensor) -> Any:
        def scaled(xb: torch.Tensor) -> torch.Tensor:
            fm, se, zn = self._parts(xb)
            se = se.double()
            total = se.sum(dim=1, keepdim=True)
            share = torch.where(
                total > 0, se / total.clamp_min(1e-300), torch.full_like(se, 1.0 / se.shape[1])
            )
            total_score = self._combine(fm, se, zn) + self._knn_part(xb) + self._neighbour_part(xb)
            return share * total_score.unsqueeze(1)

        return self._batched(scaled, x).numpy()
