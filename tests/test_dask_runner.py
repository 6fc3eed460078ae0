"""The Dask runner (``vigil score --runner dask``) writes what single-process scoring
writes: the same scores, flags, quarantine and run counts, on tabular data (streamed in
chunks, a duplicate id split across chunks) and on sequence data (partitioned by entity,
with entity history and a secondary entity that spans partitions). A LocalCluster of two
workers runs the partitions as Prefect tasks, through prefect-dask's DaskTaskRunner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import flow
from sqlalchemy.exc import OperationalError

from detectors import VAEDetector
from detectors.thresholds import Threshold
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.demo_sequences import SEQUENCE_SPEC, generate_card_sequences
from pipelines.intake.ingest import Batch, validate_batch
from pipelines.intake.stream import open_stream
from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.registry import ModelRef
from pipelines.modeling.training import TrainConfig, fit_detector, split_for_training
from pipelines.scoring.batch import score_batch, score_stream
from pipelines.scoring.run import RunRequest
from pipelines.scoring.scaleout import DaskPartitions
from pipelines.store import ResultsStore, StoreUnavailable
from pipelines.store.models import Flag
from pipelines.store.runs import RunRepository
from tests.conftest import FAST_VAE

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _tabular_bundle() -> ScoringBundle:
    train = generate_transactions(800, n_anomalies=0, seed=1)
    detector = VAEDetector(
        **{**FAST_VAE, "epochs": 2}, categorical_features=DEMO_SPEC.categorical_features
    )
    detector.fit(train[DEMO_SPEC.feature_columns])
    return ScoringBundle(DEMO_SPEC, detector)


def _tabular_file(tmp_path: Path) -> Path:
    """300 rows (14 anomalies) with a bad amount, a missing id and an id repeated in a
    later chunk."""
    frame = generate_transactions(300, n_anomalies=14, seed=2).astype(str)
    frame.loc[17, "amount"] = "not-a-number"
    frame.loc[45, "transaction_id"] = ""
    frame.loc[250, "transaction_id"] = frame.loc[3, "transaction_id"]
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    return path


def _sequence_bundle(records: pd.DataFrame) -> ScoringBundle:
    batch = Batch(frame=records.astype(str), source="cards.csv")
    clean = validate_batch(batch, SEQUENCE_SPEC).clean
    split = split_for_training(clean, SEQUENCE_SPEC, evaluation_fraction=0.3, seed=0)
    config = TrainConfig(
        detectors=["seq_vae"],
        seq_vae={"epochs": 2, "hidden_dims": [32, 16], "latent_dim": 4, "context_hidden": 16},
    )
    bundle = ScoringBundle(SEQUENCE_SPEC, fit_detector("seq_vae", SEQUENCE_SPEC, split, config))
    # Two epochs flag next to nothing at the calibrated cut: flag the top 5% so that flags,
    # snapshots and reasons are compared too.
    scores = bundle.score(clean, with_reasons=False)["score"]
    bundle.set_threshold(Threshold("fpr", 0.05, float(np.quantile(scores, 0.95))))
    return bundle


def _run_both(bundle, records, tabular_path, store, partitions=None) -> dict:
    """Score the tabular file (streamed, 40-row chunks), two days of card records (the
    second with the first as kept history) and the second day again as a streamed file
    (60-row chunks, scored a run of chunks per partition) into ``store``."""
    options = {} if partitions is None else {"partitions": partitions}
    tabular, sequence = bundle
    reports = {
        "tabular": score_stream(
            store,
            tabular,
            open_stream(tabular_path, 40),
            RunRequest(ModelRef("tab", "1", None), **options),
        )
    }
    days = pd.to_datetime(records["timestamp"]).dt.normalize()
    for name, rows in (("earlier", days < days.max()), ("last_day", days == days.max())):
        batch = Batch(frame=records[rows].astype(str).reset_index(drop=True), source=name)
        reports[name] = score_batch(
            store, sequence, batch, validate_batch(batch, SEQUENCE_SPEC),
            RunRequest(ModelRef("seq", "1", None), **options), chunk_size=50,
        )  # fmt: skip
    last_day = tabular_path.parent / "last_day.csv"
    records[days == days.max()].to_csv(last_day, index=False)
    reports["sequence_stream"] = score_stream(
        store,
        sequence,
        open_stream(last_day, 60),
        RunRequest(ModelRef("seq", "1", None), **options),
    )
    return reports


def _written(store: ResultsStore, run_id: str) -> dict:
    scores = store.scores_frame(run_id).set_index("record_id").sort_index()
    with store.session() as session:
        flags = {
            f.record_id: (f.score, f.entity, f.record, f.reasons)
            for f in session.query(Flag).where(Flag.run_id == run_id)
        }
    quarantine = store.quarantine_frame(run_id)
    return {
        "scores": scores,
        "flags": flags,
        "quarantine": sorted(
            zip(
                quarantine["row_number"],
                quarantine["column"].fillna(""),
                quarantine["reason"],
                strict=True,
            )
        ),
    }


#: What the flow below scores: the flow object travels to the workers with each task's
#: context, so it closes over nothing (a store's engine does not pickle).
_CASE: dict = {}


@flow(name="dask-runner-test")
def _on_dask() -> dict:
    # Worker threads, not processes: spawned workers import torch and Prefect afresh,
    # 20-40 s on the loaded CI machine (benchmarks/scale.py runs them as processes).
    with DaskPartitions(workers=2, processes=False) as partitions:
        assert partitions.parts == 4
        store = ResultsStore(_CASE["url"])
        reports = _run_both(_CASE["bundles"], _CASE["records"], _CASE["path"], store, partitions)
        reports["resumed"] = score_stream(
            ResultsStore(_CASE["resume_url"]),
            _CASE["bundles"][0],
            open_stream(_CASE["path"], 40),
            RunRequest(model=ModelRef("tab", "1", None), partitions=partitions),
        )
        return reports


def test_dask_runner_writes_what_one_process_writes(tmp_path, monkeypatch):
    records = generate_card_sequences(n_cards=40, days=14, seed=5)
    bundles = (_tabular_bundle(), _sequence_bundle(records))
    path = _tabular_file(tmp_path)

    single_store = ResultsStore(f"sqlite:///{tmp_path / 'single.db'}")
    single = _run_both(bundles, records, path, single_store)

    # A single-process run that dies writing chunk 3 leaves chunks 0-2 committed; the Dask
    # runner resumes it. The duplicate in chunk 6 repeats an id of committed chunk 0: the
    # driver still checks the skipped chunks' ids, so it is still quarantined.
    resume_url = f"sqlite:///{tmp_path / 'resumed.db'}"
    original = RunRepository._bulk_scores
    calls = {"n": 0}

    def store_goes_away_in_chunk_3(self, session, run_id, scores):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OperationalError("COPY", {}, Exception("server closed the connection"))
        original(self, session, run_id, scores)

    monkeypatch.setattr(RunRepository, "_bulk_scores", store_goes_away_in_chunk_3)
    with pytest.raises(StoreUnavailable, match="writing chunk 3 failed"):
        score_stream(
            ResultsStore(resume_url),
            bundles[0],
            open_stream(path, 40),
            RunRequest(model=ModelRef("tab", "1", None)),
        )
    monkeypatch.setattr(RunRepository, "_bulk_scores", original)

    _CASE.update(
        bundles=bundles, records=records, path=path, resume_url=resume_url,
        url=f"sqlite:///{tmp_path / 'd.db'}",
    )  # fmt: skip
    spread = _on_dask()
    dask_store = ResultsStore(_CASE["url"])

    resumed = spread["resumed"]
    assert (resumed.chunks_skipped, resumed.chunks_written) == (3, 5)
    single["resumed"] = single["tabular"]
    stores = {"resumed": ResultsStore(resume_url)}
    for name, report in single.items():
        other = spread[name]
        counts = ("rows_in", "rows_scored", "rows_quarantined", "rows_flagged")
        assert [getattr(other, c) for c in counts] == [getattr(report, c) for c in counts]
        assert report.rows_in == report.rows_scored + report.rows_quarantined
        if name != "resumed":
            assert other.chunks_written == report.chunks_written > 1
        a = _written(single_store, report.run_id)
        b = _written(stores.get(name, dask_store), other.run_id)
        assert b["scores"].index.equals(a["scores"].index)
        np.testing.assert_allclose(b["scores"]["score"], a["scores"]["score"], rtol=1e-6)
        assert (b["scores"]["is_anomaly"] == a["scores"]["is_anomaly"]).all()
        assert b["flags"].keys() == a["flags"].keys() and a["flags"]
        for record_id, (score, entity, record, reasons) in a["flags"].items():
            assert b["flags"][record_id][1:3] == (entity, record)
            assert b["flags"][record_id][0] == pytest.approx(score, rel=1e-6)
            assert [r["feature"] for r in b["flags"][record_id][3]] == [
                r["feature"] for r in reasons
            ]
        assert b["quarantine"] == a["quarantine"]

    # The duplicate split across chunks (rows 4 and 251 of the file: lines 5 and 252) was
    # caught by the driver's id check, whichever worker scored chunk 6.
    tabular = _written(dask_store, spread["tabular"].run_id)["quarantine"]
    assert any(row == 252 and "duplicate id" in reason for row, _, reason in tabular)
    assert spread["tabular"].rows_quarantined == 3


def test_dask_partitions_refuse_to_run_outside_a_flow():
    with pytest.raises(RuntimeError, match="inside a Prefect flow run"):
        with DaskPartitions(workers=1):
            pass
