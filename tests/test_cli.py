"""The CLI end to end on a data set the project has never seen: spec init, train, score,
re-score (adds nothing), runs/flags as JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _sensor_readings(n: int, n_faults: int, seed: int, start: int) -> pd.DataFrame:
    """Machine sensor readings: a schema unrelated to the demo's card transactions."""
    rng = np.random.default_rng(seed)
    load = rng.uniform(0.2, 1.0, n)
    frame = pd.DataFrame(
        {
            "reading_id": [f"r{start + i}" for i in range(n)],
            "temperature_c": 40 + 30 * load + rng.normal(0, 1.5, n),
            "pressure_bar": 2 + 3 * load + rng.normal(0, 0.2, n),
            "vibration_mm_s": np.exp(rng.normal(0.5, 0.3, n)),
            "machine_type": rng.choice(["press", "lathe", "mill"], n),
            "fault": 0,
        }
    )
    faults = rng.choice(n, n_faults, replace=False)
    frame.loc[faults, "temperature_c"] = 40 + rng.uniform(0, 5, n_faults)  # cold under load
    frame.loc[faults, "vibration_mm_s"] *= 8
    frame.loc[faults, "fault"] = 1
    return frame


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_end_to_end_on_unseen_data(tmp_path, unique_name):
    train = tmp_path / "readings.csv"
    _sensor_readings(1200, 20, seed=1, start=0).to_csv(train, index=False)
    later = tmp_path / "later.parquet"
    _sensor_readings(300, 6, seed=2, start=10_000).to_parquet(later, index=False)
    spec_path = tmp_path / "spec.yaml"

    out = _invoke(
        "spec",
        "init",
        "--data",
        str(train),
        "--id-col",
        "reading_id",
        "--label-col",
        "fault",
        "--name",
        unique_name,
        "--out",
        str(spec_path),
    )
    assert "machine_type" in out
    spec_text = spec_path.read_text()
    assert "temperature_c" in spec_text and "label_column: fault" in spec_text

    out = _invoke(
        "train", "--data", str(train), "--spec", str(spec_path), "--epochs", "4", "--json"
    )
    trained = json.loads(out)
    assert {m["model"] for m in trained["models"]} == {f"{unique_name}-vae", f"{unique_name}-gan"}

    scores_file = tmp_path / "scores.parquet"
    model = f"{unique_name}-vae@champion"
    _invoke("score", "--data", str(later), "--model", model, "--out", str(scores_file))
    scores = pd.read_parquet(scores_file)
    assert len(scores) == 300 and {"record_id", "score", "is_anomaly"} <= set(scores.columns)
    assert scores["is_anomaly"].astype(bool).sum() > 0

    out = _invoke("score", "--data", str(later), "--model", model)
    assert "already scored, nothing written" in out

    runs = json.loads(_invoke("runs", "--json"))
    mine = [r for r in runs if r["model"] == f"{unique_name}-vae"]
    assert len(mine) == 1 and mine[0]["rows_scored"] == 300
    flags = json.loads(
        _invoke("flags", "--run", mine[0]["run_id"][:8], "--json", "--limit", "1000")
    )
    assert len(flags) == mine[0]["rows_flagged"] > 0
    assert len({f["record_id"] for f in flags}) == len(flags)
    assert flags[0]["reasons"][0]["feature"] in {
        "temperature_c",
        "pressure_bar",
        "vibration_mm_s",
        "machine_type",
    }


def test_cli_errors_are_one_readable_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\n")
    result = CliRunner().invoke(main, ["train", "--data", "nope.csv", "--spec", str(bad)])
    assert result.exit_code == 2
    assert "broken.yaml" in result.output and "Traceback" not in result.output

    result = CliRunner().invoke(
        main, ["score", "--data", str(tmp_path / "missing.csv"), "--model", "nobody@champion"]
    )
    assert result.exit_code == 2 and "error:" in result.output


def test_every_command_has_help():
    for command in (
        [],
        ["spec", "init"],
        ["train"],
        ["score"],
        ["runs"],
        ["flags"],
        ["demo"],
        ["demo-data"],
        ["models"],
        ["promote"],
        ["serve"],
        ["api"],
    ):
        assert "Usage:" in _invoke(*command, "--help")


