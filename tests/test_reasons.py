"""Reasons against normal: every reason says what normal looks like (the training
distribution, or in sequence mode the entity's own history), is structured, ranked for
the analyst, stored with the flag, and safe to quote; a model trained before encoders
kept summaries still scores with the sentences it gave."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from detectors import VAEDetector
from detectors.context import ContextConfig, context_reading
from detectors.encoding import TabularEncoder
from detectors.reasons import LEVELS, rank, reason
from pipelines.accounts import hash_password
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.modeling.bundle import ScoringBundle
from pipelines.scoring.flags import flag_records
from pipelines.settings import VigilSettings
from pipelines.store import ResultsStore
from review import create_app
from tests.conftest import FAST_VAE
from tests.review_fixtures import add_snapshot_run, case_of

RLO = "\u202e"
KEYS = {"feature", "value", "contribution", "share", "observed", "normal", "reference", "kind"}


@pytest.fixture(scope="module")
def tabular_bundle() -> ScoringBundle:
    train = generate_transactions(600, n_anomalies=0, seed=1)
    detector = VAEDetector(
        **FAST_VAE,
        target_fpr=0.05,
        categorical_features=DEMO_SPEC.categorical_features,
        range_features=["amount"],
    )
    return ScoringBundle(DEMO_SPEC, detector.fit(train[DEMO_SPEC.feature_columns]))


def _odd_payments() -> pd.DataFrame:
    frame = generate_transactions(200, n_anomalies=0, seed=4)
    frame.loc[0, ["country", "amount"]] = [f"A{RLO}E", 25_000.0]  # never seen; beyond range
    frame.loc[1, "country"] = "AE"
    return frame


def test_the_encoder_keeps_summaries_of_columns_never_rows():
    rows = 2000
    frame = pd.DataFrame(
        {
            "amount": np.linspace(1.0, 100.0, rows),
            "country": ["BE"] * (rows - 1) + ["RARE-COUNTRY"],  # one row: under 0.1%
        }
    )
    frame.loc[7, "amount"] = 1234.567  # a record's own value
    encoder = TabularEncoder().fit(frame)
    saved = json.dumps(encoder.to_dict())
    amount, country = (c["summary"] for c in encoder.to_dict()["columns"])
    assert amount["rows"] == rows and set(amount["percentiles"]) >= {"1", "50", "99.9"}
    assert country["shares"] == {"BE": pytest.approx(0.9995)}
    assert country["other"] == pytest.approx(0.0005)  # the rare value, bucketed
    assert "RARE-COUNTRY" not in saved and "1234.567" not in saved
    assert TabularEncoder.from_dict(encoder.to_dict()).columns_[1]["summary"] == country


def test_tabular_reasons_name_the_training_normal_first_the_new_ones(tabular_bundle):
    result = tabular_bundle.score(_odd_payments())
    planted = result["reasons"].iloc[0]
    assert KEYS <= set(planted[0]) and planted[0]["level"] == "new"
    texts = {r["feature"]: r["text"] for r in planted}
    assert texts["amount"].startswith("amount 25,000: above every normal value seen in training")
    # The bidi override is quoted, never obeyed.
    assert texts["country"].startswith("country A[U+202E]E: never seen in training")
    flagged = [r for rs in result.loc[result["is_anomaly"], "reasons"] for r in rs]
    assert all(RLO not in r["text"] for r in flagged)
    assert all(re.search(r"training|usual", r["text"]) for r in flagged), flagged
    for reasons in result.loc[result["is_anomaly"], "reasons"]:
        levels = [LEVELS.index(r["level"]) for r in reasons]
        assert levels == sorted(levels)  # new, strong, unusual, mild


def test_a_flag_keeps_the_reference_with_its_sentence(tabular_bundle):
    frame = _odd_payments()
    result = tabular_bundle.score(frame)
    flags = flag_records(frame, frame, result, tabular_bundle, 1000)
    amount = next(r for r in flags[0]["reasons"] if r["feature"] == "amount")
    assert amount["kind"] == "beyond_range" and amount["reference"]["source"] == "training"
    assert f"max {amount['reference']['max']:,.2f}" in amount["text"]
    json.dumps(flags)  # stored as JSON with the flag


def test_a_model_saved_without_summaries_scores_with_the_old_sentences(tabular_bundle, tmp_path):
    folder = tabular_bundle.save(tmp_path / "bundle")
    config_file = folder / "detector" / "config.json"
    config = json.loads(config_file.read_text())
    for column in config["encoder"]["columns"]:
        del column["summary"]
    config_file.write_text(json.dumps(config))
    old = ScoringBundle.load(folder, numpy_forward=False)
    result = old.score(_odd_payments())
    reasons = result["reasons"].iloc[0]
    assert result["is_anomaly"].iloc[0] and "level" not in reasons[0]
    assert any(r["text"].startswith("amount = 25,000, above every normal value") for r in reasons)
    assert all(re.match(r"\w+ = .* \(\d+% of the anomaly score\)$", r["text"]) for r in reasons)


def test_sequence_reasons_name_the_entity_history():
    config = ContextConfig(
        entity_column="card_id",
        time_column="timestamp",
        amount_column="amount",
        novelty_columns=["country"],
        robust_baseline=True,
        event_noun="payment",
        entity_noun="card",
    )
    record = {
        "amount": 4200.0,
        "country": "AE",
        "ctx_history_count": 40.0,
        "ctx_amount_median_ratio": 12.0,
        "ctx_new_country": 1.0,
        "ctx_count_10min": 7.0,
    }
    summaries = {
        "ctx_count_10min": {"rows": 900, "percentiles": {"95": 1.0, "99": 2.0, "99.9": 2.0}},
        "ctx_new_country": {"rows": 900, "mean": 0.02, "percentiles": {"50": 0.0}},
    }

    def said(feature: str, share: float = 0.3) -> dict:
        reading = context_reading(feature, record, config, summaries)
        return reason(feature, record.get(feature), share, share, reading)

    amount, country, burst = said("amount", 0.5), said("country", 0.2), said("ctx_count_10min")
    assert amount["text"] == (
        "amount 4,200: 12.0× this card's median over 30 days (350.00) (50% of the anomaly score)"
    )
    assert amount["reference"] == {
        "source": "history",
        "ratio": 12.0,
        "history": "30D",
        "median": 350.0,
    }
    assert country["text"].startswith(
        "country AE: new for this card (no earlier payment with this country in 30 days)"
    )
    assert burst["text"].startswith(
        "7 payments in 10 minutes: usually ≤ 2 (99.9% of training payments)"
    )
    ranked = rank([amount, burst, country])
    assert [r["feature"] for r in ranked] == ["country", "amount", "ctx_count_10min"]


def test_a_sequence_bundle_says_each_reason_against_the_card_or_training():
    from pipelines.demo_sequences import SEQUENCE_SPEC, generate_card_sequences
    from pipelines.intake.ingest import Batch, validate_batch
    from pipelines.modeling.training import TrainConfig, fit_detector, split_for_training

    records = generate_card_sequences(n_cards=20, days=10, seed=5).astype(str)
    clean = validate_batch(Batch(frame=records, source="c.csv"), SEQUENCE_SPEC).clean
    split = split_for_training(clean, SEQUENCE_SPEC, evaluation_fraction=0.3, seed=0)
    config = TrainConfig(detectors=["vae"], vae={**FAST_VAE, "target_fpr": 0.05})
    bundle = ScoringBundle(SEQUENCE_SPEC, fit_detector("vae", SEQUENCE_SPEC, split, config))
    result = bundle.score(clean)
    reasons = [r for rs in result.loc[result["is_anomaly"], "reasons"] for r in rs]
    assert reasons and all(r["level"] in LEVELS for r in reasons)
    sources = {r["reference"].get("source") for r in reasons if r["reference"]}
    assert "history" in sources  # the card's own past, where the context holds it
    assert any("this card's" in r["text"] for r in reasons)
    assert any("of training payments" in r["text"] for r in reasons)


def test_the_case_page_shows_the_stored_sentence_with_the_value_isolated(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'review.db'}")
    store.add_user("ana", "analyst", hash_password("pw-for-tests-1"), actor="test")
    stored = {
        "feature": "country",
        "value": f"A{RLO}E",
        "contribution": 2.0,
        "share": 0.9,
        "observed": "A[U+202E]E",
        "normal": "0.01% of training payments",
        "reference": {"source": "training", "share": 0.0001, "rows": 90000},
        "kind": "training_share",
        "level": "unusual",
        "text": "country A[U+202E]E: 0.01% of training payments (90% of the anomaly score)",
    }
    flag = {
        "record_id": "p1",
        "entity": "card1",
        "score": 3.0,
        "record": {"transaction_id": "p1", "card_id": "card1", "country": f"A{RLO}E"},
        "reasons": [stored],
    }
    add_snapshot_run(store, batch_id="b1", flags=[flag])
    client = TestClient(create_app(store, VigilSettings(home=tmp_path)), follow_redirects=False)
    login = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    client.post(
        "/login",
        data={"username": "ana", "password": "pw-for-tests-1", "csrf_token": csrf, "next": "/"},
    )
    page = client.get(f"/cases/{case_of(store, 'p1')}").text
    assert RLO not in page
    assert '<bdi>country <bdi class="observed">A[U+202E]E</bdi>: 0.01% of training payments' in page
    assert ">unusual</span>" in page
