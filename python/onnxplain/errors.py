"""Exceptions raised by onnxplain.

``ModelFormatError`` and ``UnsupportedModelError`` derive from ``OnnxplainError``; errors about
shapes and arguments are ``ValueError`` subclasses so that ``except ValueError`` catches them.
``UnsupportedModelError.ops`` lists ``(op_type, domain, node_names)`` for every unsupported op.
"""

from __future__ import annotations

from ._native import core

OnnxplainError = core.OnnxplainError
ModelFormatError = core.ModelFormatError
UnsupportedModelError = core.UnsupportedModelError
ShapeError = core.ShapeError
InvalidArgument = core.InvalidArgument

__all__ = ["OnnxplainError", "ModelFormatError", "UnsupportedModelError", "ShapeError", "InvalidArgument"]
