"""The re-ranker: a gradient-boosted classifier on the VAE's codes and the verdicts so far.

Inputs per record (one design, the same in training and scoring): the detector's
unsupervised score, its per-feature error terms (``explain``), the VAE's latent means (for
detectors that have them), the context features and the verdict-driven risk features.
Model: scikit-learn's ``HistGradientBoostingClassifier``, trained on the records with a
verdict known before training (frauds = 1, not_fraud = 0) plus a sample of unlabelled
records as presumed normals (an analyst team labels only what it was shown; without them
the classifier never sees an ordinary record).

Served score: ``max(p / p_cut, floor(u))`` with ``u = unsupervised score / its threshold``
and ``p`` the classifier's fraud probability (``p_cut`` default 0.5). Both halves are "1 = at
the line": a record is flagged when the re-ranker finds fraud more likely than not, **or**
the unsupervised model alone finds it rarer than a ``gate`` share of presumed-normal
records (and over its own threshold), so a pattern no analyst has labelled (which the
classifier cannot know) still reaches the queue.

The floor is *bounded* and *gated* (:class:`NoveltyFloor`): ``u`` is first turned into how
rare it is among presumed-normal records (``-log10`` of its exceedance share), divided by
the line's rarity (the gate, 4 decades: one record in ten thousand, or the detector's
threshold where that is stricter), then squashed above the line towards ``cap``. Below the
line it counts ``below`` (0.1) at most, the level of ``p / p_cut`` for ``p = 5%``: where
the re-ranker finds fraud plausible it decides the order, and among the records it calls
unlikely frauds the unsupervised order decides (a type no analyst labelled is one of them:
the re-ranker learnt it as normal). Both settings are chosen on validation weeks with a
fraud type held out of the labels (``novelty.py``). An unbounded ``u`` let every
extreme-but-innocent record outrank the re-ranker's confident frauds; an ungated one (the
detector's 1% line, full weight below it) buried every fraud with ``p`` under 0.5 beneath
the 1% most unusual normal records and cost the labelled model 0.08 to 0.2 of its AP on the
handbook and the generated cards. Gated, the held-out fraud types of the card benchmark
keep their unsupervised AUROC (the bulk, where they hide, is still ordered by ``u``). The
combined threshold (1.0 at training) can be recalibrated like any other (``vigil threshold
set``).

Persistence without pickle: the fitted trees are exported to plain arrays (``trees.npz``,
read with ``allow_pickle=False``) and evaluated here with numpy, so a saved and reloaded
re-ranker gives bit-identical scores and a model file never runs code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from detectors import Threshold
from pipelines.feedback.lanes import (
    EXPLORE_COLUMN,
    link_strength,
    linked_reason,
    pick_lanes,
    uncertain_reason,
)
from pipelines.feedback.novelty import (
    DEFAULT_FLOOR_BELOW,
    DEFAULT_FLOOR_CAP,
    DEFAULT_FLOOR_GATE,
    NoveltyFloor,
    served_score,
)
from pipelines.feedback.risk import RiskConfig, build_risk_features
from pipelines.modeling.bundle import PreparedRecords, ScoringBundle, is_sequence_detector

RERANKER_DIR = "reranker"
TREES_FILE = "trees.npz"
CONFIG_FILE = "config.json"
_ROW_CHUNK = 20_000


class BoostedTrees:
    """A fitted binary ``HistGradientBoostingClassifier`` as arrays, evaluated in numpy.

    Same decision rule as scikit-learn's raw-data predictor for numeric features: a
    missing value goes where ``missing_go_to_left`` says, else left when
    ``x <= num_threshold``. Child indices are global (all trees in one array).
    """

    FIELDS = (
        "feature_idx",
        "num_threshold",
        "missing_go_to_left",
        "left",
        "right",
        "is_leaf",
        "value",
    )

    def __init__(
        self, arrays: dict[str, np.ndarray], roots: np.ndarray, baseline: float, max_depth: int
    ) -> None:
        self.arrays = arrays
        self.roots = roots
        self.baseline = float(baseline)
        self.max_depth = int(max_depth)

    @classmethod
    def fit(
        cls, X: np.ndarray, y: np.ndarray, *, seed: int = 0, sample_weight=None, **params
    ) -> BoostedTrees:
        from sklearn.ensemble import HistGradientBoostingClassifier

        settings = {
            "max_iter": 200,
            "learning_rate": 0.05,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 20,
            "l2_regularization": 1.0,
            "early_stopping": False,
        }
        settings.update(params)
        model = HistGradientBoostingClassifier(random_state=seed, **settings)
        X = np.array(X, dtype="float64")
        # A column missing everywhere (e.g. a baseline no record is old enough for yet)
        # breaks scikit-learn's binning; constant, it is simply never split on.
        X[:, np.isnan(X).all(axis=0)] = 0.0
        model.fit(X, y, sample_weight=sample_weight)
        return cls.from_sklearn(model)

    @classmethod
    def from_sklearn(cls, model) -> BoostedTrees:
        if model.n_trees_per_iteration_ != 1:
            raise ValueError("the re-ranker is a binary classifier")
        parts: dict[str, list[np.ndarray]] = {f: [] for f in cls.FIELDS}
        roots, offset, depth = [], 0, 0
        for (predictor,) in model._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported; encode categories")
            roots.append(offset)
            for name in cls.FIELDS:
                values = nodes[name].astype(
                    "float64" if name in ("num_threshold", "value") else "int64"
                )
                if name in ("left", "right"):
                    values = values + offset
                parts[name].append(values)
            depth = max(depth, int(nodes["depth"].max()))
            offset += len(nodes)
        arrays = {name: np.concatenate(chunks) for name, chunks in parts.items()}
        baseline = float(np.asarray(model._baseline_prediction).ravel()[0])
        return cls(arrays, np.asarray(roots, dtype="int64"), baseline, depth)

    def decision(self, X: np.ndarray) -> np.ndarray:
        """Raw log-odds per row."""
        X = np.asarray(X, dtype="float64")
        a = self.arrays
        is_leaf = a["is_leaf"].astype(bool)
        go_missing_left = a["missing_go_to_left"].astype(bool)
        out = np.full(len(X), self.baseline)
        for start in range(0, len(X), _ROW_CHUNK):
            xb = X[start : start + _ROW_CHUNK]
            m = len(xb)
            idx = np.repeat(self.roots[:, None], m, axis=1)
            rows = np.broadcast_to(np.arange(m), idx.shape)
            for _ in range(self.max_depth + 1):
                leaf = is_leaf[idx]
                if leaf.all():
                    break
                values = xb[rows, a["feature_idx"][idx]]
                left = np.where(
                    np.isnan(values), go_missing_left[idx], values <= a["num_threshold"][idx]
                )
                idx = np.where(leaf, idx, np.where(left, a["left"][idx], a["right"][idx]))
            out[start : start + m] += a["value"][idx].sum(axis=0)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Fraud probability per row."""
        return 1.0 / (1.0 + np.exp(-self.decision(X)))

    def save(self, path: Path) -> None:
        np.savez(path / TREES_FILE, roots=self.roots, **self.arrays)

    @classmethod
    def load(cls, path: Path, baseline: float, max_depth: int) -> BoostedTrees:
        with np.load(path / TREES_FILE, allow_pickle=False) as data:
            arrays = {name: data[name] for name in cls.FIELDS}
            roots = data["roots"]
        return cls(arrays, roots, baseline, max_depth)


