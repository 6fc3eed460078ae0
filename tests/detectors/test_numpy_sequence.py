"""The numpy forward of a fitted sequence VAE scores and explains each record's window as
the torch detector does (the torch detector is the reference)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.numpy_sequence import NumpySequenceVAE
from detectors.windows import build_windows


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 0.5, n),
            "gap": rng.exponential(1.0, n),
            "kind": rng.choice(["a", "b", "c", None], n),
            "card": rng.integers(0, 12, n).astype(str),
            "t": np.sort(rng.uniform(0, 5 * 86400, n)),
        }
    )


@pytest.mark.parametrize("sequence_length", [1, 4])
def test_numpy_sequence_vae_equals_the_torch_detector(sequence_length):
    from detectors.sequence import SequenceGANDetector, SequenceVAEDetector

    frame = _frame()
    detector = SequenceVAEDetector(
        entity_column="card", time_column="t", sequence_length=sequence_length,
        history_seconds=86400.0, context_hidden=8, hidden_dims=(16,), latent_dim=3,
        epochs=2, categorical_features=["kind"],
    ).fit(frame)  # fmt: skip
    expected = detector.decision_function(frame)
    explained = detector.explain(frame).to_numpy()
    fast = NumpySequenceVAE.from_detector(detector)
    assert fast is not None
    features = ["amount", "gap", "kind"]
    rows = frame[features].astype(object).where(frame[features].notna(), None).values.tolist()
    encoded = fast.rows.transform(rows)
    np.testing.assert_allclose(encoded, detector.encoder_.transform(frame[features]), atol=1e-6)
    previous = build_windows(frame["card"], frame["t"], sequence_length, 86400.0, pad_index=-1)
    for i in range(len(frame)):
        window = [j for j in previous[i] if j >= 0]
        steps = encoded[[*window, i]]
        assert fast.score(steps, len(window)) == pytest.approx(expected[i], rel=1e-4, abs=1e-5)
        np.testing.assert_allclose(
            fast.contributions(steps, len(window)), explained[i], rtol=1e-3, atol=1e-5
        )
    gan = SequenceGANDetector(entity_column="card", time_column="t", epochs=1)
    assert NumpySequenceVAE.from_detector(gan) is None
