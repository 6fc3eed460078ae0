"""Operations end to end on the demo data: drift watch on scored runs, shadow scoring with
the challenger, promotion on paired evidence with the ledger, and rollback."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from pipelines.cli import main
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.flows import score_flow, train_flow
from pipelines.jobs.score import ScoreRequest
from pipelines.modeling.registry import configure_mlflow
from pipelines.modeling.training import TrainConfig
from pipelines.operations.promotion import PromotionPolicy, promote, rollback
from pipelines.settings import get_settings
from pipelines.store import Case, Flag, ResultsStore, Score
from tests.conftest import FAST_VAE

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prefect_harness):
    """One VAE data set trained twice: v1 champion, v2 challenger."""
    import uuid

    tmp = tmp_path_factory.mktemp("ops")
    name = f"ops{uuid.uuid4().hex[:6]}"
    spec = DEMO_SPEC.model_copy(update={"name": name})
    spec_path = spec.save(tmp / "spec.yaml")
    train = tmp / "train.csv"
    generate_transactions(2000, n_anomalies=40, seed=21).to_csv(train, index=False)
    config = TrainConfig(detectors=["vae"], vae=dict(FAST_VAE))
    train_flow(data=str(train), spec_path=str(spec_path), config=config)
    config2 = TrainConfig(detectors=["vae"], vae={**FAST_VAE, "epochs": 8}, seed=1)
    train_flow(data=str(train), spec_path=str(spec_path), config=config2)
    return {"name": f"{name}-vae", "dir": tmp}


def _store() -> ResultsStore:
    return ResultsStore(get_settings().resolved_database_url)


def _batch(trained, label: str, seed: int, change=None) -> str:
    frame = generate_transactions(600, n_anomalies=12, seed=seed, start_id=seed * 10_000)
    if change is not None:
        change(frame)
    path = trained["dir"] / f"{label}.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_drift_watch_alarms_on_shifted_amounts_and_new_category_not_on_fresh_data(trained):
    store = _store()
    fresh = score_flow(
        ScoreRequest(data=_batch(trained, "fresh", 31), model=trained["name"], shadow=False)
    )
    assert fresh.health.status == "ok", fresh.health.alarms

    def more(frame):
        frame["amount"] = (frame["amount"] * 1.5).round(2)

    shifted = score_flow(
        ScoreRequest(data=_batch(trained, "amount", 32, more), model=trained["name"], shadow=False)
    )
    assert shifted.health.status == "alarm"
    drifted = {f["feature"] for f in shifted.health.detail["features"] if f["drifted"]}
    assert "amount" in drifted

    def crypto(frame):
        frame.loc[frame.index[:60], "merchant_category"] = "crypto_exchange"

    unseen = score_flow(
        ScoreRequest(
            data=_batch(trained, "crypto", 33, crypto), model=trained["name"], shadow=False
        )
    )
    assert unseen.health.status == "alarm"
    assert unseen.health.detail["unseen"]["by_feature"]["merchant_category"]["values"] == {
        "crypto_exchange": 60
    }
    # Stored per run, read back by the store method the review app uses, and by `vigil runs`.
    assert store.run_health(shifted.run_id)["status"] == "alarm"
    assert store.run_health(fresh.run_id)["status"] == "ok"
    listed = json.loads(CliRunner().invoke(main, ["runs", "--json", "--limit", "50"]).output)
    by_id = {r["run_id"]: r for r in listed}
    assert by_id[unseen.run_id]["health"]["status"] == "alarm"
    # Logged to MLflow as a run of its own: on the embedded default queued by the scoring
    # command and logged by the next one that opens MLflow.
    configure_mlflow(get_settings())
    runs = MlflowClient().search_runs(
        experiment_ids=[MlflowClient().get_experiment_by_name("vigil").experiment_id],
        filter_string=f"tags.`vigil.scoring_run` = '{shifted.run_id}'",
    )
    assert len(runs) == 1 and runs[0].data.metrics["alarm"] == 1.0


def test_shadow_run_scores_the_batch_but_only_champion_flags_reach_the_queue(trained):
    store = _store()
    result = score_flow(ScoreRequest(data=_batch(trained, "shadow", 41), model=trained["name"]))
    shadow = result.shadow
    assert shadow is not None and shadow.model_version == "2"
    assert result.model_version == "1"
    assert store.count(Score, shadow.run_id) == result.rows_scored
    assert store.count(Flag, shadow.run_id) == 0
    assert shadow.would_flag > 0 and shadow.score_seconds > 0
    assert shadow.cost_ratio is not None
    run = store.get_run(shadow.run_id)
    assert run.role == "shadow" and run.rows_flagged == shadow.would_flag
    with store.session() as session:
        import sqlalchemy as sa

        flagged_cases = session.scalar(
            sa.select(sa.func.count(sa.distinct(Flag.case_id))).where(Flag.run_id == result.run_id)
        )
        assert flagged_cases == result.rows_flagged
        assert session.scalar(sa.select(sa.func.count()).select_from(Case)) >= flagged_cases
    pairs = store.paired_scores(trained["name"], "1", "2")
    assert len(pairs) >= result.rows_scored


def test_a_version_that_scored_a_batch_in_shadow_flags_it_when_it_scores_it_as_primary(
    trained,
):
    """The challenger scored tonight's batch in shadow; promoted, it scores the same batch
    as primary (a re-run of the night): its flags reach the queue, once."""
    store = _store()
    name = trained["name"]
    path = _batch(trained, "shadow-then-primary", 47)
    first = score_flow(ScoreRequest(data=path, model=name))
    shadow = first.shadow
    assert shadow.model_version == "2" and shadow.would_flag > 0
    assert store.count(Flag, shadow.run_id) == 0

    primary = score_flow(ScoreRequest(data=path, model=f"{name}/2", shadow=False))
    assert primary.run_id == shadow.run_id  # the same run, reopened as primary
    assert not primary.already_scored
    run = store.get_run(primary.run_id)
    assert run.role == "primary" and run.status == "completed"
    assert store.count(Flag, run.id) == run.rows_flagged == shadow.would_flag
    assert store.count(Score, run.id) == first.rows_scored  # rewritten, not added to
    assert primary.health is not None  # a primary run gets its drift watch
    with store.session() as session:
        import sqlalchemy as sa

        in_cases = session.scalar(
            sa.select(sa.func.count()).select_from(Flag)
            .where(Flag.run_id == run.id, Flag.case_id.is_not(None))
        )  # fmt: skip
    assert in_cases == run.rows_flagged

    # Exactly once: scoring the batch again as primary (or in shadow) writes nothing.
    again = score_flow(ScoreRequest(data=path, model=f"{name}/2", shadow=False))
    assert again.already_scored and again.run_id == run.id
    assert store.count(Flag, run.id) == run.rows_flagged


def test_analysts_verdicts_on_records_both_models_scored_are_promotion_evidence(trained):
    from pipelines.operations.promotion import compare
    from pipelines.store.models import Label

    store = _store()
    name = trained["name"]
    result = score_flow(ScoreRequest(data=_batch(trained, "verdicts", 45), model=name))
    assert result.model_version == "1" and result.shadow.model_version == "2"
    pairs = store.paired_scores(name, "1", "2")
    judged = pairs[pairs["batch_id"] == result.batch_id].nlargest(30, "champion")
    verdicts = ["fraud" if i % 3 == 0 else "not_fraud" for i in range(len(judged))]
    with store.session() as session:
        for record_id, verdict in zip(judged["record_id"], verdicts, strict=True):
            session.add(
                Label(record_id=record_id, verdict="unsure", source="review", analyst="amy")
            )
            session.add(Label(record_id=record_id, verdict=verdict, source="review", analyst="amy"))
    comparison = compare(store, name, PromotionPolicy(bootstrap=100))
    # Only the latest counting verdict per record is evidence; unsure rows are not labels.
    assert comparison.sizes["by_source"]["verdicts"] == 30
    by_source = comparison.numbers["sources"]["verdicts"]
    assert by_source["records"] == 30 and by_source["positives"] == verdicts.count("fraud")


def test_promote_records_the_decision_then_rollback_restores_the_champion(trained):
    store = _store()
    name = trained["name"]
    client = MlflowClient()
    # Default policy: a decision with its numbers goes to the ledger and the version tags.
    first = promote(store, name, PromotionPolicy(bootstrap=200), actor="tester")
    assert first["decision"] in {"promoted", "rejected", "insufficient_evidence"}
    labelled = first["numbers"]["labelled"]
    assert labelled["records"] == first["sizes"]["labelled"] > 0
    assert set(labelled["differences"]) == {"recall_at_budget", "precision_at_budget", "auprc"}
    assert first["sizes"]["by_source"]["evaluation"] > 0
    mv = client.get_model_version(name, "2")
    assert mv.tags["vigil.decision_id"] == str(first["ledger_id"])
    if first["decision"] != "promoted":
        aliases = client.get_registered_model(name).aliases
        assert str(aliases["champion"]) == "1"
        # A policy that accepts any evidence promotes: aliases move, the old one is kept.
        lenient = PromotionPolicy(
            min_gain=-1.0,
            max_flag_volume_change=100.0,
            min_labelled=1,
            min_positives=1,
            bootstrap=200,
        )
        second = promote(store, name, lenient, actor="tester")
        assert second["decision"] == "promoted"
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    assert aliases["champion"] == "2" and aliases["previous-champion"] == "1"

    # The next scoring run uses the new champion without a restart.
    after = score_flow(ScoreRequest(data=_batch(trained, "after", 51), model=name))
    assert after.model_version == "2" and after.shadow is None

    with pytest.raises(ValueError, match="reason"):
        rollback(store, name, reason=" ")
    back = rollback(store, name, reason="too many false positives overnight", actor="ops")
    assert back["champion_before"] == "2" and back["champion_after"] == "1"
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    assert aliases["champion"] == "1" and "previous-champion" not in aliases
    with pytest.raises(ValueError, match="nothing to roll back"):
        rollback(store, name, reason="again")

    ledger = store.decisions(name)
    assert [d.kind for d in ledger][:2] == ["rollback", "promotion"]
    assert ledger[0].reason == "too many false positives overnight" and ledger[0].actor == "ops"
    assert ledger[0].before["aliases"]["champion"] == "2"
    assert ledger[0].after["aliases"]["champion"] == "1"

    out = CliRunner().invoke(main, ["models", "--json"])
    assert out.exit_code == 0, out.output
    model = next(m for m in json.loads(out.output) if m["model"] == name)
    assert model["aliases"]["champion"] == "1"
    assert [e["kind"] for e in model["ledger"]][:2] == ["rollback", "promotion"]
    assert np.isfinite(model["ledger"][1]["evidence"]["numbers"]["labelled"]["budget"])

    # A rolled-back version is not promoted again by the policy on its own.
    any_evidence = PromotionPolicy(
        min_gain=-1.0, max_flag_volume_change=100.0, min_labelled=1, min_positives=1, bootstrap=200
    )
    again = promote(store, name, any_evidence, actor="tester")
    assert again["decision"] == "rejected" and "rolled back before" in again["reasons"][0]


# -- scheduled sources ---------------------------------------------------------------------


def _settled(path, age: float = 600.0) -> None:
    import os
    import time

    os.utime(path, (time.time() - age, time.time() - age))


def test_folder_source_scores_each_settled_file_once_and_says_when_nothing_is_new(trained):
    from pipelines.jobs.scheduled import score_pending
    from pipelines.operations.sources import FolderSource, list_pending
    from pipelines.store.models import SourceFile

    store = _store()
    inbox = trained["dir"] / "inbox"
    inbox.mkdir()
    source = FolderSource(path=str(inbox), settle_seconds=30)
    first = inbox / "day1.csv"
    generate_transactions(300, n_anomalies=5, seed=61, start_id=610_000).to_csv(first, index=False)
    _settled(first)
    copying = inbox / "day2.csv"
    generate_transactions(300, n_anomalies=5, seed=62, start_id=620_000).to_csv(
        copying, index=False
    )  # just written: still "being copied"

    run1 = score_pending(
        store, source, list_pending(store, source), model=trained["name"], shadow=False
    )
    assert [r.input for r in run1.runs] == ["day1.csv"]
    assert run1.waiting == ["day2.csv"] and run1.runs[0].rows_scored == 300

    run2 = score_pending(store, source, list_pending(store, source), model=trained["name"])
    assert run2.nothing_new and "nothing new" in run2.message
    assert "1 still being written" in run2.message

    _settled(copying)
    run3 = score_pending(
        store, source, list_pending(store, source), model=trained["name"], shadow=False
    )
    assert [r.input for r in run3.runs] == ["day2.csv"]
    assert store.count(SourceFile) >= 2
    assert score_pending(store, source, list_pending(store, source)).nothing_new


def test_folder_source_crash_before_commit_leaves_the_file_pending_not_half_scored(
    trained, monkeypatch
):
    from pipelines.jobs.scheduled import score_pending
    from pipelines.operations.sources import FolderSource, list_pending
    from pipelines.store.models import ScoringRun

    store = _store()
    inbox = trained["dir"] / "inbox-crash"
    inbox.mkdir()
    source = FolderSource(path=str(inbox), settle_seconds=0)
    path = inbox / "night.csv"
    generate_transactions(250, n_anomalies=4, seed=71, start_id=710_000).to_csv(path, index=False)
    _settled(path)

    def crash(*args, **kwargs):
        raise RuntimeError("power cut while committing")

    monkeypatch.setattr(type(store), "record_source_file", staticmethod(crash))
    with pytest.raises(RuntimeError, match="power cut"):
        score_pending(
            store, source, list_pending(store, source), model=trained["name"], shadow=False
        )
    monkeypatch.undo()
    assert store.scored_file_sizes(source.key) == set()
    with store.session() as session:
        import sqlalchemy as sa

        failed = session.scalars(
            sa.select(ScoringRun).where(ScoringRun.source == str(path.resolve()))
        ).all()
        assert [r.status for r in failed] == ["failed"]

    listing = list_pending(store, source)
    assert [p.label for p in listing.pending] == ["night.csv"]
    again = score_pending(store, source, listing, model=trained["name"], shadow=False)
    run = again.runs[0]
    assert run.run_id == failed[0].id and not run.already_scored
    assert store.count(Score, run.run_id) == 250
    assert store.get_run(run.run_id).status == "completed"


def test_a_duplicate_run_of_the_same_listing_writes_nothing_twice(trained):
    from pipelines.jobs.scheduled import score_pending
    from pipelines.operations.sources import FolderSource, list_pending
    from pipelines.store.models import SourceFile

    store = _store()
    inbox = trained["dir"] / "inbox-dup"
    inbox.mkdir()
    source = FolderSource(path=str(inbox), settle_seconds=0)
    path = inbox / "batch.csv"
    generate_transactions(200, n_anomalies=3, seed=81, start_id=810_000).to_csv(path, index=False)
    _settled(path)
    # Two Prefect runs fired together both list the file before either commits.
    listing_a, listing_b = list_pending(store, source), list_pending(store, source)
    a = score_pending(store, source, listing_a, model=trained["name"], shadow=False)
    b = score_pending(store, source, listing_b, model=trained["name"], shadow=False)
    assert not a.runs[0].already_scored and b.runs[0].already_scored
    assert a.runs[0].run_id == b.runs[0].run_id
    assert store.count(Score, a.runs[0].run_id) == 200
    with store.session() as session:
        import sqlalchemy as sa

        rows = session.scalar(
            sa.select(sa.func.count())
            .select_from(SourceFile)
            .where(SourceFile.source_key == source.key)
        )
    assert rows == 1


def test_sql_source_reads_rows_after_the_watermark_committed_with_the_run(trained, monkeypatch):
    import sqlalchemy as sa

    from pipelines.jobs.scheduled import score_pending
    from pipelines.operations.sources import SqlSource, list_pending

    store = _store()
    url = f"sqlite:///{trained['dir'] / 'warehouse.db'}"
    engine = sa.create_engine(url)
    frame = generate_transactions(400, n_anomalies=6, seed=91, start_id=910_000)
    frame.insert(0, "ingest_seq", range(1, len(frame) + 1))
    frame.iloc[:250].to_sql("transactions", engine, index=False)
    source = SqlSource(url=url, query="SELECT * FROM transactions", watermark_column="ingest_seq")

    first = score_pending(
        store, source, list_pending(store, source), model=trained["name"], shadow=False
    )
    assert first.runs[0].rows_scored == 250 and store.watermark(source.key) == "250"
    assert score_pending(store, source, list_pending(store, source)).nothing_new

    frame.iloc[250:].to_sql("transactions", engine, index=False, if_exists="append")

    def crash(*args, **kwargs):
        raise RuntimeError("crash before commit")

    monkeypatch.setattr(type(store), "advance_watermark", staticmethod(crash))
    with pytest.raises(RuntimeError):
        score_pending(
            store, source, list_pending(store, source), model=trained["name"], shadow=False
        )
    monkeypatch.undo()
    assert store.watermark(source.key) == "250"  # the crashed run moved nothing

    second = score_pending(
        store, source, list_pending(store, source), model=trained["name"], shadow=False
    )
    assert second.runs[0].rows_scored == 150
    assert store.count(Score, second.runs[0].run_id) == 150
    assert store.watermark(source.key) == "400"
    engine.dispose()


# -- vigil serve against a real Prefect server ----------------------------------------------


def _stop(proc, sig) -> None:
    import os
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)


def _wait(predicate, timeout: float, what: str, poll: float = 1.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration
def test_vigil_serve_registers_schedules_and_runs_a_triggered_score_on_a_real_server(trained):
    """`vigil serve` against a Prefect server (the session's), read the schedules back
    from the server, trigger the scoring deployment through the API, let the served
    process run it, and check the store."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    from pipelines.operations.sources import FolderSource
    from pipelines.store.models import SourceFile

    tmp = trained["dir"]
    inbox = tmp / "served-inbox"
    inbox.mkdir()
    path = inbox / "tonight.csv"
    generate_transactions(200, n_anomalies=3, seed=99, start_id=990_000).to_csv(path, index=False)
    _settled(path)
    # The session's Prefect API (a real HTTP server, started once for every test that
    # needs one): the served process registers and runs against it as against any server.
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    bin_dir = Path(sys.executable).parent
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    served = None
    try:
        client = httpx.Client(base_url=api, timeout=10)
        serve_env = {
            **base_env,
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(tmp / "prefect-client"),
            # The runner looks for triggered runs every second rather than every ten.
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }
        log = open(tmp / "serve.log", "w")  # noqa: SIM115 - closed in finally
        served = subprocess.Popen(
            [
                str(bin_dir / "vigil"),
                "serve",
                "--watch-folder",
                str(inbox),
                "--settle-seconds",
                "0",
                "--model",
                trained["name"],
                "--train-data",
                str(tmp / "train.csv"),
                "--spec",
                str(tmp / "spec.yaml"),
            ],
            env=serve_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def deployments():
            found = client.post("/deployments/filter", json={}).json()
            names = {d["name"]: d for d in found}
            return (
                names
                if {"nightly-score", "weekly-train", "promote-on-demand"} <= set(names)
                else None
            )

        found = _wait(deployments, 180, "vigil serve's deployments")
        # The schedules, as the server has them.
        schedules = {
            name: [
                s["schedule"].get("cron")
                for s in client.get(f"/deployments/{found[name]['id']}/schedules").json()
            ]
            for name in ("nightly-score", "weekly-train")
        }
        assert schedules == {"nightly-score": ["0 2 * * *"], "weekly-train": ["0 3 * * 0"]}

        # Prefect's SQLite-backed server answers 503 while its database is busy (seen under
        # load, while the served process registers): a client retries, so does this test.
        for _attempt in range(15):
            created = client.post(
                f"/deployments/{found['nightly-score']['id']}/create_flow_run", json={}
            )
            if created.status_code != 503:
                break
            time.sleep(2)
        assert created.status_code < 300, (created.status_code, created.text[:500])
        run = created.json()

        def finished():
            state = client.get(f"/flow_runs/{run['id']}").json()["state"]
            return state if state["type"] in {"COMPLETED", "FAILED", "CRASHED"} else None

        state = _wait(finished, 300, "the triggered scoring run", poll=2)
        assert state["type"] == "COMPLETED", (tmp / "serve.log").read_text()[-3000:]
        store = _store()
        key = FolderSource(path=str(inbox)).key
        with store.session() as session:
            import sqlalchemy as sa

            rows = session.scalars(sa.select(SourceFile).where(SourceFile.source_key == key)).all()
        assert len(rows) == 1 and rows[0].run_id is not None
        assert store.get_run(rows[0].run_id).rows_scored == 200
    finally:
        if served is not None:
            _stop(served, signal.SIGINT)


def test_promote_flow_pauses_for_approval_and_records_the_approver(trained, monkeypatch):
    """With require_approval the promote flow pauses with a RunInput form; resuming it with
    an approval promotes and names the approver in the ledger."""
    import threading
    import time

    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    import pipelines.flows
    from pipelines.flows import promote_flow

    name = trained["name"]
    client = MlflowClient()
    aliases = {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    if aliases["champion"] == aliases["challenger"]:  # an earlier test left v2 promoted
        client.set_registered_model_alias(name, "champion", "1")
    policy = {
        "min_gain": -1.0,
        "max_flag_volume_change": 100.0,
        "min_labelled": 1,
        "min_positives": 1,
        "bootstrap": 100,
        "require_approval": True,
        "allow_rolled_back": True,
    }
    outcome: dict = {}
    # The paused flow looks for the answer every second, not every ten.
    monkeypatch.setattr(pipelines.flows, "APPROVAL_POLL_SECONDS", 1)

    def run() -> None:
        outcome["result"] = promote_flow(
            model=name, policy=policy, actor="tester", approval_timeout_s=300
        )

    worker = threading.Thread(target=run)
    worker.start()
    paused_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    deadline = time.monotonic() + 240
    paused = []
    with get_client(sync_client=True) as prefect:
        while not paused and time.monotonic() < deadline and worker.is_alive():
            paused = prefect.read_flow_runs(flow_run_filter=paused_filter)
            time.sleep(1)
    assert paused, "the promote flow never paused for approval"
    resume_flow_run(
        paused[0].id, run_input={"approve": True, "approver": "alice", "note": "numbers look fine"}
    )
    worker.join(timeout=240)
    result = outcome["result"][0]
    assert result["decision"] == "promoted" and result["approved_by"] == "alice"
    entry = _store().decisions(name)[0]
    assert entry.approved_by == "alice" and entry.decision == "promoted"
    assert str(client.get_registered_model(name).aliases["champion"]) == "2"
