"""How healthy a generative detector's training was, read on the normal hold-out records:
a GAN whose generator collapsed onto a few outputs, a VAE whose latent units carry
nothing. The training gates (``training_problems``, ``training_warnings``) read these."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.intake.spec import DatasetSpec
from pipelines.modeling.bundle import ScoringBundle, is_sequence_detector

#: A generator whose samples spread less than this share of the normal records' mean
#: pairwise distance has collapsed onto (nearly) one output. Healthy fits at the default
#: epochs read 0.2-0.7 (demo transactions, cardio, the card stream's sequence GAN), fits
#: of 3 epochs 0.05-0.12 (undertrained, not collapsed), a generator that ignores its
#: input 0 and one whose input weights were scaled by 0.05 0.003-0.035.
MIN_DIVERSITY_RATIO = 0.02
#: A latent unit whose mean KL to the prior over the hold-out is below this (nats)
#: carries nothing about the record.
ACTIVE_UNIT_KL = 0.01


def _holdout_normals(split) -> pd.DataFrame:
    labels = split.y_evaluation
    if labels is None:
        return split.evaluation
    return split.evaluation[np.asarray(labels) == 0]


def generative_health(detector, spec: DatasetSpec, split) -> dict[str, float]:
    """The health measures of a fitted GAN or VAE on the normal hold-out records, as
    metrics to log (empty for other detectors or an empty hold-out):

    GAN: ``generator_diversity_ratio`` and ``generator_coverage`` of its samples against
    the records (``detectors.health.generator_diversity``). VAE: ``latent_units``,
    ``latent_units_active`` (mean KL above ``ACTIVE_UNIT_KL``) and ``kl_per_unit_max``."""
    from detectors import GANDetector, VAEDetector  # deferred: torch, only for these models
    from detectors.health import generator_diversity, kl_per_unit

    if not isinstance(detector, GANDetector | VAEDetector):
        return {}
    normals = _holdout_normals(split)
    if len(normals) < 10:
        return {}
    model_input = ScoringBundle(spec, detector).model_input(normals)
    history = split.context if is_sequence_detector(detector) else None
    if isinstance(detector, GANDetector):
        measured = generator_diversity(detector, model_input, history)
        return {
            "generator_diversity_ratio": measured["diversity_ratio"],
            "generator_coverage": measured["coverage"],
        }
    kl = kl_per_unit(detector, model_input, history)
    return {
        "latent_units": float(kl.size),
        "latent_units_active": float((kl > ACTIVE_UNIT_KL).sum()),
        "kl_per_unit_max": float(kl.max()) if kl.size else 0.0,
    }


def mode_collapse_problem(health: dict[str, float]) -> str | None:
    """Why a GAN's generator is too collapsed to serve (None: it is not, or no GAN).

    A gate: the GAN's score reads ``G(E(x))`` and the discriminator's features, both
    meaningless once the generator gives (nearly) one output whatever its input."""
    ratio = health.get("generator_diversity_ratio")
    if ratio is None or (np.isfinite(ratio) and ratio >= MIN_DIVERSITY_RATIO):
        return None
    coverage = health.get("generator_coverage", float("nan"))
    return (
        f"GAN mode collapse: the generator's samples spread {ratio:.3f}x as far as the "
        f"normal hold-out records (at least {MIN_DIVERSITY_RATIO} expected) and reach "
        f"{coverage:.0%} of their neighbourhoods. Retrain with another seed or a smaller "
        "learning rate, or serve the VAE"
    )


def posterior_collapse_warning(health: dict[str, float]) -> str | None:
    """What a person should know when no VAE latent unit carries information (None:
    some do, or no VAE).

    A warning, not a gate: the VAE's score rests on its reconstruction residuals and the
    input-space neighbour views, which do not need the codes. On the demo transactions
    the default VAE (beta 4) collapses every unit (KL per unit <= 0.001 nats on the
    hold-out) and still ranks every planted anomaly first (AUROC 1.000, AUPRC 1.000,
    with or without the neighbourhood views); the card stream's sequence VAE keeps
    0.01-0.35 nats per unit. What collapse costs is the latent views and the codes the
    labelled re-ranker reads."""
    units = health.get("latent_units")
    if not units or health.get("latent_units_active", 1.0) > 0:
        return None
    return (
        f"posterior collapse: none of the VAE's {units:.0f} latent units carries "
        f"information (KL per unit at most {health.get('kl_per_unit_max', 0.0):.3f} nats "
        f"on the hold-out, {ACTIVE_UNIT_KL} for an active one). The score still reads the "
        "reconstruction residuals and neighbours; the latent views and the codes a "
        "labelled model reads carry nothing: for those, retrain with a smaller beta"
    )
