"""The feedback loop: labels in and out, training hygiene, thresholds from
verdicts, verdict-driven risk features and the re-ranker on the VAE's codes.

Sub-modules import the store and the registry lazily where they can, so the pure parts
(risk features, the re-ranker's trees) load in a bare scoring process.
"""
