"""Scale benchmark: streamed scoring of N transactions from Parquet into the results store.

    python -m benchmarks scale --only scoring --url postgresql+psycopg://postgres@HOST/DB
    python -m benchmarks scale --only scoring --threads 1 2 --knn-views input,latent none
    python -m benchmarks scale --only dask --url ...   # Dask LocalCluster against one process

``--sources sql`` scores the same rows from a PostgreSQL table (text columns, the id its
primary key, loaded by COPY into the run's schema) streamed through a server-side cursor,
as ``vigil score --data URL --table T`` does; its time includes the batch-id pass over
the table.

``--runners dask`` scores the same file through the Dask runner (``DaskPartitions``, a
LocalCluster of ``--dask-workers`` processes with one torch thread each) inside a Prefect
flow, as ``vigil score --runner dask`` does. Its CPU seconds and peak RSS are the whole
process tree's (driver, Dask scheduler, nannies and workers, the temporary Prefect API),
sampled every half second; the driver's own peak RSS is reported beside them.

Each (knn views, threads) pair is one configuration: ``--knn-views none`` trains the
same VAE without its kNN views (the pipeline's own ceiling, since the kNN distances are
most of the detector's cost); ``--threads`` sets torch's threads in the scoring child.

For each size: write the Parquet file (100k-row groups), then score it in a fresh child
process (so its peak RSS is the scoring's own) with ``score_stream`` into a fresh
PostgreSQL schema, and report end-to-end rows/s, peak RSS, and, for reference, the
detector alone and the store's bulk write alone on one chunk. Not a test: the figures are
read off, never asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROW_GROUP = 100_000


def write_parquet(path: Path, rows: int, seed: int = 0) -> Path:
    """Demo transactions (about 1% planted anomalies), written group by group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.demo import generate_transactions

    writer = None
    try:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            frame = generate_transactions(
                n, n_anomalies=max(1, n // 100), seed=seed + start, start_id=start
            )
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return path


def train_bundle(directory: Path, seed: int = 0, knn_views: tuple[str, ...] | None = None) -> Path:
    """The demo VAE (5 epochs on 20k rows); ``knn_views`` as VAEDetector's (None: default)."""
    from detectors import VAEDetector
    from pipelines.demo import DEMO_SPEC, generate_transactions
    from pipelines.modeling.bundle import ScoringBundle

    train = generate_transactions(20_000, n_anomalies=0, seed=seed + 10**9)
    options = {} if knn_views is None else {"knn_views": knn_views}
    detector = VAEDetector(epochs=5, categorical_features=DEMO_SPEC.categorical_features, **options)
    detector.fit(train[DEMO_SPEC.feature_columns])
    name = "bundle" if knn_views is None else f"bundle-knn-{'-'.join(knn_views) or 'none'}"
    return ScoringBundle(DEMO_SPEC, detector).save(directory / name)


def with_schema(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def score_child(bundle_dir: str, data: str, url: str, chunk_size: int, threads: int) -> dict:
    """Runs in the child process: score the file, report time, CPU, RSS and phases."""
    import torch
    from threadpoolctl import threadpool_limits

    if threads:  # as VIGIL_SCORE_THREADS: torch's threads and the numpy forward's BLAS pool
        torch.set_num_threads(threads)
        threadpool_limits(limits=threads, user_api="blas")
    from pipelines.intake.stream import open_stream
    from pipelines.modeling.bundle import ScoringBundle
    from pipelines.modeling.registry import ModelRef
    from pipelines.scoring.batch import score_stream
    from pipelines.scoring.run import RunRequest
    from pipelines.store import ResultsStore

    bundle = ScoringBundle.load(bundle_dir)
    store = ResultsStore(url)
    completing = _time_calls(store, "complete_run")  # the end-of-run step, alone
    from_sql = data.startswith(SQL_SOURCE)
    if from_sql:  # the table the parent loaded into this schema, read through a cursor
        stream = open_stream(url, chunk_size, table=data[len(SQL_SOURCE) :],
                             order_by=bundle.spec.id_column)  # fmt: skip
    else:
        stream = open_stream(data, chunk_size)
    load_at_start = [round(x, 1) for x in os.getloadavg()]
    cpu_before = os.times()
    started = time.perf_counter()
    report = score_stream(store, bundle, stream, RunRequest(model=ModelRef("scale-vae", "1", None)))
    seconds = time.perf_counter() - started
    cpu_after = os.times()
    cpu_seconds = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    limit = None if from_sql else measure_limit(bundle, data, url, chunk_size)
    return {
        "runner": "local (one process)",
        "source": "PostgreSQL table (cursor)" if from_sql else "Parquet file",
        "torch_threads": torch.get_num_threads(),
        "load_at_start": load_at_start,
        "load_at_end": [round(x, 1) for x in os.getloadavg()],
        "cpu_seconds": round(cpu_seconds, 1),
        "rows_in": report.rows_in,
        "rows_scored": report.rows_scored,
        "rows_quarantined": report.rows_quarantined,
        "rows_flagged": report.rows_flagged,
        "seconds": round(seconds, 2),
        "rows_per_second": round(report.rows_in / seconds),
        "peak_rss_mb": round(peak_mb),
        "complete_run_seconds": round(completing["seconds"], 2),
        **({} if from_sql else phase_figures(bundle, store, data, chunk_size)),
        **({} if limit is None else limit.figures(report.rows_in / seconds, cpu_seconds)),
    }


def measure_limit(bundle, data: str, url: str, chunk_size: int):
    """The bare parts on the same file, in this process (see :mod:`benchmarks.limit`):
    read it into Arrow, the detector's forward on each chunk's model input, COPY the
    scores."""
    import pyarrow.parquet as pq

    from benchmarks.limit import Limit, parquet_batches, time_copy, time_forward, time_read
    from pipelines.intake.ingest import Batch, validate_batch

    limit = Limit(rows=pq.ParquetFile(data).metadata.num_rows)
    time_read(data, chunk_size, limit)
    ids = []

    def model_inputs():
        for record_batch in parquet_batches(data, chunk_size):
            clean = validate_batch(Batch(frame=record_batch.to_pandas(), source=data),
                                   bundle.spec).clean  # fmt: skip
            ids.append(clean[bundle.spec.id_column].astype(str).to_numpy())
            yield bundle.model_input(bundle.prepare(clean).features)

    scores = time_forward(model_inputs(), bundle.detector.decision_function, limit)
    time_copy(url, np.concatenate(ids), scores, bundle.threshold, chunk_size, limit)
    return limit


def _time_calls(obj, method: str) -> dict:
    """Wrap ``obj.method`` so the wall seconds spent in it add up in the returned dict."""
    timed = {"seconds": 0.0}
    inner = getattr(obj, method)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            timed["seconds"] += time.perf_counter() - started

    setattr(obj, method, wrapper)
    return timed


class TreeSampler:
    """CPU seconds and peak RSS of this process and all its descendants (Dask workers,
    the Prefect API server), sampled in a thread; an ended process keeps its last CPU."""

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        import psutil

        self._psutil = psutil
        self._root = psutil.Process()
        self._cpu: dict[int, float] = {}
        self._base = self._cpu_of(self._root)
        self.peak_rss_mb = 0.0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _cpu_of(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def sample(self) -> float:
        """Take a sample now; returns the tree's CPU seconds so far."""
        rss = 0
        processes = [self._root, *self._root.children(recursive=True)]
        for process in processes:
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    self._cpu[process.pid] = self._cpu_of(process)
            except self._psutil.Error:
                continue
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)
        self.peak_processes = max(self.peak_processes, len(processes))
        return self.cpu_seconds

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def cpu_seconds(self) -> float:
        own = self._cpu.get(self._root.pid, self._base) - self._base
        others = sum(v for pid, v in self._cpu.items() if pid != self._root.pid)
        return own + others


def score_child_dask(
    bundle_dir: str, data: str, url: str, chunk_size: int, threads: int, workers: int
) -> dict:
    """Runs in the child process: the same file through the Dask runner, in a flow."""
    from pipelines.settings import get_settings

    get_settings().apply_environment()  # before Prefect is imported: its home and timeouts
    from benchmarks import scale_dask

    load_at_start = [round(x, 1) for x in os.getloadavg()]
    started = time.perf_counter()
    with TreeSampler() as sampler:
        scale_dask.SAMPLER = sampler  # read by the flow around the scoring alone
        figures = scale_dask.dask_flow(bundle_dir, data, url, chunk_size, threads, workers)
    figures.update(
        seconds_with_startup=round(time.perf_counter() - started, 2),
        load_at_start=load_at_start,
        load_at_end=[round(x, 1) for x in os.getloadavg()],
        cpu_seconds=round(sampler.cpu_seconds, 1),
        peak_rss_mb=round(sampler.peak_rss_mb),
        driver_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        peak_processes=sampler.peak_processes,
    )
    return figures


def phase_figures(bundle, store, data: str, chunk_size: int) -> dict:
    """One chunk through each phase alone: read + validate, model, bulk write."""
    import pyarrow.parquet as pq

    from pipelines.intake.ingest import Batch, validate_batch
    from pipelines.store.runs import ChunkWrite

    frame = next(pq.ParquetFile(data).iter_batches(batch_size=chunk_size)).to_pandas()
    started = time.perf_counter()
    validated = validate_batch(Batch(frame=frame, source=data), bundle.spec)
    validate_s = time.perf_counter() - started
    features = bundle.model_input(bundle.prepare(validated.clean).features)
    started = time.perf_counter()
    bundle.detector.decision_function(features)
    detector_s = time.perf_counter() - started
    started = time.perf_counter()
    result = bundle.score(validated.clean)
    model_s = time.perf_counter() - started
    ticket = store.claim_run(
        batch_id=f"write-{uuid.uuid4().hex[:8]}", source=data, dataset="scale",
        model_name="scale-write", model_version="1", model_alias=None, threshold=1.0,
        chunk_size=chunk_size, lease_seconds=60,
    )  # fmt: skip
    scores = pd.DataFrame(
        {
            "record_id": validated.clean[bundle.spec.id_column].to_numpy(),
            "score": result["score"].to_numpy(),
            "is_anomaly": result["is_anomaly"].to_numpy(),
        }
    )
    write = ChunkWrite(
        chunk_number=0, chunk_size=chunk_size, first_row=1, rows_in=len(frame), scores=scores,
        flags=[], quarantined=validated.quarantined, rows_quarantined=0, batch_id="w",
        source=data,
    )  # fmt: skip
    started = time.perf_counter()
    store.write_chunk(ticket.run.id, ticket.owner, write)
    write_s = time.perf_counter() - started
    n = len(frame)
    return {
        "chunk_rows": n,
        "validate_rows_per_second": round(n / validate_s),
        "detector_rows_per_second": round(n / detector_s),
        "model_with_reasons_rows_per_second": round(n / model_s),
        "bulk_write_rows_per_second": round(n / write_s),
    }


def run(
    rows_list: list[int],
    url: str,
    chunk_size: int,
    workdir: Path,
    *,
    threads: list[int],
    knn_views: list[str],
    data_dir: Path | None = None,
    runners: tuple[str, ...] = ("local",),
    dask_workers: int = 2,
    sources: tuple[str, ...] = ("file",),
) -> dict:
    """Every configuration on every size, configurations interleaved per size (the machine
    is shared: neighbouring runs see about the same load)."""
    import sqlalchemy as sa

    bundles = {views: train_bundle(workdir, knn_views=_views(views)) for views in knn_views}
    engine = sa.create_engine(url)
    results = []
    for rows in rows_list:
        data = (data_dir or workdir) / f"tx_{rows}.parquet"
        kept = data.exists()
        if not kept:
            data.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(data, rows)
        for views, bundle_dir in bundles.items():
            for n_threads in threads:
                for runner, source in [(r, s) for r in runners for s in sources]:
                    figures = _score_in_child(
                        engine, url, bundle_dir, data, chunk_size, n_threads,
                        runner=runner, workers=dask_workers, source=source,
                    )  # fmt: skip
                    figures.update(
                        rows=rows, knn_views=views, file_mb=round(data.stat().st_size / 2**20, 1)
                    )
                    print(json.dumps(figures), flush=True)
                    results.append(figures)
        if not kept and data_dir is None:
            data.unlink()
    return {"meta": _meta(url, chunk_size), "results": results}


def _views(name: str) -> tuple[str, ...] | None:
    """'input,latent' (the default model) -> None; 'none' -> (); 'input' -> ('input',)."""
    if name == "input,latent":
        return None
    return () if name == "none" else tuple(name.split(","))


#: A child's data argument for "the table of this name in the run's schema".
SQL_SOURCE = "sql:"


def load_source_table(engine, schema: str, data: Path, table: str = "scale_source") -> str:
    """The Parquet file as a table in ``schema`` (text columns, ``transaction_id`` its
    primary key, as a source table's id would be), loaded by COPY; returns its name."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(data)
    columns = parquet.schema_arrow.names
    dbapi = engine.raw_connection()
    try:
        with dbapi.cursor() as cursor:
            cursor.execute(
                f'CREATE TABLE "{schema}".{table} ('
                + ", ".join(
                    f'"{c}" text' + (" PRIMARY KEY" if c == "transaction_id" else "")
                    for c in columns
                )
                + ")"
            )
            for record_batch in parquet.iter_batches(batch_size=ROW_GROUP):
                buffer = io.BytesIO()
                pacsv.write_csv(record_batch, buffer, pacsv.WriteOptions(include_header=False))
                copy_sql = f'COPY "{schema}".{table} FROM STDIN (FORMAT csv)'
                with cursor.copy(copy_sql) as copy:
                    copy.write(buffer.getvalue())
            cursor.execute(f'ANALYZE "{schema}".{table}')
        dbapi.commit()
    finally:
        dbapi.close()
    return table


def _score_in_child(
    engine, url: str, bundle_dir: Path, data: Path, chunk_size: int, threads, *,
    runner: str = "local", workers: int = 2, source: str = "file",
):  # fmt: skip
    import sqlalchemy as sa

    schema = f"vigil_scale_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        if source == "sql":
            data = SQL_SOURCE + load_source_table(engine, schema, data)
        arguments = [str(bundle_dir), str(data), with_schema(url, schema), str(chunk_size)]
        if runner == "dask":
            arguments = ["--child-dask", *arguments, str(threads), str(workers)]
        else:
            arguments = ["--child", *arguments, str(threads)]
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale", *arguments],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if child.returncode != 0:
            raise RuntimeError(child.stderr[-4000:])
        return json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def _meta(url: str, chunk_size: int) -> dict:
    import torch

    from benchmarks.tabular import package_versions

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads",
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": package_versions(("torch", "pandas", "pyarrow", "sqlalchemy", "psycopg")),
        "store": url.split("@")[-1].split("?")[0],
        "chunk_size": chunk_size,
    }


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: one row per scoring run (the Dask comparison when it ran)."""
    if any("dask" in str(r.get("runner", "")) for r in report["results"]):
        return _dask_figures(report)
    meta = report["meta"]
    lines = [
        f"`score_stream` of demo transactions (Parquet, tabular VAE: 5 epochs on 20k rows) into "
        f"a fresh PostgreSQL schema, {meta['chunk_size']:,}-row chunks, a fresh child process "
        "per run; CPU s and peak RSS are the child's (PostgreSQL's own work is not in them). "
        "End-of-run step: `complete_run` (totals, flags into review cases).",
        "",
        "| rows | source | kNN views | threads | load start / end | seconds | rows/s "
        "| CPU s | CPU s per 1M | limit rows/s (read + forward + COPY s) | share of limit "
        "| peak RSS MB | flagged | end-of-run step s |",
        "|---:|---|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['rows']:,} | {r.get('source', 'Parquet file')} | "
            f"{r.get('knn_views', 'input,latent')} | {r['torch_threads']} | "
            f"{r['load_at_start'][0]} / {r['load_at_end'][0]} | {r['seconds']} | "
            f"{r['rows_per_second']:,} | {r['cpu_seconds']} | "
            f"{r.get('cpu_per_1m', round(r['cpu_seconds'] / r['rows_in'] * 1e6, 2))} | "
            f"{limit_cell(r)} | {share_cell(r)} | {r['peak_rss_mb']:,} | "
            f"{r['rows_flagged']:,} | {r.get('complete_run_seconds', '-')} |"
        )
    lines += [
        "",
        "Limit: the bare parts timed in the same child right after the run, on the same "
        "file (`benchmarks/limit.py`): the file read into Arrow, the detector's "
        "`decision_function` on each chunk's model input, and one COPY + commit per chunk "
        "of the scores into a copy of the `scores` table; share = vigil's rows/s over the "
        "limit's. CPU s per 1M of the parts: "
        + "; ".join(
            f"{r['rows']:,} rows: "
            + ", ".join(f"{k} {v}" for k, v in r["limit_parts_cpu_per_1m"].items())
            for r in report["results"]
            if "limit_parts_cpu_per_1m" in r
        )
        + ".",
    ]
    return lines


def limit_cell(r: dict) -> str:
    """'412,000 (0.4 + 1.6 + 0.4)': the limit's rows/s and its parts' wall seconds."""
    parts = r.get("limit_parts_seconds")
    if not parts:
        return "-"
    return f"{r['limit_rows_per_second']:,} ({' + '.join(str(v) for v in parts.values())})"


def share_cell(r: dict) -> str:
    return f"{r['share_of_limit']:.0%}" if "share_of_limit" in r else "-"


def _latest_per_runner(results: list[dict]) -> list[dict]:
    """The last result of each (rows, runner), its run number left out of the name."""
    latest: dict[tuple, dict] = {}
    for r in results:
        runner = str(r.get("runner", "local")).split(", run ")[0]
        latest.pop((r["rows"], runner), None)  # re-inserted last: the table keeps run order
        latest[(r["rows"], runner)] = {**r, "runner": runner}
    return list(latest.values())


def _dask_figures(report: dict) -> list[str]:
    """The Dask runner against one process on the same file and model."""
    results = _latest_per_runner(report["results"])
    lines = [
        "The same Parquet file and VAE for every row. seconds / rows/s: `score_stream` alone; "
        "with start-up: the child's whole run (Prefect's temporary API and the LocalCluster). "
        "CPU s and peak RSS: the process tree (Dask: driver + scheduler + workers + Prefect "
        "API; the driver's in brackets)."
        + (
            f" The latest run of each runner ({len(report['results'])} runs in the JSON)."
            if len(results) < len(report["results"])
            else ""
        ),
        "",
        "| rows | runner | load start / end | seconds | rows/s | seconds with start-up "
        "| CPU s scoring | rows per CPU s | peak RSS MB | flagged |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        driver = r.get("driver_peak_rss_mb", r["peak_rss_mb"])
        # A local child's CPU is its scoring's; a Dask child's whole run includes start-up.
        scoring_cpu = r.get("scoring_cpu_seconds")
        if scoring_cpu is None and "cluster_start_seconds" not in r:
            scoring_cpu = r["cpu_seconds"]
        per_cpu = "n/a" if scoring_cpu is None else f"{round(r['rows_in'] / scoring_cpu):,}"
        lines.append(
            f"| {r['rows']:,} | {r.get('runner', 'local')} | "
            f"{r['load_at_start'][0]} / {r['load_at_end'][0]} | {r['seconds']} | "
            f"{r['rows_per_second']:,} | {r.get('seconds_with_startup', '-')} | "
            f"{'n/a' if scoring_cpu is None else scoring_cpu} | {per_cpu} | "
            f"{r['peak_rss_mb']:,} ({driver:,}) | {r['rows_flagged']:,} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--url", default=os.environ.get("VIGIL_BENCH_POSTGRES_URL"))
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--out", help="the report (JSON)")
    parser.add_argument("--threads", type=int, nargs="+", default=[0], help="0: torch's default")
    parser.add_argument("--knn-views", nargs="+", default=["input,latent"])
    parser.add_argument("--data-dir", default=None, help="keep the Parquet files here (reused)")
    parser.add_argument("--runners", nargs="+", default=["local"], choices=["local", "dask"])
    parser.add_argument("--dask-workers", type=int, default=2, help="LocalCluster processes")
    parser.add_argument(
        "--sources", nargs="+", default=["file"], choices=["file", "sql"],
        help="sql: the same rows loaded into a PostgreSQL table, streamed through a cursor",
    )  # fmt: skip
    parser.add_argument("--child", nargs=5, metavar=("BUNDLE", "DATA", "URL", "CHUNK", "THREADS"))
    parser.add_argument(
        "--child-dask", nargs=6, metavar=("BUNDLE", "DATA", "URL", "CHUNK", "THREADS", "WORKERS")
    )
    args = parser.parse_args(argv)
    if args.child:
        bundle_dir, data, url, chunk, threads = args.child
        print(json.dumps(score_child(bundle_dir, data, url, int(chunk), int(threads))))
        return
    if args.child_dask:
        bundle_dir, data, url, chunk, threads, workers = args.child_dask
        figures = score_child_dask(bundle_dir, data, url, int(chunk), int(threads), int(workers))
        print(json.dumps(figures))
        return
    if not args.out:
        parser.error("give --out (the report)")
    if not args.url:
        parser.error("give --url (a PostgreSQL SQLAlchemy URL) or set VIGIL_BENCH_POSTGRES_URL")
    np.random.seed(0)
    with tempfile.TemporaryDirectory(prefix="vigil-scale-") as tmp:
        report = run(
            args.rows, args.url, args.chunk_size, Path(tmp), threads=args.threads,
            knn_views=args.knn_views, data_dir=Path(args.data_dir) if args.data_dir else None,
            runners=tuple(args.runners), dask_workers=args.dask_workers,
            sources=tuple(args.sources),
        )  # fmt: skip
    report["meta"]["command"] = "python -m benchmarks.scale " + " ".join(argv or sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
