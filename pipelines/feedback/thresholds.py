"""Thresholds from verdicts, without retraining: ``vigil threshold set``.

A registered model version's threshold is recalibrated on what its scoring runs and the
analysts' verdicts say, as known before the moment it is set:

- ``budget``: expected flags per day, the way fraud teams staff their queue. Evidence: the
  version's scores in completed runs; a "day" is a distinct UTC date on which a run started
  (one nightly batch per day). Cut: the score above which ``budget x days`` records lie.
- ``precision``: the lowest cut whose precision among labelled scored records (known before
  now) reaches the target. Evidence: labelled records the version scored, both classes.
- ``fpr``: the (1 - F) quantile of the version's scores on records not confirmed fraud.

Below the minimum evidence the change is refused, with the size found. An applied change is
written to the decision ledger (who, why, before -> after, evidence, policy) and to the
MLflow version tag ``vigil.threshold``; the registry applies that tag when it loads the
version, so the next scoring run uses it without a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from detectors import Threshold
from pipelines.modeling.registry import TAG_THRESHOLD
from pipelines.store import ResultsStore
from pipelines.store.vocabulary import DecisionKind, DecisionOutcome

MODES = ("budget", "precision", "fpr")


class NotEnoughEvidence(ValueError):
    """Too few scored or labelled records to set a threshold responsibly."""


@dataclass
class ThresholdPlan:
    """A proposed threshold with the evidence it rests on."""

    mode: str
    target: float
    before: float
    after: float
    evidence: dict = field(default_factory=dict)

    def threshold(self) -> Threshold:
        return Threshold(method=self.mode, target=self.target, value=self.after)


def plan_threshold(
    store: ResultsStore,
    *,
    model_name: str,
    model_version: str,
    current: float,
    mode: str,
    target: float,
    now: datetime | None = None,
    min_reviewed: int = 30,
    min_scored: int = 1000,
    dataset: str | None = None,
) -> ThresholdPlan:
    """Compute a new threshold from evidence known before ``now`` (raises
    :class:`NotEnoughEvidence` below the minimum, naming the size found)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    now = now or datetime.now(UTC)
    scores = store.model_scores(model_name, model_version, before=now)
    labels = store.known_labels(known_before=now, dataset=dataset)
    # A record scored in several runs counts once, with its latest score.
    scores = scores.sort_values("run_started_at", kind="stable").drop_duplicates(
        "record_id", keep="last"
    )
    values = scores["score"].to_numpy(dtype="float64")
    evidence: dict = {"scored_records": int(len(values)), "known_before": now.isoformat()}
    if mode == "budget":
        if target <= 0:
            raise ValueError("--budget must be a positive number of flags per day")
        days = int(scores["run_started_at"].dt.tz_convert("UTC").dt.date.nunique())
        evidence["days"] = days
        if len(values) < min_scored:
            raise NotEnoughEvidence(
                f"{model_name} v{model_version}: {len(values)} scored records over {days} "
                f"day(s) before {now:%Y-%m-%d %H:%M}; a budget needs at least {min_scored}"
            )
        wanted = int(round(target * days))
        ordered = np.sort(values)[::-1]
        after = float(ordered[wanted]) if wanted < len(ordered) else float(ordered[-1]) - 1e-9
        evidence["flags_per_day"] = float((values > after).sum() / max(days, 1))
        evidence["flags_per_day_before"] = float((values > current).sum() / max(days, 1))
    elif mode == "precision":
        joined = scores.merge(labels[["record_id", "y"]], on="record_id", how="inner")
        n_fraud = int(joined["y"].sum())
        evidence.update(
            reviewed_records=int(len(joined)), frauds=n_fraud, not_fraud=int(len(joined) - n_fraud)
        )
        if len(joined) < min_reviewed or n_fraud == 0 or n_fraud == len(joined):
            raise NotEnoughEvidence(
                f"{model_name} v{model_version}: {len(joined)} labelled scored records "
                f"({n_fraud} fraud) known before {now:%Y-%m-%d %H:%M}; a precision target "
                f"needs at least {min_reviewed} with both verdicts"
            )
        y = joined["y"].to_numpy()
        s = joined["score"].to_numpy(dtype="float64")
        after = Threshold.for_precision(s, y, target).value
        evidence["precision"] = _precision(s, y, after)
        evidence["precision_before"] = _precision(s, y, current)
        evidence["flags_among_reviewed"] = int((s > after).sum())
    else:
        if not 0 < target < 1:
            raise ValueError("--fpr must lie between 0 and 1")
        confirmed = set(labels.loc[labels["y"] == 1, "record_id"])
        normal = values[~scores["record_id"].isin(confirmed).to_numpy()]
        evidence["normal_records"] = int(len(normal))
        if len(normal) < min_scored:
            raise NotEnoughEvidence(
                f"{model_name} v{model_version}: {len(normal)} scored records not confirmed "
                f"fraud before {now:%Y-%m-%d %H:%M}; an FPR target needs at least {min_scored}"
            )
        after = Threshold.for_fpr(normal, target).value
        evidence["fpr"] = float((normal > after).mean())
        evidence["fpr_before"] = float((normal > current).mean())
    return ThresholdPlan(
        mode=mode, target=float(target), before=current, after=after, evidence=evidence
    )


