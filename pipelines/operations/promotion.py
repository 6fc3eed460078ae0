"""Promotion on paired evidence, with a decision ledger and rollback.

The challenger and the champion are judged on the *same* records:

- the labelled evaluation set of the latest training run (the challenger's), re-scored by
  both models;
- analysts' verdicts on records both models scored (the champion's runs beside the
  challenger's shadow runs);
- the latest batches both scored, labelled or not: flag volume and overlap.

On the labelled records both are held to one alert budget (the number the champion flags
there), so the comparison is what a fixed team of analysts would see. Differences get
paired bootstrap confidence intervals, and McNemar's exact test runs on the records where
the two disagree. The policy is a typed config; every decision goes to the ledger and to
the model version's MLflow tags; aliases move only on a promotion or a rollback.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import pandas as pd

from pipelines.modeling.registry import (
    CHALLENGER,
    CHAMPION,
    ModelRef,
    is_registration_complete,
    load_bundle,
)
from pipelines.operations.evidence import (
    PromotionPolicy,
    combine_evidence,
    compare_labelled,
    flag_volume,
    gather_evidence,
    without_training_labels,
)
from pipelines.operations.reference import reference_for_version
from pipelines.store import ResultsStore
from pipelines.store.vocabulary import DecisionKind, DecisionOutcome

PREVIOUS_CHAMPION = "previous-champion"
LEDGER_TAG = "vigil.decision"


@dataclass
class Comparison:
    model_name: str
    champion: str
    challenger: str
    previous_champion: str | None
    numbers: dict
    sizes: dict
    notes: list[str] = field(default_factory=list)
    #: Set when the challenger was champion before and was rolled back (the reason).
    rolled_back: str | None = None


@dataclass
class Decision:
    """What the policy says about a comparison: ``promote``, ``reject`` or
    ``insufficient_evidence``, with the reasons in words."""

    outcome: Literal["promote", "reject", "insufficient_evidence"]
    reasons: list[str]


def compare(
    store: ResultsStore,
    model_name: str,
    policy: PromotionPolicy,
    *,
    load=None,
) -> Comparison | None:
    """Champion vs challenger on paired evidence; None when there is nothing to compare
    (no challenger, or the challenger is the champion)."""
    from mlflow import MlflowClient

    aliases = {
        k: str(v) for k, v in MlflowClient().get_registered_model(model_name).aliases.items()
    }
    champion, challenger = aliases.get(CHAMPION), aliases.get(CHALLENGER)
    if champion is None:
        raise ValueError(f"{model_name} has no champion: nothing to promote over")
    if challenger is None or challenger == champion:
        return None
    load = load or load_bundle
    bundle_a = load(ModelRef(model_name, champion, CHAMPION))
    bundle_b = load(ModelRef(model_name, challenger, CHALLENGER))
    reference = reference_for_version(model_name, challenger)
    labelled, pairs, notes = gather_evidence(
        store,
        model_name=model_name,
        champion=champion,
        challenger=challenger,
        bundle_a=bundle_a,
        bundle_b=bundle_b,
        reference=reference,
    )
    labelled, left_out = without_training_labels(
        labelled, _learnt_from(store, model_name, (champion, challenger))
    )
    if left_out:
        notes.append(
            f"{left_out} labelled records left out of the evidence: a labelled model "
            "learnt from their labels (only labels known after its training count)"
        )
    numbers: dict = {"sources": {}}
    combined = combine_evidence(labelled)
    if combined is not None and 0 < combined.y.sum() < len(combined.y):
        numbers["labelled"] = compare_labelled(combined, bundle_a.threshold, policy)
        numbers["labelled"]["source"] = combined.source
        for e in labelled:
            if 0 < e.y.sum() < len(e.y):
                numbers["sources"][e.source] = compare_labelled(
                    e, bundle_a.threshold, policy.model_copy(update={"bootstrap": 200})
                )
    elif combined is not None:
        notes.append("the labelled records hold a single class: no quality comparison")
    if len(pairs):
        numbers["volume"] = {**flag_volume(pairs), "source": "shadow batches"}
    elif combined is not None:
        # No shadow batches yet: each model at its own threshold on the labelled set.
        fa, fb = combined.a > bundle_a.threshold, combined.b > bundle_b.threshold
        frame = pd.DataFrame(
            {
                "champion": combined.a,
                "challenger": combined.b,
                "champion_flag": fa,
                "challenger_flag": fb,
                "batch_id": "evaluation",
            }
        )
        numbers["volume"] = {**flag_volume(frame), "source": "labelled records"}
    sizes = {
        "labelled": int(len(combined.y)) if combined is not None else 0,
        "positives": int(combined.y.sum()) if combined is not None else 0,
        "by_source": {e.source: int(len(e.y)) for e in labelled},
        "paired_unlabelled": int(len(pairs)),
        "paired_batches": int(pairs["batch_id"].nunique()) if len(pairs) else 0,
    }
    rollbacks = [
        d
        for d in store.decisions(model_name)
        if d.kind == "rollback" and d.from_version == challenger
    ]
    return Comparison(
        model_name=model_name,
        champion=champion,
        challenger=challenger,
        previous_champion=aliases.get(PREVIOUS_CHAMPION),
        numbers=numbers,
        sizes=sizes,
        notes=notes,
        rolled_back=(
            f"ledger #{rollbacks[0].id}, {rollbacks[0].at:%Y-%m-%d}: {rollbacks[0].reason}"
            if rollbacks
            else None
        ),
    )


def _learnt_from(store: ResultsStore, model_name: str, versions) -> set[str]:
    """Record ids whose labels a labelled version among ``versions`` trained on: the
    labels known before its training (its ``vigil.labels_known_before`` tag)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    cuts = []
    for version in versions:
        tag = client.get_model_version(model_name, version).tags.get("vigil.labels_known_before")
        if tag:
            cuts.append(pd.Timestamp(tag))
    if not cuts:
        return set()
    known = store.known_labels(known_before=max(cuts).to_pydatetime())
    return set(known["record_id"].astype(str))


