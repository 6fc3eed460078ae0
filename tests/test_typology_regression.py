"""The typologies suite's regression check: kept figures read back from RESULTS.md."""

import argparse

import pytest

from benchmarks.typologies import (
    VARIANTS,
    _data_seed,
    compare,
    kept_figures,
    variant_figures,
    variant_runs,
)


def _report(contextual: float) -> dict:
    def result(auroc: float) -> dict:
        return {
            "all": {"auroc": 0.98, "auprc": 0.6, "frauds": 40},
            "card_testing": {"auroc": 0.999},
            "contextual": {"auroc": auroc},
        }

    variant = {"cards": 600, "days": 21, "score_days": 7, "data_seed": 1, "generator": {}}
    return {
        "meta": {
            "variants": {"short": variant},
            "detectors": "seq_vae",
            "epochs": 3,
            "max_train_rows": 8000,
        },
        "variants": {"short": {"results": {"seq_vae": result(contextual)}}},
    }


def test_a_type_that_falls_more_than_the_tolerance_is_reported(tmp_path):
    kept = tmp_path / "RESULTS.md"
    lines = variant_figures(_report(0.950))
    kept.write_text("\n".join(["<!-- typologies:start -->", *lines, "<!-- typologies:end -->"]))
    figures = kept_figures(kept)
    assert figures[("short", "seq_vae")]["contextual"] == 0.95
    assert "compromised_merchant" not in figures[("short", "seq_vae")]  # '-' is not a figure

    from benchmarks.typologies import variant_table

    compared, fallen = compare(variant_table(_report(0.945)), figures)
    assert compared == 4 and fallen == []
    compared, fallen = compare(variant_table(_report(0.930)), figures)
    assert [(f["variant"], f["model"], f["figure"]) for f in fallen] == [
        ("short", "seq_vae", "contextual")
    ]
    report = {**_report(0.930), "regressions": fallen, "compared": compared}
    assert variant_figures(report)[0].startswith("**REGRESSION: 1 figure(s) fell")


def test_no_kept_section_means_nothing_to_compare(tmp_path):
    assert kept_figures(tmp_path / "missing.md") == {}


def test_other_data_seeds_run_under_their_own_names():
    runs = variant_runs(["short", "dense"], ["own", "101", "4"])
    assert list(runs) == ["short", "short@101", "short@4", "dense", "dense@101"]
    assert runs["short"] == VARIANTS["short"]
    assert runs["short@101"]["data_seed"] == 101
    assert runs["short@101"]["cards"] == VARIANTS["short"]["cards"]
    assert VARIANTS["short"]["data_seed"] == 1  # the kept variant is not changed
    with pytest.raises(argparse.ArgumentTypeError):
        _data_seed("seven")
