"""What the labelled model learns from the records nobody labelled.

Analysts label a few hundred records a week; the re-ranker also needs ordinary records, so
it draws a sample of the unlabelled ones as presumed normals. Not every unlabelled record
deserves that presumption: one that paid at a terminal or merchant where a fraud had been
confirmed before it (its risk features count one) is the likeliest fraud nobody looked at,
and teaching it as normal teaches the model that a confirmed fraud next door means nothing.
Those records are kept out of the presumed normals and, with ``propagate`` > 0, a share of
them is presumed fraud instead (a confirmed fraud propagated to its terminal's later
payments).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The share of the linked unlabelled records presumed fraud by default: none. Presumed
#: frauds cost AUPRC on the handbook replay (a popular merchant's or terminal's ordinary
#: payments after one confirmed fraud are taught as fraud); kept out of the presumed
#: normals, they cost nothing.
PROPAGATE_SHARE = 0.0


@dataclass(frozen=True)
class Presumed:
    """Row positions presumed normal and presumed fraud (both unlabelled)."""

    normal: np.ndarray
    fraud: np.ndarray


def presume(
    unlabelled: np.ndarray,
    link: np.ndarray,
    n_normal: int,
    rng: np.random.Generator,
    *,
    propagate: float = 0.0,
) -> Presumed:
    """Draw up to ``n_normal`` presumed normals among the ``unlabelled`` positions with no
    confirmed fraud at their terminal/merchant (``link`` == 0), and ``propagate`` of the
    linked ones as presumed frauds."""
    unlabelled = np.asarray(unlabelled, dtype=np.int64)
    linked = np.nan_to_num(np.asarray(link, dtype="float64")[unlabelled], nan=0.0) > 0
    plain, near = unlabelled[~linked], unlabelled[linked]
    normal = np.sort(rng.choice(plain, min(len(plain), max(int(n_normal), 0)), replace=False))
    k = int(round(min(max(float(propagate), 0.0), 1.0) * len(near)))
    fraud = np.sort(rng.choice(near, k, replace=False)) if k else np.empty(0, dtype=np.int64)
    return Presumed(normal=normal, fraud=fraud)
