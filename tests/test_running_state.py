"""The running entity state of `vigil api`: one payment at a time from a few numbers per
card and merchant must give what batch scoring gives (every feature, score and reason),
survive a restart, stay bounded, and be shareable through Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

from detectors.context import build_context_features
from detectors.context.running import KeyState, RunningContext, unsupported
from pipelines.demo_sequences import (
    SEQUENCE_SPEC,
    TYPOLOGY_SPEC,
    generate_card_sequences,
    generate_typology_set,
)
from pipelines.intake.ingest import Batch, validate_batch
from pipelines.intake.spec import infer_spec
from pipelines.modeling.bundle import ScoringBundle, prepare_records
from pipelines.scoring.history import KeptHistory
from pipelines.store import ResultsStore


def _clean(frame: pd.DataFrame, spec=SEQUENCE_SPEC) -> pd.DataFrame:
    clean = validate_batch(Batch(frame=frame, source="t"), spec).clean
    return clean.sort_values(spec.time_column, kind="stable").reset_index(drop=True)


def _card_data(n_cards: int, seed: int):
    """Card payments of five fraud typologies and their spec as `vigil spec init` proposes
    it (travel window, novelty windows, located column, capped history count)."""
    frame = generate_typology_set(n_cards=n_cards, days=18, seed=seed)
    spec = infer_spec(
        frame, name="cards", id_column="transaction_id", label_column="is_fraud",
        entity_column="card_id", time_column="timestamp", ignore_columns=["fraud_kind"],
    )  # fmt: skip
    return spec, _clean(frame, spec)


def _json_records(frame: pd.DataFrame) -> list[dict]:
    """As a client sends them: times as text, JSON null for missing values."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {
            "baseline_gap": "7D",
            "level_windows": ["1D"],
            "min_history": 2,
            "windows": ["1h"],
            "history_count_cap": 4,
        },
    ],
)
def test_running_features_equal_the_batch_build_one_record_at_a_time(changes):
    config = SEQUENCE_SPEC.context.replace(**changes)
    clean = _clean(generate_card_sequences(n_cards=15, days=16, seed=1))
    clean.loc[clean.index[::17], "merchant_id"] = None  # secondary values go missing
    clean.loc[clean.index[::13], "amount"] = np.nan
    expected = build_context_features(clean, config)
    cards: dict = {}
    _assert_features(_stepped(config, clean.to_dict("records"), cards), expected)
    # Bounded: a card keeps only its records within history (14 days of ~3 a day).
    assert max(len(c.t) for c in cards.values()) <= 2 * 14 * 6 + 64


def _stepped(config, records, cards=None, merchants=None) -> pd.DataFrame:
    running = RunningContext(config)
    cards = {} if cards is None else cards
    merchants = {} if merchants is None else merchants
    got = []
    for record in records:
        card = cards.setdefault(str(record["card_id"]), running.new_entity())
        merchant = record["merchant_id"]
        state = None if merchant is None else merchants.setdefault(str(merchant), KeyState())
        got.append(running.step(record, card, {"merchant_id": state}))
    return pd.DataFrame(got)


