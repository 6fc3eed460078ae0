"""Modeling: training detectors, the MLflow bundle and registry, evaluation plots."""