def apply_threshold(
    store: ResultsStore,
    plan: ThresholdPlan,
    *,
    model_name: str,
    model_version: str,
    actor: str,
    reason: str | None,
    policy: dict | None = None,
) -> int:
    """Record the change in the decision ledger, then set the MLflow version tags that
    the next load applies; returns the ledger entry id."""
    from mlflow import MlflowClient

    threshold = plan.threshold()
    decision_id = store.record_decision(
        model_name=model_name,
        kind=DecisionKind.THRESHOLD,
        decision=DecisionOutcome.APPLIED,
        actor=actor,
        from_version=model_version,
        to_version=model_version,
        before={"threshold": plan.before},
        after={"threshold": plan.after, "method": plan.mode, "target": plan.target},
        evidence=plan.evidence,
        policy={"mode": plan.mode, "target": plan.target, **(policy or {})},
        reason=reason,
    )
    tag = {
        **threshold.to_dict(),
        "decision_id": decision_id,
        "actor": actor,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reason": reason,
    }
    client = MlflowClient()
    client.set_model_version_tag(model_name, model_version, TAG_THRESHOLD, json.dumps(tag))
    client.set_model_version_tag(model_name, model_version, "threshold", str(plan.after))
    return decision_id


def record_refusal(
    store: ResultsStore,
    *,
    model_name: str,
    model_version: str,
    mode: str,
    target: float,
    actor: str,
    reason: str | None,
    message: str,
) -> int:
    """A refused change is a decision too: who asked, for what, and why it was refused."""
    return store.record_decision(
        model_name=model_name,
        kind=DecisionKind.THRESHOLD,
        decision=DecisionOutcome.REFUSED,
        actor=actor,
        from_version=model_version,
        to_version=model_version,
        policy={"mode": mode, "target": target},
        evidence={"refused": message},
        reason=reason,
    )


def _precision(scores: np.ndarray, y: np.ndarray, cut: float) -> float | None:
    flagged = scores > cut
    return float(y[flagged].mean()) if flagged.any() else None


def parse_budget(text: str) -> float:
    """'50', '50/day' or '50/d' -> 50.0."""
    value = str(text).strip().lower()
    for suffix in ("/day", "/d", "per day"):
        if value.endswith(suffix):
            value = value[: -len(suffix)].strip()
    try:
        return float(value)
    except ValueError as exc:
        raise ValueError(f"--budget {text!r}: give flags per day, e.g. 50 or 50/day") from exc


def describe(plan: ThresholdPlan) -> str:
    e = plan.evidence
    if plan.mode == "budget":
        detail = (
            f"{e['flags_per_day']:.1f} flags/day on {e['scored_records']} scored records "
            f"over {e['days']} day(s) (was {e['flags_per_day_before']:.1f})"
        )
    elif plan.mode == "precision":
        before = e["precision_before"]
        detail = (
            f"precision {e['precision']:.3f} among {e['reviewed_records']} labelled records "
            f"({e['frauds']} fraud), was " + ("n/a" if before is None else f"{before:.3f}")
        )
    else:
        detail = (
            f"FPR {e['fpr']:.4f} on {e['normal_records']} records not confirmed fraud "
            f"(was {e['fpr_before']:.4f})"
        )
    return f"threshold {plan.before:.6g} -> {plan.after:.6g}: {detail}"
