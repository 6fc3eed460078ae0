"""The numpy forward of a saved VAE against the torch detector, which stays the reference.

Tolerance: the network runs in float32 on both sides, but numpy and torch round float32
products differently (another BLAS, another summation order), and the tail surprisals
magnify residual rounding where a column's training tail is steep. Measured on the demo
spec (1,500 rows): numpy vs torch differs by at most 2.7e-4 in a score and 4.7e-4 in a
contribution, while torch float32 itself differs from the same network in float64 by
5.6e-4 and 8.2e-4. So scores and contributions must agree to ``RTOL``/``ATOL`` (1e-3),
flags exactly except where a score lies within that tolerance of the threshold, and the
top reason exactly except where two contributions are that close.

Contributions hold to that tolerance on any CPU because the ensemble rule's max-tail share
is split among the columns near the maximum by a softmax with temperature
``MAX_TAIL_SOFTNESS`` (0.5 nats): the split moves by at most ``1/(4*0.5)`` of a tail's
rounding error, about 2.5e-4 for the 5e-4 above, so two columns whose tails tie within
rounding get the same share on both sides. (Handing the whole share to ``argmax``, as the
rule once did, moved it between columns on such a tie: 1.4 vs 0.4 on one AMD EPYC.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from detectors import GANDetector, VAEDetector, load_detector
from detectors.numpy_forward import NUMPY_WEIGHTS_FILE, NumpyVAE, load_numpy_vae
from detectors.thresholds import Threshold

RTOL = 1e-3
ATOL = 1e-3
SMALL = {"epochs": 3, "kl_warmup_epochs": 1, "patience": None, "target_fpr": 0.05}


def assert_same_scoring(torch_det: VAEDetector, numpy_det: NumpyVAE, X: pd.DataFrame) -> None:
    """Scores, flags, contributions and latent means agree (see the module docstring)."""
    assert isinstance(numpy_det, NumpyVAE)
    s_torch, s_numpy = torch_det.decision_function(X), numpy_det.decision_function(X)
    assert s_numpy.dtype == np.float64 and s_numpy.shape == s_torch.shape
    np.testing.assert_allclose(s_numpy, s_torch, rtol=RTOL, atol=ATOL)
    threshold = torch_det.threshold_.value
    assert numpy_det.threshold_.value == threshold
    clear = np.abs(s_torch - threshold) > ATOL + RTOL * abs(threshold)
    flags_torch, flags_numpy = torch_det.predict(X), numpy_det.predict(X)
    np.testing.assert_array_equal(flags_numpy[clear], flags_torch[clear])
    assert flags_torch.sum() > 0  # the comparison covers flagged rows too
    e_torch, e_numpy = torch_det.explain(X), numpy_det.explain(X)
    assert list(e_numpy.columns) == list(e_torch.columns)
    assert e_numpy.index.equals(e_torch.index)
    np.testing.assert_allclose(e_numpy.to_numpy(), e_torch.to_numpy(), rtol=RTOL, atol=ATOL)
    # The reasons an analyst reads: the same top feature per row wherever it is clear.
    top_t, top_n = e_torch.to_numpy().argmax(axis=1), e_numpy.to_numpy().argmax(axis=1)
    ordered = np.sort(e_torch.to_numpy(), axis=1)
    clear_top = ordered[:, -1] - ordered[:, -2] > ATOL + RTOL * ordered[:, -1]
    np.testing.assert_array_equal(top_n[clear_top], top_t[clear_top])
    np.testing.assert_allclose(
        numpy_det.latent_means(X), torch_det.latent_means(X), rtol=RTOL, atol=1e-5
    )


def test_a_max_tail_tie_shares_the_contribution_in_both_forwards(train_df, tmp_path):
    """Two columns whose tails tie within rounding get equal shares of the max-tail rule,
    in torch and in numpy, whichever of the two rounding happens to put on top."""
    import torch

    torch_det, numpy_det = saved_pair(VAEDetector(**SMALL).fit(train_df), tmp_path)
    d = numpy_det._knots.shape[0]
    rules, sq = np.ones((1, len(numpy_det._scales))), np.zeros((1, d))
    for nudge in (1e-7, -1e-7):
        tail = np.zeros((1, d))
        tail[0, :2] = [6.0, 6.0 + nudge]
        numpy_det._ensemble_rules = lambda x, t=tail: (rules, sq, t)
        terms_n, _ = numpy_det._score_terms(np.zeros((1, d)))
        torch_det._ensemble_rules = lambda xb, t=tail: (
            torch.tensor(rules),
            torch.tensor(sq),
            torch.tensor(t),
        )
        terms_t, _ = torch_det._ensemble_terms(torch.zeros((1, d)))
        for terms in (np.asarray(terms_n), terms_t.numpy()):
            assert abs(terms[0, 0] - terms[0, 1]) < 1e-6 * abs(terms[0, 0])
            assert terms[0, 0] > 10 * terms[0, 2] >= 0


def saved_pair(detector: VAEDetector, folder) -> tuple[VAEDetector, NumpyVAE]:
    detector.save(folder)
    return load_detector(folder), load_detector(folder, numpy_forward=True)


@pytest.mark.parametrize(
    "params",
    [
        {},  # the defaults: ensemble rule, both kNN views over 64 prototypes
        {"score_rule": "elbo"},
        {"score_rule": "elbo", "score_kl": False, "standardize_errors": False},
        {"knn_views": ()},
        {"knn_views": ("latent",), "knn_prototypes": 0, "knn_k": 3, "knn_weight": 2.0},
        {"hidden_dims": (), "latent_dim": 3},
        {"hidden_dims": (32, 16, 8), "latent_dim": 4},
    ],
    ids=["default", "elbo", "elbo-plain", "no-knn", "knn-sample-k3", "linear", "deep"],
)
def test_numpy_forward_equals_torch_on_synthetic_data(params, train_df, test_mix, tmp_path):
    X, _ = test_mix
    torch_det, numpy_det = saved_pair(VAEDetector(**SMALL, **params).fit(train_df), tmp_path)
    assert_same_scoring(torch_det, numpy_det, X)


def test_numpy_forward_equals_torch_on_the_demo_spec(tmp_path):
    from pipelines.demo import DEMO_SPEC, generate_transactions

    columns = DEMO_SPEC.feature_columns
    train = generate_transactions(2000, n_anomalies=0, seed=1)[columns]
    batch = generate_transactions(1500, n_anomalies=30, seed=2)[columns]
    detector = VAEDetector(**SMALL, categorical_features=DEMO_SPEC.categorical_features)
    assert_same_scoring(*saved_pair(detector.fit(train), tmp_path), batch)


@pytest.mark.parametrize("name", ["cardio", "thyroid"])
def test_numpy_forward_equals_torch_on_shared_tabular_sets(name, tmp_path):
    from benchmarks.datasets import load_dataset

    try:
        data = load_dataset(name)
    except FileNotFoundError:
        pytest.skip(f"shared data set {name} not here (VIGIL_DATASETS_DIR)")
    X = pd.DataFrame(data.X, columns=[f"x{i}" for i in range(data.X.shape[1])])
    normal = X[np.asarray(data.y) == 0]
    torch_det, numpy_det = saved_pair(VAEDetector(**SMALL).fit(normal.iloc[:1500]), tmp_path)
    assert_same_scoring(torch_det, numpy_det, X)


def test_numpy_forward_handles_extreme_and_missing_values(train_df, tmp_path):
    torch_det, numpy_det = saved_pair(VAEDetector(**SMALL).fit(train_df), tmp_path)
    X = train_df.iloc[:40].copy()
    X.loc[X.index[0], "f0"] = 1e30
    X.loc[X.index[1], "amount"] = np.inf
    X.loc[X.index[2], "f3"] = np.nan
    X.loc[X.index[3], "channel"] = "never-seen"
    X.loc[X.index[4], "f1"] = -1e12
    assert_same_scoring(torch_det, numpy_det, X)
    assert np.isfinite(numpy_det.decision_function(X)).all()


def test_empty_batch_scores_to_nothing(fitted_vae, tmp_path):
    _, numpy_det = saved_pair(fitted_vae, tmp_path)
    empty = pd.DataFrame(columns=fitted_vae.feature_names_in_).astype(
        {c: "float64" for c in fitted_vae.feature_names_in_ if c != "channel"}
    )
    assert numpy_det.decision_function(empty).shape == (0,)
    assert numpy_det.explain(empty).shape == (0, fitted_vae.n_features_in_)


def test_torch_is_the_default_and_other_detectors_load_with_torch(fitted_vae, fitted_gan, tmp_path):
    fitted_vae.save(tmp_path / "vae")
    assert (tmp_path / "vae" / NUMPY_WEIGHTS_FILE).is_file()
    assert isinstance(load_detector(tmp_path / "vae"), VAEDetector)
    assert isinstance(load_detector(tmp_path / "vae", device="cpu", numpy_forward=True), NumpyVAE)
    fitted_gan.save(tmp_path / "gan")
    assert not (tmp_path / "gan" / NUMPY_WEIGHTS_FILE).exists()
    assert isinstance(load_detector(tmp_path / "gan", numpy_forward=True), GANDetector)


def _edit_config(folder, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "break_it",
    [
        "no-npz",
        "stale-weights",
        "subclass",
        "unknown-rule",
        "unknown-view",
        "unfitted-ensemble",
        "other-device",
        "old-params",
        "extra-array",
        "no-tail-knots",
    ],
)
def test_anything_the_numpy_forward_does_not_reproduce_loads_with_torch(
    break_it, fitted_vae, tmp_path
):
    folder = fitted_vae.save(tmp_path / "m")
    if break_it == "no-npz":
        (folder / NUMPY_WEIGHTS_FILE).unlink()
    elif break_it == "stale-weights":  # weights.pt rewritten after weights.npz
        import torch

        state = torch.load(folder / "weights.pt", weights_only=True)
        state["mu.bias"] = state["mu.bias"] + 1.0
        torch.save(state, folder / "weights.pt")
    elif break_it == "subclass":
        _edit_config(folder, lambda c: c.update(class_name="SequenceVAEDetector"))
    elif break_it == "unknown-rule":
        _edit_config(folder, lambda c: c["params"].update(score_rule="median"))
    elif break_it == "unknown-view":
        _edit_config(folder, lambda c: c["extra_state"]["ensemble"].update(knn_views=["graph"]))
    elif break_it == "unfitted-ensemble":
        _edit_config(folder, lambda c: c["extra_state"].update(ensemble={}))
    elif break_it == "other-device":
        _edit_config(folder, lambda c: c["params"].update(device="cuda"))
    elif break_it == "old-params":
        _edit_config(folder, lambda c: c["params"].pop("score_kl"))
    elif break_it == "no-tail-knots":
        _edit_config(folder, lambda c: c["extra_state"]["ensemble"].pop("tail_knots"))
    elif break_it == "extra-array":
        with np.load(folder / NUMPY_WEIGHTS_FILE) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["encoder.0.scale"] = np.ones(3, dtype=np.float32)
        np.savez(folder / NUMPY_WEIGHTS_FILE, **arrays)
    assert load_numpy_vae(folder) is None
    if break_it in ("no-npz", "stale-weights", "old-params", "extra-array"):
        # Still a loadable model: load_detector hands back the torch detector.
        assert isinstance(load_detector(folder, numpy_forward=True), VAEDetector)


def test_numpy_detector_saves_back_what_it_loaded_with_its_threshold(
    fitted_vae, test_mix, tmp_path
):
    X, _ = test_mix
    numpy_det = load_detector(fitted_vae.save(tmp_path / "a"), numpy_forward=True)
    numpy_det.set_threshold(Threshold(method="fpr", target=0.2, value=1.5))
    numpy_det.save(tmp_path / "b")
    again_torch = load_detector(tmp_path / "b")
    assert again_torch.threshold_.value == 1.5
    again_numpy = load_detector(tmp_path / "b", numpy_forward=True)
    assert isinstance(again_numpy, NumpyVAE)
    assert_same_scoring(again_torch, again_numpy, X)
    assert numpy_det.get_params() == again_torch.get_params()


def test_scoring_with_the_numpy_forward_never_imports_torch(fitted_vae, test_mix, tmp_path):
    X, _ = test_mix
    folder = fitted_vae.save(tmp_path / "m")
    X.to_csv(tmp_path / "x.csv", index=False)
    code = (
        "import sys, pandas as pd\n"
        "from detectors import load_detector\n"
        f"d = load_detector({str(folder)!r}, numpy_forward=True)\n"
        f"X = pd.read_csv({str(tmp_path / 'x.csv')!r})\n"
        "d.decision_function(X); d.explain(X)\n"
        "print(type(d).__name__, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["NumpyVAE", "False"]
