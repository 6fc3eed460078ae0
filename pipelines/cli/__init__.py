"""`vigil`: the command line. ``main`` is the entry point; each module beside this one
holds the commands of one job (importing it registers them)."""

from pipelines.cli import collector

with collector.paused():  # the command modules and the libraries they load
    from pipelines.cli import data, demo, labels, operations, people, scoring, training  # noqa: F401  (registers the commands)
    from pipelines.cli.app import main

__all__ = ["main"]
