"""Flag churn: how many of the champion's flags a newly trained version would change.

A retrained model can match its predecessor's quality and still flag different records:
analysts then see a queue reshuffled overnight, and cases half worked lose their context.
The new version and the serving champion score the same hold-out records; the churn is
the share of flags (either model's) on which the two disagree. It is reported, logged and
tagged with the version, not a gate: promotion weighs quality on labelled evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.modeling.bundle import PreparedRecords
from pipelines.modeling.registry import CHAMPION, ModelRef, load_bundle, resolve_model

#: The registered version's tag with the churn sentence.
TAG_FLAG_CHURN = "vigil.flag_churn"


@dataclass(frozen=True)
class FlagChurn:
    """The champion's and the new version's flags on the same hold-out records."""

    champion_version: str
    champion_flags: int
    new_flags: int
    changed: int
    either: int
    records: int

    @property
    def share(self) -> float:
        """Changed flags over the records either model flags (0 when neither flags)."""
        return self.changed / self.either if self.either else 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "flag_churn": self.share,
            "flag_churn_changed": float(self.changed),
            "flag_churn_champion_flags": float(self.champion_flags),
            "flag_churn_new_flags": float(self.new_flags),
        }

    def describe(self) -> str:
        return (
            f"flags against champion v{self.champion_version} on {self.records:,} hold-out "
            f"records: {self.champion_flags} -> {self.new_flags}, {self.changed} changed "
            f"({self.share:.0%})"
        )


def churn_between(
    champion_flags: np.ndarray, new_flags: np.ndarray, champion_version: str
) -> FlagChurn:
    """Compare two boolean flag vectors over the same records."""
    a = np.asarray(champion_flags, dtype=bool)
    b = np.asarray(new_flags, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"flag vectors differ in length: {a.shape} vs {b.shape}")
    return FlagChurn(
        champion_version=str(champion_version),
        champion_flags=int(a.sum()),
        new_flags=int(b.sum()),
        changed=int((a != b).sum()),
        either=int((a | b).sum()),
        records=int(a.size),
    )


def flag_churn_against_champion(
    model_name: str, prepared: PreparedRecords, new_flags: np.ndarray
) -> FlagChurn | str | None:
    """The churn of ``new_flags`` against the current champion of ``model_name`` on the
    same prepared hold-out records.

    None when the model has no champion yet (the first training); a sentence saying why
    when the champion cannot score these records (e.g. it was trained on other columns)."""
    try:
        ref = resolve_model(f"{model_name}@{CHAMPION}")
    except ValueError:
        return None
    try:
        champion = load_bundle(ModelRef(ref.name, ref.version, None))
        scores = champion.score_prepared(prepared, with_reasons=False)["score"].to_numpy()
    except (KeyError, ValueError, TypeError) as exc:
        return f"champion v{ref.version} could not score the hold-out: {exc}"
    champion_flags = scores > float(champion.threshold)
    return churn_between(champion_flags, new_flags, ref.version)
