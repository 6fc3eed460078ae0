"""SQL sources streamed through a server-side cursor: the same rows, row numbers, batch id
and results as reading the whole result; on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.intake.ingest import DataSourceError, read_batch, validate_batch
from pipelines.intake.stream import SqlStream, open_stream
from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.registry import ModelRef
from pipelines.scoring.batch import score_batch, score_stream
from pipelines.scoring.run import RunRequest
from pipelines.store import ResultsStore
from tests.conftest import demo_vae_bundle


@pytest.fixture(scope="module")
def bundle() -> ScoringBundle:
    return demo_vae_bundle(target_fpr=0.02)


@pytest.fixture(params=["sqlite", "postgres"])
def source_url(request, tmp_path) -> str:
    """A source database holding ``transactions``: 300 rows as text, two of them bad,
    written in shuffled order (the stream reads a table in id order)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    frame = generate_transactions(300, n_anomalies=6, seed=5).astype(str)
    frame.loc[6, "amount"] = "twelve"
    frame.loc[250, "hour"] = "noon"
    engine = sa.create_engine(url)
    frame.sample(frac=1.0, random_state=0).to_sql("transactions", engine, index=False)
    frame.head(0).to_sql("no_rows", engine, index=False)
    engine.dispose()
    return url


def _ordered(url: str):
    return read_batch(url, query="SELECT * FROM transactions ORDER BY transaction_id")


def test_the_stream_gives_the_rows_and_batch_id_of_the_whole_read(source_url):
    whole = _ordered(source_url)
    stream = open_stream(source_url, 7, table="transactions", order_by="transaction_id")
    assert isinstance(stream, SqlStream)
    chunks = list(stream.chunks())
    assert [len(c.frame) for c in chunks] == [7] * 42 + [6]
    assert [c.first_row_number for c in chunks[:3]] == [1, 8, 15]
    joined = pd.concat([c.frame for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.frame)
    # The batch id does not depend on the chunk size, and equals the whole read's.
    assert stream.digest() == whole.content_hash
    assert (
        open_stream(source_url, 1000, table="transactions", order_by="transaction_id").digest()
        == whole.content_hash
    )
    assert stream.source.endswith("#transactions")


def test_an_empty_table_is_one_chunk_with_its_columns(source_url):
    chunks = list(open_stream(source_url, 50, table="no_rows").chunks())
    assert len(chunks) == 1 and not len(chunks[0].frame)
    assert "transaction_id" in chunks[0].frame.columns


def test_a_missing_table_is_a_named_source_error(source_url):
    with pytest.raises(DataSourceError, match="#missing_table"):
        list(open_stream(source_url, 50, table="missing_table").chunks())
    with pytest.raises(DataSourceError, match="exactly one of --table or --query"):
        open_stream(source_url, 50)


def test_scoring_the_stream_matches_scoring_the_whole_result(bundle, source_url, tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    streamed = score_stream(
        store,
        bundle,
        open_stream(source_url, 40, table="transactions", order_by="transaction_id"),
        RunRequest(model=ModelRef("m", "1", None)),
    )
    assert (streamed.rows_in, streamed.rows_scored, streamed.rows_quarantined) == (300, 298, 2)
    assert streamed.chunks_written == 8
    whole = _ordered(source_url)
    assert streamed.batch_id == whole.content_hash
    in_memory = score_batch(
        store,
        bundle,
        whole,
        validate_batch(whole, DEMO_SPEC),
        RunRequest(model=ModelRef("m", "2", None)),
        chunk_size=1000,
    )
    a = store.scores_frame(streamed.run_id).set_index("record_id").sort_index()
    b = store.scores_frame(in_memory.run_id).set_index("record_id").sort_index()
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5)
    assert a["is_anomaly"].equals(b["is_anomaly"])
    quarantined = store.quarantine_frame(streamed.run_id)
    assert sorted(quarantined["record_id"]) == sorted(whole.frame.loc[
        whole.frame["amount"].eq("twelve") | whole.frame["hour"].eq("noon"), "transaction_id"
    ])  # fmt: skip
    # The same source again is the same batch: found completed, nothing scored twice.
    again = score_stream(
        store,
        bundle,
        open_stream(source_url, 40, table="transactions", order_by="transaction_id"),
        RunRequest(model=ModelRef("m", "1", None)),
    )
    assert again.run_id == streamed.run_id and again.already_scored
