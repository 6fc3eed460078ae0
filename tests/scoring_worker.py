"""A scoring process for the fault tests: scores a file with a saved bundle into a store.

Run as ``python -m tests.scoring_worker BUNDLE_DIR DATA DB_URL CHUNK_SIZE [options]``.
Prints the run report as JSON, or exits 3 with "already running". Options slow it down so
a test can kill it at a known point:
  --pause-after-chunk S   sleep S seconds after each committed chunk
  --hold-in-commit N      in chunk N, after its scores are written but before the commit,
                          touch the file given by --marker and sleep (to be killed there)
  --hold-after-chunk N    after chunk N is committed, touch --marker and wait until the
                          file given by --release exists (the lease stays fresh meanwhile)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipelines.intake.stream import open_stream
from pipelines.modeling.bundle import ScoringBundle
from pipelines.modeling.registry import ModelRef
from pipelines.scoring.batch import score_stream
from pipelines.scoring.run import RunRequest
from pipelines.store import ResultsStore, RunAlreadyRunning
from pipelines.store.runs import RunRepository


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle")
    parser.add_argument("data")
    parser.add_argument("url")
    parser.add_argument("chunk_size", type=int)
    parser.add_argument("--pause-after-chunk", type=float, default=0.0)
    parser.add_argument("--hold-in-commit", type=int, default=None)
    parser.add_argument("--hold-after-chunk", type=int, default=None)
    parser.add_argument("--marker", default=None)
    parser.add_argument("--release", default=None)
    parser.add_argument("--lease", type=float, default=60.0)
    args = parser.parse_args(argv)

    store = ResultsStore(args.url)
    original_write = RunRepository.write_chunk
    original_bulk = RunRepository._bulk_scores
    current = {"chunk": None}

    def write_chunk(self, run_id, owner, chunk):
        current["chunk"] = chunk.chunk_number
        original_write(self, run_id, owner, chunk)
        if args.pause_after_chunk:
            time.sleep(args.pause_after_chunk)
        if chunk.chunk_number == args.hold_after_chunk:
            Path(args.marker).touch()
            deadline = time.monotonic() + 300
            while not Path(args.release).exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    def bulk_scores(self, session, run_id, scores):
        original_bulk(self, session, run_id, scores)
        if current["chunk"] == args.hold_in_commit:
            Path(args.marker).touch()
            time.sleep(60)

    RunRepository.write_chunk = write_chunk
    RunRepository._bulk_scores = bulk_scores
    bundle = ScoringBundle.load(args.bundle)
    try:
        report = score_stream(
            store,
            bundle,
            open_stream(args.data, args.chunk_size),
            RunRequest(model=ModelRef("worker-model", "1", None), lease_seconds=args.lease),
        )
    except RunAlreadyRunning as exc:
        print(f"already running: {exc}")
        return 3
    print(json.dumps(report.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
