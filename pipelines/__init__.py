"""vigil pipelines: Prefect flows, MLflow registry glue, results store and the CLI.

Importing this package stays light (no Prefect, no MLflow) so the MLflow model bundle can
load in a bare scoring process.
"""
