"""Training that scales (issue 13): the passes around training read bounded, seeded samples
(``max_calibration_rows``), the fit runs on ``fit_threads`` torch threads, and ``fit_info_``
records what each step read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from detector_data import make_normals

from detectors import GANDetector, Threshold, VAEDetector, load_detector
from detectors.encoding import TabularEncoder

CLASSES = [VAEDetector, GANDetector]
SMALL = {"epochs": 2, "patience": None, "knn_reference_rows": 64, "knn_prototypes": 8}


def _spy(monkeypatch, owner, name: str, rows_of) -> list[int]:
    """Record ``rows_of(args)`` at every call of ``owner.name``."""
    seen: list[int] = []
    original = getattr(owner, name)

    def spying(*args, **kwargs):
        seen.append(rows_of(args))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spying)
    return seen


@pytest.mark.parametrize("cls", CLASSES)
def test_passes_around_training_read_at_most_the_cap(cls, monkeypatch) -> None:
    X = make_normals(1000, seed=51)  # 800 training rows, 200 held out
    encoded = _spy(monkeypatch, TabularEncoder, "transform", lambda a: len(a[1]))
    batched = _spy(monkeypatch, cls, "_batched", lambda a: int(a[2].shape[0]))
    calibrated = _spy(monkeypatch, Threshold, "for_fpr", lambda a: len(a[0]))
    det = cls(**SMALL, max_calibration_rows=100).fit(X)
    # Training rows are encoded once (fit_transform); of the held-out rows only the 100
    # sampled ones are ever encoded.
    assert encoded == [800, 100]
    # Monitor, statistics, kNN scales and threshold never see more rows than the cap.
    assert batched and max(batched) <= 100
    assert calibrated == [100]
    assert det.fit_info_ == {
        **det.fit_info_,
        "rows": 1000,
        "train_rows": 800,
        "held_out_rows": 200,
        "held_out_rows_used": 100,
        "statistics_rows": 100,
        "max_calibration_rows": 100,
        "fit_threads": 1,
    }
    assert "seeded sample" in det.fit_info_["sampling"]
    with pytest.raises(ValueError, match="max_calibration_rows"):
        cls(**SMALL, max_calibration_rows=0).fit(X)


@pytest.mark.parametrize("cls", CLASSES)
def test_without_validation_rows_the_monitor_and_threshold_read_the_sample(
    cls, monkeypatch
) -> None:
    X = make_normals(500, seed=52)
    calibrated = _spy(monkeypatch, Threshold, "for_fpr", lambda a: len(a[0]))
    monitored = _spy(monkeypatch, cls, "_validation_loss", lambda a: int(a[1].shape[0]))
    det = cls(**SMALL, validation_fraction=0.0, max_calibration_rows=64).fit(X)
    assert calibrated == [64] and monitored == [64, 64]
    assert det.fit_info_["held_out_rows"] == 0 and det.fit_info_["statistics_rows"] == 64


@pytest.mark.parametrize("cls", CLASSES)
def test_a_cap_above_the_rows_changes_nothing(cls) -> None:
    X = make_normals(600, seed=53)
    capped = cls(**SMALL, max_calibration_rows=480).fit(X)  # exactly the training rows
    uncapped = cls(**SMALL, max_calibration_rows=None).fit(X)
    assert capped.fit_info_["statistics_rows"] == uncapped.fit_info_["statistics_rows"] == 480
    assert np.array_equal(capped.decision_function(X), uncapped.decision_function(X))
    assert capped.threshold_ == uncapped.threshold_


@pytest.mark.parametrize("cls", CLASSES)
def test_the_samples_are_seeded(cls) -> None:
    X = make_normals(700, seed=54)
    first = cls(**SMALL, max_calibration_rows=90, seed=3).fit(X)
    again = cls(**SMALL, max_calibration_rows=90, seed=3).fit(X)
    assert np.array_equal(first.decision_function(X), again.decision_function(X))
    assert first.threshold_ == again.threshold_
    other = cls(**SMALL, max_calibration_rows=90, seed=4).fit(X)
    assert not np.array_equal(first.decision_function(X), other.decision_function(X))


@pytest.mark.parametrize("cls", CLASSES)
def test_fit_info_and_the_caps_travel_with_the_model(cls, tmp_path) -> None:
    X = make_normals(400, seed=55)
    det = cls(**SMALL, max_calibration_rows=50).fit(X)
    assert det.get_params()["max_calibration_rows"] == 50
    assert det.get_params()["fit_threads"] == 1
    det.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["fit_info"] == det.fit_info_
    assert config["params"]["max_calibration_rows"] == 50
    loaded = load_detector(tmp_path / "m")
    assert loaded.fit_info_ == det.fit_info_
    # Saved before fit_info existed: loads with an empty one.
    del config["fit_info"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    assert load_detector(tmp_path / "m").fit_info_ == {}


@pytest.mark.parametrize("cls", CLASSES)
def test_fit_threads_applies_during_the_fit_and_is_restored(cls, monkeypatch) -> None:
    X = make_normals(300, seed=56)
    during = _spy(monkeypatch, cls, "_train_batch", lambda a: torch.get_num_threads())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        det = cls(**SMALL).fit(X)
        assert set(during) == {1} and torch.get_num_threads() == 2
        assert det.fit_info_["fit_threads"] == 1
        during.clear()
        det = cls(**SMALL, fit_threads=None).fit(X)
        assert set(during) == {2} and det.fit_info_["fit_threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_gan_monitor_errors_equal_the_scoring_parts() -> None:
    X = make_normals(300, seed=57)
    det = GANDetector(**SMALL).fit(X)
    x = det._to_tensor(X)
    with torch.inference_mode():
        assert torch.equal(det._squared_errors(x), det._parts(x)[1])


@pytest.mark.parametrize("cls", CLASSES)
def test_rows_are_encoded_in_chunks_to_the_same_model(cls, monkeypatch) -> None:
    import detectors.base as base

    X = make_normals(500, seed=58)
    whole = cls(**SMALL).fit(X)
    monkeypatch.setattr(base, "ENCODE_CHUNK_ROWS", 64)
    encoded = _spy(monkeypatch, TabularEncoder, "transform", lambda a: len(a[1]))
    chunked = cls(**SMALL).fit(X)
    assert max(encoded) == 64 and sum(encoded) == 500
    assert np.array_equal(chunked.decision_function(X), whole.decision_function(X))
