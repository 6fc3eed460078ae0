"""Sequence detectors: score the CURRENT record in the context of its entity's past records.

``SequenceVAEDetector`` (a conditional VAE given the window) and ``SequenceGANDetector``
(ALAD over flattened windows). What a window is, how it is built and the fit / scoring
skeleton both share are in :mod:`detectors.windows`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from detectors.gan import GANDetector, _ALADNet
from detectors.parts import mlp
from detectors.vae import VAEDetector
from detectors.windows import DEFAULT_HISTORY_SECONDS, SequenceMixin


# ------------------------------------------------------------------ sequence VAE
class _SeqVAENet(nn.Module):
    """GRU context over the previous steps + a conditional VAE of the current record."""

    def __init__(
        self,
        n_features: int,
        context_hidden: int,
        hidden_dims: tuple[int, ...],
        latent_dim: int,
    ) -> None:
        super().__init__()
        hidden = list(hidden_dims)
        self.context_hidden = int(context_hidden)
        self.gru = nn.GRU(n_features + 1, self.context_hidden, batch_first=True)
        self.encoder = mlp([n_features + self.context_hidden, *hidden], last_activation=True)
        width = hidden[-1] if hidden else n_features + self.context_hidden
        self.mu = nn.Linear(width, latent_dim)
        self.logvar = nn.Linear(width, latent_dim)
        self.decoder = mlp([latent_dim + self.context_hidden, *reversed(hidden), n_features])

    def context(self, prev_steps: torch.Tensor) -> torch.Tensor:
        """Last GRU hidden state over ``(b, K-1, d+1)`` steps (zeros when K = 1)."""
        if prev_steps.shape[1] == 0:
            return prev_steps.new_zeros(prev_steps.shape[0], self.context_hidden)
        _, h = self.gru(prev_steps)
        return h[-1]

    def encode(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encoder(torch.cat([x, h], dim=1))
        return self.mu(e), self.logvar(e).clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, h], dim=1))


class SequenceVAEDetector(SequenceMixin, VAEDetector):
    """Conditional VAE of the current record given its entity's last ``K - 1`` records.

    Input: a frame with the feature columns plus ``entity_column`` and ``time_column``
    (see the module docstring for windows). Model: a GRU (``context_hidden`` units) reads
    the ``K - 1`` previous steps (zero pads included) and its last hidden state ``h`` is
    the context; the encoder MLP maps ``[x_t, h]`` to ``mu, logvar`` and the decoder MLP
    maps ``[z, h]`` to ``x_hat_t``, where ``x_t`` is the ENCODED current record. Training
    is as in ``VAEDetector`` (reconstruction + ``beta_t`` * KL with warm-up and free
    bits, early stopping on the held-out monitor), over the target rows only.

    Score (exactly): ``score = sum_j (x_tj - x_hat_tj(mu, h))^2 / v_j
    + beta * KL(q(z | x_t, h) || N(0, I))`` (the KL term only with ``score_kl``), with
    ``v_j = max(mean over the training rows of that squared error, min_error_variance)``
    (``error_variance_``, unseen-category columns floored at 1e-3; all 1 with
    ``standardize_errors=False``). So a record is anomalous when it does not fit what its
    own entity's recent records predict (e.g. 10x the entity's usual amount, a burst).
    ``explain`` returns the standardised squared errors of the current record's columns
    summed per feature, the KL term shared in proportion, so each row sums to its score.

    This is ``VAEDetector``'s ``score_rule="elbo"``, fixed (set in ``__init__``, not a
    parameter): the ensemble rule is tabular-only for now, so this detector fits and saves
    no ``ensemble_`` statistics.

    ``max_train_rows``: at most this many (seeded random) training rows take gradient
    steps per fit (None: all); context rows are never subsampled.

    ``validation_split``: ``"latest"`` (default) holds out the most recent
    ``validation_fraction`` of the target rows for early stopping and the threshold, so the
    threshold is set on records whose entities have their history, like the ones scored
    next; ``"random"`` is the seeded random hold-out of the tabular detectors.

    ``warmup_fraction``: the records of the first quarter of the training data's time span
    are context only, never trained on: their cards have no history in the data yet, so
    they all look new, unlike the records scored later with their kept history (see
    ``SequenceMixin._warmup_rows``); 0 trains on every record. Where fewer than two
    records would be left, every record is trained on.

    ``clean_calibration``: held-out rows whose window holds a labelled anomaly (``y == 1``,
    context only) are left out of early stopping and the threshold (see the mixin).
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ("hidden_dims",)

    def __init__(
        self,
        *,
        entity_column: str,
        time_column: str,
        sequence_length: int = 8,
        history_seconds: float | None = DEFAULT_HISTORY_SECONDS,
        context_hidden: int = 64,
        hidden_dims: tuple[int, ...] = (128, 64),
        latent_dim: int = 8,
        beta: float = 4.0,
        kl_warmup_epochs: int = 5,
        free_bits: float = 0.0,
        weight_decay: float = 0.0,
        standardize_errors: bool = True,
        min_error_variance: float = 0.3,
        score_kl: bool = True,
        max_train_rows: int | None = 200_000,
        validation_split: str = "latest",
        clean_calibration: bool = True,
        warmup_fraction: float = 0.25,
        epochs: int = 30,
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
            hidden_dims=hidden_dims,
            latent_dim=latent_dim,
            beta=beta,
            kl_warmup_epochs=kl_warmup_epochs,
            free_bits=free_bits,
            weight_decay=weight_decay,
            standardize_errors=standardize_errors,
            min_error_variance=min_error_variance,
            score_kl=score_kl,
            score_rule="elbo",
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
        self.entity_column = entity_column
        self.time_column = time_column
        self.sequence_length = sequence_length
        self.history_seconds = history_seconds
        self.context_hidden = context_hidden
        self.max_train_rows = max_train_rows
        self.validation_split = validation_split
        self.clean_calibration = clean_calibration
        self.warmup_fraction = warmup_fraction

    def _build_model(self, n_features: int) -> nn.Module:
        return _SeqVAENet(
            n_features, int(self.context_hidden), tuple(self.hidden_dims), int(self.latent_dim)
        )

    def _current_and_context(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net: _SeqVAENet = self.model_  # type: ignore[assignment]
        steps = self._gather(pos)
        return steps[:, -1, :-1], net.context(steps[:, :-1])

    def _train_batch(self, xb: torch.Tensor, epoch: int) -> dict[str, float]:
        net: _SeqVAENet = self.model_  # type: ignore[assignment]
        x, h = self._current_and_context(xb)
        mu, logvar = net.encode(x, h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = (x - net.decode(z, h)).pow(2).sum(dim=1).mean()
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

    def latent_means(self, X: Any, history: Any = None) -> np.ndarray:
        """The encoder's posterior means given each record's window, shape (n, latent_dim):
        the codes a classifier trained on verdicts reads. ``history`` as in
        :meth:`decision_function`."""
        self._check_fitted()
        net: _SeqVAENet = self.model_  # type: ignore[assignment]

        def means(pos: torch.Tensor) -> torch.Tensor:
            x, h = self._current_and_context(pos)
            return net.encode(x, h)[0].double()

        with self._scoring_data(X, history) as pos:
            return self._batched(means, pos).numpy()

    def _errors_and_kl(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unstandardised squared errors of the current record and its KL, at z = mu."""
        net: _SeqVAENet = self.model_  # type: ignore[assignment]
        x, h = self._current_and_context(pos)
        mu, logvar = net.encode(x, h)
        se = (x - net.decode(mu, h)).pow(2)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return se, kl

    def _validation_loss(self, xv: torch.Tensor, epoch: int) -> float:
        def per_row(pos: torch.Tensor) -> torch.Tensor:
            se, kl = self._errors_and_kl(pos)
            return (se.sum(dim=1) + float(self.beta) * kl).double()

        return float(self._batched(per_row, xv).mean())

    def _squared_errors(self, xb: torch.Tensor) -> torch.Tensor:
        return self._errors_and_kl(xb)[0]

    def _after_fit(self, x_train: torch.Tensor, x_val: torch.Tensor | None) -> None:
        if self.standardize_errors:
            mse = self._batched(self._squared_errors, x_train).double().mean(dim=0)
            self.error_variance_ = self._floored_error_variance(mse)
        else:
            self.error_variance_ = [1.0] * int(self.encoder_.n_features_out_)

    def _recon_terms(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Used by VAEDetector._score_batch / _contributions (score and explain).
        se, kl = self._errors_and_kl(xb)
        var = torch.tensor(self.error_variance_, dtype=se.dtype, device=se.device)
        return se / var, kl

    def _extra_state(self) -> dict[str, Any]:
        # ELBO rule only: none of VAEDetector's ensemble state (same format as before it).
        return {"error_variance": self.error_variance_, **self._fit_counts()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.error_variance_ = [float(v) for v in state["error_variance"]]
        self._load_fit_counts(state)


# ------------------------------------------------------------------ sequence GAN (ALAD)
class SequenceGANDetector(SequenceMixin, GANDetector):
    """ALAD over flattened windows: the comparison detector for ``SequenceVAEDetector``.

    Each record's window (``K = sequence_length`` steps of ``d + 1`` columns: the encoded
    record and a present flag; zero pads first, the current record last) is flattened into
    one vector ``w`` of ``K * (d + 1)`` values and the ``GANDetector`` ALAD network
    (encoder, generator, three spectrally normalised discriminators) is trained on it with
    ``GANDetector``'s losses (the E/G reconstruction penalty covers the whole window).

    Score (exactly), with ``w' = G(E(w))``, ``f`` = D_xx's last hidden layer and ``x_t``,
    ``x'_t`` the CURRENT step's ``d`` encoded columns of ``w`` and ``w'``:
        ``fm(w)  = sum_k |f(w, w)_k - f(w, w')_k|``  (whole window)
        ``rec(w) = sum_j (x_tj - x'_tj)^2 / v_j``     (current record only)
        ``lat(w) = sum_k E(w)_k^2``                   (whole window)
        ``score = w_fm * fm / fm_scale_ + w_rec * rec / rec_scale_ + w_z * lat / z_scale_``
    with ``v_j`` the floored training mean of the current record's squared error
    (``error_variance_``) and the scales the held-out medians, exactly as in
    ``GANDetector``. Restricting ``rec`` to the current step keeps a past anomalous
    record from flagging the next ``K - 1`` records through reconstruction; ``fm`` and
    ``lat`` see the whole window (the context is what makes them sequence-aware), so a
    strongly anomalous past record can still raise them somewhat.

    ``explain``: ``fm`` and ``lat`` cannot be attributed to single features, so each row's
    score is shared in proportion to the current record's standardised errors
    ``(x_tj - x'_tj)^2 / v_j`` summed per feature (an even split if they are all 0):
    contributions are non-negative and sum to the score, but the non-reconstruction part
    is an attribution by proportion, not an exact decomposition.

    Defaults are ``GANDetector``'s except ``sequence_length=4`` (shorter windows than the
    VAE's: the flattened window is the network's input width), ``epochs=30`` and
    ``max_train_rows=100_000``: with GANDetector's 60 epochs on 200k windows one fit on the
    handbook data ran for over 10 minutes on 2 (shared) cores without finishing; the
    comparison model should not dominate a training run. ``validation_split`` and
    ``clean_calibration`` as in ``SequenceVAEDetector``.
    """

    _tuple_params: ClassVar[tuple[str, ...]] = ("hidden_dims",)

    def __init__(
        self,
        *,
        entity_column: str,
        time_column: str,
        sequence_length: int = 4,
        history_seconds: float | None = DEFAULT_HISTORY_SECONDS,
        max_train_rows: int | None = 100_000,
        validation_split: str = "latest",
        clean_calibration: bool = True,
        hidden_dims: tuple[int, ...] = (64, 32),
        latent_dim: int = 8,
        disc_hidden: int = 64,
        dropout: float = 0.2,
        reconstruction_weight: float = 1.0,
        feature_score_weight: float = 1.0,
        reconstruction_score_weight: float = 1.0,
        latent_score_weight: float = 1.0,
        min_error_variance: float = 0.3,
        epochs: int = 30,
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
            hidden_dims=hidden_dims,
            latent_dim=latent_dim,
            disc_hidden=disc_hidden,
            dropout=dropout,
            reconstruction_weight=reconstruction_weight,
            feature_score_weight=feature_score_weight,
            reconstruction_score_weight=reconstruction_score_weight,
            latent_score_weight=latent_score_weight,
            min_error_variance=min_error_variance,
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
        self.entity_column = entity_column
        self.time_column = time_column
        self.sequence_length = sequence_length
        self.history_seconds = history_seconds
        self.max_train_rows = max_train_rows
        self.validation_split = validation_split
        self.clean_calibration = clean_calibration

    def _build_model(self, n_features: int) -> nn.Module:
        return _ALADNet(
            self._window_width(n_features),
            tuple(self.hidden_dims),
            int(self.latent_dim),
            int(self.disc_hidden),
            float(self.dropout),
        )

    def _flat_windows(self, pos: torch.Tensor) -> torch.Tensor:
        steps = self._gather(pos)
        return steps.reshape(steps.shape[0], -1)

    def _train_batch(self, xb: torch.Tensor, epoch: int) -> dict[str, float]:
        return super()._train_batch(self._flat_windows(xb), epoch)

    def _parts(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fm over the window, current record's squared errors per column, ||E(w)||^2)."""
        net: _ALADNet = self.model_  # type: ignore[assignment]
        w = self._flat_windows(xb)
        z = net.encoder(w)
        w_rec = net.generator(z)
        fm = (net.d_xx.features(w, w) - net.d_xx.features(w, w_rec)).abs().sum(dim=1)
        d = int(self.encoder_.n_features_out_)
        start = (int(self.sequence_length) - 1) * (d + 1)
        se = (w[:, start : start + d] - w_rec[:, start : start + d]).pow(2)
        if hasattr(self, "error_variance_"):
            se = se / torch.tensor(self.error_variance_, dtype=se.dtype, device=se.device)
        return fm, se, z.pow(2).sum(dim=1)

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), **self._fit_counts()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        super()._load_extra_state(state)
        self._load_fit_counts(state)
