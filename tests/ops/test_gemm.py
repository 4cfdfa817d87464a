"""Gemm against onnxruntime: transposes, alpha/beta, every broadcast form of C, constant vs
runtime B (kind Linear vs Product), opsets, and shape errors that name the node."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run, single_node

M, K, N = 5, 7, 3

C_SHAPES = {
    "none": None,
    "scalar": (),
    "n": (N,),
    "1n": (1, N),
    "m1": (M, 1),
    "mn": (M, N),
    "one": (1,),
}


def _operands(trans_a: int, trans_b: int, c_shape: tuple[int, ...] | None, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    c = None if c_shape is None else rng.standard_normal(c_shape).astype(np.float32)
    return a, b, c


def _check(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray | None,
    const_b: bool,
    const_c: bool = True,
    opset: int = 13,
    **attrs: object,
) -> ox.Model:
    inputs = {"a": a}
    inits: dict[str, np.ndarray] = {}
    (inits if const_b else inputs)["b"] = b
    if c is not None:
        (inits if const_c else inputs)["c"] = c
    order = ["a", "b"] + (["c"] if c is not None else [])
    model = single_node("Gemm", inputs=inputs, initializers=inits, opset=opset, node_inputs=order, **attrs)
    m = ox.load(model, strip_softmax=False)
    got = m.predict(inputs if len(inputs) > 1 else a)
    assert_close(got, ort_run(model, inputs)[0])
    return m


@pytest.mark.parametrize("const_b", [True, False], ids=["constB", "runtimeB"])
@pytest.mark.parametrize("c_name", list(C_SHAPES))
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("trans_a", [0, 1])
def test_gemm_grid(trans_a: int, trans_b: int, c_name: str, const_b: bool) -> None:
    a, b, c = _operands(trans_a, trans_b, C_SHAPES[c_name])
    m = _check(a, b, c, const_b, transA=trans_a, transB=trans_b, alpha=0.75, beta=-1.5)
    kind = m.nodes[0][2]
    assert kind == ("linear" if const_b else "product")


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.0, 1.0), (2.0, 0.0), (-0.5, 3.0)])
@pytest.mark.parametrize("const_c", [True, False], ids=["constC", "runtimeC"])
def test_gemm_alpha_beta(alpha: float, beta: float, const_c: bool) -> None:
    a, b, c = _operands(0, 1, (M, N), seed=1)
    _check(a, b, c, const_b=True, const_c=const_c, transB=1, alpha=alpha, beta=beta)


@pytest.mark.parametrize("opset", [7, 9, 11, 13])
def test_gemm_opsets(opset: int) -> None:
    # Before opset 11, C is required.
    a, b, c = _operands(0, 1, (N,), seed=2)
    _check(a, b, c, const_b=True, opset=opset, transB=1)


@pytest.mark.parametrize("m_,k_,n_", [(1, 1, 1), (1, 64, 10), (33, 17, 65), (8, 300, 1)])
def test_gemm_odd_sizes(m_: int, k_: int, n_: int) -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((m_, k_)).astype(np.float32)
    b = rng.standard_normal((n_, k_)).astype(np.float32)
    c = rng.standard_normal((n_,)).astype(np.float32)
    _check(a, b, c, const_b=True, transB=1)


@pytest.mark.parametrize("k_,n_", [(300, 263), (1024, 257), (4100, 17)])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("trans_a", [0, 1])
def test_gemm_one_row(trans_a: int, trans_b: int, k_: int, n_: int) -> None:
    """One row on a wide layer (N * K >= 2**16) takes the one-row product, which streams B once:
    row counts off its 4-row groups, depths off its 16-float steps and the split over 2 threads
    all agree with float64 and onnxruntime."""
    rng = np.random.default_rng(k_ + n_)
    a = rng.standard_normal((k_, 1) if trans_a else (1, k_)).astype(np.float32)
    b = rng.standard_normal((n_, k_) if trans_b else (k_, n_)).astype(np.float32)
    c = rng.standard_normal((n_,)).astype(np.float32)
    model = single_node("Gemm", inputs={"a": a}, initializers={"b": b, "c": c}, node_inputs=["a", "b", "c"],
                        transA=trans_a, transB=trans_b, alpha=0.5, beta=-2.0)
    a64 = (a.T if trans_a else a).astype(np.float64)
    b64 = (b.T if trans_b else b).astype(np.float64)
    expected = (0.5 * a64 @ b64 - 2.0 * c).astype(np.float32)
    m = ox.load(model, strip_softmax=False)
    for threads in (1, 2):
        got = m.run({"a": a}, threads=threads)[0]
        assert_close(got, expected)
    assert_close(got, ort_run(model, {"a": a})[0])


def test_gemm_dynamic_batch_and_bias_input() -> None:
    rng = np.random.default_rng(4)
    w = rng.standard_normal((N, K)).astype(np.float32)
    bias = rng.standard_normal((N,)).astype(np.float32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    model = single_node(
        "Gemm", inputs={"x": x}, initializers={"w": w, "bias": bias}, dynamic_batch=True, transB=1
    )
    m = ox.load(model, strip_softmax=False)
    assert m.nodes[0][2] == "linear"
    for batch in (1, 4, 9):
        xb = rng.standard_normal((batch, K)).astype(np.float32)
        assert_close(m.predict(xb), ort_run(model, {"x": xb})[0])


def test_gemm_inner_mismatch_at_load() -> None:
    a = np.zeros((3, 4), np.float32)
    b = np.zeros((5, 6), np.float32)
    model = single_node("Gemm", inputs={"a": a}, initializers={"b": b})
    with pytest.raises(ox.ModelFormatError, match=r"gemm_node.*\(3, 4\).*\(5, 6\)"):
        ox.load(model, strip_softmax=False)
    assert issubclass(ox.ModelFormatError, ValueError) and issubclass(ox.ShapeError, ValueError)
    with pytest.raises(ValueError, match=r"gemm_node"):  # code that caught the old ShapeError still works
        ox.load(model, strip_softmax=False)


def test_gemm_inner_mismatch_at_run_time() -> None:
    # Shapes only known when running: the error still names the node and both shapes.
    node = helper.make_node("Gemm", ["a", "b"], ["y"], name="fc_dyn")
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", "k"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["k2", "n"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    m = ox.load(model.SerializeToString(), strip_softmax=False)
    ok = {"a": np.ones((2, 3), np.float32), "b": np.ones((3, 4), np.float32)}
    assert_close(m.predict(ok), np.full((2, 4), 3.0, np.float32))
    bad = {"a": np.ones((2, 3), np.float32), "b": np.ones((4, 4), np.float32)}
    with pytest.raises(ox.ShapeError, match=r"fc_dyn.*\(2, 3\).*\(4, 4\)"):
        m.predict(bad)


def test_gemm_c_not_broadcastable() -> None:
    a, b, _ = _operands(0, 0, None)
    c = np.zeros((2, N), np.float32)
    model = single_node("Gemm", inputs={"a": a}, initializers={"b": b, "c": c})
    with pytest.raises(ox.ModelFormatError, match=r"gemm_node.*C of shape \(2, 3\)"):
        ox.load(model, strip_softmax=False)


def test_gemm_rank_error() -> None:
    a = np.zeros((2, 3, 4), np.float32)
    b = np.zeros((4, 5), np.float32)
    model = single_node("Gemm", inputs={"a": a}, initializers={"b": b})
    with pytest.raises(ox.ModelFormatError, match=r"gemm_node.*A must be 2-D"):
        ox.load(model, strip_softmax=False)
