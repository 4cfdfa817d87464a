"""MatMul against onnxruntime: numpy matmul semantics (1-D operands, batch broadcasting),
constant vs runtime second operand (kind Linear vs Product), the MatMul + Add(bias) form that
the fuse_matmul_add pass turns into one node with a bias input, and shape errors."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run, single_node

SHAPES = {
    "1d_2d": ((4,), (4, 3)),
    "2d_1d": ((2, 4), (4,)),
    "1d_1d": ((4,), (4,)),
    "2d_2d": ((3, 4), (4, 5)),
    "3d_2d": ((2, 3, 4), (4, 5)),
    "4d_2d": ((2, 2, 3, 4), (4, 5)),
    "3d_1d": ((2, 3, 4), (4,)),
    "1d_3d": ((4,), (2, 4, 5)),
    "2d_3d": ((3, 4), (2, 4, 5)),
    "3d_3d": ((2, 3, 4), (2, 4, 5)),
    "bcast_a1": ((1, 3, 4), (2, 4, 5)),
    "bcast_b1": ((2, 3, 4), (1, 4, 5)),
    "bcast_4d_3d": ((2, 1, 3, 4), (3, 4, 5)),
    "bcast_both": ((2, 1, 3, 4), (1, 3, 4, 2)),
    "bcast_rank": ((3, 2, 1, 2, 4), (2, 3, 4, 3)),
    "n1": ((3, 4), (4, 1)),
    "k1": ((2, 3, 1), (2, 1, 5)),
}


def _run_pair(
    sa: tuple[int, ...], sb: tuple[int, ...], const_b: bool, opset: int = 13, seed: int = 0
) -> ox.Model:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    inputs = {"a": a}
    inits: dict[str, np.ndarray] = {}
    (inits if const_b else inputs)["b"] = b
    model = single_node("MatMul", inputs=inputs, initializers=inits, opset=opset, node_inputs=["a", "b"])
    m = ox.load(model, strip_softmax=False)
    got = m.predict(inputs if len(inputs) > 1 else a)
    expected = ort_run(model, inputs)[0]
    assert_close(got, expected)
    np.testing.assert_allclose(expected, np.matmul(a, b), rtol=1e-4, atol=1e-4)
    return m


@pytest.mark.parametrize("const_b", [True, False], ids=["constB", "runtimeB"])
@pytest.mark.parametrize("case", list(SHAPES))
def test_matmul_shapes(case: str, const_b: bool) -> None:
    sa, sb = SHAPES[case]
    m = _run_pair(sa, sb, const_b)
    expected_kind = "linear" if const_b and len(sb) == 2 else "product"
    assert m.nodes[0][2] == expected_kind


@pytest.mark.parametrize("opset", [1, 9, 13])
def test_matmul_opsets(opset: int) -> None:
    _run_pair((2, 3, 4), (4, 5), const_b=True, opset=opset)


@pytest.mark.parametrize(
    "sa,sb", [((4, 64, 96), (96, 128)), ((3, 33, 17), (3, 17, 65)), ((1, 300), (300, 7))]
)
def test_matmul_larger(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    _run_pair(sa, sb, const_b=False, seed=1)


def test_matmul_constant_first_operand_is_product() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    model = single_node("MatMul", inputs={"x": x}, initializers={"w": w}, node_inputs=["w", "x"])
    m = ox.load(model, strip_softmax=False)
    assert m.nodes[0][2] == "product"
    assert_close(m.predict(x), ort_run(model, {"x": x})[0])


def test_matmul_dynamic_batch() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 8)).astype(np.float32)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    model = single_node("MatMul", inputs={"x": x}, initializers={"w": w}, dynamic_batch=True)
    m = ox.load(model, strip_softmax=False)
    for batch in (1, 5):
        xb = rng.standard_normal((batch, 6, 8)).astype(np.float32)
        assert_close(m.predict(xb), ort_run(model, {"x": xb})[0])


def _matmul_add_model(x_shape: tuple[int, ...], bias_shape: tuple[int, ...], bias_first: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = x_shape[-1]
    n = bias_shape[-1]
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(bias_shape).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
        helper.make_node("Add", ["bias", "h"] if bias_first else ["h", "bias"], ["y"], name="dense_bias"),
    ]
    model = make_model(nodes, [("x", ["N", *x_shape[1:]])], ["y"], {"w": w, "bias": bias})
    return model, rng.standard_normal(x_shape).astype(np.float32)


@pytest.mark.parametrize("bias_first", [False, True], ids=["h+b", "b+h"])
@pytest.mark.parametrize(
    "x_shape,bias_shape",
    [((3, 4), (5,)), ((3, 4), (1, 5)), ((2, 3, 4), (5,)), ((2, 3, 4), (1, 1, 5)), ((1, 17), (9,))],
)
def test_matmul_add_fused(x_shape: tuple[int, ...], bias_shape: tuple[int, ...], bias_first: bool) -> None:
    model, x = _matmul_add_model(x_shape, bias_shape, bias_first)
    m = ox.load(model, strip_softmax=False)
    assert "Add" not in m.op_counts, m.op_counts
    assert m.op_counts == {"MatMul": 1}
    assert m.nodes[0][2] == "linear"
    assert_close(m.predict(x), ort_run(model, {"x": x})[0])


def test_matmul_add_not_fused_when_bias_broadcasts_rows() -> None:
    # A bias [3, 1] varies along rows, not the output features: the Add must stay.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    bias = rng.standard_normal((3, 1)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "bias"], ["y"])]
    model = make_model(nodes, [("x", [3, 4])], ["y"], {"w": w, "bias": bias})
    m = ox.load(model, strip_softmax=False)
    assert m.op_counts.get("Add") == 1
    assert_close(m.predict(x), ort_run(model, {"x": x})[0])


def test_matmul_explicit_bias_input_mismatch() -> None:
    # A MatMul node carrying a third (bias) input as the pass writes it, with the wrong size.
    x = np.zeros((2, 4), np.float32)
    w = np.zeros((4, 3), np.float32)
    b = np.zeros((5,), np.float32)
    node = helper.make_node("MatMul", ["x", "w", "b"], ["y"], name="mm_bias")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    with pytest.raises(ox.ModelFormatError, match=r"mm_bias.*bias of shape \(5,\).*3 output columns"):
        ox.load(model.SerializeToString(), strip_softmax=False)


@pytest.mark.parametrize(
    "sa,sb,pattern",
    [
        ((3, 4), (5, 6), r"matmul_node.*inner dimensions.*\(3, 4\).*\(5, 6\)"),
        ((4,), (3,), r"matmul_node.*inner dimensions.*\(4,\).*\(3,\)"),
        ((2, 3, 4), (3, 4, 5), r"matmul_node.*batch dimensions.*\(2, 3, 4\).*\(3, 4, 5\)"),
    ],
)
def test_matmul_shape_errors(sa: tuple[int, ...], sb: tuple[int, ...], pattern: str) -> None:
    model = single_node(
        "MatMul", inputs={"a": np.zeros(sa, np.float32)}, initializers={"b": np.zeros(sb, np.float32)}
    )
    with pytest.raises(ox.ModelFormatError, match=pattern):
        ox.load(model, strip_softmax=False)


def test_matmul_shape_error_at_run_time() -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm_dyn")
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["s", "k"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["k2", "n"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    m = ox.load(model.SerializeToString(), strip_softmax=False)
    with pytest.raises(ox.ShapeError, match=r"mm_dyn.*\(2, 3\).*\(4, 2\)"):
        m.predict({"a": np.ones((2, 3), np.float32), "b": np.ones((4, 2), np.float32)})
