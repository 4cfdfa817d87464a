"""Keras models exported by tf2onnx (files made by scripts/export_keras.py; TensorFlow itself is
not a test dependency): NHWC inputs with Transposes around Conv, Dense as MatMul + Add."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run

DATA = Path(__file__).resolve().parents[1] / "data" / "keras"
NAMES = ["mlp", "cnn", "resnet"]


def _input(data: bytes, batch: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    graph = onnx.load_from_string(data).graph
    inp = graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
    return inp.name, rng.standard_normal((batch, *dims)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 5])
def test_predict_matches_onnxruntime(name: str, batch: int, rng: np.random.Generator) -> None:
    data = (DATA / f"{name}.onnx").read_bytes()
    assert "tf2onnx" in onnx.load_from_string(data).producer_name
    input_name, x = _input(data, batch, rng)
    ref = ort_run(data, {input_name: x})[0]
    kept = ox.load(data, strip_softmax=False)
    assert_close(kept.predict(x), ref)
    # Stripped: the logits, whose softmax is onnxruntime's output.
    logits = ox.load(data).predict(x)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    assert_close(e / e.sum(-1, keepdims=True), ref)


@pytest.mark.parametrize("name", NAMES)
def test_every_dense_layer_is_one_linear_op(name: str) -> None:
    """tf2onnx writes Dense as MatMul + Add(bias): after loading each is one linear MatMul."""
    data = (DATA / f"{name}.onnx").read_bytes()
    proto = onnx.load_from_string(data)
    n_matmul = sum(n.op_type == "MatMul" for n in proto.graph.node)
    m = ox.load(data)
    matmuls = [kind for _n, op, kind in m.nodes if op == "MatMul"]
    assert len(matmuls) == n_matmul and set(matmuls) == {"linear"}
    if name == "mlp":
        assert "Add" not in m.op_counts
