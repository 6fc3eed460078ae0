"""The benchmarks' runner (one command per suite, its JSON and its RESULTS.md section), the
loader, protocol and summary code, and tiny smoke runs of two suites."""

from __future__ import annotations

import importlib
import json
import re
import textwrap

import numpy as np
import pandas as pd
import pytest

from benchmarks import runner, tabular
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


def test_tabular_suite_runs_through_the_runner(npz_path, tmp_path):
    """A tiny tabular run through ``python -m benchmarks tabular``: the arguments given
    after the suite's name override its defaults, the JSON lands in results/, and the
    suite's section of RESULTS.md holds the command, the date, the load and the table."""
    results, markdown = tmp_path / "results", tmp_path / "RESULTS.md"
    markdown.write_text("# Benchmark results\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n")
    argv = ["tabular", "--datasets", str(npz_path), "--models", "vigil_vae", "vigil_gan"]
    argv += ["--seeds", "1", "--epochs", "3", "--max-rows", "400"]
    argv += ["--results", str(results), "--markdown", str(markdown)]
    assert runner.main(argv) == 0
    report = json.loads((results / "tabular.json").read_text())
    assert {r["model"] for r in report["results"]} == {"vigil_vae", "vigil_gan"}
    assert report["meta"]["datasets"] == [str(npz_path)] and report["meta"]["seeds"] == 1
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
    ran = report["runner"]
    assert ran["command"].startswith("python -m benchmarks.tabular --datasets cardio")
    assert ran["command"].endswith("--max-rows 400") and "--out" not in ran["command"]
    assert len(ran["load_before"]) == 3 and len(ran["load_after"]) == 3 and ran["date"]
    text = markdown.read_text()
    section = text[text.index("<!-- tabular:start -->") : text.index("<!-- tabular:end -->")]
    assert "## tabular" in section and ran["command"] in section and ran["date"] in section
    assert "| vigil_vae |" in section and "| vigil_gan |" in section and "mean AUROC" in section
    assert "<!-- other:start -->\nkept\n<!-- other:end -->" in text
    # Rewriting the section from the JSON alone gives the same file.
    assert runner.main(["tabular", "--report-only", "--results", str(results), "--markdown",
                        str(markdown)]) == 0  # fmt: skip
    assert markdown.read_text() == text


