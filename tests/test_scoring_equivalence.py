"""The vectorised flag snapshots and reasons give what the per-row code gave.

The per-row versions below are the implementations the scoring path used before it was
vectorised (issue 13); they stay here as the reference the fast path must match, field
for field, on tabular chunks and on sequence chunks (context features in the snapshot).
The reasons compared are those of a model whose encoder keeps no training summaries (a
model trained before them): the reasons against normal are tested in test_reasons.py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detectors import VAEDetector
from detectors.context import PREFIX as CONTEXT_PREFIX
from detectors.context import describe_context
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.demo_sequences import SEQUENCE_SPEC, generate_card_sequences
from pipelines.intake.ingest import Batch, validate_batch
from pipelines.modeling.bundle import ScoringBundle, _format_value, _plain
from pipelines.modeling.training import TrainConfig, fit_detector, split_for_training
from pipelines.scoring.flags import bound_reasons, bound_record, flag_records
from tests.conftest import FAST_VAE


def without_summaries(detector):
    """The detector as a model trained before encoders kept training summaries."""
    for column in detector.encoder_.columns_:
        column.pop("summary", None)
    return detector


def reasons_per_row(bundle: ScoringBundle, features, contributions, scores) -> list[list[dict]]:
    values = contributions.to_numpy(dtype="float64")
    names = list(contributions.columns)
    top = np.argsort(-values, axis=1)[:, : bundle.max_reasons]
    totals = values.sum(axis=1)
    context_config = bundle.spec.context
    out = []
    for row, order in enumerate(top):
        reasons = []
        for j in order:
            contribution = float(values[row, j])
            if contribution <= 0:
                continue
            name = names[j]
            value = features.iloc[row][name] if name in features.columns else None
            share = contribution / totals[row] if totals[row] > 0 else 0.0
            described = None
            if context_config is not None and name.startswith(CONTEXT_PREFIX):
                described = describe_context(name, features.iloc[row], context_config)
            what = described or f"{name} = {_format_value(value)}"
            beyond = beyond_range_per_row(bundle, name, value)
            if beyond:
                what += f", {beyond}"
            reasons.append(
                {
                    "feature": name,
                    "value": _plain(value),
                    "contribution": round(contribution, 6),
                    "share": round(share, 4),
                    "text": f"{what} ({share:.0%} of the anomaly score)",
                }
            )
        out.append(reasons)
    return out


def beyond_range_per_row(bundle: ScoringBundle, feature: str, value) -> str | None:
    encoder = getattr(bundle.detector, "encoder_", None)
    number = _plain(value)
    if encoder is None or not isinstance(number, int | float):
        return None
    for column in encoder.columns_:
        if column["name"] == feature and column.get("range"):
            low, high = column["range"]
            if number > high:
                return f"above every normal value seen in training (max {high:,.2f})"
            if number < low:
                return f"below every normal value seen in training (min {low:,.2f})"
    return None


def flags_per_row(chunk, snapshot, result, bundle, max_field_chars) -> list[dict]:
    flagged = np.flatnonzero(result["is_anomaly"].to_numpy())
    entity_column = bundle.spec.entity_column
    out = []
    for i in flagged:
        record = chunk.iloc[i]
        values = json.loads(record.to_json(date_format="iso"))
        values.pop(bundle.spec.label_column or "", None)
        if snapshot is not chunk:
            extra = snapshot.iloc[i].drop(labels=list(record.index), errors="ignore")
            values.update(json.loads(extra.to_json(date_format="iso")))
        out.append(
            {
                "record_id": str(record[bundle.spec.id_column]),
                "entity": str(record[entity_column]) if entity_column else None,
                "score": float(result["score"].iloc[i]),
                "threshold": bundle.threshold,
                "record": bound_record(values, max_field_chars),
                "reasons": bound_reasons(result["reasons"].iloc[i], max_field_chars),
            }
        )
    return out


def _assert_reasons_match(bundle: ScoringBundle, features: pd.DataFrame, model_input, **kw):
    scored = bundle.score_prepared(bundle.prepare(features, **kw))
    flagged = np.flatnonzero(scored["is_anomaly"].to_numpy())
    assert len(flagged) >= 5, "the check needs flagged rows"
    subset = bundle.prepare(features, **kw).features.iloc[flagged]
    contributions = model_input(subset)
    fast = bundle._reasons(subset, contributions, scored["score"].to_numpy()[flagged])
    slow = reasons_per_row(bundle, subset, contributions, scored["score"].to_numpy()[flagged])
    assert fast == slow
    return scored


@pytest.fixture(scope="module")
def tabular_bundle() -> ScoringBundle:
    train = generate_transactions(800, n_anomalies=0, seed=1)
    detector = VAEDetector(
        **FAST_VAE,
        target_fpr=0.05,
        categorical_features=DEMO_SPEC.categorical_features,
        range_features=["amount"],
    )
    detector.fit(train[DEMO_SPEC.feature_columns])
    return ScoringBundle(DEMO_SPEC, without_summaries(detector))


def test_tabular_flags_and_reasons_match_the_per_row_code(tabular_bundle):
    frame = generate_transactions(600, n_anomalies=30, seed=4).astype(str)
    frame.loc[3, "amount"] = ""  # missing: null in the snapshot
    frame.loc[5, "merchant_category"] = "x" * 5000  # a long text is bounded the same way
    frame.loc[5, "amount"] = "25000"  # and flagged (beyond the training range)
    clean = validate_batch(Batch(frame=frame, source="t.csv"), DEMO_SPEC).clean
    detector = tabular_bundle.detector
    scored = _assert_reasons_match(
        tabular_bundle, clean, lambda s: detector.explain(s[DEMO_SPEC.feature_columns])
    )
    fast = flag_records(clean, clean, scored, tabular_bundle, 1000)
    assert fast == flags_per_row(clean, clean, scored, tabular_bundle, 1000)
    assert any("_truncated" in f["record"] for f in fast)
    assert any("above every normal value" in r["text"] for f in fast for r in f["reasons"])


def test_sequence_flags_with_context_snapshot_match_the_per_row_code():
    records = generate_card_sequences(n_cards=30, days=14, seed=5)
    validated = validate_batch(Batch(frame=records.astype(str), source="c.csv"), SEQUENCE_SPEC)
    split = split_for_training(validated.clean, SEQUENCE_SPEC, evaluation_fraction=0.3, seed=0)
    config = TrainConfig(detectors=["vae"], vae={**FAST_VAE, "target_fpr": 0.05})
    detector = without_summaries(fit_detector("vae", SEQUENCE_SPEC, split, config))
    bundle = ScoringBundle(SEQUENCE_SPEC, detector)
    clean = validated.clean
    prepared = bundle.prepare(clean)
    scored = bundle.score_prepared(prepared)
    flagged = np.flatnonzero(scored["is_anomaly"].to_numpy())
    assert len(flagged) >= 5
    subset = prepared.features.iloc[flagged]
    model_input = subset[list(SEQUENCE_SPEC.model_feature_columns)]
    contributions = bundle.detector.explain(model_input)
    scores = scored["score"].to_numpy()[flagged]
    assert bundle._reasons(subset, contributions, scores) == reasons_per_row(
        bundle, subset, contributions, scores
    )
    fast = flag_records(clean, prepared.features, scored, bundle, 1000)
    assert fast == flags_per_row(clean, prepared.features, scored, bundle, 1000)
    assert any(k.startswith(CONTEXT_PREFIX) for k in fast[0]["record"])


def test_a_parquet_file_streamed_scores_and_flags_what_its_csv_does(tabular_bundle, tmp_path):
    """The same rows as Parquet (typed columns, Arrow strings) and as CSV (text): the
    streamed runs store the same scores, flags, snapshots and reasons, chunk sizes apart.
    The guard of the fast paths from a file to the store (category codes, Arrow reads)."""
    from pipelines.intake.stream import open_stream
    from pipelines.modeling.registry import ModelRef
    from pipelines.scoring.batch import score_stream
    from pipelines.scoring.run import RunRequest
    from pipelines.store import ResultsStore

    frame = generate_transactions(3000, n_anomalies=90, seed=7)
    frame.loc[11, "merchant_category"] = None  # a missing category: the unknown bucket
    frame.loc[12, "merchant_category"] = "never seen"
    frame.to_parquet(tmp_path / "batch.parquet", index=False)
    frame.to_csv(tmp_path / "batch.csv", index=False)
    stored = []
    for name, chunk_size in (("batch.csv", 3000), ("batch.parquet", 700)):
        store = ResultsStore(f"sqlite:///{tmp_path / name}.db")
        run = RunRequest(model=ModelRef("m", "1", None))
        report = score_stream(store, tabular_bundle, open_stream(tmp_path / name, chunk_size), run)
        scores = store.scores_frame(report.run_id).sort_values("record_id")
        flags = {
            f.record_id: (f.score, json.dumps(f.record, sort_keys=True), f.reasons)
            for f in store.list_flags(report.run_id, limit=10_000)
        }
        stored.append((scores.reset_index(drop=True), flags))
    (csv_scores, csv_flags), (parquet_scores, parquet_flags) = stored
    assert len(csv_scores) == 3000 and csv_flags, "the file must be scored and flag rows"
    pd.testing.assert_frame_equal(csv_scores, parquet_scores, check_exact=False, rtol=1e-9)
    assert csv_flags.keys() == parquet_flags.keys()
    for record_id, (score, snapshot, reasons) in csv_flags.items():
        other_score, other_snapshot, other_reasons = parquet_flags[record_id]
        assert other_score == pytest.approx(score, rel=1e-9) and other_snapshot == snapshot
        # A chunk's rows are explained in one product: another chunk size moves the
        # last float32 digits of a contribution, never the reason itself.
        assert [(r["feature"], r["value"], r["text"]) for r in other_reasons] == [
            (r["feature"], r["value"], r["text"]) for r in reasons
        ]
        assert [r["contribution"] for r in other_reasons] == pytest.approx(
            [r["contribution"] for r in reasons], rel=1e-5
        )
