"""The served score's novelty floor: how much the unsupervised score still counts beside
the labelled model's fraud probability (see ``reranker.py`` for the rule)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The served rule's defaults, chosen on validation weeks before the test weeks of the
# feedback suite (the handbook's simulator and the generated card stream, two seeds each),
# with one fraud type at a time never labelled (presumed normal, as a new pattern is): the
# highest served AP among the (gate, below) settings under which no held-out type lost more
# than 0.005 of its unsupervised AUROC. The floor tops out at 1.5, so a re-ranker sure of
# fraud (p/0.5 up to 2) outranks it. The gate: the floor flags on its own only the rarest
# 10^-4 of presumed normals (lower gates bury more of the re-ranker's frauds under unusual
# normals and cost AP). Below the gate it weighs up to 0.1 (p = 5% on the p/0.5 scale): a
# type the labelled model learnt as normal is ranked *below* the normals by it, and smaller
# weights let the re-ranker's small probabilities outvote the unsupervised order there
# (0.01 kept more AP and lost such a type's AUROC by far more than 0.005).
DEFAULT_FLOOR_CAP = 1.5
DEFAULT_FLOOR_BELOW = 0.1
DEFAULT_FLOOR_GATE = 4.0


@dataclass
class NoveltyFloor:
    """The unsupervised score's share of the served scale, gated and bounded by ``cap``.

    ``quantiles[k]`` is the presumed-normal records' ``u`` exceeded by a share
    ``10 ** -exponents[k]`` of them. The line (1 on the served scale) is the rarer of
    ``u = 1`` (the detector's threshold) and ``gate`` decades of rarity; above it the floor
    grows towards ``cap``, below it the floor is at most ``below`` (how much the
    unsupervised order still counts under the re-ranker's opinions). Monotone in ``u``.
    Above the reference's largest value it keeps growing with ``log u`` before the squash,
    so extreme scores still order among themselves. ``gate = 0``: the detector's threshold
    alone is the line.
    """

    exponents: list[float]
    quantiles: list[float]
    cap: float = 1.5
    below: float = 1.0
    gate: float = 0.0

    @classmethod
    def fit(
        cls,
        u_normal: np.ndarray,
        *,
        cap: float = DEFAULT_FLOOR_CAP,
        below: float = DEFAULT_FLOOR_BELOW,
        gate: float = DEFAULT_FLOOR_GATE,
        points: int = 64,
    ) -> NoveltyFloor:
        u_normal = np.sort(np.asarray(u_normal, dtype="float64"))
        u_normal = u_normal[np.isfinite(u_normal)]
        if len(u_normal) < 10:
            raise ValueError("the novelty floor needs at least 10 presumed-normal scores")
        if cap <= 1.0:
            raise ValueError("cap must be above 1 (the flag line)")
        if not 0.0 <= below <= 1.0:
            raise ValueError("below must be within [0, 1]")
        if gate < 0.0:
            raise ValueError("gate must be at least 0 (decades of rarity)")
        top = np.log10(len(u_normal))
        exponents = np.linspace(0.0, top, points)
        quantiles = np.quantile(u_normal, 1.0 - 10.0**-exponents)
        quantiles = np.maximum.accumulate(quantiles)
        return cls(
            exponents=exponents.tolist(),
            quantiles=quantiles.tolist(),
            cap=float(cap),
            below=float(below),
            gate=float(gate),
        )

    def rarity(self, u: np.ndarray) -> np.ndarray:
        """``-log10`` of the share of presumed normals at or above ``u`` (log-extrapolated)."""
        u = np.asarray(u, dtype="float64")
        q = np.asarray(self.quantiles)
        e = np.asarray(self.exponents)
        # Ties in the reference (flat stretches) give np.interp duplicate x; keep the
        # largest exponent for each distinct quantile so rarity stays monotone.
        q_unique, last = np.unique(q[::-1], return_index=True)
        e_unique = e[::-1][last]
        inside = np.interp(u, q_unique, e_unique)
        beyond = e_unique[-1] + np.log(np.maximum(u, 1e-300) / max(q_unique[-1], 1e-300))
        return np.where(u > q_unique[-1], beyond, inside)

    def __call__(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype="float64")
        at_threshold = float(self.rarity(np.array([1.0]))[0])
        line = max(at_threshold, self.gate)
        g = self.rarity(u) / max(line, 1e-9)
        above = (u > 1.0) & (g >= 1.0) if line > at_threshold else u > 1.0
        g = np.where(above, np.maximum(g, 1.0 + 1e-12), np.minimum(g, 1.0))
        room = self.cap - 1.0
        x = np.maximum(g - 1.0, 0.0) / room
        # x / (1 + x) rather than tanh: it approaches the cap slowly enough that scores
        # millions of times the threshold still order among themselves in float64.
        return np.where(above, 1.0 + room * x / (1.0 + x), self.below * g)


def served_score(
    u: np.ndarray, p: np.ndarray, p_cut: float, floor: NoveltyFloor | None
) -> np.ndarray:
    """The served score: ``max(p / p_cut, floor(u))`` (``floor = u`` for models trained
    before the bounded floor existed)."""
    u = np.asarray(u, dtype="float64")
    lifted = u if floor is None else floor(u)
    return np.maximum(np.asarray(p, dtype="float64") / p_cut, lifted)


__all__ = [
    "DEFAULT_FLOOR_BELOW",
    "DEFAULT_FLOOR_CAP",
    "DEFAULT_FLOOR_GATE",
    "NoveltyFloor",
    "served_score",
]
