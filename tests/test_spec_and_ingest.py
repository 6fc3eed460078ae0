"""Data-set specs, loaders (CSV, Parquet, SQL) and validation with quarantine."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from detectors.context import ContextConfig
from pipelines.intake.ingest import DataSourceError, SeenIds, read_batch, validate_batch
from pipelines.intake.spec import DatasetSpec, SpecError, infer_spec, load_spec

SPEC = DatasetSpec(
    name="tx",
    id_column="id",
    label_column="label",
    numeric_features=["amount", "hour"],
    categorical_features=["country"],
)


def test_the_context_section_is_the_detectors_config(tmp_path):
    """The spec's context section is a ContextConfig: it reads the spec's entity, time and
    secondary columns, is written without them (the file reads as before), and a section
    built in Python with its own columns hands them to the spec."""
    yaml_text = (
        "name: cards\nid_column: id\nnumeric_features: [amount]\nentity_column: card\n"
        "time_column: t\nsecondary_entity_columns: [shop]\n"
        "context:\n  amount_column: amount\n  history: 7D\n  windows: [1h, 1D]\n"
    )
    (tmp_path / "cards.yaml").write_text(yaml_text)
    spec = load_spec(tmp_path / "cards.yaml")
    assert isinstance(spec.context, ContextConfig)
    assert (spec.context.entity_column, spec.context.time_column) == ("card", "t")
    assert spec.context.secondary_entity_columns == ["shop"]
    assert "ctx_shop_count_1d" in spec.model_feature_columns
    written = spec.model_dump()["context"]
    assert not {"entity_column", "time_column", "secondary_entity_columns"} & set(written)
    assert load_spec(spec.save(tmp_path / "again.yaml")) == spec
    built = DatasetSpec(
        name="cards", id_column="id", numeric_features=["amount"],
        context=ContextConfig(
            entity_column="card", time_column="t", secondary_entity_columns=["shop"],
            amount_column="amount", history="7D", windows=["1h", "1D"],
        ),
    )  # fmt: skip
    assert built == spec
    with pytest.raises(ValueError, match="context.entity_column 'other' differs"):
        DatasetSpec(
            name="x", id_column="id", numeric_features=["amount"], entity_column="card",
            time_column="t", context=ContextConfig(entity_column="other", time_column="t"),
        )  # fmt: skip
    (tmp_path / "bad.yaml").write_text(yaml_text.replace("history: 7D", "history: 1h"))
    with pytest.raises(SpecError, match=r"bad\.yaml: context: a window .* longer than history"):
        load_spec(tmp_path / "bad.yaml")


def _write_csv(path, text: str):
    path.write_text(text)
    return path


def test_spec_round_trip_and_errors_name_the_file(tmp_path):
    path = SPEC.save(tmp_path / "tx.yaml")
    assert load_spec(path) == SPEC

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: tx\nid_column: id\nnumeric_features: []\n")
    with pytest.raises(SpecError, match=r"bad\.yaml.*no numeric_features"):
        load_spec(bad)
    with pytest.raises(SpecError, match="missing.yaml: spec file not found"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="must not also be a feature"):
        DatasetSpec(name="x", id_column="id", label_column="amount", numeric_features=["amount"])


def test_infer_spec_proposes_types():
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "amount": ["1.5", "2", "3.25", ""],
            "n": [1, 2, 3, 4],
            "country": ["BE", "NL", "BE", "FR"],
            "label": [0, 0, 1, 0],
            "free_text": [f"note {i}" for i in range(4)],
        }
    )
    spec = infer_spec(
        frame, name="x", id_column="id", label_column="label", max_categorical_cardinality=3
    )
    assert spec.numeric_features == ["amount", "n"]
    assert spec.categorical_features == ["country"]
    assert "free_text" not in spec.feature_columns
    with pytest.raises(SpecError, match="--id-col 'nope' is not a column"):
        infer_spec(frame, name="x", id_column="nope")


def test_bad_rows_are_quarantined_with_line_column_and_reason(tmp_path):
    path = _write_csv(
        tmp_path / "batch.csv",
        "id,amount,hour,country,label\n"
        "a,10.5,3,BE,0\n"
        "b,12;50,4,BE,0\n"  # line 3: bad number
        ",11,5,NL,0\n"  # line 4: missing id
        "c,,6,,1\n"  # line 5: empty numeric and categorical are fine (imputed)
        "a,9,7,BE,0\n"  # line 6: duplicate id
        "d,1,2,BE,7\n",  # line 7: bad label
    )
    batch = read_batch(path)
    result = validate_batch(batch, SPEC)
    assert result.rows_in == 6
    assert len(result.clean) + result.rows_quarantined == result.rows_in
    assert list(result.clean["id"]) == ["a", "c"]
    q = result.quarantined.set_index("row_number")
    assert q.loc[3, "column"] == "amount" and q.loc[3, "value"] == "12;50"
    assert "not a number" in q.loc[3, "reason"]
    assert q.loc[4, "reason"] == "missing id"
    assert "duplicate id 'a'" in q.loc[6, "reason"] and "first at line 2" in q.loc[6, "reason"]
    assert q.loc[7, "column"] == "label"
    assert json.loads(q.loc[3, "raw"])["amount"] == "12;50"  # the raw row is kept whole
    summary = result.error_summary(str(path))
    assert summary[0].startswith(f"{path} 3, column amount")
    assert pd.isna(result.clean.loc[1, "amount"]) and result.clean.loc[1, "country"] is None


def test_missing_column_error_names_file_and_column(tmp_path):
    path = _write_csv(tmp_path / "short.csv", "id,amount,country\na,1,BE\n")
    with pytest.raises(DataSourceError, match=r"short\.csv: missing column\(s\) \['hour'\]"):
        validate_batch(read_batch(path), SPEC)


def test_parquet_and_sql_sources_load_the_same_rows(tmp_path):
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "amount": [1.0, 2.0, 3.0],
            "hour": [1, 2, 3],
            "country": ["BE", "NL", "BE"],
            "label": [0, 0, 1],
        }
    )
    frame.to_parquet(tmp_path / "b.parquet")
    url = f"sqlite:///{tmp_path / 'src.db'}"
    engine = sa.create_engine(url)
    frame.to_sql("transactions", engine, index=False)
    engine.dispose()
    from_parquet = validate_batch(read_batch(tmp_path / "b.parquet"), SPEC).clean
    from_table = validate_batch(read_batch(url, table="transactions"), SPEC).clean
    from_query = validate_batch(
        read_batch(url, query="SELECT * FROM transactions WHERE amount > 1"), SPEC
    ).clean
    assert list(from_parquet["id"]) == ["1", "2", "3"]
    pd.testing.assert_frame_equal(from_parquet, from_table)
    assert list(from_query["id"]) == ["2", "3"]
    with pytest.raises(DataSourceError, match="exactly one of --table or --query"):
        read_batch(url)


def test_same_content_same_batch_id(tmp_path):
    a = _write_csv(tmp_path / "a.csv", "id,amount\n1,2\n")
    b = _write_csv(tmp_path / "b.csv", "id,amount\n1,2\n")
    c = _write_csv(tmp_path / "c.csv", "id,amount\n1,3\n")
    assert read_batch(a).content_hash == read_batch(b).content_hash
    assert read_batch(a).content_hash != read_batch(c).content_hash


def test_seen_ids_capped_merges_find_the_same_first_rows(monkeypatch):
    """Runs that stop merging (bounded memory) still find every earlier id and its row."""
    chunks = [
        pd.Series([f"id{i}" for i in range(start, start + 10)]) for start in range(0, 200, 10)
    ]
    monkeypatch.setattr(SeenIds, "MAX_MERGED_IDS", 40)
    seen = SeenIds()
    for n, ids in enumerate(chunks):
        seen.add(ids, [2 + 10 * n + k for k in range(10)])
    assert len(seen._runs) > 3
    probe = pd.Series(["id0", "id57", "id199", "nope", "id120"])
    assert seen.first_rows(probe).tolist() == [2, 59, 201, -1, 122]
    assert all(len(keys) <= 40 for keys, _ in seen._runs)