@dataclass
class RerankConfig:
    """What the re-ranker reads, and how its score combines with the detector's."""

    numeric_columns: list[str]
    category_codes: dict[str, dict[str, int]]
    latent_dim: int
    error_columns: list[str]
    base_threshold: float
    p_cut: float = 0.5
    risk: dict | None = None
    baseline: float = 0.0
    max_depth: int = 0
    training: dict = field(default_factory=dict)
    floor: dict | None = None

    @property
    def novelty_floor(self) -> NoveltyFloor | None:
        return NoveltyFloor(**self.floor) if self.floor else None

    @property
    def risk_config(self) -> RiskConfig | None:
        return RiskConfig.from_dict(self.risk) if self.risk else None

    def feature_names(self) -> list[str]:
        names = ["unsupervised_score"]
        names += [f"z_{i}" for i in range(self.latent_dim)]
        names += [f"err_{c}" for c in self.error_columns]
        names += list(self.numeric_columns) + list(self.category_codes)
        risk = self.risk_config
        if risk is not None:
            names += risk.feature_names()
        return names


def detector_outputs(
    bundle: ScoringBundle, model_input: pd.DataFrame, context: pd.DataFrame | None
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray | None]:
    """The detector's score, per-feature error terms and (VAE) latent means per row."""
    detector = bundle.detector
    window = {"history": context} if is_sequence_detector(detector) else {}
    scores = detector.decision_function(model_input, **window)
    errors = detector.explain(model_input, **window)
    latents = (
        detector.latent_means(model_input, **window) if hasattr(detector, "latent_means") else None
    )
    return np.asarray(scores, dtype="float64"), errors, latents


