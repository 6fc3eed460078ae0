"""`vigil train --with-labels` learns from labels for every model kind: the tabular VAE
and GAN and the sequence VAE and GAN (card sequences), each registering a labelled model
that `vigil score` then serves."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.demo import DEMO_SPEC, generate_transactions
from pipelines.demo_sequences import SEQUENCE_SPEC, generate_card_sequences

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _data(kind: str, name: str, tmp_path):
    """Training records with planted frauds, the spec, and a later batch to score."""
    if kind.startswith("seq_"):
        spec = SEQUENCE_SPEC.model_copy(update={"name": name})
        records = generate_card_sequences(n_cards=28, days=14, seed=3)
        records["transaction_id"] = name + records["transaction_id"]
        cut = int(len(records) * 0.8)
        train, later = records.iloc[:cut], records.iloc[cut:]
    else:
        spec = DEMO_SPEC.model_copy(update={"name": name})
        train = generate_transactions(800, n_anomalies=25, seed=11)
        later = generate_transactions(200, n_anomalies=4, seed=12, start_id=500_000)
        train["transaction_id"] = name + train["transaction_id"].astype(str)
        later["transaction_id"] = name + later["transaction_id"].astype(str)
    paths = {"spec": spec.save(tmp_path / "spec.yaml")}
    for part, frame in (("train", train), ("later", later)):
        paths[part] = tmp_path / f"{part}.csv"
        frame.to_csv(paths[part], index=False)
    return spec, train, paths


@pytest.mark.parametrize("kind", ["gan", "seq_vae", "seq_gan"])
def test_train_with_labels_works_for_every_kind(kind, tmp_path, unique_name):
    spec, train, paths = _data(kind, unique_name, tmp_path)
    ids = train[spec.id_column].astype(str)
    frauds = ids[train["is_fraud"] == 1].tolist()
    normals = ids[train["is_fraud"] == 0].tolist()[:60]
    assert len(frauds) >= 10
    labels = tmp_path / "chargebacks.csv"
    pd.DataFrame(
        {
            "record_id": frauds + normals,
            "verdict": ["fraud"] * len(frauds) + ["not_fraud"] * len(normals),
            "known_at": "2026-01-01T00:00:00Z",
            "source": "chargeback",
        }
    ).to_csv(labels, index=False)
    runner = CliRunner()
    imported = runner.invoke(main, ["labels", "import", str(labels), "--dataset", spec.name])
    assert imported.exit_code == 0, imported.output

    trained = runner.invoke(
        main,
        ["train", "--data", str(paths["train"]), "--spec", str(paths["spec"]),
         "--detectors", kind, "--epochs", "2", "--with-labels", "--json"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    labelled = next(m for m in json.loads(trained.stdout)["models"]
                    if m["detector"] == f"{kind}-reranked")  # fmt: skip
    assert labelled["model"] == f"{spec.name}-{kind}" and labelled["version"] == "2"
    assert labelled["metrics"]["n_frauds"] == len(frauds)

    scored = runner.invoke(
        main, ["score", "--data", str(paths["later"]), "--model", f"{labelled['model']}@challenger",
               "--json"],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    run = json.loads(scored.stdout)
    assert run["rows_scored"] > 0 and run["model"] == labelled["model"]
