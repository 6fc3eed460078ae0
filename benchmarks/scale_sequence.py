"""Scale benchmark, sequence data: the sequence VAE scoring N card payments with their
entity history into PostgreSQL.

    python -m benchmarks scale --only sequence --url postgresql+psycopg://postgres@HOST/DB
    python -m benchmarks scale --only sequence --mode batch --longer 0 --url ...

``--mode``: ``batch`` reads the whole file and scores it as one batch (``score_batch``);
``stream`` scores the file as ``vigil score`` does, through ``score_stream`` (chunks
read in time order, each with the carried tail of the ones before it: bounded memory).
``--longer K`` also streams a file K times as long in time (the same cards over K x 60
days, so K times the rows): with bounded memory its peak RSS stays near the 1M file's,
since the carried tail holds the context horizon (14 days of payments), not the file.

The records are the demo card sequences (``generate_card_sequences``, time-ordered, about
3 payments per card a day; cards x days chosen to give ``--rows``). A small sequence VAE
(2 epochs; 50,000 of the first 300,000 records take gradient steps) is trained and saved
as a bundle. The file is then scored in a fresh child process into a fresh schema. Rows/s,
CPU s and peak RSS are the scoring's own; read off, never asserted.
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

from benchmarks.scale import limit_cell, share_cell

DAYS = 60


def write_card_parquet(path: Path, rows: int, seed: int = 0, longer: int = 1) -> Path:
    """About ``rows`` time-ordered card payments (cards scaled to the row count), over
    ``longer`` x 60 days (``longer`` x the rows, the same cards)."""
    from pipelines.demo_sequences import generate_card_sequences

    cards = max(1, round(rows / (3.2 * DAYS)))
    frame = generate_card_sequences(n_cards=cards, days=DAYS * longer, seed=seed)
    frame.reset_index(drop=True).to_parquet(path, row_group_size=100_000, index=False)
    return path


def train_sequence_bundle(data: Path, directory: Path, train_rows: int = 300_000) -> Path:
    """A small sequence VAE on the file's first ``train_rows`` records (about 18 days, so
    the weekly windows are full; 50,000 of them take gradient steps and the threshold is
    set on the latest ones), saved as a scoring bundle. Trained on the first days alone, the
    threshold would sit below every later record's weekly counts (never seen full) and flag
    nearly all of them."""
    import pandas as pd

    from pipelines.demo_sequences import SEQUENCE_SPEC
    from pipelines.intake.ingest import Batch, validate_batch
    from pipelines.modeling.bundle import ScoringBundle
    from pipelines.modeling.training import TrainConfig, fit_detector, split_for_training

    first = pd.read_parquet(data).head(train_rows)
    clean = validate_batch(Batch(frame=first, source=str(data)), SEQUENCE_SPEC).clean
    config = TrainConfig(
        detectors=["seq_vae"],
        seq_vae={
            "epochs": 2,
            "hidden_dims": [32],
            "latent_dim": 4,
            "context_hidden": 16,
            "max_train_rows": 50_000,
        },
    )
    split = split_for_training(clean, SEQUENCE_SPEC, evaluation_fraction=0.2, seed=0)
    detector = fit_detector("seq_vae", SEQUENCE_SPEC, split, config)
    return ScoringBundle(SEQUENCE_SPEC, detector).save(directory / "seq-bundle")


def score_child(
    bundle_dir: str,
    data: str,
    url: str,
    chunk_size: int,
    threads: int,
    mode: str = "batch",
    with_limit: bool = True,
) -> dict:
    """Runs in the child process: read, validate and score the file; time, CPU, RSS."""
    import resource
    import time

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)  # as VIGIL_SCORE_THREADS: torch's and the BLAS pool
    threadpool_limits(limits=threads, user_api="blas")
    from pipelines.intake.ingest import read_batch, validate_batch
    from pipelines.intake.stream import open_stream
    from pipelines.modeling.bundle import ScoringBundle
    from pipelines.modeling.registry import ModelRef
    from pipelines.scoring.batch import score_batch, score_stream
    from pipelines.scoring.run import RunRequest
    from pipelines.store import ResultsStore

    bundle = ScoringBundle.load(bundle_dir)
    store = ResultsStore(url)
    load_at_start = [round(x, 1) for x in os.getloadavg()]
    cpu_before, started = os.times(), time.perf_counter()
    read_validate_s = None
    if mode == "stream":
        report = score_stream(
            store,
            bundle,
            open_stream(data, chunk_size),
            RunRequest(model=ModelRef("scale-seq", "1", None)),
        )
    else:
        batch = read_batch(data)
        validated = validate_batch(batch, bundle.spec)
        read_validate_s = round(time.perf_counter() - started, 2)
        report = score_batch(
            store,
            bundle,
            batch,
            validated,
            RunRequest(model=ModelRef("scale-seq", "1", None)),
            chunk_size=chunk_size,
        )
    seconds = time.perf_counter() - started
    cpu_after = os.times()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    limit = measure_limit(bundle, data, url, chunk_size) if with_limit else None
    return {
        "runner": f"local (one process), score_{mode}",
        "in_memory_reason": report.in_memory_reason,
        "history": report.history,
        "torch_threads": torch.get_num_threads(),
        "load_at_start": load_at_start,
        "load_at_end": [round(x, 1) for x in os.getloadavg()],
        "seconds": round(seconds, 2),
        "read_validate_seconds": read_validate_s,
        "cpu_seconds": round(cpu, 1),
        "rows_in": report.rows_in,
        "rows_scored": report.rows_scored,
        "rows_quarantined": report.rows_quarantined,
        "rows_flagged": report.rows_flagged,
        "rows_per_second": round(report.rows_in / seconds),
        "peak_rss_mb": peak_mb,
        **({} if limit is None else limit.figures(report.rows_in / seconds, cpu)),
    }


def measure_limit(bundle, data: str, url: str, chunk_size: int):
    """The bare parts on the same file, in this process (see :mod:`benchmarks.limit`):
    read it into Arrow, the detector's forward on the whole file's model input (its
    context features built outside the timer, no kept history), COPY the scores."""
    import pyarrow.parquet as pq

    from benchmarks.limit import Limit, time_copy, time_forward, time_read
    from pipelines.intake.ingest import read_batch, validate_batch

    limit = Limit(rows=pq.ParquetFile(data).metadata.num_rows)
    time_read(data, chunk_size, limit)
    clean = validate_batch(read_batch(data), bundle.spec).clean
    model_input = bundle.model_input(bundle.prepare(clean).features)
    scores = time_forward(iter([model_input]), bundle.detector.decision_function, limit)
    ids = clean[bundle.spec.id_column].astype(str).to_numpy()
    del clean, model_input
    time_copy(url, ids, scores, bundle.threshold, chunk_size, limit)
    return limit


def _score_in_child(args, bundle: Path, data: Path, mode: str, limit: bool = True) -> dict:
    """Score ``data`` in a fresh child process into a fresh schema (dropped after)."""
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    from benchmarks.scale import with_schema

    schema = f"scale_seq_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(args.url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale_sequence", "--child", str(bundle), str(data),
             with_schema(args.url, schema), str(args.chunk_size), str(args.threads), mode,
             "limit" if limit else "-"],
            capture_output=True, text=True,
        )  # fmt: skip
        if child.returncode:
            raise SystemExit(f"scoring child failed:\n{child.stderr[-3000:]}")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    figures.update(rows=pq.ParquetFile(data).metadata.num_rows, detector="seq_vae")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default=os.environ.get("VIGIL_BENCH_POSTGRES_URL"))
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mode", choices=["batch", "stream"], default="batch")
    parser.add_argument("--longer", type=int, default=0, help="also stream a file K x as long")
    parser.add_argument("--data-dir", default=None, help="keep the Parquet file here (reused)")
    parser.add_argument("--bundle", default=None, help="a bundle trained before (reused)")
    parser.add_argument("--out", help="the report (JSON)")
    parser.add_argument(
        "--child", nargs=7,
        metavar=("BUNDLE", "DATA", "URL", "CHUNK", "THREADS", "MODE", "LIMIT"),
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.child:
        bundle_dir, data_path, url, chunk, threads, mode, limit = args.child
        figures = score_child(
            bundle_dir, data_path, url, int(chunk), int(threads), mode, limit == "limit"
        )
        print(json.dumps(figures))
        return
    if not args.out:
        parser.error("give --out (the report)")
    if not args.url:
        parser.error("give --url (a PostgreSQL SQLAlchemy URL) or set VIGIL_BENCH_POSTGRES_URL")
    work = Path(args.data_dir or tempfile.mkdtemp(prefix="vigil-scale-seq-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"cards-{args.rows}.parquet"
    if not data.exists():
        write_card_parquet(data, args.rows)
    bundle = Path(args.bundle) if args.bundle else train_sequence_bundle(data, work)
    results = {args.mode: _score_in_child(args, bundle, data, args.mode)}
    print(json.dumps(results, indent=2), flush=True)
    if args.longer > 1:
        longer = work / f"cards-{args.rows}-x{args.longer}.parquet"
        if not longer.exists():
            write_card_parquet(longer, args.rows, longer=args.longer)
        # The longer file's limit is left out: its forward would hold the whole file.
        results[f"stream_x{args.longer}"] = _score_in_child(
            args, bundle, longer, "stream", limit=False
        )
        print(json.dumps(results[f"stream_x{args.longer}"], indent=2))
    out = Path(args.out)
    report = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m benchmarks.scale_sequence " + " ".join(argv or sys.argv[1:]),
            "chunk_size": args.chunk_size,
        },
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: one row per scored file (the file and, with ``--longer``, the
    file K times as long)."""
    results = report.get("results") or report["result"]
    if "seconds" in results:  # one run
        results = {"run": results}
    lines = [
        "Demo card payments (time-ordered Parquet), a small sequence VAE, scored in a fresh "
        f"child process into a fresh schema, {report['meta']['chunk_size']:,}-row chunks, no "
        "kept history; CPU s and peak RSS are the child's.",
        "",
        "| run | rows | load start / end | seconds | rows/s | CPU s | CPU s per 1M "
        "| limit rows/s (read + forward + COPY s) | share of limit | peak RSS MB | flagged |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        per_million = r.get("cpu_per_1m", round(r["cpu_seconds"] / r["rows_in"] * 1e6, 2))
        lines.append(
            f"| {name} | {r['rows']:,} | {r['load_at_start'][0]} / {r['load_at_end'][0]} | "
            f"{r['seconds']} | {r['rows_per_second']:,} | {r['cpu_seconds']} | "
            f"{per_million} | {limit_cell(r)} | {share_cell(r)} | "
            f"{r['peak_rss_mb']:,} | {r['rows_flagged']:,} |"
        )
    lines += [
        "",
        "Limit: timed in the same child right after the run, on the same file "
        "(`benchmarks/limit.py`): the file read into Arrow, the sequence detector's "
        "`decision_function` on the whole file's model input (context features built "
        "outside the timer), one COPY + commit per chunk of the scores; share = vigil's "
        "rows/s over the limit's.",
    ]
    return lines


if __name__ == "__main__":
    main()
