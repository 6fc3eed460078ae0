"""``vigil demo-feedback``: the feedback loop once, on the generated card stream.

The stream has five fraud types (``demo_cards``), so the gain of labels is real: the
sequence models alone leave frauds below the alert budget. The steps are the card demo's
(``demo_story``) up to its feedback step: the models are trained on the fortnight, the week
is scored, the analyst judges the top flags of the week's first days, ``train
--with-labels`` on the data up to then trains a labelled model (the challenger) from the
verdicts and the fortnight's chargebacks, and precision and recall at the alert budget on
the week's last days (never reviewed, never trained on) are printed before and after.
"""

from __future__ import annotations


def run_feedback_demo(
    *, epochs: int | None = None, n_cards: int | None = None, seed: int | None = None, echo=print
) -> dict:
    from pipelines.demo import run_demo

    result = run_demo(epochs=epochs, n_cards=n_cards, seed=seed, until="feedback_loop", echo=echo)
    loop = result.get("feedback_loop") or {}
    if "precision_before" in loop:
        echo(
            f"vigil demo-feedback: at the alert budget ({loop['budget']} alerts) precision "
            f"{loop['precision_before']:.2f} -> {loop['precision_after']:.2f}, recall "
            f"{loop['recall_before']:.2f} -> {loop['recall_after']:.2f} (the labelled model is "
            "the challenger: see `vigil models`, `vigil promote`)"
        )
    return result
