"""Start-up benchmark: a 10-row `vigil score` on the embedded default, end to end, and
`vigil api` until it answers.

    python -m benchmarks startup [--runs 5]
    python -m benchmarks startup --baseline /tmp/base   # interleaved with another checkout

Sets up a fresh state folder (SQLite store, MLflow on SQLite) the way a user does: the
demo data and two ``vigil train --detectors vae`` runs, so there is a champion and a
challenger, each with its training reference (the run-health watch and the shadow run
both run). Then it runs ``vigil score --data ten_rows_K.csv`` in fresh processes (a new
10-row file each time, so every run scores and writes) and reports wall and CPU seconds
per run. With ``--baseline DIR`` each run is followed by the same command with ``DIR``
(another checkout of the repository, e.g. ``git archive main``) first on ``PYTHONPATH``,
so both see the same load. ``--api-runs N`` also starts ``vigil api`` N times per
checkout and times it until ``GET /health`` answers (CPU seconds of the server process
then, and whether it loaded torch). What it answers: how long a user waits for the
smallest score (the aim is under 1 s); read off, never asserted.

Each checkout first scores one untimed batch: that run creates its results store (the
Alembic migrations, once per store) and writes Python's bytecode caches, as a first run
on an installed machine does. ``PYTHONDONTWRITEBYTECODE`` is dropped from the commands'
environment for the same reason (with it, every run compiles the project's modules from
source); ``--keep-env`` keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def prepare_home(home: Path) -> None:
    """A champion and a challenger VAE (each with its training reference) in a fresh
    embedded state folder, trained through the CLI as a user does."""
    work = home.parent
    env = _env(home, None, keep_env=True)
    vigil = [sys.executable, "-m", "pipelines.cli"]
    subprocess.run([*vigil, "demo-data"], env=env, cwd=work, check=True, capture_output=True)
    for seed in ("0", "1"):
        subprocess.run(
            [*vigil, "train", "--data", "data/samples/demo_transactions_train.csv",
             "--spec", "data/specs/demo_transactions.yaml", "--detectors", "vae",
             "--epochs", "2", "--seed", seed],
            env=env, cwd=work, check=True, capture_output=True,
        )  # fmt: skip


def _env(home: Path, pythonpath: str | None, keep_env: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_", "PREFECT_API"))}
    if not keep_env:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["VIGIL_HOME"] = str(home)
    env["PYTHONPATH"] = pythonpath or str(REPO)
    if pythonpath:
        # The baseline keeps its own results store: its migrations may be older.
        env["VIGIL_DATABASE_URL"] = f"sqlite:///{home / 'vigil-baseline.db'}"
    return env


def ten_rows(directory: Path, k: int) -> Path:
    from pipelines.demo import generate_transactions

    path = directory / f"ten_rows_{k}.csv"
    generate_transactions(10, n_anomalies=1, seed=100 + k, start_id=10 * k).to_csv(
        path, index=False
    )
    return path


def timed_score(data: Path, home: Path, pythonpath: str | None, keep_env: bool = False) -> dict:
    env = _env(home, pythonpath, keep_env)
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_api(home: Path, pythonpath: str | None, keep_env: bool = False) -> dict:
    """Start ``vigil api`` and time it until ``GET /health`` answers 200."""
    import httpx

    port = _free_port()
    env = _env(home, pythonpath, keep_env)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "api", "--port", str(port)],
        env=env, cwd=str(home.parent), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode()[-2000:])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 300:
                raise RuntimeError("vigil api did not answer within 300 s")
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        cpu = _process_cpu_seconds(process.pid)
        torch_loaded = "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {
        "wall_seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "torch_loaded": torch_loaded,
        "load_1min": round(os.getloadavg()[0], 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--api-runs", type=int, default=3, help="vigil api starts per checkout")
    parser.add_argument("--baseline", default=None, help="another checkout to interleave")
    parser.add_argument("--out", required=True, help="the report (JSON)")
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
    api: dict[str, list[dict]] = {label: [] for label, _ in checkouts}
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
        for _ in range(args.api_runs):
            for label, pythonpath in checkouts:
                figures = timed_api(home, pythonpath, args.keep_env)
                print(label, "api", json.dumps(figures), flush=True)
                api[label].append(figures)
    report = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "argv": " ".join(sys.argv[1:] if argv is None else argv),
            "cores": os.cpu_count(),
            "keep_env": args.keep_env,
        },
        "results": results,
        "api": api,
        "first": first,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: wall and CPU seconds of each run, per checkout."""
    lines = [
        "Embedded default (SQLite store, MLflow on SQLite, no `PREFECT_API_URL`), a "
        "champion and a challenger VAE trained by `vigil train` (so the run-health watch "
        "and the shadow run both run); a fresh process and a new 10-row CSV per run, after "
        "one untimed first run per checkout (it creates the results store). CPU s = user + "
        "system. Baseline: another checkout (`--baseline DIR`), runs interleaved.",
        "",
        "| code | runs | wall s (median, range) | CPU s (median, range) | 1-min load |",
        "|---|---:|---|---|---|",
    ]
    for label, runs in report["results"].items():
        if not runs:
            continue
        wall = sorted(r["wall_seconds"] for r in runs)
        cpu = sorted(r["cpu_seconds"] for r in runs)
        load = sorted(r["load_1min"] for r in runs)
        lines.append(
            f"| {label} | {len(runs)} | {statistics.median(wall):.2f} ({wall[0]}-{wall[-1]}) "
            f"| {statistics.median(cpu):.2f} ({cpu[0]}-{cpu[-1]}) | {load[0]}-{load[-1]} |"
        )
    api = {label: runs for label, runs in (report.get("api") or {}).items() if runs}
    if api:
        lines += [
            "",
            "`vigil api` on the same champion, from start until `GET /health` answers "
            "(CPU s: the server process at that moment):",
            "",
            "| code | starts | wall s (median, range) | CPU s (median, range) | torch loaded "
            "| 1-min load |",
            "|---|---:|---|---|---|---|",
        ]
        for label, runs in api.items():
            wall = sorted(r["wall_seconds"] for r in runs)
            cpu = sorted(r["cpu_seconds"] for r in runs)
            load = sorted(r["load_1min"] for r in runs)
            torch = "yes" if any(r["torch_loaded"] for r in runs) else "no"
            lines.append(
                f"| {label} | {len(runs)} | {statistics.median(wall):.2f} ({wall[0]}-{wall[-1]}) "
                f"| {statistics.median(cpu):.2f} ({cpu[0]}-{cpu[-1]}) | {torch} "
                f"| {load[0]}-{load[-1]} |"
            )
    first = report.get("first") or {}
    if first:
        lines += [
            "",
            "First run (creates the store; not in the table): "
            + "; ".join(
                f"{label} {r['wall_seconds']} s wall, {r['cpu_seconds']} CPU s"
                for label, r in first.items()
            )
            + ".",
        ]
    return lines


if __name__ == "__main__":
    main()
