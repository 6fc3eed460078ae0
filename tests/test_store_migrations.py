"""Schema migrations on a populated store of the previous revision, on SQLite and on the
real PostgreSQL: what people and models rely on survives the upgrade."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pipelines.store import Case, Flag, Label, ResultsStore, Score, ScoringRun, User
from pipelines.store.database import HEAD_REVISION, MIGRATIONS_DIR, make_engine


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return request.getfixturevalue("postgres_url")


def _alembic(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _day(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=UTC)


def _store_at_0007(url: str) -> None:
    """A store as the previous revision left it: a run with scores and flags, a closed
    case with its label, a user, and two verdicts in the legacy ``reviews`` table."""
    engine = make_engine(url)
    with engine.begin() as connection:
        command.upgrade(_alembic(connection), "0007_lean_scores")
        connection.execute(
            sa.insert(ScoringRun.__table__).values(
                id="run-1", batch_id="b1", source="b1.csv", dataset="cards", model_name="m",
                model_version="1", threshold=2.0, status="completed", rows_in=3,
                rows_scored=3, rows_flagged=2, role="primary", started_at=_day(1),
            )
        )  # fmt: skip
        connection.execute(
            sa.insert(Score.__table__),
            [
                {"run_id": "run-1", "record_id": r, "score": s, "is_anomaly": s > 2}
                for r, s in (("a", 3.0), ("b", 2.5), ("c", 0.5))
            ],
        )
        connection.execute(
            sa.insert(Case.__table__).values(
                id=1, dataset="cards", entity_key="record:a", status="closed", verdict="fraud",
                priority=1.5, max_score=3.0, flag_count=1, version=3,
            )
        )  # fmt: skip
        for flag_id, record, score, case_id in ((1, "a", 3.0, 1), (2, "b", 2.5, None)):
            connection.execute(
                sa.insert(Flag.__table__).values(
                    id=flag_id, run_id="run-1", record_id=record, entity=f"card-{record}",
                    case_id=case_id, score=score, threshold=2.0, record={"amount": score},
                    reasons=[{"feature": "amount"}], status="open",
                )
            )  # fmt: skip
        connection.execute(
            sa.insert(Label.__table__).values(
                record_id="a", dataset="cards", verdict="fraud", source="review",
                analyst="ana", known_at=_day(5), case_id=1, flag_id=1,
            )
        )  # fmt: skip
        connection.execute(sa.insert(User.__table__).values(name="ana", role="analyst"))
        connection.execute(
            sa.text(
                "INSERT INTO reviews (flag_id, analyst, verdict, note, created_at) "
                "VALUES (1, 'old-analyst', 'confirmed', 'seen it', :a), "
                "(2, 'old-analyst', 'dismissed', NULL, :b)"
            ).bindparams(
                sa.bindparam("a", _day(3), type_=sa.DateTime(timezone=True)),
                sa.bindparam("b", _day(4), type_=sa.DateTime(timezone=True)),
            )
        )
        if url.startswith("postgresql"):  # explicit ids above: move the sequences past them
            for table in ("cases", "flags"):
                connection.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT MAX(id) FROM {table}))"
                    )
                )
    engine.dispose()


def test_dropping_the_legacy_reviews_table_keeps_every_verdict(url):
    _store_at_0007(url)
    store = ResultsStore(url)  # upgrades to the head, as every command does

    assert store.db.schema_revision() == HEAD_REVISION
    assert "reviews" not in sa.inspect(store.engine).get_table_names()
    run = store.get_run("run-1")
    assert (run.status, run.rows_flagged) == ("completed", 2)
    assert store.scores_frame("run-1").set_index("record_id")["score"].to_dict() == {
        "a": 3.0,
        "b": 2.5,
        "c": 0.5,
    }
    assert [u.name for u in store.list_users()] == ["ana"]
    case = store.get_case(1)
    assert (case["status"], case["verdict"], case["version"]) == ("closed", "fraud", 3)
    assert [f["record_id"] for f in case["flags"]] == ["a"]

    labels = store.label_rows().sort_values(["record_id", "known_at"])
    assert labels[["record_id", "verdict", "source", "analyst"]].values.tolist() == [
        ["a", "fraud", "review", "old-analyst"],  # the legacy review, known on day 3
        ["a", "fraud", "review", "ana"],
        ["b", "not_fraud", "review", "old-analyst"],
    ]
    legacy_b = labels[labels["record_id"] == "b"].iloc[0]
    assert legacy_b["known_at"] == _day(4)
    assert (legacy_b["dataset"], legacy_b["model_name"], legacy_b["model_version"]) == (
        "cards",
        "m",
        "1",
    )
    assert (legacy_b["score"], legacy_b["threshold"], legacy_b["flag_id"]) == (2.5, 2.0, 2)
    known = store.known_labels(dataset="cards")
    assert dict(zip(known["record_id"], known["y"], strict=True)) == {"a": 1, "b": 0}

    # The store works as usual after the upgrade: a new verdict on a new case.
    with store.session() as session:
        store.attach_flags_to_cases(session, "run-1", group_by_entity=False)
    open_case = store.queue_page().items[0]
    assert open_case["record_ids"] == ["b"]
    store.give_verdict(open_case["id"], "ana", "fraud")
    assert store.latest_verdicts(["b"]).to_dict() == {"b": 1}


def test_the_downgrade_recreates_the_legacy_table_and_keeps_the_labels(url):
    _store_at_0007(url)
    store = ResultsStore(url)
    with store.engine.begin() as connection:
        command.downgrade(_alembic(connection), "0007_lean_scores")
    inspector = sa.inspect(store.engine)
    assert "reviews" in inspector.get_table_names()
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT COUNT(*) FROM reviews")).scalar() == 0
    assert len(store.label_rows()) == 3
    store.migrate()  # and up again
    assert store.db.schema_revision() == HEAD_REVISION
    assert len(store.label_rows()) == 3


def _label_index_where(engine, name: str) -> str | None:
    """The WHERE clause of a labels index, as the database keeps it (None: a full index)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            definition = connection.execute(
                sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}
            ).scalar_one()
        else:
            definition = connection.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n"),
                {"n": name},
            ).scalar_one()
    _, _, where = definition.partition(" WHERE ")
    return where or None


def test_label_case_and_flag_indexes_are_partial_and_keep_their_lookups(url):
    """Imported label rows have no case or flag: the upgrade makes both indexes partial,
    the labels already there stay, and a case's labels are still found by the index."""
    _store_at_0007(url)
    store = ResultsStore(url)  # migrates to the head
    for name in ("ix_labels_case_id", "ix_labels_flag_id"):
        assert "IS NOT NULL" in _label_index_where(store.engine, name)
    with store.engine.connect() as connection:
        found = connection.execute(sa.select(Label.record_id).where(Label.case_id == 1)).all()
    assert found and {r.record_id for r in found} == {"a"}
    assert len(store.label_rows()) == 3
    with store.engine.begin() as connection:
        command.downgrade(_alembic(connection), "0008_drop_legacy_reviews")
    for name in ("ix_labels_case_id", "ix_labels_flag_id"):
        assert _label_index_where(store.engine, name) is None
