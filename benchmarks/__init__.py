"""Benchmarks: detection quality and speed, side by side with the libraries users know.

Not part of `make test` (a tiny smoke run of each suite is). Figures go to files under
benchmarks/results and a Markdown table in benchmarks/RESULTS.md.
"""
