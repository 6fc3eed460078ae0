"""Operations end to end on the demo data: drift watch on scored runs, shadow scoring with
the challenger, promotion on paired evidence with the ledger, and rollback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from pipelines.cli import main
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.flows import score_flow, train_flow
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
    fresh = score_flow(data=_batch(trained, "fresh", 31), model=trained["name"], shadow=False)
    assert fresh["health"]["status"] == "ok", fresh["health"]["alarms"]

    def more(frame):
        frame["amount"] = (frame["amount"] * 1.5).round(2)

    shifted = score_flow(
        data=_batch(trained, "amount", 32, more), model=trained["name"], shadow=False
    )
    assert shifted["health"]["status"] == "alarm"
    drifted = {f["feature"] for f in shifted["health"]["features"] if f["drifted"]}
    assert "amount" in drifted

    def crypto(frame):
        frame.loc[frame.index[:60], "merchant_category"] = "crypto_exchange"

    unseen = score_flow(
        data=_batch(trained, "crypto", 33, crypto), model=trained["name"], shadow=False
    )
    assert unseen["health"]["status"] == "alarm"
    assert unseen["health"]["unseen"]["by_feature"]["merchant_category"]["values"] == {
        "crypto_exchange": 60
    }
    # Stored per run, read back by the store method the review app uses, and by `vigil runs`.
    assert store.run_health(shifted["run_id"])["status"] == "alarm"
    assert store.run_health(fresh["run_id"])["status"] == "ok"
    listed = json.loads(CliRunner().invoke(main, ["runs", "--json", "--limit", "50"]).output)
    by_id = {r["run_id"]: r for r in listed}
    assert by_id[unseen["run_id"]]["health"]["status"] == "alarm"
    # Logged to MLflow as a run of its own.
    runs = MlflowClient().search_runs(
        experiment_ids=[MlflowClient().get_experiment_by_name("vigil").experiment_id],
        filter_string=f"tags.`vigil.scoring_run` = '{shifted['run_id']}'",
    )
    assert len(runs) == 1 and runs[0].data.metrics["alarm"] == 1.0


def test_shadow_run_scores_the_batch_but_only_champion_flags_reach_the_queue(trained):
    store = _store()
    result = score_flow(data=_batch(trained, "shadow", 41), model=trained["name"])
    shadow = result["shadow"]
    assert shadow is not None and shadow["model_version"] == "2"
    assert result["model_version"] == "1"
    assert store.count(Score, shadow["run_id"]) == result["rows_scored"]
    assert store.count(Flag, shadow["run_id"]) == 0
    assert shadow["would_flag"] > 0 and shadow["score_seconds"] > 0
    assert shadow["cost_ratio"] is not None
    run = store.get_run(shadow["run_id"])
    assert run.role == "shadow" and run.rows_flagged == shadow["would_flag"]
    with store.session() as session:
        import sqlalchemy as sa

        flagged_cases = session.scalar(
            sa.select(sa.func.count(sa.distinct(Flag.case_id))).where(
                Flag.run_id == result["run_id"]
            )
        )
        assert flagged_cases == result["rows_flagged"]
        assert session.scalar(sa.select(sa.func.count()).select_from(Case)) >= flagged_cases
    pairs = store.paired_scores(trained["name"], "1", "2")
    assert len(pairs) >= result["rows_scored"]


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
    after = score_flow(data=_batch(trained, "after", 51), model=name)
    assert after["model_version"] == "2" and after["shadow"] is None

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