def decide(comparison: Comparison, policy: PromotionPolicy) -> Decision:
    """Apply the policy: enough evidence, a gain whose lower bound clears ``min_gain``, and
    a flag volume the analysts can absorb."""
    if comparison.rolled_back and not policy.allow_rolled_back:
        return Decision(
            "reject",
            [
                f"v{comparison.challenger} was rolled back before ({comparison.rolled_back}); "
                "the policy does not promote it again (allow_rolled_back)"
            ],
        )
    sizes = comparison.sizes
    missing = []
    if sizes["labelled"] < policy.min_labelled:
        missing.append(f"{sizes['labelled']} labelled records < {policy.min_labelled}")
    if sizes["positives"] < policy.min_positives:
        missing.append(f"{sizes['positives']} labelled anomalies < {policy.min_positives}")
    if "labelled" not in comparison.numbers and not missing:
        missing.append("no labelled comparison possible")
    if missing:
        return Decision("insufficient_evidence", missing)
    diff = comparison.numbers["labelled"]["differences"][policy.metric]
    reasons = []
    ok = True
    level = f"{policy.confidence:.0%}"
    if diff["ci_low"] > policy.min_gain:
        reasons.append(
            f"{policy.metric} gain {diff['gain']:+.3f} ({level} CI {diff['ci_low']:+.3f} to "
            f"{diff['ci_high']:+.3f}) clears the minimum {policy.min_gain:+.3f}"
        )
    else:
        ok = False
        reasons.append(
            f"{policy.metric} gain {diff['gain']:+.3f} ({level} CI {diff['ci_low']:+.3f} to "
            f"{diff['ci_high']:+.3f}) does not clear the minimum {policy.min_gain:+.3f}"
        )
    volume = comparison.numbers.get("volume")
    if volume is not None:
        change = volume["volume_change"]
        if abs(change) > policy.max_flag_volume_change:
            ok = False
            reasons.append(
                f"flag volume would change {change:+.0%} (limit "
                f"+/-{policy.max_flag_volume_change:.0%}, {volume.get('source', 'paired records')})"
            )
        else:
            reasons.append(f"flag volume change {change:+.0%} within the limit")
    return Decision("promote" if ok else "reject", reasons)


# -- acting on a decision -----------------------------------------------------------------


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no user database in some containers
        return "unknown"