@pytest.fixture
def fake_suites(tmp_path, monkeypatch):
    """A suites file with one two-step suite (one step only with --only) whose module
    records the arguments it was given."""
    module = tmp_path / "fake_bench_step.py"
    module.write_text(
        textwrap.dedent(
            """
            import argparse, json

            def main(argv):
                parser = argparse.ArgumentParser()
                parser.add_argument("--size", type=int, default=0)
                parser.add_argument("--out", required=True)
                args, rest = parser.parse_known_args(argv)
                with open(args.out, "w") as fh:
                    json.dump({"argv": argv, "size": args.size, "rest": rest}, fh)
                return 0

            def figures(report):
                return ["| size |", "|---:|", f"| {report['size']} |"]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    suites = tmp_path / "suites.yaml"
    suites.write_text(
        textwrap.dedent(
            """
            fake:
              about: A fake suite
              needs: nothing
              steps:
                - {name: small, module: fake_bench_step, args: [--size, 1]}
                - {name: large, module: fake_bench_step, args: [--size, 1000], default: false}
            """
        )
    )
    monkeypatch.setattr(runner, "SUITES_FILE", suites)
    return tmp_path


def test_runner_runs_default_steps_and_merges_a_step_run_alone(fake_suites):
    results, markdown = fake_suites / "results", fake_suites / "RESULTS.md"
    where = ["--results", str(results), "--markdown", str(markdown)]
    assert runner.main(["fake", *where]) == 0
    data = json.loads((results / "fake.json").read_text())
    assert list(data["steps"]) == ["small"] and data["steps"]["small"]["size"] == 1
    text = markdown.read_text()
    assert "### fake: small" in text and "| 1 |" in text
    assert "Not yet run through the runner (`python -m benchmarks fake --only large`)" in text
    # One step alone, with an argument passed through: the other step's report is kept.
    assert runner.main(["fake", "--only", "large", "--size", "7", "--extra", *where]) == 0
    data = json.loads((results / "fake.json").read_text())
    assert data["steps"]["small"]["size"] == 1 and data["steps"]["large"]["size"] == 7
    assert data["steps"]["large"]["rest"] == ["--extra"]
    assert data["steps"]["large"]["runner"]["command"] == (
        "python -m fake_bench_step --size 1000 --size 7 --extra"
    )
    text = markdown.read_text()
    assert text.count("<!-- fake:start -->") == 1 and "| 7 |" in text and "Not yet run" not in text
    with pytest.raises(SystemExit):
        runner.main(["fake", "--only", "medium", *where])


def test_every_suite_names_a_module_with_main_and_figures():
    suites = runner.load_suites()
    assert list(suites) == [
        "tabular",
        "devpool",
        "sequences",
        "typologies",
        "feedback",
        "scale",
        "realtime",
        "review",
        "startup",
        "labels",
    ]
    for suite in suites.values():
        for step in suite["steps"]:
            module = importlib.import_module(step["module"])
            assert callable(module.main) and callable(module.figures), step["module"]


def test_results_md_is_what_the_runner_writes_from_the_results(tmp_path):
    """Every suite has its latest JSON in results/, and RESULTS.md is exactly what the
    runner renders from them (so the figures there are never edited by hand), short."""
    committed = runner.RESULTS_MD.read_text()
    markdown = tmp_path / "RESULTS.md"
    markdown.write_text(committed)
    for suite in runner.load_suites():
        assert (runner.RESULTS_DIR / f"{suite}.json").exists(), suite
        assert runner.main([suite, "--report-only", "--markdown", str(markdown)]) == 0
    assert markdown.read_text() == committed
    assert len(committed.splitlines()) <= 400
    assert sorted(p.name for p in runner.RESULTS_DIR.iterdir()) == sorted(
        f"{suite}.json" for suite in runner.load_suites()
    )
    assert not re.search(r"\bissue\s*\d+", committed, flags=re.IGNORECASE)


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


def test_scale_training_fits_in_fresh_processes(tmp_path):
    from benchmarks import scale_training

    args = ["--rows", "600", "--vae", '{"epochs": 1}', "--gan", '{"epochs": 1}']
    scale_training.main([*args, "--out", str(tmp_path / "scale.json")])
    report = json.loads((tmp_path / "scale.json").read_text())
    assert [r["model"] for r in report["results"]] == ["vae", "gan"]
    for result in report["results"]:
        # The 6 planted anomalies are dropped by the label.
        assert result["fit_info"]["rows"] == 594 and result["epochs_run"] == 1
        assert result["fit_cpu_s"] > 0 and result["fit_peak_rss_mb"] >= result["rss_before_fit_mb"]
    assert report["ratios"][0]["rows"] == 600
    text = "\n".join(scale_training.figures(report))
    assert "| vae | 600 |" in text and "| gan | 600 |" in text and "GAN / VAE" in text


def test_the_limit_adds_its_parts_and_gives_vigils_share_of_it():
    """The scale benchmarks' limit: rows over the parts' summed wall seconds; vigil's
    share is its rows/s over that; CPU s scaled to a million rows."""
    from benchmarks.limit import Limit, Part, time_forward
    from benchmarks.scale import limit_cell, share_cell

    limit = Limit(rows=500_000)
    limit.parts = {"read": Part(0.5, 0.4), "forward": Part(3.0, 2.9), "copy": Part(1.5, 0.2)}
    figures = limit.figures(vigil_rows_per_second=50_000, vigil_cpu_seconds=4.0)
    assert figures["limit_rows_per_second"] == 100_000  # 500k rows in 5 s
    assert figures["share_of_limit"] == 0.5
    assert figures["cpu_per_1m"] == 8.0 and figures["limit_cpu_per_1m"] == 7.0
    assert figures["limit_parts_cpu_per_1m"] == {"read": 0.8, "forward": 5.8, "copy": 0.4}
    assert limit_cell(figures) == "100,000 (0.5 + 3.0 + 1.5)" and share_cell(figures) == "50%"
    assert limit_cell({}) == "-" and share_cell({}) == "-"

    timed = Limit(rows=4)
    scores = time_forward(iter([np.arange(2), np.arange(2, 4)]), lambda x: x * 2.0, timed)
    assert scores.tolist() == [0.0, 2.0, 4.0, 6.0] and timed.parts["forward"].wall >= 0


def test_handbook_cli_leaves_out_customers_known_compromised_on_each_test_day():
    """A customer leaves the test week once a fraud of theirs is older than the label
    delay (the handbook's rolling set); frauds before the training period do not count."""
    from benchmarks.handbook_cli import figures, test_rows

    later = pd.DataFrame(
        {
            "CUSTOMER_ID": [1, 1, 2, 2, 3, 4],
            "TX_DATETIME": pd.to_datetime(
                ["2018-08-02", "2018-08-08", "2018-08-08", "2018-08-12", "2018-08-09", "2018-08-09"]
            ),
            "TX_TIME_DAYS": [123, 129, 129, 133, 130, 130],
        }
    )
    # Customer 1: fraud on day 121 (July 31) < 129 - 7: known by the test week.
    # Customer 2: fraud on day 124 (Aug 3): known from day 132 on, not on day 129.
    # Customer 3 and 4: no fraud since the training period started.
    known = pd.DataFrame({"CUSTOMER_ID": [1, 2], "TX_TIME_DAYS": [121, 124]})
    assert test_rows(later, known).tolist() == [False, False, True, False, True, True]
    part = {"auroc": 0.9, "auprc": 0.5, "cp100": 0.2, "frauds": 3}
    report = {
        "meta": {
            "customer_fraction": 0.2,
            "data_seed": 0,
            "detectors": "seq_vae",
            "sizes": {
                "train_rows": 10, "train_frauds": 1, "scored_rows": 6, "test_rows": 3,
                "test_frauds": 0,
            },
        },
        "results": {
            "seq_vae": {
                "all": part, **{f"scenario_{s}": part for s in (1, 2, 3)}, "fit_seconds": 5.0
            }
        },
    }  # fmt: skip
    lines = figures(report)
    assert lines[-1].startswith("| seq_vae | 0.9000 | 0.500 | 0.200 |")
