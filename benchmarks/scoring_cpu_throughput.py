"""Scoring throughput in rows per CPU-second (1 torch thread), old vs new VAE/GAN defaults.

    python -m benchmarks.scoring_cpu_throughput

Networks are trained for 2 epochs only: scoring cost does not depend on training quality.
CPU seconds (``time.process_time``) rather than wall seconds, for a shared machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.datasets import load_dataset, split_normals
from detectors import GANDetector, VAEDetector

OLD = {"knn_views": (), "max_epoch_rows": None}


def main() -> None:
    torch.set_num_threads(1)
    out = {}
    for name in ["shuttle", "cardio"]:
        split = split_normals(load_dataset(name), 0)
        X = np.tile(split.X_test, (max(1, 40000 // len(split.X_test)), 1))
        for cls in (VAEDetector, GANDetector):
            for label, kw in (("old", OLD), ("new", {})):
                extra = {"kl_warmup_epochs": 0} if cls is VAEDetector else {}
                det = cls(epochs=2, patience=None, **extra, **kw).fit(split.X_train)
                det.decision_function(X[:2000])
                cpu = time.process_time()
                det.decision_function(X)
                cpu = time.process_time() - cpu
                out[f"{name} {cls.__name__} {label}"] = len(X) / cpu
                print(name, cls.__name__, label, f"{len(X) / cpu:,.0f} rows per CPU-second")
    path = Path("benchmarks/results/scoring_cpu_throughput.json")
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
