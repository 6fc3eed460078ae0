"""Start-up benchmark: a 10-row `vigil score` on the embedded default, end to end.

    python -m benchmarks.startup --runs 3
    python -m benchmarks.startup --runs 3 --baseline /tmp/base   # interleaved with a checkout

Sets up a fresh state folder (SQLite store, MLflow on SQLite) with one small registered
VAE, then runs ``vigil score --data ten_rows_K.csv`` in fresh processes (a new 10-row file
each time, so every run scores and writes) and reports wall and CPU seconds per run. With
``--baseline DIR`` each run is followed by the same command with ``DIR`` (another checkout
of the repository, e.g. ``git archive main``) first on ``PYTHONPATH``, so both see the same
load. Not a test: the target (< 3 s) is read off, never asserted. Figures go to a section
of ``benchmarks/RESULTS.md``.

Each checkout first scores one untimed batch: that run creates its results store (the
Alembic migrations, once per store) and writes Python's bytecode caches, as a first run
on an installed machine does. ``PYTHONDONTWRITEBYTECODE`` is dropped from the commands'
environment for the same reason (with it, every run compiles the project's modules from
source, ~0.2 CPU s here); ``--keep-env`` keeps it, as the earlier sessions measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def prepare_home(home: Path) -> None:
    """Register a small demo VAE as champion in a fresh embedded state folder."""
    os.environ["VIGIL_HOME"] = str(home)
    from pipelines.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    settings.apply_environment()
    import mlflow

    from detectors import VAEDetector
    from pipelines.demo import DEMO_SPEC, generate_transactions
    from pipelines.modeling.bundle import ScoringBundle
    from pipelines.modeling.registry import (
        assign_new_version_aliases,
        complete_registration,
        configure_mlflow,
        log_bundle,
        model_name_for,
    )

    configure_mlflow(settings)
    train = generate_transactions(2000, n_anomalies=0, seed=1)
    detector = VAEDetector(epochs=2, categorical_features=DEMO_SPEC.categorical_features)
    detector.fit(train[DEMO_SPEC.feature_columns])
    name = model_name_for(DEMO_SPEC.name, "vae")
    with mlflow.start_run():
        version = log_bundle(
            ScoringBundle(DEMO_SPEC, detector), registered_name=name, detector_kind="vae"
        )
    assign_new_version_aliases(name, version)
    complete_registration(name, version)


def ten_rows(directory: Path, k: int) -> Path:
    from pipelines.demo import generate_transactions

    path = directory / f"ten_rows_{k}.csv"
    generate_transactions(10, n_anomalies=1, seed=100 + k, start_id=10 * k).to_csv(
        path, index=False
    )
    return path


def timed_score(data: Path, home: Path, pythonpath: str | None, keep_env: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_", "PREFECT_API"))}
    if not keep_env:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["VIGIL_HOME"] = str(home)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
        # The baseline keeps its own results store: its migrations may be older.
        env["VIGIL_DATABASE_URL"] = f"sqlite:///{home / 'vigil-baseline.db'}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "score", "--data", str(data)],
        env=env, cwd=str(home.parent), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return {
        "wall_seconds": round(seconds, 2),
        "cpu_seconds": round(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2
        ),
        "load_1min": round(os.getloadavg()[0], 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="another checkout to interleave")
    parser.add_argument("--markdown", default=str(REPO / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--section", default="startup", help="the RESULTS.md section to (re)write")
    parser.add_argument(
        "--keep-env",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE if set (compile the sources every run)",
    )
    args = parser.parse_args(argv)
    checkouts = [("this checkout", None)]
    if args.baseline:
        checkouts.append(("baseline", str(Path(args.baseline).resolve())))
    results: dict[str, list[dict]] = {label: [] for label, _ in checkouts}
    first: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vigil-startup-") as tmp:
        home = Path(tmp) / "home"
        prepare_home(home)
        for label, pythonpath in checkouts:
            data = ten_rows(Path(tmp), 1000 + 100 * len(label))
            first[label] = timed_score(data, home, pythonpath, args.keep_env)
            print(label, "first run (untimed)", json.dumps(first[label]), flush=True)
        for _ in range(args.runs):
            for label, pythonpath in checkouts:
                data = ten_rows(Path(tmp), len(results[label]) + 100 * len(label))
                figures = timed_score(data, home, pythonpath, args.keep_env)
                print(label, json.dumps(figures), flush=True)
                results[label].append(figures)
    write_markdown(results, Path(args.markdown), argv or sys.argv[1:], first, args.section)


def write_markdown(
    results: dict[str, list[dict]],
    path: Path,
    argv: list[str],
    first: dict[str, dict],
    section: str = "startup",
) -> None:
    from benchmarks.report import write_section

    lines = [
        f"# Benchmark results: start-up of a 10-row `vigil score` ({section})",
        "",
        f"Run {datetime.now(UTC).isoformat(timespec='seconds')}, embedded default (SQLite "
        "store, MLflow on SQLite, no `PREFECT_API_URL`), one small registered VAE; a fresh "
        "process and a new 10-row CSV per run. CPU s = user + system of the process. The "
        "machine's 2 cores are shared: the 1-minute load average is given per run.",
        "",
        "| code | run | wall s | CPU s | load |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, runs in results.items():
        for n, r in enumerate(runs, 1):
            lines.append(
                f"| {label} | {n} | {r['wall_seconds']} | {r['cpu_seconds']} | {r['load_1min']} |"
            )
    lines += [
        "",
        "First run of each checkout (creates its results store; not in the table): "
        + "; ".join(
            f"{label} {r['wall_seconds']} s wall, {r['cpu_seconds']} CPU s"
            for label, r in first.items()
        )
        + ".",
        "",
        f"Command: `python -m benchmarks.startup {' '.join(argv)}`",
    ]
    write_section(path, section, lines)


if __name__ == "__main__":
    main()
