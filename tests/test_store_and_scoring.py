"""Results store (Alembic schema, idempotent runs) and chunked scoring, on SQLite and on
the real PostgreSQL (the production path)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.intake.ingest import Batch, validate_batch
from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.registry import ModelRef
from pipelines.scoring.batch import score_batch
from pipelines.scoring.export import write_scores_file
from pipelines.scoring.run import RunRequest
from pipelines.store import Flag, QuarantinedRow, ResultsStore, Score, ScoringRun
from tests.conftest import demo_vae_bundle


@pytest.fixture(scope="module")
def bundle() -> ScoringBundle:
    return demo_vae_bundle(target_fpr=0.02)


@pytest.fixture
def batch() -> Batch:
    frame = generate_transactions(600, n_anomalies=12, seed=2).astype(str)
    frame.loc[5, "amount"] = "not-a-number"
    return Batch(frame=frame, source="batch.csv", first_row_number=2, row_label="line")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> ResultsStore:
    if request.param == "sqlite":
        return ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    return ResultsStore(request.getfixturevalue("postgres_url"))


def _score(store, bundle, batch, model_version="1", model_alias="champion"):
    validated = validate_batch(batch, bundle.spec)
    return score_batch(
        store,
        bundle,
        batch,
        validated,
        RunRequest(model=ModelRef("demo-vae", model_version, model_alias)),
        chunk_size=128,
    )


def test_migrations_create_the_schema(store):
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {
        "scoring_runs",
        "scores",
        "flags",
        "quarantine",
        "labels",
        "audit_log",
        "alembic_version",
    } <= tables
    store.migrate()  # second time is a no-op


def test_head_revision_is_alembics_head(tmp_path):
    """migrate() skips Alembic when the store is at HEAD_REVISION: it must be the head."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from pipelines.store.database import HEAD_REVISION, MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]
    store = ResultsStore(f"sqlite:///{tmp_path / 'fresh.db'}")  # empty file: full upgrade
    assert store.db.schema_revision() == HEAD_REVISION
    pk = sa.inspect(store.engine).get_pk_constraint("scores")
    assert pk["constrained_columns"] == ["run_id", "record_id"]


def test_migration_0007_keeps_the_scores_of_an_older_store(tmp_path):
    """A store at 0006 with scores in it: 0007 keeps every row, keyed by (run, record)."""
    from alembic import command
    from alembic.config import Config

    from pipelines.store.database import MIGRATIONS_DIR, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006_operations")
        connection.execute(
            sa.text(
                "INSERT INTO scoring_runs (id, batch_id, source, dataset, model_name, "
                "model_version, threshold, status, rows_in, rows_scored, rows_quarantined, "
                "rows_flagged, started_at) VALUES ('r1', 'b', 's', 'd', 'm', '1', 1.0, "
                "'completed', 2, 2, 0, 1, '2026-11-30 00:00:00')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO scores (run_id, record_id, score, is_anomaly) "
                "VALUES ('r1', 'a', 0.25, 0), ('r1', 'b', 3.5, 1)"
            )
        )
    store = ResultsStore(f"sqlite:///{tmp_path / 'old.db'}")
    rows = store.scores_frame("r1").sort_values("record_id")
    assert rows["record_id"].tolist() == ["a", "b"]
    assert rows["score"].tolist() == [0.25, 3.5]
    assert rows["is_anomaly"].astype(bool).tolist() == [False, True]
    assert sa.inspect(store.engine).get_foreign_keys("scores") == []


def test_scoring_writes_every_row_once_and_rerun_adds_nothing(store, bundle, batch, tmp_path):
    first = _score(store, bundle, batch)
    assert not first.already_scored
    assert first.rows_in == 600
    assert first.rows_scored + first.rows_quarantined == first.rows_in
    assert first.rows_quarantined == 1
    assert 0 < first.rows_flagged < 600
    counts = {t: store.count(t, first.run_id) for t in (Score, Flag, QuarantinedRow)}
    assert counts[Score] == 599 and counts[QuarantinedRow] == 1

    again = _score(store, bundle, batch)
    assert again.already_scored and again.run_id == first.run_id
    assert {t: store.count(t, first.run_id) for t in (Score, Flag, QuarantinedRow)} == counts
    assert store.count(ScoringRun) == 1

    flag = store.list_flags(run_id=first.run_id, limit=1)[0]
    assert flag.reasons and flag.reasons[0]["feature"] in DEMO_SPEC.feature_columns
    assert flag.record["transaction_id"] == flag.record_id  # snapshot of the record

    out = write_scores_file(store, first.run_id, tmp_path / "scores.parquet")
    scores = pd.read_parquet(out)
    assert len(scores) == 600 and scores["record_id"].is_unique
    assert (scores["status"].str.startswith("quarantined")).sum() == 1


def test_failed_run_is_cleared_and_redone_without_duplicates(store, bundle, batch, monkeypatch):
    calls = {"n": 0}
    original = ScoringBundle.score

    def flaky(self, frame, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker died mid-batch")
        return original(self, frame, **kwargs)

    monkeypatch.setattr(ScoringBundle, "score", flaky)
    with pytest.raises(RuntimeError, match="worker died"):
        _score(store, bundle, batch)
    run = store.list_runs()[0]
    assert run.status == "failed" and "worker died" in run.error
    assert store.count(Score, run.id) == 256  # two chunks landed before the crash

    monkeypatch.setattr(ScoringBundle, "score", original)
    redone = _score(store, bundle, batch)
    assert redone.run_id == run.id and not redone.already_scored
    assert store.count(Score, run.id) == 599
    assert store.count(QuarantinedRow, run.id) == 1
    assert store.get_run(run.id).status == "completed"


def test_new_model_version_scores_the_batch_again(store, bundle, batch):
    first = _score(store, bundle, batch)
    second = _score(store, bundle, batch, model_version="2", model_alias="challenger")
    assert second.run_id != first.run_id and not second.already_scored
    assert store.count(ScoringRun) == 2


def test_bundle_scores_reasons_and_round_trips(bundle, tmp_path):
    frame = generate_transactions(300, n_anomalies=9, seed=3)
    result = bundle.score(frame)
    assert list(result.columns) == ["score", "is_anomaly", "reasons"]
    flagged = result[result["is_anomaly"]]
    assert len(flagged) > 0
    reasons = flagged["reasons"].iloc[0]
    assert 1 <= len(reasons) <= 3
    assert {"feature", "value", "contribution", "share", "text"} <= set(reasons[0])
    assert all(r == [] for r in result.loc[~result["is_anomaly"], "reasons"])
    json.dumps(reasons)  # reasons must be storable as JSON

    saved = bundle.save(tmp_path / "bundle")
    loaded = ScoringBundle.load(saved, numpy_forward=False)
    np.testing.assert_array_equal(loaded.score(frame)["score"], result["score"])
    # Its numpy forward (the default for a VAE): equal within float32 rounding.
    fast = ScoringBundle.load(saved, numpy_forward=True).score(frame)
    np.testing.assert_allclose(fast["score"], result["score"], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['amount'\]"):
        bundle.score(frame.drop(columns="amount"))
