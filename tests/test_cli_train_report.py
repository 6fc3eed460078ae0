"""What `vigil train` prints and passes on, without training anything."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.cli.training import _model_line


def _metrics(**extra: float) -> dict:
    return {"threshold": 1.5, "target_fpr": 0.01, "holdout_fpr": 0.0123, "fit_seconds": 2.0,
            **extra}  # fmt: skip


def test_every_trained_model_line_reports_its_holdout_fpr():
    quality = _metrics(auroc=0.9, auprc=0.5, precision_at_threshold=0.4, recall_at_threshold=0.3)
    plain = {"model": "tx-seq_gan", "version": "1", "aliases": ["champion"], "metrics": quality}
    reranked = {
        "model": "tx-seq_gan",
        "version": "2",
        "aliases": ["challenger"],
        "base": "tx-seq_gan/1",
        "metrics": {**quality, "n_labelled": 70, "n_frauds": 30},
    }
    unlabelled = {"model": "tx-vae", "version": "2", "aliases": [],
                  "metrics": _metrics(holdout_fpr=float("nan"))}  # fmt: skip
    assert "hold-out FPR 1.23%" in _model_line(plain)
    assert "hold-out FPR 1.23%" in _model_line(reranked)
    assert "hold-out FPR n/a" in _model_line(unlabelled)


@pytest.mark.usefixtures("prefect_harness")  # the command's Prefect API: the session's
def test_max_train_rows_reaches_the_sequence_detectors_only(monkeypatch, tmp_path):
    import pipelines.flows

    seen = {}

    def fake_train_flow(*, data, spec_path, config, with_labels):
        seen["config"] = config
        return {"models": [], "rows_train": 0, "rows_quarantined": 0, "rows_evaluation": 0}

    monkeypatch.setattr(pipelines.flows, "train_flow", fake_train_flow)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nid_column: id\n")
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            "x.csv",
            "--spec",
            str(spec),
            "--epochs",
            "3",
            "--max-train-rows",
            "5000",
            "--json",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"] == []
    config = seen["config"]
    assert config.seq_vae == config.seq_gan == {"epochs": 3, "max_train_rows": 5000}
    assert config.vae == config.gan == {"epochs": 3}
