"""onnxplain: explain neural networks exported to ONNX, with a C++ core.

>>> import onnxplain as ox
>>> model = ox.load("model.onnx")
>>> logits = model.predict(x)
>>> R = ox.explainer(model, "lrp.epsilon_plus_flat").explain(x)
"""

from __future__ import annotations

from . import metrics
from .errors import InvalidArgument, ModelFormatError, OnnxplainError, ShapeError, UnsupportedModelError
from .explain import Explainer, MethodInfo, PatternStatistics, explainer, load_explainer, methods
from .model import NEWEST_IR_VERSION, NEWEST_OPSET, Model, TensorSpec, load, op_versions, supported_ops
from .quality import signal_quality
from .report import report

__version__ = "0.1.0"

__all__ = [
    "Explainer",
    "InvalidArgument",
    "MethodInfo",
    "NEWEST_IR_VERSION",
    "NEWEST_OPSET",
    "Model",
    "ModelFormatError",
    "OnnxplainError",
    "PatternStatistics",
    "ShapeError",
    "TensorSpec",
    "UnsupportedModelError",
    "explainer",
    "load",
    "load_explainer",
    "methods",
    "report",
    "metrics",
    "signal_quality",
    "supported_ops",
    "op_versions",
    "__version__",
]
