"""Small ONNX models for tests, built with onnx.helper, and the onnxruntime oracle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OPSET = 17


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[tuple[str, Sequence[Any]]],
    outputs: Sequence[str],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = DEFAULT_OPSET,
    input_dtype: int = TensorProto.FLOAT,
    output_dtypes: Sequence[int] | None = None,
) -> bytes:
    """Serialized model with float inputs named/shaped as given (a str or None dim is dynamic)."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info(n, input_dtype, list(s)) for n, s in inputs],
        [
            helper.make_tensor_value_info(n, (output_dtypes[i] if output_dtypes else TensorProto.FLOAT), None)
            for i, n in enumerate(outputs)
        ],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def single_node(
    op_type: str,
    inputs: dict[str, np.ndarray],
    initializers: dict[str, np.ndarray] | None = None,
    n_outputs: int = 1,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    **attrs: Any,
) -> bytes:
    """One-node model; `inputs` are graph inputs (their shapes taken from the arrays), initializers
    are constants. Input order of the node: inputs then initializers, in dict order, unless the
    caller passes `node_inputs=[...]` in attrs (use "" for an omitted optional input)."""
    node_inputs = attrs.pop("node_inputs", None) or [*inputs, *(initializers or {})]
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, node_inputs, outs, name=f"{op_type.lower()}_node", **attrs)
    shapes = [(k, (["N", *v.shape[1:]] if dynamic_batch and v.ndim else list(v.shape))) for k, v in inputs.items()]
    return make_model([node], shapes, outs, initializers, opset)


def ort_run(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime with graph optimisations off, so it runs the graph as written."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """Relative to the scale of `expected` (max |expected|), with a shape check first."""
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol + rtol * scale)
