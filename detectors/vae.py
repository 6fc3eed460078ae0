"""Variational auto-encoder detector: normal records reconstruct well, anomalies do not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from detectors.base import BaseDeepDetector
from detectors.layout import MAX_TAIL_SOFTNESS, rule_weights
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
from detectors.residual_tails import residual_statistics, sorted_quantiles

#: Score rules of ``VAEDetector`` (see the class docstring).
SCORE_RULES = ("elbo", "ensemble")
#: Extra views of ``score_rule="ensemble"``: distance to the k-th nearest training row,
#: in the encoded input space or in the latent space (posterior means).
KNN_VIEWS = ("input", "latent")


class _VAENet(nn.Module):
    def __init__(self, n_features: int, hidden_dims: tuple[int, ...], latent_dim: int) -> None:
        super().__init__()
        hidden = list(hidden_dims)
        self.encoder = mlp([n_features, *hidden], last_activation=True)
        width = hidden[-1] if hidden else n_features
        self.mu = nn.Linear(width, latent_dim)
        self.logvar = nn.Linear(width, latent_dim)
        self.decoder = mlp([latent_dim, *reversed(hidden), n_features])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)


class VAEDetector(BaseDeepDetector):
    """VAE trained on normal records; the anomaly score reads its reconstruction residuals.

    Model: MLP encoder q(z|x) = N(mu(x), diag(exp(logvar(x)))), MLP decoder with mean
    x_hat(z). Training minimises, per row,
    ``sum_j (x_j - x_hat_j(z))^2 + beta_t * sum_k max(KL_k, free_bits)`` with
    z = mu + sigma * eps (reparameterisation), where ``x`` is the ENCODED row
    (``TabularEncoder`` output), ``KL_k`` is the batch-mean KL of latent dimension k to
    N(0, 1), and ``beta_t = beta * min(1, epoch / kl_warmup_epochs)`` (KL warm-up).
    Early stopping monitors ``sum_j (x_j - x_hat_j(mu))^2 + beta * KL(q(z|x) || N(0, I))``
    on held-out normal rows (deterministic at z = mu, full ``beta``, no free bits) and
    cannot stop during the warm-up. The default ``beta=4`` regularises strongly on purpose:
    a VAE that reconstructs everything well also reconstructs anomalies.

    Score, ``score_rule="elbo"``: ``elbo(x) = sum_j (x_j - x_hat_j(mu(x)))^2 / v_j
    + beta * KL(q(z|x) || N(0, I))``, i.e. the negative ELBO at z = mu with standardised
    errors (``score_kl=False`` drops the KL term). The KL term catches records whose
    latent code is far from where normal records live even when the decoder reconstructs
    them (thyroid AUROC 0.918 -> 0.987 in the tabular benchmark). The first part is the
    squared error
    between the encoded row and the decoder mean at the posterior mean (no sampling, so
    it is deterministic), each column divided by ``v_j = max(mean over the TRAINING rows of
    that column's squared error, min_error_variance)`` (stored as ``error_variance_``).
    Standardising makes every column's error count in units of its normal error, so a
    one-hot column that is always reconstructed exactly (e.g. ``__unknown__``) is not
    drowned out by noisy numeric columns. The floor (default 0.3, in encoded units where a
    numeric column has spread ~1) caps that up-weighting at ~3x: with 1e-3 a one-hot
    column weighed up to 1000x and a rare-but-seen category outranked a 100x amount (demo
    AUPRC 0.73 vs 1.00 with 0.3; cardio/thyroid/mammography unchanged); unseen-category
    (``__unknown__``) columns keep a 1e-3 floor so a novel category still dominates.
    With ``standardize_errors=False`` all ``v_j = 1`` (the plain squared error).

    Score, ``score_rule="ensemble"`` (default): the residuals ``r = x - x_hat(mu(x))`` are
    read four ways and the four scores summed, each divided by its 99% quantile on the
    training rows (stored in ``ensemble_["scales"]``), so ~1% of normal rows exceed 1 on
    any one rule:

    1. ``elbo(x)`` above;
    2. ``max_j t_j(x)``, where ``t_j = -log P_train(|r_j| >= |r_j(x)|)`` is the surprisal
       of column j's residual under the empirical distribution of that column's training
       residuals (128 knots on a geometric grid of tail probabilities down to 1/(n+1);
       beyond the largest training residual it grows linearly, i.e. an exponential tail
       whose scale is the mean excess of the top 5% of training residuals): one column
       far outside anything seen in training;
    3. ``sum_j t_j(x) + beta * KL``: many columns moderately unusual, heavy-tailed residual
       columns weighted by how heavy their tail really is rather than by a variance;
    4. ``r^T P r + beta * KL`` with ``P`` the inverse of the training residuals'
       covariance (+ 1e-3 ridge): residuals that break the normal error correlations.

    Each rule alone ranks the benchmark sets differently (rule 2 best on cardio, rule 3
    on thyroid/mammography, rule 4 on creditcard); the sum is better than each on average
    (3 seeds of the five tabular sets: mean AUROC 0.964 -> 0.967, AUPRC 0.780 -> 0.813).
    Neighbourhood views (``knn_views``, default both): 5. the distance of the encoded
    row to its ``knn_k``-th (1st) nearest reference row, 6. the same between posterior
    means ``mu(x)`` (latent space). They catch what residuals miss: a record between
    normal clusters, which the decoder reconstructs well but no normal record resembles.
    The reference is drawn from a seeded sample of at most ``knn_reference_rows`` (2048)
    training rows: ``knn_prototypes`` (64) k-means centres of the sample, and 64 of its
    posterior means, stored as buffers in weights.pt (``knn_prototypes=0``: the sample
    itself, whose rows skip themselves in training). Each view is divided by its 99%
    training quantile like the rules and weighted by ``knn_weight`` (1). Chosen across the
    dev pool (the devpool benchmark suite): the views raise the mean AUROC over the rules
    alone without costing any set more than rounding; the nearest of 64 centres keeps most
    of the scoring speed, where a top-k search over the whole sample cut it several-fold.

    It needs the residual statistics, computed after training only when
    ``score_rule="ensemble"`` (switching a model fitted with "elbo" to "ensemble" raises).
    The ensemble always includes the ``beta * KL`` parts (``score_kl`` applies to the ELBO
    rule only). Models saved before score rules existed load with ``score_rule="elbo"``;
    models saved before the kNN views load without them (``knn_views=()``).

    Nearest-neighbour view (``neighbour_rows``, default 2048): 7. the distance of the
    encoded row to its nearest row of a seeded sample of at most ``neighbour_rows``
    training rows (a buffer in weights.pt; rows of the sample skip themselves when the
    scale is read), divided by its 99% training quantile and weighted by
    ``neighbour_weight`` (8). Plain kNN on standardised features is the strongest simple
    baseline on one-class tabular benchmarks, and on vigil's robust encoding the nearest
    row (k = 1) ranks the dev pool better than the 5th; the residual rules and the
    prototype views add what it misses. Chosen across the dev pool (5 shared + 23 ADBench
    sets, 3 seeds) with a half/half check: weight, reference size, k and space chosen on
    one half of the sets and confirmed on the other, both ways (benchmarks/devpool_views).
    The distance is found by one float32 matrix product and measured again directly to
    the row found (``parts.nearest_distance``): near-duplicates keep their small distance.
    The reference is bounded, so scoring stays a fixed number of products per row: the
    numpy forward scores it too. Models saved before the view load without it
    (``neighbour_rows=0``).

    ``max_epoch_rows`` (default 131072): each epoch trains on a fresh seeded sample of at
    most this many training rows (None: all rows), so an epoch's cost is bounded on large
    data; it is a constructor parameter, so saved with the model's config. A quarter of
    that cost the handbook's context VAE much of its extreme-amount scenario; this size
    keeps it at a modest cost in fit time (the scale suite's training step).
    ``max_calibration_rows`` (default 65536, ``FIT_STATISTICS_ROWS``) bounds the passes
    around training the same way: the early-stopping monitor, the threshold and the
    score scales read a seeded sample of at most that many held-out rows, the error
    variances, residual tails and kNN reference a seeded sample of at most that many
    training rows (None: all rows). It binds only above ~82k rows (none of the tabular
    benchmark's sets); ``fit_info_`` records the rows each step used.
    ``fit_threads`` (default 1): torch threads while fitting, see ``FIT_THREADS``.

    Other variants were tried and removed because they lost or tied (posterior-sample and
    importance-weighted scores, a latent-density term, a decoder with learned variance,
    dropout, denoising input noise, mean/std encoder scaling, log of skewed signed
    columns); git history keeps them.

    ``explain`` returns per-column terms summed per source feature, scaled so that each
    row's contributions sum to its score: for "elbo" the terms ``(x_j - x_hat_j)^2 / v_j``
    (non-column parts, e.g. the KL, shared in proportion); for "ensemble" column j gets
    ``(r_j^2 / v_j) / s_1 + t_j / s_3`` plus ``t_j / s_2`` on the column attaining the max,
    the KL and covariance parts shared in proportion.
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ("hidden_dims", "knn_views")

    def __init__(
        self,
        *,
        hidden_dims: tuple[int, ...] = (128, 64),
        latent_dim: int = 8,
        beta: float = 4.0,
        kl_warmup_epochs: int = 10,
        free_bits: float = 0.0,
        weight_decay: float = 0.0,
        standardize_errors: bool = True,
        min_error_variance: float = 0.3,
        score_kl: bool = True,
        score_rule: str = "ensemble",
        knn_views: tuple[str, ...] = ("input", "latent"),
        knn_k: int = 1,
        knn_weight: float = 1.0,
        knn_reference_rows: int = 2048,
        knn_prototypes: int = 64,
        neighbour_rows: int = 2048,
        neighbour_weight: float = 8.0,
        max_epoch_rows: int | None = 131072,
        max_calibration_rows: int | None = FIT_STATISTICS_ROWS,
        fit_threads: int | None = FIT_THREADS,
        epochs: int = 100,
        batch_size: int = 512,
        learning_rate: float = 2e-3,
        validation_fraction: float = 0.2,
        patience: int | None = 5,
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
        self.beta = beta
        self.kl_warmup_epochs = kl_warmup_epochs
        self.free_bits = free_bits
        self.weight_decay = weight_decay
        self.standardize_errors = standardize_errors
        self.min_error_variance = min_error_variance
        self.score_kl = score_kl
        self.score_rule = score_rule
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

    def _build_model(self, n_features: int) -> nn.Module:
        if self.score_rule not in SCORE_RULES:
            raise ValueError(f"score_rule must be one of {SCORE_RULES}, got {self.score_rule!r}")
        bad = set(self.knn_views) - set(KNN_VIEWS)
        if bad:
            raise ValueError(f"knn_views must be drawn from {KNN_VIEWS}, got {sorted(bad)}")
        net = _VAENet(n_features, tuple(self.hidden_dims), int(self.latent_dim))
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
        self._optimizer = torch.optim.Adam(
            self.model_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )

    def _rows_per_epoch(self, n: int) -> int:
        return capped_epoch_rows(self, n)

    def _statistics_rows(self) -> int | None:
        return own_param(self, "max_calibration_rows")

    def _fit_threads(self) -> int | None:
        return own_param(self, "fit_threads")

    def _min_epochs(self) -> int:
        return int(self.kl_warmup_epochs)

    def _beta_at(self, epoch: int) -> float:
        if self.kl_warmup_epochs <= 0:
            return float(self.beta)
        return float(self.beta) * min(1.0, epoch / float(self.kl_warmup_epochs))

    def _kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        per_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)
        if self.free_bits > 0:
            per_dim = per_dim.clamp(min=float(self.free_bits))
        return per_dim.sum()

    def _train_batch(self, xb: torch.Tensor, epoch: int) -> dict[str, float]:
        net: _VAENet = self.model_  # type: ignore[assignment]
        mu, logvar = net.encode(xb)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = (xb - net.decoder(z)).pow(2).sum(dim=1).mean()
        kl = self._kl(mu, logvar)
        loss = recon + self._beta_at(epoch) * kl
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        self._optimizer.step()
        return {
            "train_loss": float(loss.detach()),
            "recon": float(recon.detach()),
            "kl": float(kl.detach()),
        }

    def _validation_loss(self, xv: torch.Tensor, epoch: int) -> float:
        net: _VAENet = self.model_  # type: ignore[assignment]

        def per_row(xb: torch.Tensor) -> torch.Tensor:
            mu, logvar = net.encode(xb)
            recon = (xb - net.decoder(mu)).pow(2).sum(dim=1)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
            return (recon + float(self.beta) * kl).double()

        return float(self._batched(per_row, xv).mean())

    def _squared_errors(self, xb: torch.Tensor) -> torch.Tensor:
        net: _VAENet = self.model_  # type: ignore[assignment]
        mu, _ = net.encode(xb)
        return (xb - net.decoder(mu)).pow(2)

    def _after_fit(self, x_train: torch.Tensor, x_val: torch.Tensor | None) -> None:
        self.__dict__.pop("_rule_tensor_cache", None)
        if self.standardize_errors:
            mse = self._batched(self._squared_errors, x_train).double().mean(dim=0)
            self.error_variance_ = self._floored_error_variance(mse)
        else:
            self.error_variance_ = [1.0] * int(x_train.shape[1])
        self.ensemble_ = self._fit_ensemble(x_train) if self.score_rule == "ensemble" else {}

    def _residuals_at_mu(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Residuals ``x - x_hat(mu(x))`` and the per-row KL, both in float64."""
        resid, kl, _ = self._residuals_kl_mu(xb)
        return resid, kl

    def _residuals_kl_mu(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        net: _VAENet = self.model_  # type: ignore[assignment]
        mu, logvar = net.encode(xb)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return (xb - net.decoder(mu)).double(), kl.double(), mu

    def _knn_distances(
        self, xb: torch.Tensor, mu: torch.Tensor, skip_self: bool = False
    ) -> torch.Tensor:
        """(n, views) distance of each row to its k-th nearest kNN reference row, per view
        fitted (``ensemble_["knn_views"]``); ``skip_self`` for rows of the reference."""
        views = self.ensemble_.get("knn_views", [])
        if not views:
            return torch.zeros(xb.shape[0], 0, dtype=torch.float64, device=xb.device)
        net: _VAENet = self.model_  # type: ignore[assignment]
        refs = {"input": (xb, net.knn_reference), "latent": (mu, net.knn_latent)}
        k = int(self.ensemble_["knn_k"]) + int(skip_self)
        return torch.stack([kth_distance(*refs[view], k) for view in views], dim=1)

    def _fit_knn(self, x_train: torch.Tensor) -> tuple[int, torch.Tensor]:
        """Store the kNN reference as buffers of the network and return its size and the
        kNN distances of all training rows, in no particular row order.

        The reference is drawn from a seeded sample of at most ``knn_reference_rows``
        training rows: with ``knn_prototypes`` > 0, that many k-means centres of the
        sample (in the input space) and of its posterior means (in the latent space);
        with 0, the sample itself (its rows skip themselves)."""
        net: _VAENet = self.model_  # type: ignore[assignment]
        in_ref, prototypes = fit_knn_reference(self, x_train, lambda xb: net.encode(xb)[0])

        def dists(skip: bool) -> Callable[[torch.Tensor], torch.Tensor]:
            return lambda xb: self._knn_distances(xb, net.encode(xb)[0], skip_self=skip)

        if prototypes > 0:
            return int(net.knn_reference.shape[0]), self._batched(dists(False), x_train)
        parts = [self._batched(dists(True), x_train[torch.from_numpy(in_ref)])]
        if not in_ref.all():
            parts.append(self._batched(dists(False), x_train[torch.from_numpy(~in_ref)]))
        return int(in_ref.sum()), torch.cat(parts)

    def _fit_neighbours(self, x_train: torch.Tensor) -> tuple[int, torch.Tensor]:
        """Store the nearest-neighbour reference (a seeded sample of at most
        ``neighbour_rows`` training rows, a buffer of the network) and return its size and
        the nearest-neighbour distance of every training row (rows of the sample skip
        themselves), in no particular row order."""
        net: _VAENet = self.model_  # type: ignore[assignment]
        in_ref = reference_mask(x_train.shape[0], int(self.neighbour_rows), self.seed)
        mask = torch.from_numpy(in_ref)
        set_buffer(net, "neighbour_reference", x_train[mask].to(self._torch_device()).clone())
        self.__dict__.pop("_neighbour_side_cache", None)
        parts = [self._batched(lambda xb: self._neighbour_distance(xb, 2), x_train[mask])]
        if not in_ref.all():
            parts.append(self._batched(self._neighbour_distance, x_train[~mask]))
        return int(in_ref.sum()), torch.cat(parts).unsqueeze(1)

    def _neighbour_distance(self, xb: torch.Tensor, k: int = 1) -> torch.Tensor:
        """Distance of each encoded row to its nearest row of the neighbour reference
        (``k=2`` for the reference's own rows, which skip themselves)."""
        ref = self.model_.neighbour_reference
        cache = self.__dict__.setdefault("_neighbour_side_cache", {})
        if xb.device not in cache:
            cache[xb.device] = reference_side(ref)
        return nearest_distance(xb, ref, k, cache[xb.device])

    def _fit_ensemble(self, x_train: torch.Tensor) -> dict[str, Any]:
        """Statistics of the training residuals for ``score_rule="ensemble"``.

        Per column: the right tail of |residual| as (|r| value, -log tail probability)
        knots on a geometric grid of tail probabilities down to 1/(n+1), and the slope of
        an exponential tail beyond the largest training |r|; the precision matrix of the
        residual vector; the 99% quantile of each of the four rule scores on these rows.
        """
        self.model_.eval()
        with torch.inference_mode():
            parts = [
                self._residuals_at_mu(x_train[i : i + 8192].to(self._torch_device()))
                for i in range(0, len(x_train), 8192)
            ]
        resid = torch.cat([p[0] for p in parts]).cpu()
        self.ensemble_ = {
            **residual_statistics(resid),
            "scales": [1.0, 1.0, 1.0, 1.0],
            "knn_views": [],
        }
        rules = self._batched(lambda xb: self._ensemble_rules(xb)[0], x_train)
        if own_param(self, "knn_views"):
            self.ensemble_.update(
                knn_views=list(self.knn_views),
                knn_k=int(self.knn_k),
                knn_weight=float(self.knn_weight),
                knn_prototypes=int(own_param(self, "knn_prototypes", 0) or 0),
            )
            self.ensemble_["knn_rows"], knn = self._fit_knn(x_train)
            rules = torch.cat([rules, knn], dim=1)
        if int(own_param(self, "neighbour_rows", 0) or 0) > 0:
            self.ensemble_["neighbour_weight"] = float(self.neighbour_weight)
            self.ensemble_["neighbour_rows"], nearest = self._fit_neighbours(x_train)
            rules = torch.cat([rules, nearest], dim=1)
        ordered_rules = torch.sort(rules, dim=0).values
        scales = sorted_quantiles(ordered_rules, torch.tensor([0.99], dtype=torch.float64))[0]
        scales = scales.clamp_min(1e-12)
        self.ensemble_["scales"] = scales.tolist()
        return self.ensemble_

    def _rule_tensors(self, dev: torch.device) -> dict[str, torch.Tensor]:
        """The fitted residual statistics as float64 tensors on ``dev``, built once per fit
        or load (rebuilding the d x d precision matrix from lists cost every batch)."""
        cache = self.__dict__.setdefault("_rule_tensor_cache", {})
        if dev not in cache:
            e = self.ensemble_

            def tensor(values: Any) -> torch.Tensor:
                return torch.tensor(values, dtype=torch.float64, device=dev)

            cache[dev] = {
                "var": tensor(self.error_variance_),
                "knots": tensor(e["tail_knots"]),  # (d, knots)
                "logp": tensor(e["tail_logp"]),  # (knots,)
                "slope": tensor(e["tail_slope"]),
                "precision": tensor(e["precision"]),
            }
        return cache[dev]

    def _ensemble_rules(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The four raw rule scores (n, 4), per-column standardised squared errors and
        per-column tail surprisals (both (n, d))."""
        e = self.ensemble_
        resid, kl, mu = self._residuals_kl_mu(xb)
        dev = xb.device
        t = self._rule_tensors(dev)
        var, knots, logp, slope = t["var"], t["knots"], t["logp"], t["slope"]
        sq = resid.pow(2) / var
        absr = resid.abs()
        # Piecewise-linear interpolation of -log tail probability at |r| per column.
        idx = torch.searchsorted(knots.contiguous(), absr.T.contiguous(), right=True).T  # (n, d)
        k = knots.shape[1]
        lo = (idx - 1).clamp(0, k - 1)
        hi = idx.clamp(0, k - 1)
        cols = torch.arange(knots.shape[0], device=dev).expand_as(idx)
        x0, x1 = knots[cols, lo], knots[cols, hi]
        y0, y1 = logp[lo], logp[hi]
        frac = torch.where(x1 > x0, (absr - x0) / (x1 - x0).clamp_min(1e-300), torch.ones_like(x0))
        tail = y0 + frac.clamp(0.0, 1.0) * (y1 - y0)
        beyond = absr > knots[:, -1]
        tail = torch.where(beyond, logp[-1] + (absr - knots[:, -1]) / slope, tail)
        tail = torch.where(idx == 0, torch.zeros_like(tail), tail)
        precision = t["precision"]
        beta = float(self.beta)
        rules = torch.stack(
            [
                sq.sum(dim=1) + beta * kl,
                tail.max(dim=1).values,
                tail.sum(dim=1) + beta * kl,
                ((resid @ precision) * resid).sum(dim=1) + beta * kl,
            ],
            dim=1,
        )
        if e.get("knn_views"):
            rules = torch.cat([rules, self._knn_distances(xb, mu)], dim=1)
        if e.get("neighbour_rows"):
            rules = torch.cat([rules, self._neighbour_distance(xb).unsqueeze(1)], dim=1)
        return rules, sq, tail

    def latent_means(self, X: Any) -> Any:
        """The encoder's posterior means, shape (n, latent_dim): the VAE's codes, which a
        classifier trained on verdicts can read (the re-ranker)."""
        self._check_fitted()
        x = self._to_tensor(X)
        return self._batched(lambda xb: self.model_.encode(xb)[0].double(), x).numpy()

    def _extra_state(self) -> dict[str, Any]:
        return {"ensemble": self.ensemble_, "error_variance": self.error_variance_}

    def save(self, path: str | Path) -> Path:
        """``BaseDeepDetector.save``, plus the network's arrays as ``weights.npz`` so the
        model scores without importing torch (:mod:`detectors.numpy_forward`). Only for
        this class: subclasses (the sequence VAE) have forwards of their own."""
        out = super().save(path)
        if type(self) is VAEDetector:
            from detectors.numpy_forward import export_numpy_weights

            state = {k: v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
            export_numpy_weights(out, state)
        return out

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.__dict__.pop("_rule_tensor_cache", None)
        self.error_variance_ = [float(v) for v in state["error_variance"]]
        if "ensemble" not in state:
            # Saved before score rules existed: it was fitted and calibrated with the ELBO
            # score, so keep scoring it that way (its params lack ``score_rule``).
            self.score_rule = "elbo"
        self.ensemble_ = dict(state.get("ensemble", {}))
        if "knn_views" not in self.ensemble_:
            # Saved before the kNN views existed: fitted without them.
            self.knn_views = ()
        if "knn_prototypes" not in self.ensemble_:
            # Saved before prototypes: its reference is a sample of training rows.
            self.knn_prototypes = 0
        if "neighbour_rows" not in self.ensemble_:
            # Saved before the nearest-neighbour view: fitted without it.
            self.neighbour_rows = 0
        self.__dict__.pop("_neighbour_side_cache", None)
        # _build_model (called next by load) gives the network buffers of these sizes.
        self._knn_rows_to_load = int(self.ensemble_.get("knn_rows", 0))
        self._neighbour_rows_to_load = int(self.ensemble_.get("neighbour_rows", 0))

    def _recon_terms(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised squared errors per column and the per-row KL, both at z = mu."""
        net: _VAENet = self.model_  # type: ignore[assignment]
        mu, logvar = net.encode(xb)
        var = torch.tensor(self.error_variance_, dtype=torch.float32, device=xb.device)
        terms = (xb - net.decoder(mu)).pow(2) / var
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return terms, kl

    def _elbo_terms(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``score_rule="elbo"``: per-column terms and the non-column rest (``beta * KL``,
        or 0 without ``score_kl``), float64."""
        terms, kl = self._recon_terms(xb)
        if self.score_kl:
            return terms, float(self.beta) * kl.double()
        return terms, torch.zeros_like(kl, dtype=torch.float64)

    def _rule_scales(self, dev: torch.device) -> torch.Tensor:
        """Each rule's divisor: its 99% training quantile, over ``knn_weight`` for the
        prototype views and ``neighbour_weight`` for the nearest-neighbour view."""
        scales = torch.tensor(self.ensemble_["scales"], dtype=torch.float64, device=dev)
        return scales / torch.tensor(rule_weights(self.ensemble_), dtype=torch.float64, device=dev)

    def _ensemble_terms(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``score_rule="ensemble"``: per-column parts and the non-column rest of the sum of
        the four rules, each divided by its 99% training quantile."""
        if not getattr(self, "ensemble_", None):
            raise ValueError("score_rule='ensemble' needs a model fitted with that rule")
        rules, sq, tail = self._ensemble_rules(xb)
        scales = torch.tensor(self.ensemble_["scales"], dtype=torch.float64, device=xb.device)
        score = (rules / self._rule_scales(xb.device)).sum(dim=1)
        top = torch.softmax((tail - tail.amax(dim=1, keepdim=True)) / MAX_TAIL_SOFTNESS, dim=1)
        terms = sq / scales[0] + tail * top / scales[1] + tail / scales[2]
        return terms, score - terms.sum(dim=1)

    def _score_terms(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-column terms and the per-row non-column rest of the score under ``score_rule``."""
        if self.score_rule == "ensemble":
            return self._ensemble_terms(xb)
        if self.score_rule == "elbo":
            return self._elbo_terms(xb)
        raise ValueError(f"score_rule must be one of {SCORE_RULES}, got {self.score_rule!r}")

    def _score_batch(self, xb: torch.Tensor) -> torch.Tensor:
        if self.score_rule == "ensemble" and getattr(self, "ensemble_", None):
            # The score alone: the weighted rules, without the per-column terms of explain.
            rules = self._ensemble_rules(xb)[0]
            return (rules / self._rule_scales(xb.device)).sum(dim=1)
        terms, extra = self._score_terms(xb)
        return terms.double().sum(dim=1) + extra

    def _contributions(self, xb: torch.Tensor) -> torch.Tensor:
        terms, extra = self._score_terms(xb)
        # The non-column part belongs to no single column: share it in proportion to the
        # reconstruction terms so each row's contributions still sum to its score.
        recon = terms.double().sum(dim=1, keepdim=True).clamp_min(1e-12)
        scale = 1.0 + extra.unsqueeze(1) / recon
        return (terms.double() * scale).float()
