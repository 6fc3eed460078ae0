"""Tabular feature encoding fitted on normal training data only.

Detectors see a dense float32 matrix; this module decides how raw columns become that
matrix and records every decision in a JSON-serialisable state so that a saved model
encodes new data exactly as it did during training (no pickles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

UNKNOWN = "__unknown__"
#: Output column set to 1 when a range-checked value lies outside the training range.
BEYOND_RANGE_SUFFIX = "__beyond_range"

#: Sample skewness above which a non-negative numeric column is log1p-transformed.
SKEW_THRESHOLD = 2.0
#: Robust z-scores beyond this magnitude are soft-limited (see ``TabularEncoder``).
SOFT_LIMIT = 20.0
#: IQR of a standard normal; dividing the IQR by it makes the scale comparable to a std.
_IQR_TO_STD = 1.3489795003921634
#: Percentiles of each numeric column kept as its training summary (what reasons compare
#: a value with: "above the 99.9th percentile of training").
SUMMARY_PERCENTILES = (0.1, 1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.9)
#: Significant digits a summary keeps: a figure of the distribution, not a record's value.
_SUMMARY_DIGITS = 4


def as_frame(X: Any, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Return ``X`` as a DataFrame; arrays get ``x0..x{n-1}`` (or the fitted) column names.

    Accepting arrays keeps the detectors usable from a notebook with plain NumPy, while
    DataFrames keep column names (and therefore explanations) meaningful.
    """
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, pd.Series):  # a single record
        return X.to_frame().T.infer_objects()
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("array input must be numeric; pass a DataFrame for mixed types") from exc
    if arr.ndim == 1:
        arr = arr.reshape(1, -1) if feature_names is not None else arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array or DataFrame, got an array with shape {arr.shape}")
    if feature_names is not None and arr.shape[1] == len(feature_names):
        names = list(feature_names)
    else:
        names = [f"x{i}" for i in range(arr.shape[1])]
    return pd.DataFrame(arr, columns=names)


def per_feature_frame(
    contrib: np.ndarray, groups: Sequence[int], feature_names: Sequence[str], X: Any
) -> pd.DataFrame:
    """Per-encoded-column contributions summed back to their source features (clipped at
    0, ``groups`` as ``TabularEncoder.output_groups_``); rows keep ``X``'s index when it is
    a DataFrame. Shared by the torch detectors and the numpy forward of a saved VAE."""
    group_index = np.asarray(groups, dtype=np.int64)
    contrib = np.asarray(contrib, dtype=np.float64).reshape(-1, group_index.size)
    membership = np.zeros((group_index.size, len(feature_names)), dtype=np.float64)
    membership[np.arange(group_index.size), group_index] = 1.0
    per_feature = np.maximum(contrib @ membership, 0.0)
    index = X.index if isinstance(X, pd.DataFrame) else None
    return pd.DataFrame(per_feature, columns=list(feature_names), index=index)


def _is_categorical_dtype(s: pd.Series) -> bool:
    return bool(
        pd.api.types.is_object_dtype(s)
        or pd.api.types.is_string_dtype(s)
        or isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(s)
    )


