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


def random_payments(n: int, cards: int, days: int, seed: int, merchants: int = 0) -> pd.DataFrame:
    """Card payments at random times over ``days`` days from 2026-01-01, located (lat/lon,
    card present or not), with merchants when ``merchants`` > 0."""
    rng = np.random.default_rng(seed)
    columns = {
        "card": rng.choice([f"c{i}" for i in range(cards)], n),
        "time": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.uniform(0, days * 86400, n), "s"),
        "amount": rng.gamma(2.0, 20.0, n),
    }
    if merchants:
        columns["merchant"] = rng.choice([f"m{i}" for i in range(merchants)], n)
    columns.update(lat=rng.normal(50, 1, n), lon=rng.normal(4, 1, n), present=rng.integers(0, 2, n))
    return pd.DataFrame(columns)


def assert_a_day_alone_equals_the_whole_file(frame: pd.DataFrame, config, start: str) -> None:
    """The context features of the day from ``start``, built from that day and the week
    before it only, equal those of the whole file (the build is causal and bounded)."""
    from detectors.context import build_context_features

    full = build_context_features(frame, config)
    day = pd.Timestamp(start)
    batch = frame[(frame["time"] >= day) & (frame["time"] < day + pd.Timedelta("1D"))]
    history = frame[(frame["time"] >= day - pd.Timedelta("7D")) & (frame["time"] < day)]
    combined = pd.concat([history, batch])
    alone = build_context_features(combined, config, targets=np.arange(len(history), len(combined)))
    assert np.allclose(alone.to_numpy(), full.loc[batch.index].to_numpy(), equal_nan=True)
