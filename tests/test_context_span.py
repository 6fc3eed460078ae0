"""Context features that read the same in a short training file and a long scored one."""

import numpy as np
import pandas as pd
import pytest

from detectors.context import ContextConfig
from detectors.context.features import build_context_features


def _card(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "card_id": ["c"] * n,
            "timestamp": pd.date_range("2026-03-02", periods=n, freq="6h"),
            "merchant": ["a", "b"] * (n // 2),
        }
    )


def test_history_count_is_capped_and_shares_still_use_the_whole_history():
    frame = _card(20)
    capped = ContextConfig(
        entity_column="card_id",
        time_column="timestamp",
        profile_columns=["merchant"],
        history_count_cap=10,
    )
    features = build_context_features(frame, capped)
    assert features["ctx_history_count"].tolist() == [*range(10), *([10] * 10)]
    # the share's denominator is every earlier record, not the capped count
    assert features["ctx_share_merchant"].iloc[-1] == pytest.approx(9 / 19)

    whole = build_context_features(frame, capped.replace(history_count_cap=None))
    np.testing.assert_allclose(whole["ctx_history_count"], np.arange(20))


def test_history_count_cap_below_min_history_is_refused():
    with pytest.raises(ValueError, match="history_count_cap=2 must be at least min_history=3"):
        ContextConfig(entity_column="card_id", time_column="timestamp", history_count_cap=2)
