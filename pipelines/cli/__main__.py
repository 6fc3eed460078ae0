"""`python -m pipelines.cli`: the same as `vigil`."""

from pipelines.cli import main

main()
