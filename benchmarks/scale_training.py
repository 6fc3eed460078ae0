"""Training at scale: fit time, CPU time and peak memory of the tabular VAE and GAN on
100k and 1M demo transactions, each fit in a fresh process.

    python -m benchmarks scale --only training                  # 100k and 1M, VAE and GAN
    python -m benchmarks scale --only training --rows 100000 1000000 3000000 --models vae
    python -m benchmarks scale --only training --gan '{"fit_threads": null}' --tag threads

The parent writes each size once as Parquet (demo transactions, about 1% planted
anomalies, written in 100k-row groups); a child process per (detector, size) reads it and
fits the detector with its defaults (overrides: ``--vae`` / ``--gan`` JSON), passing the
label so that the planted anomalies are dropped as in ``vigil train``. The child reports
the fit's wall and CPU seconds (user + system of the process during ``fit``), the
resident memory before the fit (the frame read from Parquet, torch loaded), the peak
during the fit (sampled every 20 ms) and the process's ``ru_maxrss``, the epochs run and
the detector's ``fit_info_`` (rows per epoch, the sampled rows of the passes around
training). What it answers: how the GAN's fit compares with the VAE's, and whether memory
stays bounded as the rows grow; read off, never asserted. Wall seconds are comparable only
at a load average below the core count: the load is recorded before and after each child.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_ROWS = [100_000, 1_000_000]
MODELS = ["vae", "gan"]
#: Seconds between resident-memory samples during the fit.
RSS_INTERVAL = 0.02


def resident_mb() -> float:
    """This process's resident set now, in MB (Linux ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """Samples the resident set in a thread while the ``with`` block runs: the peak of
    one step, which ``ru_maxrss`` (the whole process's) cannot give."""

    def __init__(self) -> None:
        self.peak = resident_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_INTERVAL):
            self.peak = max(self.peak, resident_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_mb())


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def fit_child(kind: str, data: str, overrides: dict) -> dict:
    """Fit one detector on the Parquet file ``data`` in this (fresh) process."""
    import pandas as pd
    import torch

    from detectors import GANDetector, VAEDetector
    from pipelines.demo import DEMO_SPEC

    frame = pd.read_parquet(data, columns=[*DEMO_SPEC.feature_columns, "is_fraud"])
    X, y = frame[DEMO_SPEC.feature_columns], frame["is_fraud"].to_numpy()
    del frame
    cls = VAEDetector if kind == "vae" else GANDetector
    detector = cls(categorical_features=DEMO_SPEC.categorical_features, **overrides)
    rss_before = resident_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with PeakRss() as peak:
        detector.fit(X, y)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return {
        "model": kind,
        "rows": len(X),
        "fit_wall_s": wall,
        "fit_cpu_s": cpu,
        "rss_before_fit_mb": rss_before,
        "fit_peak_rss_mb": peak.peak,
        "fit_rss_growth_mb": peak.peak - rss_before,
        "ru_maxrss_mb": after.ru_maxrss / 1024,
        "epochs_run": len(detector.history_),
        "best_epoch": detector.best_epoch_,
        "torch_threads_default": torch.get_num_threads(),
        "params": {k: v for k, v in overrides.items()},
        "fit_info": detector.fit_info_,
    }


def run_child(kind: str, data: Path, overrides: dict) -> dict:
    load_before = load_average()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_training", "--child", kind, str(data)]
        + ["--overrides", json.dumps(overrides)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} on {data} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(load_before=load_before, load_after=load_average())
    return result


def ratios(results: list[dict]) -> list[dict]:
    """GAN/VAE fit ratios and the VAE + GAN sum per size."""
    by = {(r["model"], r["rows"]): r for r in results}
    rows = sorted({r["rows"] for r in results})
    out = []
    for n in rows:
        vae, gan = by.get(("vae", n)), by.get(("gan", n))
        if vae and gan:
            out.append(
                {
                    "rows": n,
                    "gan_vae_wall": gan["fit_wall_s"] / vae["fit_wall_s"],
                    "gan_vae_cpu": gan["fit_cpu_s"] / vae["fit_cpu_s"],
                    "vae_plus_gan_wall_s": vae["fit_wall_s"] + gan["fit_wall_s"],
                    "vae_plus_gan_cpu_s": vae["fit_cpu_s"] + gan["fit_cpu_s"],
                }
            )
    return out


def figures(report: dict) -> list[str]:
    """RESULTS.md lines: fit time and memory per (detector, size), and GAN / VAE ratios."""
    lines = [
        "Demo transactions (about 1% planted anomalies, dropped by the label), one fresh "
        "process per fit, detector defaults unless params say otherwise. CPU s = user + "
        "system of the fit; RSS before = the frame read from Parquet with torch loaded; fit "
        "peak = sampled every 20 ms during `fit`.",
        "",
        "| model | rows | fit wall s | fit CPU s | epochs (best) | rows/epoch | RSS before MB "
        "| fit peak MB | load before / after | params |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for r in report["results"]:
        info = r["fit_info"]
        lines.append(
            f"| {r['model']} | {r['rows']:,} | {r['fit_wall_s']:.1f} | {r['fit_cpu_s']:.1f} "
            f"| {r['epochs_run']} ({r['best_epoch']}) | {info.get('rows_per_epoch', 0):,} "
            f"| {r['rss_before_fit_mb']:.0f} | {r['fit_peak_rss_mb']:.0f} "
            f"| {r['load_before']:.1f} / {r['load_after']:.1f} | `{json.dumps(r['params'])}` |"
        )
    if report["ratios"]:
        lines += [
            "",
            "GAN / VAE fit, wall and CPU (VAE + GAN wall / CPU s): "
            + "; ".join(
                f"{q['rows']:,} rows {q['gan_vae_wall']:.1f}x and {q['gan_vae_cpu']:.1f}x "
                f"({q['vae_plus_gan_wall_s']:.0f} / {q['vae_plus_gan_cpu_s']:.0f})"
                for q in report["ratios"]
            )
            + ".",
        ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=DEFAULT_ROWS)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    parser.add_argument("--vae", default="{}", help="JSON overrides for VAEDetector")
    parser.add_argument("--gan", default="{}", help="JSON overrides for GANDetector")
    parser.add_argument("--tag", default="defaults")
    parser.add_argument("--out", help="the report (JSON)")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PARQUET"), help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(fit_child(args.child[0], args.child[1], json.loads(args.overrides))))
        return
    if not args.out:
        parser.error("give --out (the report)")

    from benchmarks.scale import write_parquet

    overrides = {"vae": json.loads(args.vae), "gan": json.loads(args.gan)}
    results = []
    with tempfile.TemporaryDirectory(prefix="scale_training_") as tmp:
        for rows in args.rows:
            data = write_parquet(Path(tmp) / f"demo_{rows}.parquet", rows)
            for kind in args.models:
                result = run_child(kind, data, overrides[kind])
                print(
                    f"{kind} {rows:>9,} rows: fit {result['fit_wall_s']:.1f} s wall, "
                    f"{result['fit_cpu_s']:.1f} CPU s, RSS {result['rss_before_fit_mb']:.0f} -> "
                    f"{result['fit_peak_rss_mb']:.0f} MB (load {result['load_before']:.1f})",
                    flush=True,
                )
                results.append(result)
    report = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "tag": args.tag,
            "argv": " ".join(sys.argv[1:] if argv is None else argv),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "results": results,
        "ratios": ratios(results),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
