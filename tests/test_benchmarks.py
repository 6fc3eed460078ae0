"""The benchmark's loader, protocol and summary code, and a tiny smoke run of the suite."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks import tabular
from benchmarks.datasets import load_dataset, split_normals


@pytest.fixture
def npz_path(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    y = np.zeros(400, dtype=int)
    y[:20] = 1
    X[:20] += 6.0
    path = tmp_path / "toy.npz"
    np.savez(path, X=X, y=y)
    return path


def test_loader_reads_npz_and_csv_the_same(npz_path, tmp_path):
    from_npz = load_dataset(str(npz_path))
    assert from_npz.X.dtype == np.float32 and from_npz.X.shape == (400, 4)
    frame = pd.DataFrame(from_npz.X, columns=list("abcd")).assign(label=from_npz.y)
    csv = tmp_path / "toy.csv"
    frame.to_csv(csv, index=False)
    from_csv = load_dataset(str(csv), label_col="label")
    np.testing.assert_allclose(from_csv.X, from_npz.X, rtol=1e-6)
    assert from_csv.feature_names == list("abcd")
    with pytest.raises(ValueError, match="give --label-col"):
        load_dataset(str(csv))
    frame.assign(label=2).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="labels must be 0/1"):
        load_dataset(str(csv), label_col="label")


def test_split_trains_on_normals_only_and_tests_on_all_anomalies(npz_path):
    dataset = load_dataset(str(npz_path))
    split = split_normals(dataset, seed=3)
    assert len(split.X_train) == round(380 * 0.6)
    assert split.y_test.sum() == 20
    assert len(split.X_test) == 400 - len(split.X_train)
    again = split_normals(dataset, seed=3)
    np.testing.assert_array_equal(split.X_train, again.X_train)


def test_summary_means_and_worst_seed_gap():
    report = {
        "results": [
            {"dataset": "a", "model": "m", "seed": 0, "auroc": 0.9, "fit_seconds": 1.0},
            {"dataset": "a", "model": "m", "seed": 1, "auroc": 0.7, "fit_seconds": 3.0},
            {"dataset": "b", "model": "m", "seed": 0, "auroc": 0.6, "fit_seconds": 2.0},
        ]
    }
    summary = tabular.summarise(report)
    assert summary["per_dataset"]["m"]["a"]["auroc"] == pytest.approx({"mean": 0.8, "std": 0.1})
    assert summary["overall"]["m"]["auroc"] == pytest.approx(0.7)  # mean of 0.8 and 0.6
    assert summary["worst_seed_auroc_gap"]["m"] == pytest.approx(0.1)


def test_smoke_run_writes_json_and_markdown(npz_path, tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "R.md"
    code = tabular.main(
        [
            "--datasets",
            str(npz_path),
            "--models",
            "vigil_vae",
            "vigil_gan",
            "--seeds",
            "1",
            "--epochs",
            "3",
            "--max-rows",
            "400",
            "--out",
            str(out),
            "--markdown",
            str(md),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert {r["model"] for r in report["results"]} == {"vigil_vae", "vigil_gan"}
    row = report["results"][0]
    for key in (
        "auroc",
        "auprc",
        "test_fpr",
        "fit_seconds",
        "score_rows_per_s",
        "bare_forward_rows_per_s",
    ):
        assert np.isfinite(row[key])
    text = md.read_text()
    assert "| vigil_vae |" in text and "AUROC" in text


def test_queue_metrics_per_day_and_per_typology():
    from benchmarks.sequences import precision_at_flags, queue_quality

    days = np.array([0, 0, 0, 1, 1, 1])
    labels = np.array([1, 0, 0, 0, 1, 0])
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.7, 0.3])
    # Day 0: the top record is a fraud; day 1: the top one is not, the second is.
    assert precision_at_flags(days, labels, scores, 1) == 0.5
    assert precision_at_flags(days, labels, scores, 2) == 0.5
    groups = np.array(["a", "", "", "", "b", ""], dtype=object)
    out = queue_quality(labels, groups, days, scores, 0.75, ["a", "b", "c"])
    assert out["a"]["auroc"] == 1.0 and out["b"]["frauds"] == 1 and "c" not in out
    assert out["all"]["holdout_fpr"] == 0.25  # 0.8 of the four normals crosses 0.75
    assert out["all"]["recall_at_threshold"] == 0.5


def test_scale_training_fits_in_fresh_processes_and_writes_its_section(tmp_path):
    from benchmarks import scale_training

    markdown = tmp_path / "RESULTS.md"
    markdown.write_text("# others' results\n")
    args = ["--rows", "600", "--vae", '{"epochs": 1}', "--gan", '{"epochs": 1}']
    args += ["--out", str(tmp_path / "scale.json"), "--markdown", str(markdown)]
    scale_training.main(args)
    report = json.loads((tmp_path / "scale.json").read_text())
    assert [r["model"] for r in report["results"]] == ["vae", "gan"]
    for result in report["results"]:
        # The 6 planted anomalies are dropped by the label.
        assert result["fit_info"]["rows"] == 594 and result["epochs_run"] == 1
        assert result["fit_cpu_s"] > 0 and result["fit_peak_rss_mb"] >= result["rss_before_fit_mb"]
    assert report["ratios"][0]["rows"] == 600
    scale_training.write_markdown(report, markdown)  # a rerun replaces the section only
    text = markdown.read_text()
    assert text.startswith("# others' results") and text.count("issue13-training:start") == 1
