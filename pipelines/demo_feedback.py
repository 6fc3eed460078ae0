"""``vigil demo-feedback``: the feedback loop once, on the demo data (after ``vigil demo``).

The analysts review the 60 training records the champion VAE scores highest; their
verdicts (the demo data's truth) are imported as a label file; ``train --with-labels``
trains a re-ranked model; the later batch is scored by both, and the figures on that
batch (never seen by the verdicts) are printed before and after.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from detectors import metrics
from pipelines.store.vocabulary import Verdict

REVIEWED = 60


def run_feedback_demo(*, epochs: int | None = None, echo=print) -> dict:
    from pipelines.demo import DEMO_SPEC, demo_files
    from pipelines.feedback.labels import read_label_file
    from pipelines.flows import score_flow, train_flow
    from pipelines.jobs.score import ScoreRequest
    from pipelines.modeling.registry import configure_mlflow, load_bundle, resolve_model
    from pipelines.modeling.training import TrainConfig
    from pipelines.settings import get_settings
    from pipelines.store import ResultsStore

    settings = get_settings()
    files = demo_files(settings.home_dir)
    train_path, score_path, spec_path = files["train"], files["score"], files["spec"]
    configure_mlflow(settings)
    champion = f"{DEMO_SPEC.name}-vae@champion"
    try:
        ref = resolve_model(champion)
    except ValueError:
        echo("no demo model yet: training it first (vigil demo does this)")
        overrides = {"epochs": epochs} if epochs else {}
        train_flow(
            data=str(train_path),
            spec_path=str(spec_path),
            # A handful of verdicts is enough for the demo (the default minimum is 20 frauds).
            config=TrainConfig(detectors=["vae"], vae=overrides, min_labels=10),
        )
        ref = resolve_model(champion)

    # 1. The analysts review the champion's top training records.
    train = pd.read_csv(train_path)
    scores = load_bundle(ref).score(train, with_reasons=False)["score"].to_numpy()
    top = np.argsort(-scores)[:REVIEWED]
    reviewed = train.iloc[top]
    verdict_file = settings.home_dir / "demo_verdicts.csv"
    pd.DataFrame(
        {
            "record_id": reviewed["transaction_id"].astype(str),
            "verdict": np.where(reviewed["is_fraud"] == 1, Verdict.FRAUD, Verdict.NOT_FRAUD),
            "known_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "analyst": "demo-analyst",
        }
    ).to_csv(verdict_file, index=False)
    parsed = read_label_file(verdict_file, dataset=DEMO_SPEC.name)
    store = ResultsStore(settings.resolved_database_url)
    imported = store.add_label_rows(parsed.rows, actor="demo", source_name=str(verdict_file))
    n_fraud = int((reviewed["is_fraud"] == 1).sum())
    echo(
        f"imported {verdict_file.name}: {imported.inserted} new verdicts "
        f"({n_fraud} fraud, {REVIEWED - n_fraud} not fraud; {imported.duplicates} already there)"
    )

    # 2. Retrain with the labels: a re-ranked version of the VAE.
    overrides = {"epochs": epochs} if epochs else {}
    trained = train_flow(
        data=str(train_path),
        spec_path=str(spec_path),
        # A handful of verdicts is enough for the demo (the default minimum is 20 frauds).
        config=TrainConfig(detectors=["vae"], vae=overrides, min_labels=10),
        with_labels=True,
    )
    reranked = next((m for m in trained["models"] if m["detector"] == "vae-reranked"), None)
    if reranked is None:
        echo(f"no re-ranked model: {trained.get('reranked_skipped')}")
        return {"train": trained}

    # 3. Before / after on the later batch.
    truth = pd.read_csv(score_path, dtype={"transaction_id": str})
    truth = truth.drop_duplicates("transaction_id").set_index("transaction_id")["is_fraud"]
    rows = []
    for label, model in (
        ("before: " + str(ref), f"{ref.name}/{ref.version}"),
        (
            "after:  " + f"{reranked['model']} v{reranked['version']}",
            f"{reranked['model']}/{reranked['version']}",
        ),
    ):
        out = settings.home_dir / f"demo_feedback_{model.replace('/', '_v')}.parquet"
        run = score_flow(ScoreRequest(data=str(score_path), model=model, out=str(out)))
        frame = pd.read_parquet(out).dropna(subset=["score"])
        y = frame["record_id"].astype(str).map(truth).fillna(0).astype(int).to_numpy()
        s = frame["score"].to_numpy()
        k = int(y.sum())
        top_k = int(y[np.argsort(-s)[:k]].sum())
        flagged = frame["is_anomaly"].astype(bool).to_numpy()
        rows.append(
            (
                label,
                metrics.auroc(y, s),
                metrics.auprc(y, s),
                top_k,
                k,
                int(flagged.sum()),
                int(y[flagged].sum()),
                run.run_id[:8],
            )
        )
    echo("")
    echo("=" * 78)
    echo("vigil feedback demo: the later batch, before and after the verdicts")
    echo("=" * 78)
    for label, auroc, auprc, top_k, k, flags, hits, run_id in rows:
        echo(
            f"  {label:<44} AUROC {auroc:.3f}  AUPRC {auprc:.3f}  frauds in top {k}: "
            f"{top_k}  flags {flags} ({hits} fraud)  run {run_id}"
        )
    echo("")
    echo("the re-ranked model is a challenger; see `vigil models`, `vigil labels export`.")
    return {"train": trained, "figures": rows}
