"""One loader for every benchmark data set: the named real sets in ../shared/datasets and
any .npz (keys X, y) or CSV/Parquet file with a label column, so new sets plug in without
code."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent


def datasets_dir() -> Path:
    """``VIGIL_DATASETS_DIR`` or the shared folder beside the checkout."""
    configured = os.environ.get("VIGIL_DATASETS_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "datasets"


NAMED = {
    "cardio": ("adbench_6_cardio.npz", None),
    "thyroid": ("adbench_38_thyroid.npz", None),
    "mammography": ("adbench_23_mammography.npz", None),
    "shuttle": ("adbench_32_shuttle.npz", None),
    "creditcard_ulb": ("creditcard_ulb_first9528rows.csv.gz", "Class"),
}


@dataclass
class TabularDataset:
    name: str
    X: np.ndarray  # float32, rows x features
    y: np.ndarray  # int, 1 = anomaly
    feature_names: list[str]

    @property
    def anomaly_rate(self) -> float:
        return float(self.y.mean())


def load_dataset(name_or_path: str, label_col: str | None = None) -> TabularDataset:
    """Load a named set (see ``NAMED``) or a file path.

    CSV/Parquet need ``label_col``; every other column must be numeric (non-numeric
    columns are rejected with their names rather than silently dropped).
    """
    if name_or_path in NAMED:
        filename, named_label = NAMED[name_or_path]
        path = datasets_dir() / filename
        label_col = label_col or named_label
        name = name_or_path
    else:
        path = Path(name_or_path)
        name = path.name.split(".")[0]
    if not path.exists():
        raise FileNotFoundError(f"{path}: data set not found (set VIGIL_DATASETS_DIR?)")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            X, y = data["X"].astype("float32"), data["y"].astype(int).ravel()
        names = [f"x{i}" for i in range(X.shape[1])]
    else:
        if not label_col:
            raise ValueError(f"{path}: give --label-col for a CSV/Parquet data set")
        frame = pd.read_parquet(path) if ".parquet" in path.suffixes else pd.read_csv(path)
        if label_col not in frame.columns:
            raise ValueError(f"{path}: label column {label_col!r} not found")
        y = frame.pop(label_col).astype(int).to_numpy()
        non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if non_numeric:
            raise ValueError(f"{path}: non-numeric feature columns {non_numeric}")
        X = frame.to_numpy(dtype="float32")
        names = list(frame.columns)
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError(f"{path}: labels must be 0/1")
    return TabularDataset(name=name, X=X, y=y, feature_names=names)


@dataclass
class Split:
    X_train: np.ndarray  # training normals only
    X_test: np.ndarray
    y_test: np.ndarray


def split_normals(dataset: TabularDataset, seed: int, train_fraction: float = 0.6) -> Split:
    """The protocol users live in: fit on 60% of the normals, test on the other 40% of
    normals plus every anomaly."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(dataset.y == 0))
    anomalies = np.flatnonzero(dataset.y == 1)
    n_train = int(round(len(normal) * train_fraction))
    train_idx, test_normal = normal[:n_train], normal[n_train:]
    test_idx = np.concatenate([test_normal, anomalies])
    return Split(
        X_train=dataset.X[train_idx],
        X_test=dataset.X[test_idx],
        y_test=dataset.y[test_idx],
    )
