"""GAN scoring rows per CPU-second of two code versions in ONE process, interleaved.

    python -m benchmarks.score_same_process --before c299c69 --out FILE.jsonl

Between processes on the shared machine the same code measured 0.6-0.9x of itself
(benchmarks/RESULTS.md, issue 12); inside one process, passes of both versions take turns,
so the load and the process's memory state hit both alike. The ``--before`` commit's
``detectors`` package is exported (``git archive``) into a temporary folder as
``detectors_before`` (its imports rewritten), then per set (split of
``benchmarks.tabular``, seed 0; 40k tiled test rows, 1 torch thread): the before
version without the neighbourhood views (the score before issue 12), this tree's
shipped default, and this tree without views, each fitted for 2 epochs (scoring cost does
not depend on training quality); ``--passes`` interleaved passes, median and best
reported. Run it also with ``MALLOC_MMAP_THRESHOLD_`` set high (e.g. 268435456): glibc
then keeps large tensors on its heap instead of fresh, page-faulting mappings.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.datasets import load_dataset, split_normals
from detectors import GANDetector

ROOT = Path(__file__).resolve().parents[1]
NO_VIEWS = {"knn_views": (), "max_epoch_rows": None}


def export_before(commit: str, into: Path) -> type:
    """The GANDetector class of ``commit``, imported as package ``detectors_before``."""
    blob = subprocess.run(
        ["git", "archive", commit, "detectors"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    package = into / "detectors_before"
    (into / "detectors").rename(package)
    for path in package.glob("*.py"):
        text = re.sub(r"\bfrom detectors([. ])", r"from detectors_before\1", path.read_text())
        path.write_text(text)
    sys.path.insert(0, str(into))
    return importlib.import_module("detectors_before").GANDetector


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="commit of the code before")
    parser.add_argument("--datasets", nargs="+", default=["shuttle", "cardio"])
    parser.add_argument("--passes", type=int, default=12)
    parser.add_argument("--out", default=None, help="append one JSON line per variant")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        before_cls = export_before(args.before, Path(tmp))
        rows = []
        for name in args.datasets:
            split = split_normals(load_dataset(name), 0)
            X = np.tile(split.X_test, (max(1, 40000 // len(split.X_test)), 1))
            dets = {}
            for label, cls, kw in (
                (f"before ({args.before}, no views)", before_cls, NO_VIEWS),
                ("after (default)", GANDetector, {}),
                ("after (no views)", GANDetector, NO_VIEWS),
            ):
                torch.manual_seed(0)
                dets[label] = cls(seed=0, epochs=2, patience=None, **kw).fit(split.X_train)
                dets[label].decision_function(X)
            seconds: dict[str, list[float]] = {k: [] for k in dets}
            for _ in range(args.passes):
                for label, det in dets.items():
                    cpu = time.process_time()
                    det.decision_function(X)
                    seconds[label].append(time.process_time() - cpu)
            base = float(np.median(next(iter(seconds.values()))))
            for label, s in seconds.items():
                row = {
                    "dataset": name,
                    "variant": label,
                    "rows_per_cpu_second_median": len(X) / float(np.median(s)),
                    "rows_per_cpu_second_best": len(X) / min(s),
                    "vs_before_median": base / float(np.median(s)),
                    "passes": args.passes,
                    "loadavg": os.getloadavg()[0],
                    "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
