"""A command that starts a server or a cluster stops it on the way out, whether it
succeeds, fails or is terminated: the Prefect temporary API server and the Dask
LocalCluster of ``vigil score --runner dask`` included.

Processes are found by a marker in their environment (children inherit it): an orphan
whose parent is gone is no longer anyone's child, but it keeps its environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.registry import Registration, register_version
from tests.golden_pipeline import GOLDEN

MARKER = "VIGIL_TEST_PROCESS_MARKER"


def _marked(marker: str) -> dict[int, str]:
    """Every live process whose environment holds ``MARKER=marker``: pid -> command."""
    wanted = f"{MARKER}={marker}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return {pid: cmd.decode(errors="replace") for pid, cmd in found.items()}


def _vigil(args: list[str], marker: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({MARKER: marker, "VIGIL_DASK_WORKERS": "1", "VIGIL_SCORE_THREADS": "1"})
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def _watch(process: subprocess.Popen, marker: str, timeout: float = 400) -> tuple[set, str]:
    """Wait for ``process``; the commands of the marked processes seen while it ran."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        seen.update(cmd for pid, cmd in _marked(marker).items() if pid != process.pid)
        time.sleep(0.2)
    out, err = process.communicate(timeout=max(1, deadline - time.monotonic()))
    return seen, out + err


def _gone(marker: str, wait: float = 10) -> dict[int, str]:
    """The marked processes still alive after ``wait`` seconds of grace."""
    deadline = time.monotonic() + wait
    while (left := _marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="module")
def golden_model(tmp_path_factory) -> tuple[str, Path]:
    bundle = ScoringBundle.load(GOLDEN / "tabular" / "bundle", numpy_forward=True)
    name = f"leftover-{uuid.uuid4().hex[:6]}"
    register_version(Registration(name=name, kind="vae", bundle=bundle, data_source="golden"))
    data = tmp_path_factory.mktemp("leftover") / "batch.csv"
    lines = (GOLDEN / "tabular" / "score.csv").read_text().splitlines()
    data.write_text("\n".join(lines[:41]) + "\n")
    return name, data


def test_dask_score_stops_its_prefect_server_and_cluster_on_success(golden_model):
    name, data = golden_model
    marker = uuid.uuid4().hex
    before = _marked(marker)
    process = _vigil(["score", "--runner", "dask", "--data", str(data), "--model", name], marker)
    seen, output = _watch(process, marker)
    assert process.returncode == 0, output
    assert "40 rows in" in output
    assert any("uvicorn" in cmd for cmd in seen), seen  # the temporary Prefect API ran
    assert any("multiprocessing" in cmd or "spawn" in cmd for cmd in seen), seen  # a worker
    assert _gone(marker) == before == {}


def test_a_failing_or_terminated_command_stops_its_prefect_server(golden_model, tmp_path):
    name, _ = golden_model
    marker = uuid.uuid4().hex
    failing = _vigil(
        ["score", "--runner", "dask", "--data", str(tmp_path / "missing.csv"), "--model", name],
        marker,
    )
    seen, output = _watch(failing, marker)
    assert failing.returncode == 2 and "missing.csv" in output, output
    assert any("uvicorn" in cmd for cmd in seen), seen
    assert _gone(marker) == {}

    # Terminated while its temporary server runs (a scheduler stopping a job): stopped too.
    marker = uuid.uuid4().hex
    code = (
        "import time\n"
        "from pipelines.cli.app import prefect_api\n"
        "with prefect_api():\n"
        "    print('up', flush=True)\n"
        "    time.sleep(600)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    held = subprocess.Popen(
        [sys.executable, "-c", code], env={**env, MARKER: marker}, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert held.stdout.readline().strip() == "up"
    assert any("uvicorn" in cmd for pid, cmd in _marked(marker).items() if pid != held.pid)
    held.send_signal(signal.SIGTERM)
    assert held.wait(timeout=60) == 128 + signal.SIGTERM
    assert _gone(marker) == {}
