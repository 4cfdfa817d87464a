"""onnxplain: explain neural networks exported to ONNX, with a C++ core.

>>> import onnxplain as ox
>>> model = ox.load("model.onnx")
>>> logits = model.predict(x)
"""

from __future__ import annotations

from .errors import InvalidArgument, ModelFormatError, OnnxplainError, ShapeError, UnsupportedModelError
from .model import Model, TensorSpec, load, supported_ops

__version__ = "0.1.0"

__all__ = [
    "InvalidArgument",
    "Model",
    "ModelFormatError",
    "OnnxplainError",
    "ShapeError",
    "TensorSpec",
    "UnsupportedModelError",
    "load",
    "supported_ops",
    "__version__",
]
