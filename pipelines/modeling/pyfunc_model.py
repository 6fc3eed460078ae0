"""MLflow models-from-code entry point.

The registry stores this file and the package source, not a pickled Python object, so
loading a model never unpickles code (the detector weights load with weights_only=True).
"""

from mlflow.models import set_model

from pipelines.modeling.bundle import VigilPyfuncModel

set_model(VigilPyfuncModel())
