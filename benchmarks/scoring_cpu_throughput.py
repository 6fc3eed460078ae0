"""Fit CPU seconds and scoring rows per CPU-second (1 torch thread) of the VAE and the GAN.

    python -m benchmarks.scoring_cpu_throughput --label new --out FILE.jsonl

Per set (shuttle, cardio: split of ``benchmarks.tabular``, seed 0) and detector:

- ``default``: fitted with its full default training (fit CPU seconds measured), then
  scoring 40k test rows (tiled), best of ``--repeats``;
- ``no_knn``: the score without the neighbourhood views (``knn_views=()``, no epoch cap:
  the score before issue 12), fitted for 2 epochs only: scoring cost does not depend on
  training quality.

CPU seconds (``time.process_time``) rather than wall seconds, for a shared machine. Run it
once per code version (e.g. with ``PYTHONPATH`` pointing at an export of the previous
commit), alternating versions, and compare the rows of the same round: each line of the
output names the code version (``--label``), the round and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import detectors
from benchmarks.datasets import load_dataset, split_normals
from detectors import GANDetector, VAEDetector

NO_KNN = {"knn_views": (), "max_epoch_rows": None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="code version, e.g. head / new")
    parser.add_argument("--round", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=["shuttle", "cardio"])
    parser.add_argument("--models", nargs="+", default=["vae", "gan"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-fit", action="store_true", help="score-only (2-epoch fits)")
    parser.add_argument("--out", default="benchmarks/results/scoring_cpu_throughput.jsonl")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    for name in args.datasets:
        split = split_normals(load_dataset(name), 0)
        X = np.tile(split.X_test, (max(1, 40000 // len(split.X_test)), 1))
        for model in args.models:
            cls = VAEDetector if model == "vae" else GANDetector
            for variant, kw in (("default", {}), ("no_knn", NO_KNN)):
                short = variant == "no_knn" or args.no_fit
                train = {"epochs": 2, "patience": None} if short else {}
                if short and cls is VAEDetector:
                    train["kl_warmup_epochs"] = 0
                torch.manual_seed(0)
                cpu = time.process_time()
                det = cls(seed=0, **train, **kw).fit(split.X_train)
                fit_cpu = time.process_time() - cpu
                det.decision_function(X[:2000])
                best = float("inf")
                for _ in range(args.repeats):
                    cpu = time.process_time()
                    det.decision_function(X)
                    best = min(best, time.process_time() - cpu)
                row = {
                    "label": args.label,
                    "round": args.round,
                    "dataset": name,
                    "model": model,
                    "variant": variant,
                    "rows_per_cpu_second": len(X) / best,
                    "fit_cpu_seconds": None if short else fit_cpu,
                    "loadavg": os.getloadavg()[0],
                    "detectors": str(Path(detectors.__file__).parent),
                }
                print(json.dumps(row), flush=True)
                with out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
