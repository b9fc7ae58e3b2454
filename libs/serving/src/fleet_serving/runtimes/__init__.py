"""Model runtimes, one module per flavor, behind the ``Runtime`` base class."""

from fleet_serving.runtimes.base import Runtime
from fleet_serving.runtimes.onnx import OnnxRuntime
from fleet_serving.runtimes.python import PythonRuntime
from fleet_serving.runtimes.sklearn import SKOPS_ALLOWLIST, SklearnRuntime

__all__ = ["SKOPS_ALLOWLIST", "OnnxRuntime", "PythonRuntime", "Runtime", "SklearnRuntime"]
