"""Real-time scoring: `mlflow models serve` on the registered tabular bundle, and
`vigil api` for a sequence model with entity history; both must give batch scores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.flows import score_flow, train_flow
from pipelines.jobs.score import ScoreRequest
from pipelines.modeling.training import TrainConfig
from pipelines.settings import get_settings
from pipelines.store import ResultsStore
from tests.conftest import FAST_VAE

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _store() -> ResultsStore:
    return ResultsStore(get_settings().resolved_database_url)


@pytest.mark.integration
def test_mlflow_models_serve_scores_equal_batch_scoring(tmp_path, unique_name):
    import httpx

    from pipelines.modeling.registry import load_bundle, resolve_model
    from tests.browser_support import free_port as _free_port
    from tests.test_operations_flows import _stop, _wait

    spec = DEMO_SPEC.model_copy(update={"name": unique_name})
    spec_path = spec.save(tmp_path / "spec.yaml")
    train = tmp_path / "train.csv"
    generate_transactions(1200, n_anomalies=20, seed=5).to_csv(train, index=False)
    train_flow(
        data=str(train),
        spec_path=str(spec_path),
        config=TrainConfig(detectors=["vae"], vae=dict(FAST_VAE)),
    )
    name = f"{unique_name}-vae"
    records = generate_transactions(40, n_anomalies=4, seed=6, start_id=77_000)
    expected = load_bundle(resolve_model(name)).score(records)["score"].to_numpy()

    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    # mlflow starts `uvicorn` by name: the virtual environment's bin must be on PATH.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": get_settings().resolved_mlflow_uri,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    mlflow_bin = str(Path(bin_dir) / "mlflow")
    server = subprocess.Popen(
        [
            mlflow_bin,
            "models",
            "serve",
            "-m",
            f"models:/{name}@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=open(tmp_path / "serve.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

        def up():
            try:
                return client.get("/ping").status_code == 200
            except httpx.HTTPError:
                return server.poll() is not None  # stop waiting if it died

        _wait(up, 240, "mlflow models serve")
        assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
        payload = {"dataframe_split": json_ready(records)}
        response = client.post("/invocations", json=payload)
        assert response.status_code == 200, response.text[:1000]
        body = response.json()
        rows = body["predictions"] if isinstance(body, dict) else body
        served = pd.DataFrame(rows)
        assert list(served["transaction_id"]) == list(records["transaction_id"])
        np.testing.assert_allclose(served["score"].to_numpy(float), expected, rtol=1e-6)
    finally:
        _stop(server, signal.SIGTERM)


def json_ready(frame: pd.DataFrame) -> dict:
    split = frame.to_dict(orient="split")
    split.pop("index", None)
    return split


@pytest.fixture(scope="module")
def card_model(prefect_harness, tmp_path_factory) -> dict:
    """A small sequence model trained on card data, the day after its training period,
    and the history segments training kept (tests reset the store's history to them)."""
    import uuid

    from pipelines.demo_sequences import SEQUENCE_SPEC, generate_card_sequences

    name = f"t{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("cards")
    spec = SEQUENCE_SPEC.model_copy(update={"name": name})
    spec_path = spec.save(folder / "cards.yaml")
    records = generate_card_sequences(n_cards=30, days=12, seed=4)
    times = pd.to_datetime(records["timestamp"])
    cut = times.quantile(0.9)  # the last tenth of the time arrives live
    past, last_day = records[times < cut], records[times >= cut]
    assert len(last_day) > 20
    past.to_csv(folder / "past.csv", index=False)
    train_flow(
        data=str(folder / "past.csv"),
        spec_path=str(spec_path),
        config=TrainConfig(
            detectors=["seq_vae"],
            seq_vae={"epochs": 2, "hidden_dims": [16], "latent_dim": 4, "context_hidden": 8},
        ),
    )
    trained = {i for i, _, _ in _store().history_segment_ids(name)}
    assert trained
    return {
        "name": name,
        "model": f"{name}-seq_vae",
        "spec": spec,
        "last_day": last_day,
        "trained_segments": trained,
    }


def _reset_history(store: ResultsStore, card_model: dict) -> None:
    """Keep only the history training kept: each test starts from the same store."""
    import sqlalchemy as sa

    from pipelines.store.models import EntityHistorySegment

    with store.session() as session:
        session.execute(
            sa.delete(EntityHistorySegment).where(
                EntityHistorySegment.dataset == card_model["name"],
                EntityHistorySegment.id.not_in(card_model["trained_segments"]),
            )
        )


def _json_records(frame: pd.DataFrame) -> list[dict]:
    """As a client sends them: JSON null for missing values."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def test_vigil_api_scores_sequence_records_like_batch_scoring(card_model, tmp_path):
    from fastapi.testclient import TestClient

    from pipelines.operations.api import create_app

    last_day, name = card_model["last_day"], card_model["model"]
    store = _store()
    _reset_history(store, card_model)
    with TestClient(create_app(store, name)) as client:
        _score_the_day(client, last_day, name, store, tmp_path)


def _score_the_day(client, last_day, name, store, tmp_path) -> None:
    assert client.get("/health").json()["version"] == "1"
    # The day arrives a few records at a time, in time order; each request appends.
    ordered = last_day.sort_values("timestamp", kind="stable")
    live: dict[str, float] = {}
    history_seen = []
    for start in range(0, len(ordered), 7):
        chunk = ordered.iloc[start : start + 7]
        body = {"records": _json_records(chunk)}
        response = client.post("/score", json=body)
        assert response.status_code == 200, response.text[:500]
        out = response.json()
        assert out["rejected"] == []
        history_seen.append(out["history_rows"])
        live.update({r["id"]: r["score"] for r in out["results"]})
    # history_rows: the kept records these cards (and merchants) had; the equality with
    # batch scoring below shows the day's earlier requests were among them.
    assert len(live) == len(ordered) and min(history_seen) > 0

    # Concurrent clients (FastAPI serves sync endpoints from a thread pool) get the same
    # answers: sequence detectors keep per-call state, so the app scores one at a time.
    from concurrent.futures import ThreadPoolExecutor

    again = ordered.tail(8)
    bodies = [
        {"records": _json_records(again.iloc[[i]]), "append_history": False}
        for i in range(len(again))
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda b: client.post("/score", json=b), bodies))
    assert [r.status_code for r in responses] == [200] * len(bodies)
    for response in responses:
        result = response.json()["results"][0]
        assert result["score"] == pytest.approx(live[result["id"]], rel=1e-6)

    # Batch scoring of the same day (it reads only history before the day) agrees.
    day_file = tmp_path / "day.csv"
    last_day.to_csv(day_file, index=False)
    batch = score_flow(ScoreRequest(data=str(day_file), model=name, shadow=False))
    scores = store.scores_frame(batch.run_id).set_index("record_id")["score"]
    ids = list(live)
    np.testing.assert_allclose(
        [live[i] for i in ids], scores.loc[ids].to_numpy(), rtol=1e-5, atol=1e-8
    )


def test_vigil_api_keeps_history_in_memory_and_recovers_it_after_a_restart(card_model):
    """The kept-rows path (models the running state does not cover; see
    tests/test_running_state.py for the running state). One record per request: history
    comes from memory (nothing is written per request),
    a clean shutdown writes it, a restarted app loads it back, and every score equals
    batch scoring's. A crash loses only what was not written yet."""
    from fastapi.testclient import TestClient

    from pipelines.intake.ingest import Batch, validate_batch
    from pipelines.modeling.registry import load_bundle, resolve_model
    from pipelines.operations.api import Scorer, ScoreRequest, create_app
    from pipelines.scoring.history import KeptHistory

    spec, name = card_model["spec"], card_model["model"]
    store = _store()
    _reset_history(store, card_model)
    day = card_model["last_day"].sort_values("timestamp", kind="stable")
    # What batch scoring of the whole day gives (score_batch: kept history, then the day).
    clean = validate_batch(Batch(frame=day, source="day"), spec).clean
    bundle = load_bundle(resolve_model(name))
    history = KeptHistory(store, spec).before(clean)
    expected = dict(
        zip(clean[spec.id_column], bundle.score(clean, history=history.frame)["score"], strict=True)
    )
    records = _json_records(day)
    half = len(records) // 2

    def api_segments() -> list[int]:
        return [
            i for i, _, source in store.history_segment_ids(card_model["name"]) if source == "api"
        ]

    live: dict[str, float] = {}
    # No timed flush during the test.
    app = create_app(store, name, flush_seconds=3600, running_state=False)
    with TestClient(app) as client:
        for record in records[:half]:
            result = client.post("/score", json={"records": [record]}).json()["results"][0]
            live[result["id"]] = result["score"]
        assert api_segments() == []  # served from memory: no store write per request
        assert app.state.scorer.live_history.pending_rows == half
    # Leaving the client shut the app down: the pending records were written, once.
    assert len(api_segments()) == 1 and app.state.scorer.live_history.pending_rows == 0

    restarted = create_app(store, name, flush_seconds=3600, running_state=False)
    with TestClient(restarted) as client:  # loads the kept history back from the store
        for record in records[half:]:
            result = client.post("/score", json={"records": [record]}).json()["results"][0]
            live[result["id"]] = result["score"]
    ids = list(expected)
    assert sorted(live) == sorted(ids)
    np.testing.assert_allclose(
        [live[i] for i in ids], [expected[i] for i in ids], rtol=1e-5, atol=1e-8
    )

    # A crash (no shutdown, no flush yet) loses the records scored since the last write:
    # a restarted scorer does not see them as history; the survivor did.
    last = day.iloc[[-1]].copy()
    first_new, second_new = last.copy(), last.copy()
    first_new["transaction_id"], second_new["transaction_id"] = "crash-1", "crash-2"
    first_new["timestamp"] = pd.to_datetime(last["timestamp"]) + pd.Timedelta(minutes=1)
    second_new["timestamp"] = pd.to_datetime(last["timestamp"]) + pd.Timedelta(minutes=2)
    crashed = Scorer(store, name, flush_seconds=3600, background=False, running_state=False)
    crashed.score(ScoreRequest(records=_json_records(first_new)))
    probe = ScoreRequest(records=_json_records(second_new), append_history=False)
    survivor_view = crashed.score(probe)["history_rows"]
    after_crash = Scorer(store, name, flush_seconds=3600, background=False, running_state=False)
    assert after_crash.score(probe)["history_rows"] == survivor_view - 1
    after_crash.close()


def test_vigil_api_scores_queued_requests_together_as_it_would_one_by_one(card_model):
    """(The kept-rows path.) Requests queued while another is scored are scored as one
    batch when that equals
    scoring them one after another in time order; shuffled arrival, shared ids and
    records older than the kept history are handled (alone where needed)."""
    import random
    import threading

    from pipelines.operations.api import Scorer, ScoreRequest, _Ticket

    name = card_model["model"]
    store = _store()
    _reset_history(store, card_model)
    day = card_model["last_day"].sort_values("timestamp", kind="stable")
    records = _json_records(day)[:24]

    serial = Scorer(store, name, flush_seconds=3600, background=False, running_state=False)
    expected = {}
    for record in records:
        result = serial.score(ScoreRequest(records=[record]))["results"][0]
        expected[result["id"]] = result["score"]

    together = Scorer(store, name, flush_seconds=3600, background=False, running_state=False)
    tickets = [_Ticket(ScoreRequest(records=[r])) for r in records[:16]]
    random.Random(0).shuffle(tickets)  # concurrent clients arrive in any order
    together._score_queued(tickets, together.current())
    assert together.coalesced_requests == 16
    # Later requests: one older than what is now kept (alone), then in-order ones.
    late = [_Ticket(ScoreRequest(records=[r])) for r in records[16:]]
    stale = _Ticket(ScoreRequest(records=[{**records[3], "transaction_id": "late-1"}]))
    together._score_queued([stale, *late], together.current())
    assert together.coalesced_requests == 16 + len(late)
    got = {t.result["results"][0]["id"]: t.result["results"][0]["score"] for t in tickets + late}
    assert sorted(got) == sorted(expected)
    np.testing.assert_allclose([got[i] for i in expected], list(expected.values()), rtol=1e-6)
    assert stale.result["results"][0]["id"] == "late-1" and stale.error is None

    # Real threads: every caller gets its own records back.
    threaded = Scorer(store, name, flush_seconds=3600, background=False, running_state=False)
    answers: dict[int, dict] = {}

    def call(i: int) -> None:
        answers[i] = threaded.score(ScoreRequest(records=[records[i]]))

    workers = [threading.Thread(target=call, args=(i,)) for i in range(len(records))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for i, answer in answers.items():
        assert answer["results"][0]["id"] == records[i]["transaction_id"]
    for scorer in (serial, together, threaded):
        scorer.close()
    _reset_history(store, card_model)
