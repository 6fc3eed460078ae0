"""The model bundle: spec + detector (with its encoder and threshold) as one scoring unit.

This is what the registry stores. It scores a raw DataFrame and returns ``score``,
``is_anomaly`` and the top reasons, both in-process and as an MLflow pyfunc
(``models:/NAME@champion`` works anywhere MLflow runs, ``mlflow models serve`` included).
It imports no Prefect and no SQLAlchemy so a bare scoring process can load it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from detectors import load_detector
from pipelines.spec import DatasetSpec

SPEC_FILE = "spec.json"
DETECTOR_DIR = "detector"
OUTPUT_COLUMNS = ["score", "is_anomaly", "reasons"]


class ScoringBundle:
    """Everything needed to score raw records the way the model was trained."""

    def __init__(self, spec: DatasetSpec, detector, *, max_reasons: int = 3) -> None:
        self.spec = spec
        self.detector = detector
        self.max_reasons = max_reasons

    @property
    def threshold(self) -> float:
        return float(self.detector.threshold_.value)

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Select and type the spec's feature columns.

        Numbers that do not parse become missing (the encoder imputes them); pipelines
        quarantine such rows before they get here, this only keeps a raw pyfunc call safe.
        """
        missing = [c for c in self.spec.feature_columns if c not in frame.columns]
        if missing:
            raise ValueError(f"input lacks column(s) {missing} required by spec {self.spec.name!r}")
        out = pd.DataFrame(index=frame.index)
        for column in self.spec.numeric_features:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        for column in self.spec.categorical_features:
            # Vectorised: this runs on every scoring chunk.
            text = frame[column].astype("string")
            out[column] = text.astype(object).where(text.notna(), None)
        return out

    def score(self, frame: pd.DataFrame, *, with_reasons: bool = True) -> pd.DataFrame:
        """Score records: ``score`` (higher = more anomalous), ``is_anomaly``, ``reasons``.

        Reasons are computed only for flagged records (explanations cost a second pass);
        each is a list of ``{feature, value, contribution, share, text}``.
        """
        features = self.features(frame)
        scores = np.asarray(self.detector.decision_function(features), dtype="float64")
        flagged = scores > self.threshold
        result = pd.DataFrame(
            {"score": scores, "is_anomaly": flagged, "reasons": [[] for _ in scores]},
            index=frame.index,
        )
        if with_reasons and flagged.any():
            rows = np.flatnonzero(flagged)
            subset = features.iloc[rows]
            contributions = self.detector.explain(subset)
            result.iloc[rows, result.columns.get_loc("reasons")] = pd.Series(
                self._reasons(subset, contributions, scores[rows]), dtype=object
            ).to_numpy()
        return result

    def _reasons(
        self, features: pd.DataFrame, contributions: pd.DataFrame, scores: np.ndarray
    ) -> list[list[dict]]:
        values = contributions.to_numpy(dtype="float64")
        names = list(contributions.columns)
        top = np.argsort(-values, axis=1)[:, : self.max_reasons]
        totals = values.sum(axis=1)
        out: list[list[dict]] = []
        for row, order in enumerate(top):
            reasons = []
            for j in order:
                contribution = float(values[row, j])
                if contribution <= 0:
                    continue
                name = names[j]
                value = features.iloc[row][name] if name in features.columns else None
                share = contribution / totals[row] if totals[row] > 0 else 0.0
                reasons.append(
                    {
                        "feature": name,
                        "value": _plain(value),
                        "contribution": round(contribution, 6),
                        "share": round(share, 4),
                        "text": f"{name} = {_format_value(value)} "
                        f"({share:.0%} of the anomaly score)",
                    }
                )
            out.append(reasons)
        return out

    # -- persistence --------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / SPEC_FILE).write_text(
            json.dumps({"spec": self.spec.model_dump(), "max_reasons": self.max_reasons}, indent=2)
        )
        self.detector.save(path / DETECTOR_DIR)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ScoringBundle:
        path = Path(path)
        meta = json.loads((path / SPEC_FILE).read_text())
        spec = DatasetSpec.model_validate(meta["spec"])
        return cls(spec, load_detector(path / DETECTOR_DIR), max_reasons=meta["max_reasons"])


def _plain(value):
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _format_value(value) -> str:
    value = _plain(value)
    if value is None:
        return "missing"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
    return str(value)


try:  # The pyfunc wrapper exists only where MLflow is installed.
    import mlflow.pyfunc

    class VigilPyfuncModel(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc around :class:`ScoringBundle`; reasons come back as JSON text."""

        def load_context(self, context) -> None:
            self.bundle = ScoringBundle.load(context.artifacts["bundle"])

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            frame = pd.DataFrame(model_input)
            result = self.bundle.score(frame)
            out = pd.DataFrame(
                {
                    "score": result["score"].to_numpy(),
                    "is_anomaly": result["is_anomaly"].to_numpy(),
                    "reasons": [json.dumps(r) for r in result["reasons"]],
                }
            )
            id_column = self.bundle.spec.id_column
            if id_column in frame.columns:
                out.insert(0, id_column, frame[id_column].astype(str).to_numpy())
            return out

except ImportError:  # pragma: no cover - bare environments without MLflow
    VigilPyfuncModel = None  # type: ignore[assignment,misc]
