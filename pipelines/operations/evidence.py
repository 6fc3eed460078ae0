"""The evidence a promotion weighs: the policy, the paired records both models scored,
and the metrics at one alert budget (top-k, paired bootstrap, McNemar's exact test).

Plain functions over numpy arrays and the store's paired scores, so the statistics are
tested without a registry; :mod:`pipelines.operations.promotion` decides and acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy import stats

from pipelines.modeling.bundle import PreparedRecords, ScoringBundle
from pipelines.store import ResultsStore


class PromotionPolicy(BaseModel):
    """What evidence a challenger needs to replace the champion."""

    metric: Literal["recall_at_budget", "precision_at_budget", "auprc"] = Field(
        default="recall_at_budget",
        description="The difference that decides (at the champion's alert budget).",
    )
    min_gain: float = Field(
        default=0.0,
        ge=-1,
        le=1,
        description="The lower confidence bound of the metric's gain must exceed this.",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Interval level.")
    max_flag_volume_change: float = Field(
        default=0.5,
        ge=0,
        description="Largest relative change in flags per batch (0.5 = +/-50%) allowed.",
    )
    min_labelled: int = Field(default=100, ge=1, description="Fewest labelled records.")
    min_positives: int = Field(default=10, ge=1, description="Fewest labelled anomalies.")
    bootstrap: int = Field(default=1000, ge=100, le=20_000, description="Bootstrap resamples.")
    seed: int = 0
    require_approval: bool = Field(
        default=False, description="The promote flow pauses for a person to approve."
    )
    allow_rolled_back: bool = Field(
        default=False,
        description="Consider a challenger that was champion once and was rolled back.",
    )


@dataclass
class Evidence:
    """Paired scores of champion (a) and challenger (b) on the same records."""

    source: str
    record_ids: np.ndarray
    a: np.ndarray
    b: np.ndarray
    y: np.ndarray | None = None


# -- metrics ---------------------------------------------------------------------------


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The k highest scores as a mask (stable on ties: the earlier record wins)."""
    mask = np.zeros(len(scores), dtype=bool)
    if k > 0:
        mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def budget_metrics(y: np.ndarray, a: np.ndarray, b: np.ndarray, k: int) -> dict:
    """Precision and recall of each model when each flags its top ``k`` records."""
    positives = max(int(y.sum()), 1)
    out = {}
    for name, scores in (("champion", a), ("challenger", b)):
        flagged = _top_k(scores, k)
        tp = int((flagged & (y == 1)).sum())
        out[name] = {
            "precision_at_budget": tp / k if k else 0.0,
            "recall_at_budget": tp / positives,
        }
    return out


def _auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision as scikit-learn defines it (ties form one threshold), in numpy:
    the bootstrap calls it thousands of times."""
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    ranked, hits = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(hits)[last]
    precision = tps / (last + 1)
    recall = tps / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def paired_bootstrap(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, budget_share: float, *, n: int, seed: int
) -> dict[str, np.ndarray]:
    """Differences (challenger - champion) over resamples of the same records."""
    rng = np.random.default_rng(seed)
    size = len(y)
    diffs: dict[str, list[float]] = {
        "recall_at_budget": [],
        "precision_at_budget": [],
        "auprc": [],
    }
    for _ in range(n):
        idx = rng.integers(0, size, size)
        yy, aa, bb = y[idx], a[idx], b[idx]
        if yy.sum() == 0 or yy.sum() == size:
            continue
        k = max(1, int(round(budget_share * size)))
        m = budget_metrics(yy, aa, bb, k)
        for key in ("recall_at_budget", "precision_at_budget"):
            diffs[key].append(m["challenger"][key] - m["champion"][key])
        diffs["auprc"].append(_auprc(yy, bb) - _auprc(yy, aa))
    return {k: np.asarray(v) for k, v in diffs.items()}


def mcnemar(y: np.ndarray, flagged_a: np.ndarray, flagged_b: np.ndarray) -> dict:
    """Exact McNemar test on the records where exactly one model is right."""
    right_a = flagged_a == (y == 1)
    right_b = flagged_b == (y == 1)
    only_a = int((right_a & ~right_b).sum())
    only_b = int((~right_a & right_b).sum())
    discordant = only_a + only_b
    p = float(stats.binomtest(min(only_a, only_b), discordant, 0.5).pvalue) if discordant else 1.0
    return {"champion_only_right": only_a, "challenger_only_right": only_b, "p_value": p}


def compare_labelled(evidence: Evidence, threshold_a: float, policy: PromotionPolicy) -> dict:
    """Both models at the champion's alert budget on labelled, paired records."""
    y, a, b = evidence.y.astype(int), evidence.a, evidence.b
    k = int((a > threshold_a).sum()) or 1
    point = budget_metrics(y, a, b, k)
    for name, scores in (("champion", a), ("challenger", b)):
        point[name]["auprc"] = _auprc(y, scores)
    boot = paired_bootstrap(y, a, b, k / len(y), n=policy.bootstrap, seed=policy.seed)
    tail = (1 - policy.confidence) / 2
    differences = {}
    for metric, values in boot.items():
        values = values[np.isfinite(values)]
        differences[metric] = {
            "gain": point["challenger"][metric] - point["champion"][metric],
            "ci_low": float(np.quantile(values, tail)) if len(values) else float("nan"),
            "ci_high": float(np.quantile(values, 1 - tail)) if len(values) else float("nan"),
        }
    return {
        "records": int(len(y)),
        "positives": int(y.sum()),
        "budget": k,
        "budget_share": k / len(y),
        "champion": point["champion"],
        "challenger": point["challenger"],
        "differences": differences,
        "mcnemar": mcnemar(y, _top_k(a, k), _top_k(b, k)),
        "confidence": policy.confidence,
    }


