"""Variational auto-encoder detector: normal records reconstruct well, anomalies do not."""

from __future__ import annotations

from typing import Any, ClassVar

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
    """VAE trained on normal records; the anomaly score is a deterministic reconstruction error.

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

    Score (exactly): ``score(x) = sum_j (x_j - x_hat_j(mu(x)))^2 / v_j
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
    ``explain`` returns the terms
    ``(x_j - x_hat_j(mu(x)))^2 / v_j`` summed per source feature, each scaled by
    ``score / recon`` (the KL term shared in proportion), so each row's contributions
    sum to its score.
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ("hidden_dims",)

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

    def _build_model(self, n_features: int) -> nn.Module:
        return _VAENet(n_features, tuple(self.hidden_dims), int(self.latent_dim))

    def _configure_optimizers(self) -> None:
        self._optimizer = torch.optim.Adam(
            self.model_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )

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
        if self.standardize_errors:
            mse = self._batched(self._squared_errors, x_train).double().mean(dim=0)
            self.error_variance_ = self._floored_error_variance(mse)
        else:
            self.error_variance_ = [1.0] * int(x_train.shape[1])

    def _extra_state(self) -> dict[str, Any]:
        return {"error_variance": self.error_variance_}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.error_variance_ = [float(v) for v in state["error_variance"]]

    def _recon_terms(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised squared errors per column and the per-row KL, both at z = mu."""
        net: _VAENet = self.model_  # type: ignore[assignment]
        mu, logvar = net.encode(xb)
        var = torch.tensor(self.error_variance_, dtype=torch.float32, device=xb.device)
        terms = (xb - net.decoder(mu)).pow(2) / var
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return terms, kl

    def _score_batch(self, xb: torch.Tensor) -> torch.Tensor:
        terms, kl = self._recon_terms(xb)
        score = terms.double().sum(dim=1)
        if self.score_kl:
            score = score + float(self.beta) * kl.double()
        return score

    def _contributions(self, xb: torch.Tensor) -> torch.Tensor:
        terms, kl = self._recon_terms(xb)
        if not self.score_kl:
            return terms
        # The KL term belongs to no single column: share it in proportion to the
        # reconstruction terms so each row's contributions still sum to its score.
        recon = terms.double().sum(dim=1, keepdim=True).clamp_min(1e-12)
        scale = 1.0 + float(self.beta) * kl.double().unsqueeze(1) / recon
        return (terms.double() * scale).float()
