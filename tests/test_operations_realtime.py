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
    from tests.test_operations_flows import _free_port, _stop, _wait

    spec = DEMO_SPEC.model_copy(update={"name": unique_name})
    spec_path = spec.save(tmp_path / "spec.yaml")
    train = tmp_path / "train.csv"
    generate_transactions(1200, n_anomalies=20, seed=5).to_csv(train, index=False)
    train_flow(data=str(train), spec_path=str(spec_path),
               config=TrainConfig(detectors=["vae"], vae=dict(FAST_VAE)))
    name = f"{unique_name}-vae"
    records = generate_transactions(40, n_anomalies=4, seed=6, start_id=77_000)
    expected = load_bundle(resolve_model(name)).score(records)["score"].to_numpy()

    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    # mlflow starts `uvicorn` by name: the virtual environment's bin must be on PATH.
    env = {**os.environ, "MLFLOW_TRACKING_URI": get_settings().resolved_mlflow_uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlflow_bin = str(Path(bin_dir) / "mlflow")
    server = subprocess.Popen(
        [mlflow_bin, "models", "serve", "-m", f"models:/{name}@champion", "--env-manager",
         "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=open(tmp_path / "serve.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT, start_new_session=True,
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


def test_vigil_api_scores_sequence_records_like_batch_scoring(tmp_path, unique_name):
    from fastapi.testclient import TestClient

    from pipelines.demo_sequences import SEQUENCE_SPEC, generate_card_sequences
    from pipelines.operations.api import create_app

    spec = SEQUENCE_SPEC.model_copy(update={"name": unique_name})
    spec_path = spec.save(tmp_path / "cards.yaml")
    records = generate_card_sequences(n_cards=30, days=12, seed=4)
    times = pd.to_datetime(records["timestamp"])
    cut = times.quantile(0.9)  # the last tenth of the time arrives live
    past, last_day = records[times < cut], records[times >= cut]
    assert len(last_day) > 20
    past.to_csv(tmp_path / "past.csv", index=False)
    train_flow(
        data=str(tmp_path / "past.csv"),
        spec_path=str(spec_path),
        config=TrainConfig(
            detectors=["seq_vae"],
            seq_vae={"epochs": 2, "hidden_dims": [16], "latent_dim": 4, "context_hidden": 8},
        ),
    )
    name = f"{unique_name}-seq_vae"
    store = _store()
    client = TestClient(create_app(store, name))
    assert client.get("/health").json()["version"] == "1"
    # The day arrives a few records at a time, in time order; each request appends.
    ordered = last_day.sort_values("timestamp", kind="stable")
    live: dict[str, float] = {}
    history_seen = []
    for start in range(0, len(ordered), 7):
        chunk = ordered.iloc[start : start + 7]
        # As a client sends them: JSON null for missing values.
        body = {"records": chunk.astype(object).where(chunk.notna(), None).to_dict("records")}
        response = client.post("/score", json=body)
        assert response.status_code == 200, response.text[:500]
        out = response.json()
        assert out["rejected"] == []
        history_seen.append(out["history_rows"])
        live.update({r["id"]: r["score"] for r in out["results"]})
    assert len(live) == len(ordered) and history_seen[-1] > history_seen[0]

    # Concurrent clients (FastAPI serves sync endpoints from a thread pool) get the same
    # answers: sequence detectors keep per-call state, so the app scores one at a time.
    from concurrent.futures import ThreadPoolExecutor

    again = ordered.tail(8)
    bodies = [
        {"records": again.iloc[[i]].astype(object).where(again.iloc[[i]].notna(), None)
         .to_dict("records"), "append_history": False}
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
    batch = score_flow(data=str(day_file), model=name, shadow=False)
    scores = store.scores_frame(batch["run_id"]).set_index("record_id")["score"]
    ids = list(live)
    np.testing.assert_allclose([live[i] for i in ids], scores.loc[ids].to_numpy(), rtol=1e-5,
                               atol=1e-8)