class TabularEncoder:
    """Turn a mixed-type table into a float32 matrix that suits reconstruction-based detectors.

    Numeric columns
        * Non-finite values (NaN, +/-inf, unparsable strings) count as missing and are imputed
          with the training median; if the column had missing values in training, a 0/1
          ``<col>__missing`` indicator column is added so missingness itself can be anomalous.
        * A column that is non-negative with sample skewness > ``SKEW_THRESHOLD`` (amounts,
          counts) is ``log1p``-transformed first; the decision is made at fit time and stored.
        * Robust scaling: ``(v - median) / scale`` with ``scale = max(IQR / 1.349,
          std of v winsorised at its 1st/99th percentiles)`` (both match the std for
          Gaussian data). Pure IQR scaling made zero-inflated columns (IQR ~ 0, long but
          normal tail, common in real data) dominate every score; the winsorised std stays
          robust to a few extreme training values. Fallbacks: plain std, then 1.0.
        * No hard clipping (extreme values must stay visible), but robust z-scores with
          ``|z| > SOFT_LIMIT`` (20) are soft-limited to ``sign(z) * (20 + log1p(|z| - 20))``:
          monotone, still far outside the normal range, but finite and numerically tame.
        * Columns named in ``range_features`` also get a 0/1 ``<col>__beyond_range``
          column: 1 when the value lies outside the [min, max] seen in training. It is
          never set in training, so detectors treat it like an unseen category (a
          novelty that dominates the score): for values whose normal range is a fact of
          the domain (an amount no normal customer ever reaches), not a matter of degree.

    Categorical columns (object/string/category/bool dtype, or named in
        ``categorical_features``)
        Values are compared as strings. The most frequent categories (at most
        ``max_categories``, each with training frequency >= ``min_category_frequency``) are
        kept; everything else (rare, unseen at scoring time, missing) goes to an
        ``__unknown__`` bucket. Each column is one-hot encoded as ``<col>=<category>``.

    Each fitted column also keeps a ``summary`` of its training values, what reasons
    say normal looks like ("AE: 0.01% of training records", "99.9th percentile of
    training is 1,310"): numeric columns their ``SUMMARY_PERCENTILES`` and mean, rounded
    to four significant digits; categorical columns the share of each kept category,
    with every rare value in one ``other`` share. Only these figures are kept, never a
    row: a model file carries no record (see :func:`column_summary`).

    ``output_groups_[j]`` is the index (into ``feature_names_in_``) of the original column
    that output column ``j`` came from, so per-output contributions can be summed back.
    """

    def __init__(
        self,
        categorical_features: list[str] | None = None,
        max_categories: int = 50,
        min_category_frequency: float = 0.001,
        range_features: list[str] | None = None,
    ) -> None:
        self.categorical_features = categorical_features
        self.max_categories = max_categories
        self.min_category_frequency = min_category_frequency
        self.range_features = range_features

    # ------------------------------------------------------------------ fitting
    def fit(self, X: pd.DataFrame | np.ndarray) -> TabularEncoder:
        """Learn per-column encodings from (normal) training data; returns ``self``."""
        df = as_frame(X)
        if df.shape[0] == 0:
            raise ValueError("cannot fit TabularEncoder on an empty table")
        forced = set(self.categorical_features or [])
        unknown_forced = forced - set(map(str, df.columns))
        if unknown_forced:
            raise ValueError(f"categorical_features not in data: {sorted(unknown_forced)}")
        self.feature_names_in_: list[str] = [str(c) for c in df.columns]
        ranged = set(self.range_features or [])
        unknown_ranged = ranged - set(self.feature_names_in_)
        if unknown_ranged:
            raise ValueError(f"range_features not in data: {sorted(unknown_ranged)}")
        self.columns_: list[dict[str, Any]] = []
        for name, col in zip(self.feature_names_in_, df.columns, strict=True):
            s = df[col]
            if name in forced or _is_categorical_dtype(s):
                if name in ranged:
                    raise ValueError(f"range_features: {name!r} is categorical, not numeric")
                self.columns_.append(self._fit_categorical(name, s))
            else:
                column = self._fit_numeric(name, s)
                if name in ranged:
                    finite = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
                    finite = finite[np.isfinite(finite)]
                    column["range"] = (
                        [float(finite.min()), float(finite.max())] if finite.size else None
                    )
                self.columns_.append(column)
        for column, col in zip(self.columns_, df.columns, strict=True):
            column["summary"] = column_summary(column, df[col])
        self._finalise()
        return self

    def _fit_numeric(self, name: str, s: pd.Series) -> dict[str, Any]:
        v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
        finite = np.isfinite(v)
        has_missing = bool((~finite).any())
        v = v[finite]
        if v.size == 0:
            # Never observed in training (e.g. a baseline that needs more history than the
            # training period holds): the model has no normal to compare it with, so it is
            # encoded as missing at scoring too, not as a value it never saw.
            return {
                "name": name,
                "kind": "numeric",
                "log1p": False,
                "median_raw": 0.0,
                "center": 0.0,
                "scale": 1.0,
                "missing_indicator": has_missing,
                "unobserved": True,
            }
        median_raw = float(np.median(v))
        use_log = bool(
            v.min() >= 0 and np.unique(v).size > 2 and float(pd.Series(v).skew()) > SKEW_THRESHOLD
        )
        if use_log:
            v = np.log1p(v)
        center = float(np.median(v))
        q01, q25, q75, q99 = np.percentile(v, [1, 25, 75, 99])
        # The larger of the IQR-based scale and the 1%/99%-winsorised std: robust to a few
        # extreme training values, but a zero-inflated column (IQR ~ 0 with a long normal
        # tail) does not turn its ordinary tail values into huge z-scores.
        scale = max(float(q75 - q25) / _IQR_TO_STD, float(np.std(np.clip(v, q01, q99))))
        if not scale > 0:
            scale = float(np.std(v))
        if not scale > 0:
            scale = 1.0
        return {
            "name": name,
            "kind": "numeric",
            "log1p": use_log,
            "median_raw": median_raw,
            "center": center,
            "scale": scale,
            "missing_indicator": has_missing,
        }

    def _fit_categorical(self, name: str, s: pd.Series) -> dict[str, Any]:
        strs = s[s.notna()].astype(str)
        counts = strs.value_counts(sort=False)
        n = len(s)
        # Deterministic order: frequency descending, then category name.
        items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [str(k) for k, c in items if c / n >= self.min_category_frequency]
        kept = kept[: self.max_categories]
        return {"name": name, "kind": "categorical", "categories": kept}

    def _finalise(self) -> None:
        self._encoding_plan = None
        names: list[str] = []
        groups: list[int] = []
        for i, c in enumerate(self.columns_):
            if c["kind"] == "numeric":
                names.append(c["name"])
                groups.append(i)
                if c["missing_indicator"]:
                    names.append(f"{c['name']}__missing")
                    groups.append(i)
                if c.get("range"):
                    names.append(f"{c['name']}{BEYOND_RANGE_SUFFIX}")
                    groups.append(i)
            else:
                for cat in [*c["categories"], UNKNOWN]:
                    names.append(f"{c['name']}={cat}")
                    groups.append(i)
        self.output_names_: list[str] = names
        self.output_groups_: list[int] = groups
        self.n_features_out_: int = len(names)

    # ----------------------------------------------------------------- encoding
    def _check_fitted(self) -> None:
        if not hasattr(self, "columns_"):
            raise ValueError("TabularEncoder is not fitted yet; call fit() first")

    def transform(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Encode ``X`` with the fitted state; extra columns are ignored.

        Raises ``ValueError`` naming the first fitted column that is missing from ``X``.
        """
        self._check_fitted()
        df = as_frame(X, self.feature_names_in_)
        colmap = {str(c): c for c in df.columns}
        for name in self.feature_names_in_:
            if name not in colmap:
                raise ValueError(
                    f"column {name!r} is required (it was present at fit time) but is missing"
                )
        n = len(df)
        out = np.empty((n, self.n_features_out_), dtype=np.float32)
        plan = self._plan()
        if plan.numeric_names:
            self._encode_numeric(df, [colmap[name] for name in plan.numeric_names], plan, out)
        for c, j in plan.categorical:
            k = len(c["categories"])
            codes = _category_codes(df[colmap[c["name"]]], c["categories"])
            block = np.zeros((n, k + 1), dtype=np.float32)
            block[np.arange(n), codes] = 1.0
            out[:, j : j + k + 1] = block
        return out

    def _plan(self) -> _EncodingPlan:
        """Where each fitted column goes in the output, as arrays (built once per encoder).

        Numeric columns are encoded together as one (rows x columns) block: per-column
        pandas calls cost ~50 us each, which is most of a one-record request's encoding.
        """
        plan = getattr(self, "_encoding_plan", None)
        if plan is not None:
            return plan
        numeric, categorical = [], []
        z_pos, indicator, range_cols = [], [], []
        j = 0
        for c in self.columns_:
            if c["kind"] != "numeric":
                categorical.append((c, j))
                j += len(c["categories"]) + 1
                continue
            i = len(numeric)
            numeric.append(c)
            z_pos.append(j)
            j += 1
            if c["missing_indicator"]:
                indicator.append((i, j))
                j += 1
            if c.get("range"):
                range_cols.append((i, j, *c["range"]))
                j += 1
        plan = _EncodingPlan(
            numeric_names=[c["name"] for c in numeric],
            median=np.array([c["median_raw"] for c in numeric], dtype=np.float64),
            center=np.array([c["center"] for c in numeric], dtype=np.float64),
            scale=np.array([c["scale"] for c in numeric], dtype=np.float64),
            log1p=np.array([i for i, c in enumerate(numeric) if c["log1p"]], dtype=np.int64),
            z_pos=np.array(z_pos, dtype=np.int64),
            indicator_cols=np.array([i for i, _ in indicator], dtype=np.int64),
            unobserved=np.array(
                [i for i, c in enumerate(numeric) if c.get("unobserved")], dtype=np.int64
            ),
            indicator_pos=np.array([p for _, p in indicator], dtype=np.int64),
            range_cols=np.array([r[0] for r in range_cols], dtype=np.int64),
            range_pos=np.array([r[1] for r in range_cols], dtype=np.int64),
            range_low=np.array([r[2] for r in range_cols], dtype=np.float64),
            range_high=np.array([r[3] for r in range_cols], dtype=np.float64),
            categorical=categorical,
        )
        self._encoding_plan = plan
        return plan

    @staticmethod
    def _encode_numeric(
        df: pd.DataFrame, columns: list, plan: _EncodingPlan, out: np.ndarray
    ) -> None:
        """Impute, log1p, robust-scale and soft-limit every numeric column at once."""
        v = _numeric_block(df, columns)
        missing = ~np.isfinite(v)
        if plan.unobserved.size:
            missing[:, plan.unobserved] = True
        if plan.range_cols.size:
            ranged = v[:, plan.range_cols]
            beyond = ~missing[:, plan.range_cols] & (
                (ranged < plan.range_low) | (ranged > plan.range_high)
            )
            out[:, plan.range_pos] = beyond
        if missing.any():
            v = np.where(missing, plan.median, v)
        if plan.log1p.size:
            logged = v[:, plan.log1p]
            # Negative values never occurred in training; keep them finite and low.
            v[:, plan.log1p] = np.sign(logged) * np.log1p(np.abs(logged))
        z = (v - plan.center) / plan.scale
        big = np.abs(z) > SOFT_LIMIT
        if big.any():
            z[big] = np.sign(z[big]) * (SOFT_LIMIT + np.log1p(np.abs(z[big]) - SOFT_LIMIT))
        out[:, plan.z_pos] = z
        if plan.indicator_cols.size:
            out[:, plan.indicator_pos] = missing[:, plan.indicator_cols]

    def fit_transform(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Fit on ``X`` and return its encoding."""
        return self.fit(X).transform(X)

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (config + learned encodings)."""
        self._check_fitted()
        return {
            "categorical_features": self.categorical_features,
            "max_categories": self.max_categories,
            "min_category_frequency": self.min_category_frequency,
            "range_features": self.range_features,
            "feature_names_in": list(self.feature_names_in_),
            "columns": [dict(c) for c in self.columns_],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularEncoder:
        """Rebuild a fitted encoder from ``to_dict()`` output."""
        enc = cls(
            categorical_features=d.get("categorical_features"),
            max_categories=int(d["max_categories"]),
            min_category_frequency=float(d["min_category_frequency"]),
            range_features=d.get("range_features"),
        )
        enc.feature_names_in_ = list(d["feature_names_in"])
        enc.columns_ = [dict(c) for c in d["columns"]]
        enc._finalise()
        return enc

    def __repr__(self) -> str:
        return (
            f"TabularEncoder(categorical_features={self.categorical_features!r}, "
            f"max_categories={self.max_categories}, "
            f"min_category_frequency={self.min_category_frequency})"
        )


def column_summary(column: dict[str, Any], s: pd.Series) -> dict[str, Any]:
    """What normal training values of one fitted column look like, in a few figures.

    Numeric: ``rows`` (finite values), ``missing`` (share), ``mean`` and ``percentiles``
    (``SUMMARY_PERCENTILES`` as text keys). Categorical: ``rows``, ``missing``,
    ``shares`` of the kept categories and ``other``, the share of every other value
    together (a rare value is never named). Figures are rounded to four significant
    digits: a summary of the distribution, not a copy of any record's value.
    """
    n = len(s)
    if column["kind"] == "numeric":
        v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
        finite = v[np.isfinite(v)]
        summary: dict[str, Any] = {
            "rows": int(finite.size),
            "missing": _rounded(1.0 - finite.size / n) if n else 0.0,
        }
        if finite.size:
            summary["mean"] = _rounded(float(finite.mean()))
            values = np.percentile(finite, SUMMARY_PERCENTILES)
            summary["percentiles"] = {
                f"{p:g}": _rounded(float(q))
                for p, q in zip(SUMMARY_PERCENTILES, values, strict=True)
            }
        return summary
    present = s[s.notna()].astype(str)
    counts = present.value_counts()
    kept = {c: _rounded(int(counts.get(c, 0)) / n) for c in column["categories"]}
    other = len(present) - int(sum(counts.get(c, 0) for c in column["categories"]))
    return {
        "rows": n,
        "missing": _rounded(1.0 - len(present) / n) if n else 0.0,
        "shares": kept,
        "other": _rounded(other / n) if n else 0.0,
    }


def _rounded(value: float) -> float:
    return float(f"{value:.{_SUMMARY_DIGITS}g}")


@dataclass(frozen=True)
class _EncodingPlan:
    """Output positions and parameters of a fitted encoder's columns, as arrays."""

    numeric_names: list[str]
    median: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    log1p: np.ndarray
    z_pos: np.ndarray
    indicator_cols: np.ndarray
    indicator_pos: np.ndarray
    #: Numeric columns never observed in training: always encoded as missing.
    unobserved: np.ndarray
    range_cols: np.ndarray
    range_pos: np.ndarray
    range_low: np.ndarray
    range_high: np.ndarray
    categorical: list[tuple[dict[str, Any], int]]


def _numeric_block(df: pd.DataFrame, columns: list) -> np.ndarray:
    """The columns as one float64 (rows x columns) array, a fresh copy; values that do not
    parse as numbers become NaN. Plain numeric dtypes convert in one call."""
    if len(set(columns)) == len(columns):
        block = df[columns]
        if all(dtype.kind in "fiub" for dtype in block.dtypes):
            return block.to_numpy(dtype=np.float64, copy=True)
    return np.column_stack(
        [pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64) for c in columns]
    ).reshape(len(df), len(columns))


#: Up to this many rows, categories are looked up in a dict (pandas' Categorical costs
#: ~300 us per call whatever the size).
_SMALL = 64


def _category_codes(s: pd.Series, categories: list[str]) -> np.ndarray:
    """Index of each value's category; ``len(categories)`` for unknown or missing values."""
    k = len(categories)
    if len(s) <= _SMALL and s.dtype == object:
        values = s.tolist()
        if all(isinstance(v, str) or v is None for v in values):
            lookup = {cat: i for i, cat in enumerate(categories)}
            return np.array([k if v is None else lookup.get(v, k) for v in values], np.int64)
    if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        # Text only (the usual column): one hash lookup per value, no str() of each
        # value and no Categorical; missing values and unknown ones are not found.
        found = pd.Index(categories, dtype=object).get_indexer(s.to_numpy(dtype=object))
        codes = found.astype(np.int64, copy=False)
        codes[codes < 0] = k
        return codes
    mask = s.isna().to_numpy()
    codes = pd.Categorical(s.astype(str), categories=categories).codes
    codes = np.asarray(codes, dtype=np.int64).copy()
    codes[(codes < 0) | mask] = k  # unknown bucket
    return codes