def test_spec_init_in_sequence_mode_proposes_context(tmp_path):
    from pipelines.demo_sequences import generate_card_sequences
    from pipelines.intake.spec import load_spec

    data = tmp_path / "cards.csv"
    generate_card_sequences(n_cards=10, days=5, seed=1).to_csv(data, index=False)
    spec_path = tmp_path / "cards.yaml"
    out = _invoke(
        "spec", "init", "--data", str(data), "--id-col", "transaction_id",
        "--label-col", "is_fraud", "--entity-col", "card_id", "--time-col", "timestamp",
        "--ignore-col", "fraud_kind", "--out", str(spec_path),
    )  # fmt: skip
    assert "context:     amount amount" in out
    assert "travel:      latitude, longitude" in out
    assert "secondary:   merchant_id" in out
    spec = load_spec(spec_path)
    assert spec.is_sequence and "fraud_kind" not in spec.feature_columns
    result = CliRunner().invoke(
        main, ["spec", "init", "--data", str(data), "--id-col", "transaction_id",
               "--entity-col", "card_id"],
    )  # fmt: skip
    assert result.exit_code == 2 and "needs both --entity-col and --time-col" in result.output


def test_score_without_prefect_api_leaves_nothing_behind_when_killed(tmp_path, unique_name):
    """`vigil score` with no PREFECT_API_URL runs in-process: a kill -9 leaves no server
    behind, the re-run resumes from the committed chunks, and a missing model version is
    one line, not a traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import sqlalchemy as sa

    from pipelines.settings import get_settings
    from pipelines.store import ResultsStore, RunChunk, ScoringRun

    train = tmp_path / "readings.csv"
    _sensor_readings(600, 10, seed=3, start=0).to_csv(train, index=False)
    spec_path = tmp_path / "spec.yaml"
    _invoke("spec", "init", "--data", str(train), "--id-col", "reading_id",
            "--label-col", "fault", "--name", unique_name, "--out", str(spec_path))  # fmt: skip
    _invoke("train", "--data", str(train), "--spec", str(spec_path), "--detectors", "vae",
            "--epochs", "2")  # fmt: skip

    missing = CliRunner().invoke(main, ["score", "--data", str(train),
                                        "--model", f"{unique_name}-vae/99"])  # fmt: skip
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert missing.output.strip().splitlines() == [
        f"error: no model version {unique_name}-vae/99 in the registry (versions: 1)"
    ]

    later = tmp_path / "later.csv"
    _sensor_readings(30_000, 30, seed=4, start=10_000).to_csv(later, index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["VIGIL_SCORE_CHUNK_SIZE"] = "1000"
    command = [sys.executable, "-m", "pipelines.cli", "score", "--data", str(later),
               "--model", f"{unique_name}-vae@champion"]  # fmt: skip
    victim = subprocess.Popen(command, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    store = ResultsStore(get_settings().resolved_database_url)
    mine = (
        sa.select(sa.func.count())
        .select_from(RunChunk)
        .join(ScoringRun, ScoringRun.id == RunChunk.run_id)
        .where(ScoringRun.model_name == f"{unique_name}-vae")
    )
    deadline = time.monotonic() + 180
    while _scalar(store, mine) == 0:
        assert victim.poll() is None, "vigil score ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    left = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(victim.pid)],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert left == "", f"processes left behind: {left}"

    rerun = subprocess.run(command + ["--json"], env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    report = json.loads(rerun.stdout)
    assert report["chunks_skipped"] >= 1 and report["rows_scored"] == 30_000
    assert store.count(RunChunk, report["run_id"]) == 30


def _scalar(store, query) -> int:
    with store.session() as session:
        return int(session.scalar(query))


def test_errors_inside_a_prefect_flow_are_one_line_without_prefect_tracebacks(
    tmp_path, monkeypatch, capfd
):
    """With a Prefect API configured, score runs as a flow; its failure is still the CLI's
    one line, not Prefect's logged traceback first."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    result = CliRunner().invoke(
        main, ["score", "--data", str(tmp_path / "missing.csv"), "--model", "nobody/3"]
    )
    captured = capfd.readouterr()
    everything = result.output + captured.out + captured.err
    assert result.exit_code == 2
    assert "error: no model version nobody/3 in the registry" in result.output
    assert "Traceback" not in everything and "Finished in state Failed" not in everything
