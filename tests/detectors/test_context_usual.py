"""The entity's usual hour as context: hand-checked values, the
bounded-history property, and when ``spec init`` proposes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from detector_data import assert_a_day_alone_equals_the_whole_file, random_payments

from detectors.context import ContextConfig, build_context_features, describe_context
from detectors.context.config import HOUR_OFFSET_CAP
from detectors.context.running import RunningContext, unsupported
from pipelines.intake.spec import infer_spec

USUAL = ContextConfig(
    entity_column="card",
    time_column="time",
    amount_column="amount",
    history="7d",
    latitude_column="lat",
    longitude_column="lon",
    located_column="present",
    hour_offset=True,
    min_history=3,
    entity_noun="card",
)


def _card(hours_and_places: list[tuple[float, float, float, int]]) -> pd.DataFrame:
    """One card, one record a day at (hour, lat, lon, present)."""
    rows = [
        {
            "card": "a",
            "time": pd.Timestamp("2026-01-05") + pd.Timedelta(days=day, hours=hour),
            "amount": 10.0,
            "lat": lat,
            "lon": lon,
            "present": present,
        }
        for day, (hour, lat, lon, present) in enumerate(hours_and_places)
    ]
    return pd.DataFrame(rows)


def test_hour_offset_is_far_only_for_an_hour_the_entity_never_uses():
    brussels = (50.85, 4.35)
    frame = _card(
        [(h, *brussels, 1) for h in (13.0, 14.0, 15.0, 14.0)] + [(14.5, *brussels, 1)]
        + [(2.0, *brussels, 1)]
    )  # fmt: skip
    offset = build_context_features(frame, USUAL)["ctx_hour_offset"].to_numpy()
    assert np.isnan(offset[:3]).all()  # fewer than min_history earlier records
    # Earlier hours 13, 14, 15, 14: mean 14:00, spread under an hour (floored at one).
    assert offset[4] == pytest.approx(0.5, abs=0.02)
    # 02:00 is twelve hours away from 14:00: past the cap, 'never this card's hour'.
    assert offset[5] == HOUR_OFFSET_CAP
    running = RunningContext(USUAL)
    entity = running.new_entity()
    stepped = [running.step(r, entity, {})["ctx_hour_offset"] for r in frame.to_dict("records")]
    assert stepped[5] == HOUR_OFFSET_CAP  # the running state caps as the batch build does
    statement = describe_context("ctx_hour_offset", {"ctx_hour_offset": offset[5]}, USUAL)
    assert "usual hour" in statement


def test_usual_hour_keeps_a_batch_alone_equal_to_the_whole_file():
    frame = random_payments(2000, cards=30, days=30, seed=5)
    assert_a_day_alone_equals_the_whole_file(frame, USUAL, "2026-01-20")


@pytest.mark.parametrize(
    ("times", "proposed"),
    [
        (["2026-01-05 09:12:00", "2026-01-05 17:40:31", "2026-01-06 11:02:09"], True),
        (["2026-01-05", "2026-01-06", "2026-01-07"], False),
    ],
)
def test_spec_init_proposes_the_hour_offset_only_for_times_of_day(times, proposed):
    frame = pd.DataFrame(
        {"id": ["1", "2", "3"], "card_id": ["a", "a", "b"], "when": times, "amount": [1.0, 2, 3]}
    )
    spec = infer_spec(frame, name="x", id_column="id", entity_column="card_id", time_column="when")
    assert spec.context.hour_offset is proposed


def test_the_running_state_computes_the_usual_hour_as_the_batch_does():
    """One record at a time against the batch build (two records on one day among them):
    the same offsets, and the 03:00 payment far from this card's usual morning."""
    assert "hour_offset" not in unsupported(USUAL)
    hours = [9.0, 9.5, 10.0, 8.5, 9.25, 3.0, 9.0, 21.0, 9.5, 10.0, 2.0]
    frame = _card([(h, 40.0, -3.0, 1) for h in hours])
    frame = pd.concat(
        [frame, frame.iloc[[4]].assign(time=frame["time"][4] + pd.Timedelta(hours=3))]
    )
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    batch = build_context_features(frame, USUAL)["ctx_hour_offset"].to_numpy()
    running = RunningContext(USUAL)
    entity = running.new_entity()
    stepped = [running.step(r, entity, {})["ctx_hour_offset"] for r in frame.to_dict("records")]
    np.testing.assert_allclose(stepped, batch, rtol=1e-9, equal_nan=True)
    night = (frame["time"].dt.hour == 3).to_numpy()
    assert np.isfinite(batch[-3:]).all() and batch[night][0] > 2.0
