"""The model bundle: spec + detector (with its encoder and threshold) as one scoring unit.

This is what the registry stores. It scores a raw DataFrame and returns ``score``,
``is_anomaly`` and the top reasons, both in-process and as an MLflow pyfunc
(``models:/NAME@champion`` works anywhere MLflow runs, ``mlflow models serve`` included).
It imports no Prefect and no SQLAlchemy so a bare scoring process can load it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from detectors import load_detector
from detectors.context import PREFIX as CONTEXT_PREFIX
from detectors.context import build_context_features, context_reading, describe_context
from detectors.reasons import NEW, Reading, rank, training_reading
from detectors.reasons import reason as explained
from pipelines.intake.spec import DatasetSpec
from pipelines.settings import get_settings

SPEC_FILE = "spec.json"
DETECTOR_DIR = "detector"


@dataclass
class PreparedRecords:
    """Records turned into what the detectors see.

    ``features``: the spec's model features (raw, then context in sequence mode) for the
    records, index kept; in sequence mode also the entity and time columns.
    ``history``: the same columns for earlier records that only serve as context.
    ``state``: what to keep as history for these records (id, raw columns, features).
    """

    features: pd.DataFrame
    history: pd.DataFrame | None = None
    state: pd.DataFrame | None = None


def typed_features(spec: DatasetSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Select and type the spec's raw feature columns.

    Numbers that do not parse become missing (the encoder imputes them); pipelines
    quarantine such rows before they get here, this only keeps a raw pyfunc call safe.
    """
    missing = [c for c in spec.feature_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"input lacks column(s) {missing} required by spec {spec.name!r}")
    columns: dict[str, pd.Series] = {}
    for column in spec.numeric_features:
        values = frame[column]
        if values.dtype != np.float64:  # validated batches are float64 already
            values = pd.to_numeric(values, errors="coerce").astype("float64")
        columns[column] = values
    for column in spec.categorical_features:
        values = frame[column]
        if not _plain_texts(values):
            # Vectorised: this runs on every scoring chunk.
            text = values.astype("string")
            values = text.astype(object).where(text.notna(), None)
        columns[column] = values
    return pd.DataFrame(columns, index=frame.index)


def _plain_texts(values: pd.Series) -> bool:
    """Values that are already what :func:`typed_features` makes (str or None), as a
    validated batch's are: checked in Python, which costs less than converting them to
    pandas strings and back (for a chunk and for one record) and stops at the first
    value that is not."""
    if values.dtype != object:
        return False
    return all(v is None or type(v) is str for v in values.tolist())


def prepare_records(
    spec: DatasetSpec, frame: pd.DataFrame, history: pd.DataFrame | None = None
) -> PreparedRecords:
    """The one feature path for training and scoring (no train/serve skew).

    In sequence mode, context features are built over ``history`` (earlier records as kept
    by :func:`prepare_records` before: their ``state``) followed by ``frame``, and only
    ``frame``'s rows are returned as features; history rows keep the features they were
    given when they were new, so a batch scored alone matches the same batch scored inside
    one big file.
    """
    typed = typed_features(spec, frame)
    config = spec.context
    if config is None:
        return PreparedRecords(features=typed)
    missing = [c for c in spec.required_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"input lacks column(s) {missing} required by spec {spec.name!r}")
    raw_columns = config.raw_columns
    n_history = 0 if history is None else len(history)
    if n_history:
        combined = pd.concat(
            [history[raw_columns], frame[raw_columns]], ignore_index=True, copy=False
        )
    else:
        combined = frame[raw_columns].reset_index(drop=True)
    batch_rows = np.arange(n_history, n_history + len(frame))
    context = build_context_features(combined, config, targets=batch_rows)
    context.index = frame.index
    keys = [config.entity_column, config.time_column]
    features = pd.concat([typed, context, frame[keys]], axis=1)
    kept = [spec.id_column, *[c for c in raw_columns if c not in typed.columns]]
    state = pd.concat([frame[kept], typed, context], axis=1)
    history_features = None
    if n_history:
        history_features = history[[*spec.model_feature_columns, *keys]]
    return PreparedRecords(features=features, history=history_features, state=state)


def is_sequence_detector(detector) -> bool:
    """Sequence detectors score a record with its entity's earlier records as context."""
    return hasattr(detector, "sequence_length") and hasattr(detector, "entity_column")


