"""MLflow models-from-code entry point for re-ranked bundles (see ``reranker.py``)."""

from mlflow.models import set_model

from pipelines.feedback.reranker import RerankedPyfuncModel

set_model(RerankedPyfuncModel())