def _assert_features(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        np.testing.assert_allclose(
            got[column].to_numpy(float), expected[column].to_numpy(float),
            rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column,
        )  # fmt: skip


@pytest.fixture(scope="module")
def proposed_cards():
    return _card_data(n_cards=12, seed=1)


@pytest.mark.parametrize(
    "changes",
    [
        {},  # as `spec init` proposes it
        {
            "novelty_rate": "unlocated",
            "robust_baseline": True,
            "profile_columns": ["merchant_category"],
            "profile_hours": True,
            "level_windows": ["1D"],
        },
        {"novelty_rate": "all", "robust_baseline": True, "profile_columns": ["merchant_id"],
         "history": "10D", "novelty_windows": ["1h", "2D"], "min_history": 1},
    ],
)  # fmt: skip
def test_every_option_of_a_proposed_card_spec_is_computed_one_record_at_a_time(
    changes, proposed_cards
):
    """The spec `spec init` proposes for card data (travel window, novelty windows) and
    the other options, from the running state and from the state rebuilt from kept rows
    part-way through, give the batch build's features."""
    from pipelines.scoring.entity_state import rebuild, secondary_key

    spec, clean = proposed_cards
    clean = clean.copy()
    assert spec.context.travel_window and spec.context.novelty_windows
    clean.loc[clean.index[::17], "merchant_id"] = None
    clean.loc[clean.index[::19], "merchant_category"] = None
    clean.loc[clean.index[::13], "amount"] = np.nan
    config = spec.context.replace(**changes)
    assert unsupported(config) == []
    expected = build_context_features(clean, config)
    _assert_features(_stepped(config, clean.to_dict("records")), expected)
    # Rebuilt from the first 60% as kept history, then one record at a time.
    cut = int(len(clean) * 0.6)
    spec = spec.model_copy(update={"context": config})
    cards, keys = rebuild(
        clean.iloc[:cut], spec, RunningContext(config), model_columns=[], steps_kept=0
    )
    prefix = secondary_key("merchant_id", "")
    merchants = {k.removeprefix(prefix): state for k, state in keys}
    states = {entity: card.context for entity, card in cards}
    got = _stepped(config, clean.iloc[cut:].to_dict("records"), states, merchants)
    _assert_features(got, expected.iloc[cut:])
    # Bounded: besides its records within history, a card keeps a few marked times.
    marks = max(sum(len(v) for v in c.marks.values()) for c in states.values())
    records = max(len(c.t) for c in states.values())
    assert marks <= 4 * records + 20


def test_the_typology_spec_takes_the_running_state():
    assert unsupported(SEQUENCE_SPEC.context) == []
    assert unsupported(TYPOLOGY_SPEC.context) == []
    assert RunningContext(TYPOLOGY_SPEC.context).names == TYPOLOGY_SPEC.context.feature_names()


@pytest.fixture(scope="module")
def cards_bundle(tmp_path_factory):
    """A small sequence VAE fitted on the first 85% of 18 days of card payments, with the
    spec `spec init` proposes; the rest arrives live. Returns (bundle, kept training
    state, the live records)."""
    from pipelines.modeling.training import TrainConfig, fit_detector, split_for_training

    spec, clean = _card_data(n_cards=14, seed=4)
    cut = clean["timestamp"].quantile(0.85)
    past, live = clean[clean["timestamp"] < cut], clean[clean["timestamp"] >= cut]
    config = TrainConfig(
        detectors=["seq_vae"],
        seq_vae={"epochs": 2, "hidden_dims": [16], "latent_dim": 4, "context_hidden": 8},
    )
    split = split_for_training(past, spec, evaluation_fraction=0.2, seed=0)
    detector = fit_detector("seq_vae", spec, split, config)
    bundle = ScoringBundle(spec, detector, max_reasons=3)
    # A low threshold: many records flagged, so many reasons are compared.
    from detectors.thresholds import Threshold

    scores = bundle.score(live, history=split.state)["score"].to_numpy()
    bundle.set_threshold(Threshold("fpr", 0.3, float(np.quantile(scores, 0.7))))
    return bundle, split.state, live.reset_index(drop=True)


def _store_with_training_history(tmp_path, bundle, state) -> ResultsStore:
    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    KeptHistory(store, bundle.spec).keep(state, batch_id="train", source="train", only_recent=True)
    return store


def _batch_reference(store, bundle, live) -> pd.DataFrame:
    history = KeptHistory(store, bundle.spec).before(live)
    scored = bundle.score(live, history=history.frame)
    return scored.set_index(live[bundle.spec.id_column].to_numpy())


def _assert_same(results: list[dict], expected: pd.DataFrame) -> None:
    got = {r["id"]: r for r in results}
    assert sorted(got) == sorted(expected.index)
    ids = list(expected.index)
    np.testing.assert_allclose(
        [got[i]["score"] for i in ids], expected.loc[ids, "score"].to_numpy(float),
        rtol=1e-4, atol=1e-6,
    )  # fmt: skip
    flagged = on_the_line = 0
    for i in ids:
        want = expected.loc[i]
        if got[i]["is_anomaly"] != bool(want["is_anomaly"]):
            # Only float noise may part them: a record whose score *is* the threshold
            # (records with equal features, e.g. a capped hour offset, tie at the quantile
            # the threshold was taken at) may fall on either side of it.
            assert got[i]["score"] == pytest.approx(float(want["score"]), rel=1e-7), i
            on_the_line += 1
            continue
        mine, theirs = got[i]["reasons"], want["reasons"]
        assert [r["feature"] for r in mine] == [r["feature"] for r in theirs], i
        for a, b in zip(mine, theirs, strict=True):
            assert a["text"].split(" (")[0] == b["text"].split(" (")[0]
            assert a["contribution"] == pytest.approx(b["contribution"], rel=1e-3, abs=1e-4)
        flagged += bool(mine)
    assert flagged > 5  # reasons were compared, not only empty lists
    assert on_the_line <= 2


def test_one_payment_at_a_time_scores_and_explains_as_the_batch(cards_bundle, tmp_path):
    from pipelines.operations.stateful import StatefulScorer, why_not_stateful

    bundle, state, live = cards_bundle
    assert why_not_stateful(bundle) is None
    store = _store_with_training_history(tmp_path, bundle, state)
    expected = _batch_reference(store, bundle, live)
    scorer = StatefulScorer(bundle, store, background=False)
    assert scorer.rebuilt_entities == live["card_id"].nunique() or scorer.rebuilt_entities > 10
    results = []
    for record in _json_records(live):
        response = scorer.score([record])
        assert response["rejected"] == []
        results += response["results"]
    _assert_same(results, expected)
    # What it keeps for the store is what batch scoring keeps (features included).
    assert scorer.writer.flush() == len(live)
    scorer.close()
    from pipelines.scoring.entity_state import kept_frame

    kept = kept_frame(store, bundle.spec)
    batch_state = prepare_records(
        bundle.spec, live, KeptHistory(store, bundle.spec).before(live).frame
    ).state
    mine = kept.set_index(bundle.spec.id_column).loc[live[bundle.spec.id_column]]
    for column in bundle.spec.context_feature_columns:
        np.testing.assert_allclose(
            mine[column].to_numpy(float), batch_state[column].to_numpy(float),
            rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column,
        )  # fmt: skip


def test_the_state_survives_a_restart_and_ages_out_exactly(cards_bundle, tmp_path):
    from pipelines.operations.stateful import StatefulScorer

    bundle, state, live = cards_bundle
    store = _store_with_training_history(tmp_path, bundle, state)
    expected = _batch_reference(store, bundle, live)
    records = _json_records(live)
    half = len(records) // 2
    first = StatefulScorer(bundle, store, background=False)
    results = [first.score([r])["results"][0] for r in records[:half]]
    first.close()  # a clean shutdown writes what it scored
    restarted = StatefulScorer(bundle, store, background=False)  # rebuilt from the store
    results += [restarted.score([r])["results"][0] for r in records[half:]]
    _assert_same(results, expected)
    # Probes (append_history=False) change nothing.
    probe = {**records[-1], "transaction_id": "probe-1"}
    before = restarted.state.cards[str(probe["card_id"])].to_bytes()
    restarted.score([probe], append_history=False)
    assert restarted.state.cards[str(probe["card_id"])].to_bytes() == before
    # Aging out drops only entities with nothing within history of the newest record.
    memory = restarted.state
    memory.newest += 2 * memory.horizon
    assert memory.age_out() > 0 and not memory.cards and not memory.keys
    size = StatefulScorer(bundle, store, background=False).state.nbytes()
    assert 0 < size["bytes_per_entity"] < 20_000
    restarted.close()


def test_vigil_api_serves_the_running_state_and_metrics(cards_bundle, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from pipelines.operations import api

    bundle, state, live = cards_bundle
    store = _store_with_training_history(tmp_path, bundle, state)
    expected = _batch_reference(store, bundle, live)
    monkeypatch.setattr(
        api, "resolve_model", lambda reference: SimpleNamespace(name="cards", version="1")
    )
    app = api.create_app(store, "cards", load=lambda ref: bundle, flush_seconds=3600)
    results = []
    with TestClient(app) as client:
        health = client.get("/health").json()
        assert health["state"]["kind"] == "MemoryStateStore"
        for record in _json_records(live):
            response = client.post("/score", json={"records": [record]})
            assert response.status_code == 200, response.text[:300]
            results += response.json()["results"]
        bad = client.post("/score", json={"records": [{"transaction_id": "x"}]})
        assert bad.status_code in (200, 422)
        # Bodies answer as FastAPI's validation would (and count as invalid requests).
        empty = client.post("/score", json={"records": []})
        assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "records"]
        broken = client.post("/score", content=b"{not json", headers={"content-type": "x"})
        assert broken.status_code == 422 and broken.json()["detail"]
        schema = client.get("/openapi.json").json()["paths"]["/score"]["post"]["requestBody"]
        assert "records" in schema["content"]["application/json"]["schema"]["properties"]
        text = client.get("/metrics").text
        app.state.scorer.history_writer.flush()
        flushed = _samples(client.get("/metrics").text)
    _assert_same(results, expected)
    lines = _samples(text)
    # The scored records wait for the writer (an hour here), then one flush keeps them all.
    assert float(lines["vigil_api_history_pending_rows"]) == len(live)
    assert float(lines["vigil_api_history_flushes_total"]) == 0
    assert float(flushed["vigil_api_history_pending_rows"]) == 0
    assert float(flushed["vigil_api_history_flushes_total"]) == 1
    assert float(flushed["vigil_api_history_rows_written_total"]) == len(live)
    assert (
        0
        < float(flushed["vigil_api_history_flush_seconds_max"])
        <= float(flushed["vigil_api_history_flush_seconds_total"])
    )
    assert "# TYPE vigil_api_history_flushes_total counter" in text
    assert float(lines['vigil_api_requests_total{outcome="ok"}']) >= len(live)
    assert float(lines["vigil_api_records_scored_total"]) == len(live)
    assert float(lines["vigil_api_request_duration_seconds_count"]) == len(live) + 3
    assert float(lines['vigil_api_errors_total{kind="invalid"}']) >= 2
    assert float(lines['vigil_api_scores_bucket{le="+Inf"}']) == len(live)
    assert "# TYPE vigil_api_request_duration_seconds histogram" in text


def _samples(text: str) -> dict[str, str]:
    """Prometheus text as {name with labels: value}."""
    return dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of the test's own on a free port (skipped where none is installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: the shared-state test needs one")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_several_processes_share_the_card_state_through_redis(cards_bundle, tmp_path, redis_url):
    """Two scorers (two api processes behind a load balancer) take turns on one stream:
    through Redis each sees what the other kept, and together they score as the batch."""
    from pipelines.operations.stateful import StatefulScorer
    from pipelines.scoring.entity_state import RedisStateStore

    bundle, state, live = cards_bundle
    store = _store_with_training_history(tmp_path, bundle, state)
    expected = _batch_reference(store, bundle, live)
    one = StatefulScorer(bundle, store, state_url=redis_url, background=False)
    two = StatefulScorer(bundle, store, state_url=redis_url, background=False)
    assert one.rebuilt_entities > 0 and two.rebuilt_entities == 0  # the first one rebuilt it
    results = []
    for i, record in enumerate(_json_records(live)):
        results += (one if i % 2 else two).score([record])["results"]
    _assert_same(results, expected)
    # A write between another process's read and write is detected, and computed again.
    assert isinstance(one.state, RedisStateStore)
    record = {**_json_records(live)[-1], "transaction_id": "race-1"}
    loaded = one.state.load(str(record["card_id"]), {"merchant_id": None}, one._new_card)
    two.score([{**record, "transaction_id": "race-2"}])
    assert one.state.commit(loaded) is False and one.state.conflicts == 1
    one.close()
    two.close()


def test_vigil_serve_exposes_its_scoring_runs_as_prometheus_metrics(tmp_path):
    """`vigil serve` answers GET /metrics from what the store says of its runs."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    import httpx

    from pipelines.serve import ServeConfig, start_run_metrics

    finished = datetime(2026, 3, 2, 2, 5, tzinfo=UTC)
    run = dict(rows_in=10, rows_scored=9, rows_quarantined=1, rows_flagged=2, score_seconds=1.5)
    runs = [
        SimpleNamespace(status="succeeded", role="primary", finished_at=finished, **run),
        SimpleNamespace(status="succeeded", role="shadow", finished_at=finished, **run),
        SimpleNamespace(status="running", role="primary", finished_at=None, **run),
    ]
    store = SimpleNamespace(list_runs=lambda limit: runs)
    port = _free_port()
    server = start_run_metrics(ServeConfig(metrics_port=port), store=store)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=10).status_code == 404
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'vigil_scoring_runs{status="succeeded",role="primary"} 1' in text
    assert 'vigil_scoring_runs{status="running",role="primary"} 1' in text
    assert 'vigil_scoring_rows{kind="flagged"} 6' in text
    assert "vigil_scoring_last_run_seconds 1.5" in text
    assert f"vigil_scoring_last_finished_timestamp_seconds {int(finished.timestamp())}" in text
    assert (
        ServeConfig(metrics_port=None) and start_run_metrics(ServeConfig(metrics_port=None)) is None
    )


def test_a_late_record_sees_what_came_before_it_in_time():
    """Payments arrive slightly out of order (several api processes, network): a late one
    is placed at its time and its window figures count the earlier-in-time records that
    arrived before it, as the kept-rows path gives them."""
    config = SEQUENCE_SPEC.context
    clean = _clean(generate_card_sequences(n_cards=4, days=8, seed=7))
    rng = np.random.default_rng(0)
    arrival = np.argsort(np.arange(len(clean)) + rng.uniform(0, 6, len(clean)), kind="stable")
    running = RunningContext(config)
    cards: dict = {}
    merchants: dict = {}
    columns = [
        c for c in config.feature_names()
        if "count" in c or "sum" in c or "amount" in c or "secs" in c
    ]  # fmt: skip
    late = 0
    records = clean.to_dict("records")
    for position, i in enumerate(arrival):
        record = records[i]
        card = cards.setdefault(record["card_id"], running.new_entity())
        late += bool(card.t) and card.newest > record["timestamp"].timestamp()
        state = merchants.setdefault(record["merchant_id"], KeyState())
        got = running.step(record, card, {"merchant_id": state})
        before = clean.iloc[arrival[:position]]
        seen = before[before["timestamp"] <= record["timestamp"]]
        frame = pd.concat([seen, clean.iloc[[i]]], ignore_index=True)
        want = build_context_features(frame, config, targets=[len(frame) - 1]).iloc[0]
        for column in columns:
            np.testing.assert_allclose(
                got[column], want[column], rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column
            )
    assert late > 5  # late records were there to place


def test_a_new_champion_carries_on_from_the_running_state(cards_bundle, tmp_path):
    """A promotion (a new version of the same data set's model) keeps the state and what
    waits to be written: the payments after it score as with the state rebuilt."""
    from pipelines.operations.stateful import StatefulScorer

    bundle, state, live = cards_bundle
    store = _store_with_training_history(tmp_path, bundle, state)
    expected = _batch_reference(store, bundle, live)
    records = _json_records(live)
    first = StatefulScorer(bundle, store, background=False)
    results = [first.score([r])["results"][0] for r in records[:40]]
    second = StatefulScorer(bundle, store, background=False, previous=first)
    assert second.state is first.state and second.rebuilt_entities == 0
    first.close()  # hands over: nothing written, nothing closed
    assert second.writer.pending_rows == 40
    results += [second.score([r])["results"][0] for r in records[40:]]
    _assert_same(results, expected)
    second.close()
    assert second.writer.pending_rows == 0