def flag_volume(pairs: pd.DataFrame) -> dict:
    """Flags per batch at each model's own threshold, and how much the flagged sets overlap
    (all, and at the champion's budget)."""
    a, b = pairs["champion_flag"].to_numpy(bool), pairs["challenger_flag"].to_numpy(bool)
    k = int(a.sum())
    top_b = _top_k(pairs["challenger"].to_numpy(float), k)
    union = int((a | b).sum())
    batches = pairs["batch_id"].nunique() if "batch_id" in pairs else 1
    return {
        "batches": int(batches),
        "records": int(len(pairs)),
        "champion_flags": k,
        "challenger_flags": int(b.sum()),
        "champion_flags_per_batch": k / batches,
        "volume_change": (int(b.sum()) - k) / k if k else (0.0 if not b.any() else float("inf")),
        "overlap_jaccard": int((a & b).sum()) / union if union else 1.0,
        "overlap_at_budget": int((a & top_b).sum()) / k if k else 1.0,
    }


# -- gathering evidence ------------------------------------------------------------------


def score_reference(bundle: ScoringBundle, reference) -> np.ndarray:
    """A model's scores on a training reference's evaluation set (with its context)."""
    prepared = PreparedRecords(features=reference.evaluation, history=reference.context)
    return bundle.score_prepared(prepared, with_reasons=False)["score"].to_numpy("float64")


def gather_evidence(
    store: ResultsStore,
    *,
    model_name: str,
    champion: str,
    challenger: str,
    bundle_a: ScoringBundle,
    bundle_b: ScoringBundle,
    reference=None,
) -> tuple[list[Evidence], pd.DataFrame, list[str]]:
    """Labelled evidence (evaluation set, verdicts on shadow-scored records) and the paired
    unlabelled batches."""
    notes: list[str] = []
    labelled: list[Evidence] = []
    if reference is not None and reference.evaluation is not None:
        if reference.evaluation_labels is None:
            notes.append("the latest training's evaluation set has no labels")
        else:
            try:
                a = score_reference(bundle_a, reference)
                b = score_reference(bundle_b, reference)
                spec = bundle_b.spec
                ids = (
                    reference.evaluation[spec.id_column].astype(str).to_numpy()
                    if spec.id_column in reference.evaluation
                    else np.arange(len(a)).astype(str)
                )
                labelled.append(Evidence("evaluation", ids, a, b, reference.evaluation_labels))
            except (KeyError, ValueError) as exc:
                notes.append(f"champion cannot score the challenger's evaluation set: {exc}")
    else:
        notes.append("no training reference for the challenger: no evaluation-set evidence")
    pairs = store.paired_scores(model_name, champion, challenger)
    if len(pairs):
        verdicts = store.latest_verdicts(pairs["record_id"].unique().tolist())
        judged = pairs[pairs["record_id"].isin(verdicts.index)].drop_duplicates("record_id")
        if len(judged):
            labelled.append(
                Evidence(
                    "verdicts",
                    judged["record_id"].to_numpy(),
                    judged["champion"].to_numpy(float),
                    judged["challenger"].to_numpy(float),
                    verdicts.loc[judged["record_id"]].to_numpy(int),
                )
            )
    else:
        notes.append("no batch scored by both yet (shadow runs bring this evidence)")
    return labelled, pairs, notes


def without_training_labels(
    labelled: list[Evidence], learnt: set[str]
) -> tuple[list[Evidence], int]:
    """The evidence less the records whose labels a model trained on (judged on them, a
    labelled challenger would be judged on its own training data); and how many left."""
    if not learnt:
        return labelled, 0
    kept, left_out = [], 0
    for e in labelled:
        keep = ~pd.Series(e.record_ids.astype(str)).isin(learnt).to_numpy()
        left_out += int((~keep).sum())
        if keep.any():
            kept.append(
                Evidence(
                    e.source,
                    e.record_ids[keep],
                    e.a[keep],
                    e.b[keep],
                    None if e.y is None else np.asarray(e.y)[keep],
                )
            )
    return kept, left_out


def combine_evidence(labelled: list[Evidence]) -> Evidence | None:
    if not labelled:
        return None
    ids = np.concatenate([e.record_ids.astype(str) for e in labelled])
    keep = ~pd.Series(ids).duplicated(keep="last").to_numpy()
    return Evidence(
        "+".join(e.source for e in labelled),
        ids[keep],
        np.concatenate([e.a for e in labelled])[keep],
        np.concatenate([e.b for e in labelled])[keep],
        np.concatenate([e.y for e in labelled])[keep],
    )