def _mirror_to_mlflow(model_name: str, version: str, entry_id: int, text: str) -> None:
    """The ledger entry's id and a one-line summary on the model version."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(model_name, version, LEDGER_TAG, text[:4900])
    client.set_model_version_tag(model_name, version, f"{LEDGER_TAG}_id", str(entry_id))
    client.set_model_version_tag(
        model_name, version, f"{LEDGER_TAG}_at", datetime.now(UTC).isoformat(timespec="seconds")
    )
    mv = client.get_model_version(model_name, version)
    description = ((mv.description or "") + f"\n[ledger #{entry_id}] {text}").strip()
    client.update_model_version(model_name, version, description=description[-5000:])


def _aliases(model_name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return {k: str(v) for k, v in MlflowClient().get_registered_model(model_name).aliases.items()}


LEDGER_DECISIONS = {
    "promote": DecisionOutcome.PROMOTED,
    "reject": DecisionOutcome.REJECTED,
    "insufficient_evidence": DecisionOutcome.INSUFFICIENT_EVIDENCE,
}


def record_and_apply(
    store: ResultsStore,
    comparison: Comparison,
    decision: Decision,
    policy: PromotionPolicy,
    *,
    actor: str,
    approved_by: str | None = None,
    override: str | None = None,
) -> dict:
    """Write the decision to the ledger and MLflow; on a promotion move the aliases.

    ``override``: a ledger decision other than the policy's (``approval_rejected``).
    """
    from mlflow import MlflowClient

    name = comparison.model_name
    before = _aliases(name)
    ledger_decision = override or LEDGER_DECISIONS[decision.outcome]
    promote = ledger_decision == DecisionOutcome.PROMOTED
    if promote:
        client = MlflowClient()
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, comparison.champion)
        client.set_registered_model_alias(name, CHAMPION, comparison.challenger)
    after = _aliases(name)
    reason = "; ".join(decision.reasons)
    entry_id = store.record_decision(
        model_name=name,
        kind=DecisionKind.PROMOTION,
        decision=ledger_decision,
        actor=actor,
        from_version=comparison.champion,
        to_version=comparison.challenger,
        before={"aliases": before},
        after={"aliases": after},
        evidence={
            "numbers": comparison.numbers,
            "sizes": comparison.sizes,
            "notes": comparison.notes,
        },
        policy=policy.model_dump(),
        approved_by=approved_by,
        reason=reason,
    )
    _mirror_to_mlflow(name, comparison.challenger, entry_id, f"{ledger_decision}: {reason}")
    return {
        "model": name,
        "decision": ledger_decision,
        "champion_before": comparison.champion,
        "challenger": comparison.challenger,
        "champion_after": after.get(CHAMPION),
        "aliases_before": before,
        "aliases_after": after,
        "reasons": decision.reasons,
        "numbers": comparison.numbers,
        "sizes": comparison.sizes,
        "notes": comparison.notes,
        "policy": policy.model_dump(),
        "ledger_id": entry_id,
        "actor": actor,
        "approved_by": approved_by,
    }


def promote(
    store: ResultsStore,
    model_name: str,
    policy: PromotionPolicy | None = None,
    *,
    actor: str | None = None,
    approved_by: str | None = None,
    load=None,
) -> dict:
    """Compare, decide, record, and move the aliases when the evidence says so."""
    policy = policy or PromotionPolicy()
    comparison = compare(store, model_name, policy, load=load)
    if comparison is None:
        return {
            "model": model_name,
            "decision": "no_challenger",
            "reasons": ["the challenger is the champion (or there is none): nothing to do"],
            "aliases_after": _aliases(model_name),
        }
    decision = decide(comparison, policy)
    return record_and_apply(
        store,
        comparison,
        decision,
        policy,
        actor=actor or default_actor(),
        approved_by=approved_by,
    )


def rollback(
    store: ResultsStore, model_name: str, *, reason: str, actor: str | None = None
) -> dict:
    """Move ``champion`` back to ``previous-champion``, with the reason in the ledger."""
    from mlflow import MlflowClient

    if not reason or not reason.strip():
        raise ValueError("a rollback needs a reason (--reason TEXT)")
    before = _aliases(model_name)
    previous, current = before.get(PREVIOUS_CHAMPION), before.get(CHAMPION)
    if previous is None:
        raise ValueError(
            f"{model_name} has no {PREVIOUS_CHAMPION}: nothing to roll back to "
            f"(champion is v{current})"
        )
    client = MlflowClient()
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    client.delete_registered_model_alias(model_name, PREVIOUS_CHAMPION)
    after = _aliases(model_name)
    actor = actor or default_actor()
    entry_id = store.record_decision(
        model_name=model_name,
        kind=DecisionKind.ROLLBACK,
        decision=DecisionOutcome.ROLLED_BACK,
        actor=actor,
        from_version=current,
        to_version=previous,
        before={"aliases": before},
        after={"aliases": after},
        reason=reason.strip(),
    )
    _mirror_to_mlflow(model_name, str(current), entry_id, f"rolled back: {reason.strip()}")
    return {
        "model": model_name,
        "decision": DecisionOutcome.ROLLED_BACK,
        "champion_before": current,
        "champion_after": previous,
        "aliases_before": before,
        "aliases_after": after,
        "reason": reason.strip(),
        "ledger_id": entry_id,
        "actor": actor,
    }


def ledger_entries(store: ResultsStore, model_name: str, limit: int = 50) -> list[dict]:
    """The model's ledger, newest first, as plain dicts (for ``vigil models --json``)."""
    return [
        {
            "id": d.id,
            "at": d.at.isoformat() if d.at else None,
            "kind": d.kind,
            "decision": d.decision,
            "from_version": d.from_version,
            "to_version": d.to_version,
            "actor": d.actor,
            "approved_by": d.approved_by,
            "reason": d.reason,
            "before": d.before,
            "after": d.after,
            "evidence": json.loads(json.dumps(d.evidence, default=str)),
            "policy": d.policy,
        }
        for d in store.decisions(model_name, limit=limit)
    ]


