"""Shared fixtures for detector tests: small synthetic data and detectors fitted once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from detector_data import make_anomalies, make_normals

from detectors import GANDetector, VAEDetector


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # Tiny networks: one thread avoids oversubscribing the 2 shared cores (much faster).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def train_df() -> pd.DataFrame:
    return make_normals(2000, seed=1)


@pytest.fixture(scope="session")
def test_mix() -> tuple[pd.DataFrame, np.ndarray]:
    normals = make_normals(1000, seed=2)
    anomalies, _ = make_anomalies(60, seed=3)
    X = pd.concat([normals, anomalies], ignore_index=True)
    y = np.r_[np.zeros(len(normals), dtype=int), np.ones(len(anomalies), dtype=int)]
    return X, y


VAE_TEST_PARAMS = {"epochs": 40, "patience": 8, "kl_warmup_epochs": 5, "target_fpr": 0.05}
GAN_TEST_PARAMS = {"epochs": 40, "patience": 10, "target_fpr": 0.05}


@pytest.fixture(scope="session")
def fitted_vae(train_df: pd.DataFrame) -> VAEDetector:
    return VAEDetector(**VAE_TEST_PARAMS).fit(train_df)


@pytest.fixture(scope="session")
def fitted_gan(train_df: pd.DataFrame) -> GANDetector:
    return GANDetector(**GAN_TEST_PARAMS).fit(train_df)
