"""Synthetic normal records and planted anomalies for the detector tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

N_NUMERIC = 10
CHANNELS = ("pos", "web", "atm")


def make_normals(n: int, seed: int) -> pd.DataFrame:
    """Normal rows on a 3-D latent manifold: 10 correlated numerics, a channel, an amount."""
    rng = np.random.default_rng(seed)
    # A fixed mixing matrix (independent of ``seed``) so every sample shares one manifold.
    w = np.random.default_rng(12345).normal(size=(3, N_NUMERIC))
    z = rng.normal(size=(n, 3))
    num = z @ w + 0.1 * rng.normal(size=(n, N_NUMERIC))
    df = pd.DataFrame(num, columns=[f"f{i}" for i in range(N_NUMERIC)])
    channel = np.where(z[:, 0] > 0.4, "pos", np.where(z[:, 0] < -0.4, "web", "atm"))
    df["channel"] = pd.Series(channel, dtype=object)
    df["amount"] = np.exp(3.0 + 0.5 * z[:, 1] + 0.3 * rng.normal(size=n))
    return df


def make_anomalies(n: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Planted anomalies and the feature each one was planted in.

    Kinds (round robin): a numeric feature pushed off the manifold by 8 of its stds, an
    amount 100x too large, an unseen channel.
    """
    rng = np.random.default_rng(seed)
    df = make_normals(n, seed + 1)
    planted: list[str] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            col = f"f{rng.integers(N_NUMERIC)}"
            std = 1.7  # typical std of a numeric column
            df.loc[i, col] += rng.choice([-1.0, 1.0]) * 8.0 * std
        elif kind == 1:
            col = "amount"
            df.loc[i, col] *= 100.0
        else:
            col = "channel"
            df.loc[i, col] = "crypto"
        planted.append(col)
    return df, planted
