"""Where one ``vigil api`` request's time goes: cProfile over one-record requests.

Same state as :mod:`benchmarks.realtime` (the seeded card data, a sequence VAE, the kept
history), a short training (1 epoch: the model's size, not its quality, matters here).

    python -m benchmarks.realtime_profile --requests 100 > profile.txt

Prints the unprofiled p50 / p99 of ``--requests`` requests, then the cProfile of as many
more, sorted by cumulative time. The figures of issue 10 are in
``benchmarks/results/realtime_profile_before.txt`` and ``..._after.txt``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--lines", type=int, default=45, help="Profile lines printed.")
    parser.add_argument("--kind", default="seq_vae", help="Detector: seq_vae or vae.")
    args = parser.parse_args()
    os.environ["VIGIL_HOME"] = tempfile.mkdtemp(prefix="vigil-prof-")
    os.environ.pop("VIGIL_DATABASE_URL", None)
    os.environ.pop("VIGIL_MLFLOW_TRACKING_URI", None)
    from pipelines.settings import get_settings

    get_settings.cache_clear()
    get_settings().apply_environment()
    import numpy as np
    import pandas as pd
    import torch

    from benchmarks.realtime import _train
    from pipelines.demo_sequences import SEQUENCE_SPEC, generate_card_sequences
    from pipelines.intake.ingest import Batch, validate_batch
    from pipelines.operations.api import ScoreRequest, create_app
    from pipelines.store import ResultsStore

    torch.set_num_threads(getattr(get_settings(), "api_torch_threads", 1))
    spec = SEQUENCE_SPEC.model_copy(update={"name": "bench_cards"})
    records = generate_card_sequences(n_cards=200, days=20, seed=3)
    times = pd.to_datetime(records["timestamp"])
    cut = times.quantile(0.97)
    past, live = records[times < cut], records[times >= cut]
    _train(spec, validate_batch(Batch(frame=past, source="bench"), spec).clean, [args.kind], 1)
    store = ResultsStore(get_settings().resolved_database_url)
    live = live.sort_values("timestamp", kind="stable").reset_index(drop=True)
    rows = live.astype(object).where(live.notna(), None).to_dict(orient="records")
    scorer = create_app(store, f"bench_cards-{args.kind}").state.scorer
    scorer.score(ScoreRequest(records=[rows[0]], append_history=False))  # warm-up
    n = args.requests
    latencies, cpu = [], []
    for row in rows[1 : 1 + n]:
        t0, c0 = time.perf_counter(), time.thread_time()
        scorer.score(ScoreRequest(records=[row]))
        latencies.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    ms, cpu_ms = np.asarray(latencies) * 1000, np.asarray(cpu) * 1000
    print(
        f"unprofiled: p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms; "
        f"thread CPU p50 {np.percentile(cpu_ms, 50):.1f} ms, p99 {np.percentile(cpu_ms, 99):.1f}"
        f" ms; load average {os.getloadavg()}"
    )
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    for row in rows[1 + n : 1 + 2 * n]:
        scorer.score(ScoreRequest(records=[row]))
    profile.disable()
    print(f"profiled: {(time.perf_counter() - t0) / n * 1000:.1f} ms per request")
    if hasattr(scorer, "close"):
        scorer.close()
    if os.environ.get("VIGIL_PROFILE_DUMP"):
        profile.dump_stats(os.environ["VIGIL_PROFILE_DUMP"])
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.lines)


if __name__ == "__main__":
    main()
