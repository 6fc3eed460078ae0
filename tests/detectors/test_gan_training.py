"""The GAN's training step computes E and G once and freezes the discriminators for the E/G
update; the trained weights equal those of the plain two-pass ALAD step it replaces."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from detectors import GANDetector
from detectors.gan import _bce


def two_pass_step(self: GANDetector, xb: torch.Tensor, epoch: int) -> dict[str, float]:
    """The oracle: the plain two-pass ALAD training step the shipped one-pass step replaces.
    E and G run under no_grad for the discriminators' update, then all networks run again
    (after that update) with every network's gradients."""
    net = self.model_
    z = torch.randn(xb.shape[0], int(self.latent_dim), device=xb.device)
    n = xb.shape[0]
    real_fake = torch.cat([torch.ones(n), torch.zeros(n)])
    fake_real = 1.0 - real_fake
    bce = F.binary_cross_entropy_with_logits
    with torch.no_grad():
        z_hat, x_fake = net.encoder(xb), net.generator(z)
        x_rec, z_rec = net.generator(z_hat), net.encoder(x_fake)
    with parametrize.cached():
        d_loss = (
            bce(net.d_xz(torch.cat([xb, x_fake]), torch.cat([z_hat, z])), real_fake)
            + bce(net.d_xx(torch.cat([xb, xb]), torch.cat([xb, x_rec])), real_fake)
            + bce(net.d_zz(torch.cat([z, z]), torch.cat([z, z_rec])), real_fake)
        )
        self._opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
    self._opt_d.step()
    z_hat, x_fake = net.encoder(xb), net.generator(z)
    x_rec, z_rec = net.generator(z_hat), net.encoder(x_fake)
    with parametrize.cached():
        adv = (
            bce(net.d_xz(torch.cat([xb, x_fake]), torch.cat([z_hat, z])), fake_real)
            + 0.5 * _bce(net.d_xx(xb, x_rec), 1.0)
            + 0.5 * _bce(net.d_zz(z, z_rec), 1.0)
        )
    rec = (xb - x_rec).pow(2).sum(dim=1).mean()
    eg_loss = adv + float(self.reconstruction_weight) * rec
    self._opt_eg.zero_grad(set_to_none=True)
    eg_loss.backward()
    nn.utils.clip_grad_norm_(net.eg_parameters(), 10.0)
    self._opt_eg.step()
    return {
        k: float(v.detach()) for k, v in (("train_loss", eg_loss), ("d_loss", d_loss), ("rec", rec))
    }


def _fit(monkeypatch=None) -> GANDetector:
    x = np.random.default_rng(0).normal(size=(700, 6))
    torch.manual_seed(0)
    if monkeypatch is not None:
        monkeypatch.setattr(GANDetector, "_train_batch", two_pass_step)
    return GANDetector(seed=0, epochs=3, patience=None, knn_views=()).fit(x)


def test_one_pass_step_trains_the_same_weights_as_the_two_pass_step(monkeypatch) -> None:
    fast = _fit()
    plain = _fit(monkeypatch)
    for (name, a), (_, b) in zip(
        fast.model_.state_dict().items(), plain.model_.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert fast.history_ == plain.history_
    # The discriminators are trainable again after each E/G update.
    assert all(p.requires_grad for p in fast.model_.d_parameters())
