"""Scale benchmark, sequence data: the sequence VAE scoring N card payments with their
entity history into PostgreSQL (issue 13's 50,000 rows/s target).

    python -m benchmarks.scale_sequence --rows 1000000 --url postgresql+psycopg://postgres@127.0.0.1:5432/test

The records are the demo card sequences (``generate_card_sequences``, time-ordered, about
3 payments per card a day; cards x days chosen to give ``--rows``). A small sequence VAE
(2 epochs; 50,000 of the first 300,000 records take gradient steps) is trained and saved
as a bundle. The file is then scored in a fresh child process as ``vigil score`` scores a
sequence file: read whole (``score_stream`` refuses sequence specs: a batch needs its
whole time order), validated, then ``score_batch`` into a fresh schema (entity history
from the store, context features over the batch, windows, the store's bulk writes in
chunks), so rows/s, CPU s and peak RSS are the scoring's own. Figures go to
``benchmarks/results/scale_sequence.json``; read off, never asserted.
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

DAYS = 60


def write_card_parquet(path: Path, rows: int, seed: int = 0) -> Path:
    """About ``rows`` time-ordered card payments (cards scaled to the row count)."""
    from pipelines.demo_sequences import generate_card_sequences

    cards = max(1, round(rows / (3.2 * DAYS)))
    frame = generate_card_sequences(n_cards=cards, days=DAYS, seed=seed)
    frame.reset_index(drop=True).to_parquet(path, row_group_size=100_000, index=False)
    return path


def train_sequence_bundle(data: Path, directory: Path, train_rows: int = 300_000) -> Path:
    """A small sequence VAE on the file's first ``train_rows`` records (about 18 days, so
    the weekly windows are full; 50,000 of them take gradient steps and the threshold is
    set on the latest ones), saved as a scoring bundle. Trained on the first 3 days only,
    the threshold flagged 94% of the later records (their 7-day counts were never seen)."""
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


def score_child(bundle_dir: str, data: str, url: str, chunk_size: int, threads: int) -> dict:
    """Runs in the child process: read, validate and score the file; time, CPU, RSS."""
    import resource
    import time

    import torch

    torch.set_num_threads(threads)
    from pipelines.intake.ingest import read_batch, validate_batch
    from pipelines.modeling.bundle import ScoringBundle
    from pipelines.scoring.batch import score_batch
    from pipelines.store import ResultsStore

    bundle = ScoringBundle.load(bundle_dir)
    store = ResultsStore(url)
    load_at_start = [round(x, 1) for x in os.getloadavg()]
    cpu_before, started = os.times(), time.perf_counter()
    batch = read_batch(data)
    validated = validate_batch(batch, bundle.spec)
    read_validate_s = time.perf_counter() - started
    report = score_batch(
        bundle=bundle, batch=batch, validated=validated, store=store, model_name="scale-seq",
        model_version="1", model_alias=None, chunk_size=chunk_size,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    cpu_after = os.times()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {
        "runner": "local (one process), score_batch",
        "torch_threads": torch.get_num_threads(),
        "load_at_start": load_at_start,
        "load_at_end": [round(x, 1) for x in os.getloadavg()],
        "seconds": round(seconds, 2),
        "read_validate_seconds": round(read_validate_s, 2),
        "cpu_seconds": round(cpu, 1),
        "rows_in": report.rows_in,
        "rows_scored": report.rows_scored,
        "rows_quarantined": report.rows_quarantined,
        "rows_flagged": report.rows_flagged,
        "rows_per_second": round(report.rows_in / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default=os.environ.get("VIGIL_BENCH_POSTGRES_URL"))
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None, help="keep the Parquet file here (reused)")
    parser.add_argument("--out", default="benchmarks/results/scale_sequence.json")
    parser.add_argument("--child", nargs=5, metavar=("BUNDLE", "DATA", "URL", "CHUNK", "THREADS"))
    args = parser.parse_args(argv)
    if args.child:
        bundle_dir, data_path, url, chunk, threads = args.child
        print(json.dumps(score_child(bundle_dir, data_path, url, int(chunk), int(threads))))
        return
    if not args.url:
        parser.error("give --url (a PostgreSQL SQLAlchemy URL) or set VIGIL_BENCH_POSTGRES_URL")
    import sqlalchemy as sa

    from benchmarks.scale import with_schema

    work = Path(args.data_dir or tempfile.mkdtemp(prefix="vigil-scale-seq-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"cards-{args.rows}.parquet"
    if not data.exists():
        write_card_parquet(data, args.rows)
    bundle = train_sequence_bundle(data, work)
    schema = f"scale_seq_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(args.url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale_sequence", "--child", str(bundle), str(data),
             with_schema(args.url, schema), str(args.chunk_size), str(args.threads)],
            capture_output=True, text=True,
        )  # fmt: skip
        if child.returncode:
            raise SystemExit(f"scoring child failed:\n{child.stderr[-3000:]}")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    import pyarrow.parquet as pq

    figures.update(rows=pq.ParquetFile(data).metadata.num_rows, detector="seq_vae")
    report = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m benchmarks.scale_sequence " + " ".join(argv or sys.argv[1:]),
            "chunk_size": args.chunk_size,
        },
        "result": figures,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
