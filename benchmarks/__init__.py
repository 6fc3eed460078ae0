"""Benchmarks: detection quality and speed of vigil, side by side with the libraries users
know, run from a clone through one runner (``python -m benchmarks SUITE``; the suites are
in ``suites.yaml``).

Not part of the wheel and not part of `make test` (a tiny smoke run of the runner is).
Each suite's latest report is ``results/SUITE.json``; its figures are a section of
``RESULTS.md``.
"""