class ScoringBundle:
    """Everything needed to score raw records the way the model was trained."""

    def __init__(self, spec: DatasetSpec, detector, *, max_reasons: int = 3) -> None:
        self.spec = spec
        self.detector = detector
        self.max_reasons = max_reasons

    @property
    def threshold(self) -> float:
        return float(self.detector.threshold_.value)

    def set_threshold(self, threshold) -> None:
        """Swap the decision threshold (a recalibration after training)."""
        self.detector.set_threshold(threshold)

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The spec's raw feature columns, typed (tabular mode's model input)."""
        return typed_features(self.spec, frame)

    def prepare(self, frame: pd.DataFrame, history: pd.DataFrame | None = None) -> PreparedRecords:
        return prepare_records(self.spec, frame, history)

    def look_back_seconds(self) -> float | None:
        """How far back :meth:`prepare` reads ``history`` for a record (sequence mode: the
        context's ``history``; None in tabular mode): what a streamed batch carries."""
        config = self.spec.context
        return None if config is None else config.history_seconds

    def window_history(
        self, history: pd.DataFrame | None, records: pd.DataFrame
    ) -> pd.DataFrame | None:
        """The rows of ``history`` the detector's windows can reach for ``records``
        (None: it reads no windows); what a scoring partition needs of the history."""
        return self._window_context(history, records)

    def score(
        self,
        frame: pd.DataFrame,
        *,
        history: pd.DataFrame | None = None,
        with_reasons: bool = True,
    ) -> pd.DataFrame:
        """Score records: ``score`` (higher = more anomalous), ``is_anomaly``, ``reasons``.

        Sequence mode: ``history`` holds earlier records (as kept by the store) so each
        record is seen in its entity's context; without it only ``frame`` gives context.
        """
        return self.score_prepared(self.prepare(frame, history), with_reasons=with_reasons)

    def model_input(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The columns the detector reads of prepared features (sequence detectors: with
        the entity and time columns their windows need)."""
        columns = list(self.spec.model_feature_columns)
        if is_sequence_detector(self.detector):
            columns += [self.spec.entity_column, self.spec.time_column]
        return frame[columns]

    def _window_context(
        self, history: pd.DataFrame | None, records: pd.DataFrame
    ) -> pd.DataFrame | None:
        """Only the last records of the scored records' own entities can be in a window:
        pass no more than that (the history also holds other entities' rows, which only
        the secondary-entity context features read)."""
        if history is None or not len(history) or not is_sequence_detector(self.detector):
            return None
        keep = max(int(self.detector.sequence_length) - 1, 1)
        entity = self.spec.entity_column
        if len(records) < len(history):
            history = history[history[entity].isin(pd.unique(records[entity]))]
        ordered = history.sort_values(self.spec.time_column, kind="stable")
        return self.model_input(ordered.groupby(self.spec.entity_column, sort=False).tail(keep))

    def score_prepared(self, prepared: PreparedRecords, *, with_reasons: bool = True):
        """Score records already turned into features (see :meth:`prepare`)."""
        features = prepared.features
        model_input = self.model_input(features)
        context = self._window_context(prepared.history, features)
        if is_sequence_detector(self.detector):
            scores = self.detector.decision_function(model_input, history=context)
        else:
            scores = self.detector.decision_function(model_input)
        scores = np.asarray(scores, dtype="float64")
        flagged = scores > self.threshold
        result = pd.DataFrame(
            {"score": scores, "is_anomaly": flagged, "reasons": [[] for _ in scores]},
            index=features.index,
        )
        if with_reasons and flagged.any():
            rows = np.flatnonzero(flagged)
            subset = self._with_raw_columns(features, prepared.state, rows)
            if is_sequence_detector(self.detector):
                # The flagged rows' windows also hold the batch's unflagged records, of
                # their own entities only (windows never cross entities): the others
                # would only be encoded and windowed for nothing.
                entity = self.spec.entity_column
                flagged_entities = pd.unique(model_input[entity].iloc[rows])
                others = model_input.iloc[np.flatnonzero(~flagged)]
                others = others[others[entity].isin(flagged_entities)]
                if context is not None:
                    context = context[context[entity].isin(flagged_entities)]
                pieces = [p for p in (context, others) if p is not None and len(p)]
                window = pd.concat(pieces) if pieces else None
                contributions = self.detector.explain(model_input.iloc[rows], history=window)
            else:
                contributions = self.detector.explain(model_input.iloc[rows])
            result.iloc[rows, result.columns.get_loc("reasons")] = pd.Series(
                self._reasons(subset, contributions, scores[rows]), dtype=object
            ).to_numpy()
        return result

    def _with_raw_columns(
        self, features: pd.DataFrame, state: pd.DataFrame | None, rows: np.ndarray
    ) -> pd.DataFrame:
        """The flagged rows' features; in sequence mode with the raw context columns that
        are no model feature (the merchant a card is new to), so a reason can name the
        value. ``state`` holds the same records in the same order (see
        :func:`prepare_records`)."""
        subset = features.iloc[rows]
        config = self.spec.context
        if config is None or state is None or len(state) != len(features):
            return subset
        extra = [c for c in config.raw_columns if c not in subset.columns and c in state.columns]
        if not extra:
            return subset
        return pd.concat([subset, state[extra].iloc[rows].set_axis(subset.index)], axis=1)

    def reasons(
        self, features: pd.DataFrame, contributions: pd.DataFrame, scores: np.ndarray
    ) -> list[list[dict]]:
        """The reasons of flagged rows whose contributions were computed elsewhere (a
        one-record scorer with its own forward), as :meth:`score_prepared` gives them;
        ``features`` as there (with the raw context columns: see
        :meth:`_with_raw_columns`)."""
        return self._reasons(features, contributions, scores)

    def _reasons(
        self, features: pd.DataFrame, contributions: pd.DataFrame, scores: np.ndarray
    ) -> list[list[dict]]:
        """The top ``max_reasons`` features of each (flagged) row as reason dicts, each
        against what normal looks like, in the order an analyst reads them (see
        :mod:`detectors.reasons`). A model trained before its encoder kept training
        summaries gives the reasons it always gave (:meth:`_reasons_without_summaries`).

        Column values are read from whole-column arrays (no per-row pandas lookups):
        this runs for every flagged row of every chunk."""
        summaries = self._training_summaries()
        if not summaries:
            return self._reasons_without_summaries(features, contributions)
        values = contributions.to_numpy(dtype="float64")
        names = list(contributions.columns)
        top = np.argsort(-values, axis=1)[:, : self.max_reasons]
        totals = values.sum(axis=1)
        context_config = self.spec.context
        noun = context_config.event_noun if context_config is not None else "record"
        ranges = self._training_ranges()
        rows = _RowValues(features)
        out: list[list[dict]] = []
        for row, order in enumerate(top):
            reasons = []
            record = rows.at(row)
            for j in order:
                contribution = float(values[row, j])
                if contribution <= 0:
                    continue
                name = names[j]
                value = _plain(record.get(name))
                share = float(contribution / totals[row]) if totals[row] > 0 else 0.0
                history = None
                if context_config is not None:
                    history = context_reading(name, record, context_config, summaries)
                if history is not None and name.startswith(CONTEXT_PREFIX):
                    reading = history
                else:
                    training = training_reading(
                        name, value, summaries.get(name), noun=noun, bounds=ranges.get(name)
                    )
                    reading = _with_history(history, training)
                reasons.append(explained(name, value, contribution, share, reading))
            out.append(rank(reasons))
        return out

    def _reasons_without_summaries(
        self, features: pd.DataFrame, contributions: pd.DataFrame
    ) -> list[list[dict]]:
        """Reasons of a model whose encoder keeps no training summaries: the column's
        value, the context sentence, the training range where the feature has one."""
        values = contributions.to_numpy(dtype="float64")
        names = list(contributions.columns)
        top = np.argsort(-values, axis=1)[:, : self.max_reasons]
        totals = values.sum(axis=1)
        context_config = self.spec.context
        column_values = {
            name: features[name].to_numpy(dtype=object)
            for name in {names[j] for j in np.unique(top)}
            if name in features.columns
        }
        ranges = self._training_ranges()
        rows = _RowValues(features) if context_config is not None else None
        out: list[list[dict]] = []
        for row, order in enumerate(top):
            reasons = []
            for j in order:
                contribution = float(values[row, j])
                if contribution <= 0:
                    continue
                name = names[j]
                value = column_values[name][row] if name in column_values else None
                share = contribution / totals[row] if totals[row] > 0 else 0.0
                described = None
                if context_config is not None and name.startswith(CONTEXT_PREFIX):
                    described = describe_context(name, rows.at(row), context_config)
                what = described or f"{name} = {_format_value(value)}"
                beyond = _beyond_range(ranges.get(name), value)
                if beyond:
                    what += f", {beyond}"
                reasons.append(
                    {
                        "feature": name,
                        "value": _plain(value),
                        "contribution": round(contribution, 6),
                        "share": round(share, 4),
                        "text": f"{what} ({share:.0%} of the anomaly score)",
                    }
                )
            out.append(reasons)
        return out

    def _training_summaries(self) -> dict[str, dict]:
        """Each model feature's training summary (empty for a model trained before its
        encoder kept them); read once per bundle."""
        cached = getattr(self, "_summaries", None)
        if cached is None:
            encoder = getattr(self.detector, "encoder_", None)
            columns = getattr(encoder, "columns_", None) or []
            cached = {c["name"]: c["summary"] for c in columns if c.get("summary")}
            self._summaries = cached
        return cached

    def _training_ranges(self) -> dict[str, tuple[float, float]]:
        """Range-checked features and the (min, max) of their normal training values."""
        encoder = getattr(self.detector, "encoder_", None)
        if encoder is None:
            return {}
        ranges: dict[str, tuple[float, float]] = {}
        for column in encoder.columns_:
            if column.get("range"):
                ranges.setdefault(column["name"], tuple(column["range"]))
        return ranges

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
    def load(cls, path: str | Path, *, numpy_forward: bool | None = None) -> ScoringBundle:
        """``numpy_forward``: score a VAE that has weights.npz without torch (default:
        the ``numpy_forward`` setting); see :mod:`detectors.numpy_forward`."""
        path = Path(path)
        meta = json.loads((path / SPEC_FILE).read_text())
        spec = DatasetSpec.model_validate(meta["spec"])
        if numpy_forward is None:
            numpy_forward = get_settings().numpy_forward
        detector = load_detector(path / DETECTOR_DIR, numpy_forward=numpy_forward)
        return cls(spec, detector, max_reasons=meta["max_reasons"])


class _RowValues(Mapping):
    """One row of a frame as a read-only mapping, read from whole-column arrays: what
    ``describe_context`` reads of a flagged record (``features.iloc[row]`` built a pandas
    row per context reason, half the CPU of the flags of a sequence chunk)."""

    def __init__(self, frame: pd.DataFrame, row: int = 0, columns: dict | None = None) -> None:
        self._row = row
        self._columns = columns if columns is not None else {}
        self._frame = frame

    def at(self, row: int) -> _RowValues:
        return _RowValues(self._frame, row, self._columns)

    def _column(self, name: str) -> np.ndarray:
        column = self._columns.get(name)
        if column is None:
            column = self._columns[name] = self._frame[name].to_numpy(dtype=object)
        return column

    def __getitem__(self, name: str):
        if name not in self._frame.columns:
            raise KeyError(name)
        return self._column(name)[self._row]

    def __iter__(self):
        return iter(self._frame.columns)

    def __len__(self) -> int:
        return len(self._frame.columns)


def _with_history(history: Reading | None, training: Reading) -> Reading:
    """Sequence mode: the entity's own history says what normal is where the context
    holds it; a value beyond every training value (or never seen in training) says so
    too, and keeps its level."""
    if history is None:
        return training
    if training.level == NEW and training.normal:
        return Reading(
            history.kind if history.level == NEW else training.kind,
            NEW,
            history.statement,
            history.observed,
            "; ".join(n for n in (history.normal, training.normal) if n),
            {**history.reference, "training": training.reference},
        )
    return history


def _beyond_range(bounds: tuple[float, float] | None, value) -> str | None:
    """'above every normal value seen in training (max 219.98)' for a range-checked
    feature whose value lies outside the training range."""
    number = _plain(value)
    if bounds is None or not isinstance(number, int | float):
        return None
    low, high = bounds
    if number > high:
        return f"above every normal value seen in training (max {high:,.2f})"
    if number < low:
        return f"below every normal value seen in training (min {low:,.2f})"
    return None


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


def _pyfunc_model_class():
    """MLflow pyfunc around :class:`ScoringBundle`; reasons come back as JSON text.

    Built on first use (``from pipelines.modeling.bundle import VigilPyfuncModel``), so
    importing this module does not import MLflow: a scoring process that loads the bundle
    from its folder never needs it. None where MLflow is not installed."""
    try:
        import mlflow.pyfunc
    except ImportError:  # pragma: no cover - bare environments without MLflow
        return None

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

    VigilPyfuncModel.__module__ = __name__
    VigilPyfuncModel.__qualname__ = "VigilPyfuncModel"
    return VigilPyfuncModel


def __getattr__(name: str):
    if name == "VigilPyfuncModel":
        cls = _pyfunc_model_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
