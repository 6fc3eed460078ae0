"""`vigil demo` and `vigil demo-feedback`: the whole loop on generated data."""

from __future__ import annotations

import click

from pipelines.cli.app import main, prefect_api


@main.command("demo-feedback")
@click.option("--epochs", type=int, default=None, help="Override epochs (faster, rougher).")
@click.option("--cards", type=int, default=None, help="Cards in the stream (default 1,500).")
@click.option("--seed", type=int, default=None, help="Stream seed (default: the demo's).")
def demo_feedback(epochs, cards, seed) -> None:
    """The feedback loop once on the generated card stream: train, score the week, import
    the analyst's verdicts, retrain with labels, print precision at the alert budget
    before and after."""
    from pipelines.demo_feedback import run_feedback_demo

    with prefect_api():
        run_feedback_demo(epochs=epochs, n_cards=cards, seed=seed, echo=click.echo)


@main.command()
@click.option("--epochs", type=int, default=None, help="Override epochs (faster, rougher).")
@click.option("--cards", type=int, default=None, help="Cards in the stream (default 1,500).")
@click.option("--seed", type=int, default=None, help="Stream seed (default: the demo's).")
def demo(epochs, cards, seed) -> None:
    """The whole story on a generated card stream: sequence models against rules, the
    analysts' queue, verdicts -> a labelled model -> promotion, the next day's drift."""
    from pipelines.demo import run_demo

    with prefect_api():
        run_demo(epochs=epochs, n_cards=cards, seed=seed, echo=click.echo)
