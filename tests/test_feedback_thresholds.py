"""Thresholds from verdicts (issue 9): evidence known before t only, refusal below the
minimum evidence, budget arithmetic. The registry round trip is in test_feedback_flows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from pipelines.feedback.labels import dedupe_key
from pipelines.feedback.thresholds import NotEnoughEvidence, parse_budget, plan_threshold
from pipelines.store import ResultsStore
from tests.review_fixtures import add_flagged_run


def _labels(store: ResultsStore, verdicts: dict[str, str], known_at: datetime) -> None:
    rows = pd.DataFrame(
        [
            {
                "record_id": r,
                "verdict": v,
                "source": "import",
                "known_at": known_at,
                "dedupe_key": dedupe_key(r, v, known_at.isoformat(), "import", None),
            }
            for r, v in verdicts.items()
        ]
    )
    store.add_label_rows(rows, actor="test", source_name="test")


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    # 40 flags scored 1.1 .. 5.0; the ones above 3 are frauds.
    flags = [(f"r{i}", None, 1.0 + 0.1 * i) for i in range(1, 41)]
    add_flagged_run(store, batch_id="b1", flags=flags, unflagged=60)
    return store


def test_precision_threshold_reads_only_labels_known_before_t(store):
    now = datetime.now(UTC)
    _labels(
        store,
        {f"r{i}": ("fraud" if 1.0 + 0.1 * i > 3.0 else "not_fraud") for i in range(1, 41)},
        now - timedelta(days=1),
    )
    # Known only later: must not move a threshold set now.
    _labels(store, {f"r{i}": "fraud" for i in range(1, 11)}, now + timedelta(days=1))
    plan = plan_threshold(
        store,
        model_name="demo-vae",
        model_version="1",
        current=1.0,
        mode="precision",
        target=0.95,
        now=now,
        min_reviewed=30,
    )
    assert plan.evidence["reviewed_records"] == 40
    assert plan.evidence["frauds"] == 20
    assert 2.9 <= plan.after < 3.1
    assert plan.evidence["precision"] >= 0.95 and plan.evidence["precision_before"] == 0.5

    later = plan_threshold(
        store,
        model_name="demo-vae",
        model_version="1",
        current=1.0,
        mode="precision",
        target=0.95,
        now=now + timedelta(days=2),
        min_reviewed=30,
    )
    assert later.evidence["frauds"] == 30  # the later verdicts count once they are known
    assert later.evidence["precision_before"] == 0.75


def test_too_little_evidence_is_refused_with_its_size(store):
    now = datetime.now(UTC)
    _labels(store, {"r1": "not_fraud", "r40": "fraud"}, now - timedelta(days=1))
    with pytest.raises(NotEnoughEvidence, match="2 labelled scored records \\(1 fraud\\)"):
        plan_threshold(
            store,
            model_name="demo-vae",
            model_version="1",
            current=1.0,
            mode="precision",
            target=0.9,
            now=now,
            min_reviewed=30,
        )
    with pytest.raises(NotEnoughEvidence, match="100 scored records over 1 day"):
        plan_threshold(
            store,
            model_name="demo-vae",
            model_version="1",
            current=1.0,
            mode="budget",
            target=10,
            now=now,
            min_scored=1000,
        )


def test_budget_flags_the_requested_number_per_day(store):
    plan = plan_threshold(
        store,
        model_name="demo-vae",
        model_version="1",
        current=1.0,
        mode="budget",
        target=10,
        min_scored=50,
    )
    assert plan.evidence["days"] == 1
    assert plan.evidence["flags_per_day"] == 10
    assert plan.evidence["flags_per_day_before"] == 40
    fpr = plan_threshold(
        store,
        model_name="demo-vae",
        model_version="1",
        current=1.0,
        mode="fpr",
        target=0.1,
        min_scored=50,
    )
    assert fpr.evidence["normal_records"] == 100 and fpr.evidence["fpr"] <= 0.1
    assert parse_budget("50/day") == 50.0 and parse_budget(" 7 ") == 7.0
