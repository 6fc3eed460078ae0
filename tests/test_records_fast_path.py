"""The real-time validator types records exactly as ``validate_batch`` does, or defers.

``validate_records`` may refuse anything (the API then runs ``validate_batch``), but what
it accepts must come out identical: same columns, order, dtypes and values, nothing that
the full validator would quarantine.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.demo import DEMO_SPEC
from pipelines.demo_sequences import SEQUENCE_SPEC, TYPOLOGY_SPEC
from pipelines.intake.ingest import Batch, validate_batch
from pipelines.intake.records import validate_records

SPECS = {"tabular": DEMO_SPEC, "sequence": SEQUENCE_SPEC, "typology": TYPOLOGY_SPEC}

TEXTS = st.sampled_from(["m1", " m2 ", "", "  ", "pharmacy", "x" * 300, "é€"])
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.just(None),
    st.booleans(),
    st.sampled_from(["12.5", " 7 ", "abc"]),
)
TIMES = st.sampled_from(
    [
        "2026-03-02 08:51:19",
        "2026-03-02T08:51:19",
        "2026-03-02 08:51:19.5",
        "2026-03-02 08:51:19.123",
        "2026-03-02 08:51:19.123456",
        "2026-03-02 08:51:19.123456789",
        "2026-03-02 08:51:19Z",
        "2026-03-02T08:51:19+02:00",
        "2026-03-02T08:51:19.25-05:30",
        "2026-03-02 08:51",
        "2026-03-02",
        "02/03/2026 08:51:19",
        "not a time",
        "",
        None,
        1772441479,
    ]
)


VALID_TIMES = st.sampled_from(
    [
        "2026-03-02 08:51:19",
        "2026-03-02T08:51:19",
        "2026-03-02 08:51:19.5",
        "2026-03-02 08:51:19.123",
        "2026-03-02 08:51:19.123456",
    ]
)


def _value(column: str, spec, draw) -> object:
    """Mostly values the fast path takes (so the comparison is exercised), else odd ones."""
    odd = draw(st.integers(0, 11)) == 0
    if column == spec.id_column:
        if odd:
            return draw(st.sampled_from([" t3 ", "", None, "x" * 300, 7]))
        return draw(st.sampled_from([f"t{i}" for i in range(40)]))
    if column == spec.time_column:
        return draw(TIMES if odd else VALID_TIMES)
    if column == spec.label_column:
        return draw(st.sampled_from([2, None, "1", 0.0, True] if odd else [0, 1]))
    if column in spec.numeric_features or column in (
        getattr(spec.context, "latitude_column", None),
        getattr(spec.context, "longitude_column", None),
        getattr(spec.context, "amount_column", None),
    ):
        if odd:
            return draw(NUMBERS)
        return draw(st.one_of(st.floats(-1e6, 1e6), st.integers(-(10**6), 10**6), st.none()))
    if odd:
        return draw(st.one_of(TEXTS, st.just(None), st.integers(0, 3)))
    if column == spec.entity_column:
        return draw(st.sampled_from(["c1", " c2 ", "c3"]))
    return draw(st.sampled_from(["m1", " m2 ", "pharmacy", "é€", ""]))


@st.composite
def record_batches(draw):
    name = draw(st.sampled_from(sorted(SPECS)))
    spec = SPECS[name]
    columns = list(dict.fromkeys([*spec.required_columns, spec.label_column or ""]))
    columns = [c for c in columns if c]
    n = draw(st.integers(1, 4))
    records = []
    for _ in range(n):
        record = {c: _value(c, spec, draw) for c in columns}
        if draw(st.booleans()) and spec.label_column:
            record.pop(spec.label_column)
        records.append(record)
    return name, records


def _full(records: list[dict], spec):
    return validate_batch(Batch(frame=pd.DataFrame(records), source="api"), spec)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_batches())
def test_what_the_fast_path_accepts_is_typed_as_the_full_validator_types_it(case):
    name, records = case
    spec = SPECS[name]
    fast = validate_records(records, spec)
    if fast is None:
        return
    full = _full(records, spec)
    assert full.quarantined.empty, full.quarantined.to_dict("records")
    pd.testing.assert_frame_equal(fast.clean, full.clean)
    assert fast.rows_in == full.rows_in
    assert list(fast.clean_row_numbers) == list(full.clean_row_numbers)


def _clean_record(spec, i: int, time: str = "2026-03-02 08:51:19") -> dict:
    record = {spec.id_column: f"t{i}"}
    for column in spec.required_columns:
        if column == spec.time_column:
            record[column] = time
        elif column in spec.numeric_features or column in ("latitude", "longitude", "amount"):
            record[column] = 10.5 + i
        elif column != spec.id_column:
            record[column] = f"v{i}"
    return record


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize(
    "time", ["2026-03-02 08:51:19", "2026-03-02T08:51:19.123+01:00", "2026-03-02 08:51:19Z"]
)
def test_ordinary_records_take_the_fast_path_and_match(name, time):
    spec = SPECS[name]
    records = [_clean_record(spec, i, time) for i in range(3)]
    fast = validate_records(records, spec)
    assert fast is not None, "ordinary records must not need the full validator"
    pd.testing.assert_frame_equal(fast.clean, _full(records, spec).clean)


@pytest.mark.parametrize(
    "change",
    [
        {"transaction_id": ""},  # missing id: quarantined by the full validator
        {"amount": "12.5"},  # a number as text: the full validator decides
        {"timestamp": "02/03/2026 08:51"},  # not the ISO form the fast path knows
        {"card_id": None},  # no entity in sequence mode
    ],
)
def test_anything_unusual_is_left_to_the_full_validator(change):
    record = {**_clean_record(SEQUENCE_SPEC, 0), **change}
    assert validate_records([record], SEQUENCE_SPEC) is None


def test_duplicate_ids_and_mixed_zones_are_left_to_the_full_validator():
    a, b = _clean_record(SEQUENCE_SPEC, 0), _clean_record(SEQUENCE_SPEC, 1)
    assert validate_records([a, {**b, "transaction_id": "t0"}], SEQUENCE_SPEC) is None
    assert validate_records([a, {**b, "timestamp": "2026-03-02 09:00:00Z"}], SEQUENCE_SPEC) is None
