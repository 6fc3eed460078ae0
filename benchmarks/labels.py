"""Label import benchmark: what ``vigil labels import`` does, at 100k and 1M labels.

    python -m benchmarks labels [--sizes 100000 1000000] [--backends sqlite postgres]
    python -m benchmarks labels --baseline DIR   # also another checkout, at small sizes

For each backend and size it writes a generated file of chargebacks (a month of them for
1,000 cards: record id, verdict, known_at, source, entity, reason code), then, in a fresh
process on an empty store, reads and validates the file (``read_label_file``) and stores
it (``add_label_rows``), and imports the same file again (every row a duplicate, nothing
written). It reports wall and CPU seconds of each part and labels/s of the whole import.
PostgreSQL runs in a throwaway schema, dropped at the end. With ``--baseline DIR`` the
same measurement runs with ``DIR`` (another checkout, e.g. ``git worktree add``) first on
``PYTHONPATH``, for sizes up to ``--baseline-max`` (a row-by-row import takes minutes per
hundred thousand). Figures are read off, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HERE = Path(__file__).resolve().parent

#: Run in a fresh process (so a baseline checkout imports its own code): one import of
#: the file, then the same file again; prints the figures as JSON.
MEASURE = """
import json, sys, time
from pipelines.feedback.labels import read_label_file
from pipelines.store import ResultsStore

path, url = sys.argv[1], sys.argv[2]
store = ResultsStore(url)
out = {}
for name in ("first", "again"):
    w0, c0 = time.perf_counter(), time.process_time()
    parsed = read_label_file(path)
    w1, c1 = time.perf_counter(), time.process_time()
    result = store.add_label_rows(parsed.rows, actor="bench", source_name=path)
    w2, c2 = time.perf_counter(), time.process_time()
    out[name] = {
        "rows": parsed.rows_in, "inserted": result.inserted, "duplicates": result.duplicates,
        "read_wall": w1 - w0, "read_cpu": c1 - c0, "store_wall": w2 - w1, "store_cpu": c2 - c1,
    }
print(json.dumps(out))
"""


def write_chargebacks(path: Path, rows: int, *, seed: int = 0) -> Path:
    """A month of chargebacks for 1,000 cards, as a bank sends them."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-10-01", tz="UTC")
    known = start + pd.to_timedelta(rng.integers(0, 30 * 86_400, rows), unit="s")
    ids = np.char.add("tx", np.arange(rows).astype(str))
    cards = np.char.add("card", (rng.integers(0, 1000, rows)).astype(str))
    pd.DataFrame(
        {
            "record_id": ids,
            "verdict": rng.choice(["fraud", "not_fraud"], rows, p=[0.9, 0.1]),
            "known_at": known.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": "chargeback",
            "entity": cards,
            "reason_code": rng.choice(["10.4", "10.5", "13.1"], rows),
        }
    ).to_csv(path, index=False)
    return path


def _postgres_schema(base_url: str):
    """A throwaway schema: (url inside it, drop function)."""
    import sqlalchemy as sa

    schema = f"vigil_bench_labels_{uuid.uuid4().hex[:6]}"
    engine = sa.create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    return f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}", drop


def measure(path: Path, backend: str, postgres_url: str, tmp: Path, pythonpath: str) -> dict:
    """One fresh process importing ``path`` twice into an empty store of ``backend``."""
    drop = None
    if backend == "postgres":
        url, drop = _postgres_schema(postgres_url)
    else:
        url = f"sqlite:///{tmp / f'labels-{uuid.uuid4().hex[:6]}.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["PYTHONPATH"] = pythonpath
    env["VIGIL_HOME"] = str(tmp / "home")
    # From a neutral folder: ``python -c`` puts its working folder first on sys.path,
    # which would shadow the checkout named by PYTHONPATH.
    try:
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, str(path), url],
            env=env, cwd=tmp, capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
    finally:
        if drop is not None:
            drop()
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for part in figures.values():
        wall = part["read_wall"] + part["store_wall"]
        part["wall"] = round(wall, 3)
        part["cpu"] = round(part["read_cpu"] + part["store_cpu"], 3)
        part["labels_per_s"] = round(part["rows"] / wall) if wall else None
        for key in ("read_wall", "read_cpu", "store_wall", "store_cpu"):
            part[key] = round(part[key], 3)
    figures["load_1min"] = round(os.getloadavg()[0], 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--url",
        default=os.environ.get("VIGIL_BENCH_POSTGRES_URL")
        or os.environ.get("VIGIL_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES,
        help="PostgreSQL server (a throwaway schema is made in it)",
    )
    parser.add_argument("--baseline", default=None, help="another checkout, measured too")
    parser.add_argument("--baseline-max", type=int, default=20_000)
    parser.add_argument("--out", required=True, help="the report (JSON)")
    args = parser.parse_args(argv)
    checkouts = [("this checkout", str(HERE.parent))]
    if args.baseline:
        checkouts.append(("baseline", str(Path(args.baseline).resolve())))
    results = []
    with tempfile.TemporaryDirectory(prefix="vigil-labels-") as tmp_name:
        tmp = Path(tmp_name)
        sizes = sorted(set(args.sizes) | ({args.baseline_max} if args.baseline else set()))
        for size in sizes:
            path = write_chargebacks(tmp / f"chargebacks_{size}.csv", size)
            for backend in args.backends:
                for label, pythonpath in checkouts:
                    if label == "baseline" and size > args.baseline_max:
                        continue
                    if label != "baseline" and size not in args.sizes:
                        continue
                    figures = measure(path, backend, args.url, tmp, pythonpath)
                    row = {"code": label, "backend": backend, "size": size, **figures}
                    print(json.dumps(row), flush=True)
                    results.append(row)
    report = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "argv": " ".join(sys.argv[1:] if argv is None else argv),
            "cores": os.cpu_count(),
            "goal_labels_per_s": 100_000,
        },
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: labels/s of each import, split into reading and storing."""
    lines = [
        "A generated month of chargebacks for 1,000 cards (CSV), imported into an empty store "
        "in a fresh process: read and validate the file (`read_label_file`), then store it "
        "(`add_label_rows`); then the same file again (every row a duplicate, nothing "
        "written). labels/s = rows / (read + store wall seconds); CPU s = the importing "
        "process's user + system (read + store), and labels per CPU second of it: on a "
        "loaded machine the wall figures shrink with the load, the CPU ones much less "
        "(PostgreSQL's own work is in neither CPU figure). Goal: 100,000 labels/s.",
        "",
        "| code | backend | labels | import: labels/s | wall s (read + store) "
        "| CPU s (read + store) | labels per CPU s | re-import: labels/s | inserted again "
        "| 1-min load |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        first, again = r["first"], r["again"]
        per_cpu = f"{round(r['size'] / first['cpu']):,}" if first["cpu"] else "-"
        lines.append(
            f"| {r['code']} | {r['backend']} | {r['size']:,} | {first['labels_per_s']:,} "
            f"| {first['wall']:.2f} ({first['read_wall']:.2f} + {first['store_wall']:.2f}) "
            f"| {first['cpu']:.2f} ({first['read_cpu']:.2f} + {first['store_cpu']:.2f}) "
            f"| {per_cpu} | {again['labels_per_s']:,} | {again['inserted']} "
            f"| {r['load_1min']} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
