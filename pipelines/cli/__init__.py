"""`vigil`: the command line. ``main`` is the entry point; each module beside this one
holds the commands of one job (importing it registers them)."""

from pipelines.cli import collector

_collecting = collector.pause()  # the command modules and their libraries load first
from pipelines.cli import data, demo, labels, operations, people, scoring, training  # noqa: E402, F401  (registers the commands)
from pipelines.cli.app import main  # noqa: E402

collector.resume(_collecting)

__all__ = ["main"]