def design_matrix(
    config: RerankConfig,
    features: pd.DataFrame,
    scores: np.ndarray,
    errors: pd.DataFrame,
    latents: np.ndarray | None,
) -> np.ndarray:
    """The re-ranker's input, column order = ``config.feature_names()``."""
    n = len(features)
    parts = [scores.reshape(-1, 1)]
    if config.latent_dim:
        parts.append(np.asarray(latents, dtype="float64").reshape(n, config.latent_dim))
    parts.append(errors[config.error_columns].to_numpy(dtype="float64"))
    parts.append(
        features[config.numeric_columns]
        .apply(pd.to_numeric, errors="coerce")
        .to_numpy(dtype="float64")
    )
    for column, codes in config.category_codes.items():
        mapped = features[column].astype("string").map(codes)
        parts.append(pd.to_numeric(mapped, errors="coerce").to_numpy(dtype="float64")[:, None])
    risk = config.risk_config
    if risk is not None:
        parts.append(features[risk.feature_names()].to_numpy(dtype="float64"))
    return np.hstack(parts) if parts else np.empty((n, 0))


class RerankedBundle(ScoringBundle):
    """A detector bundle plus the re-ranker trained on verdicts; serves
    ``max(p/p_cut, floor(u))``.

    ``use_labels(frauds)`` gives it the confirmed frauds known now (``record_id``,
    ``known_at``) for the risk features; without them every risk count is 0.
    """

    def __init__(
        self,
        spec,
        detector,
        trees: BoostedTrees,
        config: RerankConfig,
        *,
        max_reasons: int = 3,
        threshold: Threshold | None = None,
    ) -> None:
        super().__init__(spec, detector, max_reasons=max_reasons)
        self.trees = trees
        self.config = config
        self.combined_threshold_ = threshold or Threshold(
            method="combined", target=config.p_cut, value=1.0
        )
        self.fraud_labels: pd.DataFrame | None = None
        #: Share of each batch's queue given to the records the re-ranker is least sure of
        #: (None: the setting ``feedback_uncertainty_share``).
        self.exploration_share: float | None = None
        #: Share given to records linked to confirmed fraud (None: ``feedback_linked_share``).
        self.linked_lane_share: float | None = None

    @property
    def uncertainty_share(self) -> float:
        if self.exploration_share is not None:
            return self.exploration_share
        from pipelines.settings import get_settings

        return float(get_settings().feedback_uncertainty_share)

    @property
    def linked_share(self) -> float:
        """Share of the queue for records linked to confirmed fraud (the setting)."""
        if self.linked_lane_share is not None:
            return self.linked_lane_share
        from pipelines.settings import get_settings

        return float(get_settings().feedback_linked_share)

    @property
    def threshold(self) -> float:
        return float(self.combined_threshold_.value)

    def set_threshold(self, threshold: Threshold) -> None:
        self.combined_threshold_ = threshold

    def use_labels(self, frauds: pd.DataFrame | None) -> None:
        self.fraud_labels = frauds

    def prepare(self, frame: pd.DataFrame, history: pd.DataFrame | None = None) -> PreparedRecords:
        prepared = super().prepare(frame, history)
        risk = self.config.risk_config
        if risk is not None:
            prepared.features = with_risk_features(
                prepared.features, frame, history, risk, self.fraud_labels
            )
        return prepared

    def look_back_seconds(self) -> float | None:
        """The risk features may look further back than the context (their windows)."""
        seconds = super().look_back_seconds()
        risk = self.config.risk_config
        if risk is None:
            return seconds
        return max(seconds or 0.0, risk.horizon_seconds)

    def score_prepared(self, prepared: PreparedRecords, *, with_reasons: bool = True):
        features = prepared.features
        model_input = self.model_input(features)
        context = self._window_context(prepared.history, features)
        scores, errors, latents = detector_outputs(self, model_input, context)
        p = self.trees.predict_proba(design_matrix(self.config, features, scores, errors, latents))
        u = scores / self.config.base_threshold if self.config.base_threshold > 0 else scores
        floor = self.config.novelty_floor
        lifted = u if floor is None else floor(u)
        combined = served_score(u, p, self.config.p_cut, floor)
        flagged = combined > self.threshold
        link = link_strength(features, self.config.risk_config)
        lanes = pick_lanes(
            p,
            flagged,
            link,
            uncertainty_share=self.uncertainty_share,
            linked_share=self.linked_share,
        )
        explore = lanes.explore
        result = pd.DataFrame(
            {
                "score": combined,
                "is_anomaly": flagged,
                "reasons": [[] for _ in combined],
                "unsupervised_score": scores,
                "fraud_probability": p,
                EXPLORE_COLUMN: explore,
            },
            index=features.index,
        )
        if with_reasons and explore.any():
            self._lane_reasons(result, lanes, p, link)
        if with_reasons and flagged.any():
            rows = np.flatnonzero(flagged)
            reasons = self._reasons(features.iloc[rows], errors.iloc[rows], scores[rows])
            for k, i in enumerate(rows):
                if p[i] / self.config.p_cut >= lifted[i]:
                    reasons[k].insert(
                        0,
                        {
                            "feature": "reranker",
                            "value": round(float(p[i]), 4),
                            "contribution": round(float(p[i] / self.config.p_cut), 6),
                            "share": 1.0,
                            "text": f"re-ranker trained on analysts' verdicts: fraud probability "
                            f"{p[i]:.0%}",
                        },
                    )
            result.iloc[rows, result.columns.get_loc("reasons")] = pd.Series(
                reasons, dtype=object
            ).to_numpy()
        return result

    def _lane_reasons(self, result: pd.DataFrame, lanes, p: np.ndarray, link: np.ndarray) -> None:
        """Each lane's pick carries its lane as its one reason (the queue's lane filter)."""
        column = result.columns.get_loc("reasons")
        for mask, reason, values in (
            (lanes.uncertain, uncertain_reason(self.uncertainty_share), np.round(p, 4)),
            (lanes.linked, linked_reason(self.linked_share), link),
        ):
            for i in np.flatnonzero(mask):
                result.iat[i, column] = [dict(reason, value=float(values[i]))]

    # -- persistence --------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = super().save(path)
        folder = path / RERANKER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.trees.save(folder)
        payload = {"config": asdict(self.config), "threshold": self.combined_threshold_.to_dict()}
        (folder / CONFIG_FILE).write_text(json.dumps(payload, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, *, numpy_forward: bool | None = None) -> RerankedBundle:
        path = Path(path)
        base = ScoringBundle.load(path, numpy_forward=numpy_forward)
        payload = json.loads((path / RERANKER_DIR / CONFIG_FILE).read_text())
        config = RerankConfig(**payload["config"])
        trees = BoostedTrees.load(path / RERANKER_DIR, config.baseline, config.max_depth)
        return cls(
            base.spec,
            base.detector,
            trees,
            config,
            max_reasons=base.max_reasons,
            threshold=Threshold.from_dict(payload["threshold"]),
        )


def with_risk_features(
    features: pd.DataFrame,
    frame: pd.DataFrame,
    history: pd.DataFrame | None,
    risk: RiskConfig,
    frauds: pd.DataFrame | None,
) -> pd.DataFrame:
    """``features`` plus the risk features of ``frame``'s rows, ``history`` as their past."""
    columns = [risk.id_column, risk.time_column, *risk.columns]
    n_history = 0 if history is None else len(history)
    if n_history:
        combined = pd.concat([history[columns], frame[columns]], ignore_index=True)
    else:
        combined = frame[columns].reset_index(drop=True)
    values = build_risk_features(
        combined, frauds, risk, targets=np.arange(n_history, n_history + len(frame))
    )
    values.index = features.index
    return pd.concat([features.drop(columns=values.columns, errors="ignore"), values], axis=1)


def fit_reranked_bundle(
    base: ScoringBundle,
    features: pd.DataFrame,
    rows: np.ndarray,
    y: np.ndarray,
    *,
    risk: RiskConfig | None,
    seed: int = 0,
    p_cut: float = 0.5,
    unlabelled_weight: float = 1.0,
    labelled: np.ndarray | None = None,
    tree_params: dict | None = None,
    floor_cap: float = DEFAULT_FLOOR_CAP,
    floor_below: float = DEFAULT_FLOOR_BELOW,
    floor_gate: float = DEFAULT_FLOOR_GATE,
) -> RerankedBundle:
    """Train the re-ranker on ``features.iloc[rows]`` with targets ``y``.

    ``features``: every record's model features in time order (and the risk features when
    ``risk`` is given), so sequence detectors see each record's own past. ``labelled``:
    which of ``rows`` carry an analyst's verdict (the rest are presumed normals, weighted
    by ``unlabelled_weight``). The novelty floor's reference is the presumed normals'
    unsupervised scores (reviewed normals are excluded: they were chosen for being high).
    """
    spec = base.spec
    model_input = base.model_input(features)
    if is_sequence_detector(base.detector):
        scores, errors, latents = detector_outputs(base, model_input, None)
        scores, errors = scores[rows], errors.iloc[rows]
        latents = None if latents is None else latents[rows]
        subset = features.iloc[rows]
    else:
        subset = features.iloc[rows]
        scores, errors, latents = detector_outputs(base, base.model_input(subset), None)
    categorical = [c for c in spec.categorical_features if c in subset.columns]
    numeric = [c for c in spec.model_feature_columns if c not in categorical]
    codes = {
        c: {str(v): i for i, v in enumerate(subset[c].astype("string").value_counts().index)}
        for c in categorical
    }
    config = RerankConfig(
        numeric_columns=numeric,
        category_codes=codes,
        latent_dim=0 if latents is None else int(np.asarray(latents).shape[1]),
        error_columns=list(errors.columns),
        base_threshold=float(base.threshold),
        p_cut=p_cut,
        risk=risk.to_dict() if risk is not None else None,
    )
    X = design_matrix(config, subset, scores, errors, latents)
    y_array = np.asarray(y)
    reference = (y_array == 0) if labelled is None else (~np.asarray(labelled, dtype=bool))
    if reference.sum() < 10:
        reference = y_array == 0
    u_ratio = scores / base.threshold if base.threshold > 0 else scores
    config.floor = asdict(
        NoveltyFloor.fit(u_ratio[reference], cap=floor_cap, below=floor_below, gate=floor_gate)
    )
    weight = None
    if labelled is not None and unlabelled_weight != 1.0:
        weight = np.where(labelled, 1.0, unlabelled_weight)
    trees = BoostedTrees.fit(
        X, np.asarray(y), seed=seed, sample_weight=weight, **(tree_params or {})
    )
    config.baseline, config.max_depth = trees.baseline, trees.max_depth
    config.training = {
        "rows": int(len(rows)),
        "frauds": int(np.asarray(y).sum()),
        "labelled": int(len(rows) if labelled is None else np.asarray(labelled).sum()),
    }
    return RerankedBundle(spec, base.detector, trees, config, max_reasons=base.max_reasons)


try:  # The pyfunc wrapper exists only where MLflow is installed.
    from pipelines.modeling.bundle import VigilPyfuncModel

    class RerankedPyfuncModel(VigilPyfuncModel):  # type: ignore[misc,valid-type]
        """MLflow pyfunc around :class:`RerankedBundle` (no labels: risk counts are 0)."""

        def load_context(self, context) -> None:
            self.bundle = RerankedBundle.load(context.artifacts["bundle"])

except ImportError:  # pragma: no cover
    RerankedPyfuncModel = None  # type: ignore[assignment,misc]