def models_with_challengers() -> list[str]:
    """Registered models whose challenger differs from their champion (a challenger left
    half-registered by a killed training run is not one)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    names = []
    for m in client.search_registered_models():
        aliases = {k: str(v) for k, v in client.get_registered_model(m.name).aliases.items()}
        challenger = aliases.get(CHALLENGER)
        if (
            challenger
            and challenger != aliases.get(CHAMPION)
            and is_registration_complete(client.get_model_version(m.name, challenger))
        ):
            names.append(m.name)
    return sorted(names)


def comparison_markdown(comparison: Comparison, decision: Decision) -> str:
    """The comparison as the approval form shows it."""
    lines = [
        f"## Promote {comparison.model_name} v{comparison.challenger} over v{comparison.champion}?",
        f"Policy says **{decision.outcome}**: " + "; ".join(decision.reasons),
        "",
    ]
    labelled = comparison.numbers.get("labelled")
    if labelled:
        lines.append(
            f"Labelled evidence: {labelled['records']} records, {labelled['positives']} "
            f"anomalies, alert budget {labelled['budget']} ({labelled['source']})"
        )
        lines.append("| metric | champion | challenger | gain | CI |")
        lines.append("|---|---|---|---|---|")
        for metric, diff in labelled["differences"].items():
            lines.append(
                f"| {metric} | {labelled['champion'][metric]:.3f} | "
                f"{labelled['challenger'][metric]:.3f} | {diff['gain']:+.3f} | "
                f"{diff['ci_low']:+.3f} to {diff['ci_high']:+.3f} |"
            )
        mc = labelled["mcnemar"]
        lines.append(
            f"McNemar: champion-only right {mc['champion_only_right']}, challenger-only "
            f"right {mc['challenger_only_right']}, p = {mc['p_value']:.3g}"
        )
    volume = comparison.numbers.get("volume")
    if volume:
        lines.append(
            f"Flag volume {volume['volume_change']:+.0%} ({volume['source']}), overlap "
            f"{volume['overlap_jaccard']:.0%}"
        )
    return "\n".join(lines)


def models_with_previous_champion() -> list[str]:
    from mlflow import MlflowClient

    return sorted(
        m.name
        for m in MlflowClient().search_registered_models()
        if PREVIOUS_CHAMPION in MlflowClient().get_registered_model(m.name).aliases
    )


def load_policy(path: str | None) -> PromotionPolicy:
    """The policy from a YAML/JSON file, or the defaults."""
    if not path:
        return PromotionPolicy()
    import yaml

    with open(path) as handle:
        return PromotionPolicy.model_validate(yaml.safe_load(handle) or {})


def describe_result(result: dict) -> str:
    """A promotion result for people: the decision, its reasons and its numbers."""
    name = result["model"]
    if result["decision"] == "no_challenger":
        return f"{name}: nothing to decide ({result['reasons'][0]})"
    lines = [
        f"{name}: {result['decision'].upper()} v{result['challenger']} vs champion "
        f"v{result['champion_before']} -> champion is v{result['champion_after']} "
        f"(ledger #{result['ledger_id']}, by {result['actor']})"
    ]
    lines += [f"  - {r}" for r in result["reasons"]]
    sizes = result["sizes"]
    lines.append(
        f"  evidence: {sizes['labelled']} labelled records ({sizes['positives']} anomalies; "
        + ", ".join(f"{k} {v}" for k, v in sizes["by_source"].items())
        + f"), {sizes['paired_unlabelled']} records in {sizes['paired_batches']} shadow batches"
    )
    labelled = result["numbers"].get("labelled")
    if labelled:
        lines.append(
            f"  at the champion's alert budget ({labelled['budget']} of {labelled['records']}):"
        )
        for metric, diff in labelled["differences"].items():
            lines.append(
                f"    {metric:20} champion {labelled['champion'][metric]:.3f}  challenger "
                f"{labelled['challenger'][metric]:.3f}  gain {diff['gain']:+.3f}  "
                f"[{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]"
            )
        mc = labelled["mcnemar"]
        lines.append(
            f"    McNemar: {mc['champion_only_right']} records only the champion gets right, "
            f"{mc['challenger_only_right']} only the challenger; p = {mc['p_value']:.3g}"
        )
    volume = result["numbers"].get("volume")
    if volume:
        lines.append(
            f"  flag volume: {volume['champion_flags']} -> {volume['challenger_flags']} "
            f"({volume['volume_change']:+.0%}, {volume['source']}); overlap "
            f"{volume['overlap_jaccard']:.0%}, at budget {volume['overlap_at_budget']:.0%}"
        )
    for note in result.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)
