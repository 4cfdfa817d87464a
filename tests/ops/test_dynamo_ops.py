"""Ops the dynamo exporter emits around layers: Expand, CastLike, ReduceMax (vs onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run


@pytest.mark.parametrize(
    ("x_shape", "target"),
    [((3, 1), (2, 3, 4)), ((1,), (5,)), ((2, 3), (1, 1)), ((4, 1, 2), (4, 3, 1)), ((1, 3, 1, 1), (2, 3, 5, 6)),
     ((3,), (0, 3)), ((2, 1, 3), (2, 4, 3))],
)
def test_expand_matches_onnxruntime(rng: np.random.Generator, x_shape: tuple, target: tuple) -> None:
    x = rng.standard_normal(x_shape).astype(np.float32)
    data = make_model([helper.make_node("Expand", ["x", "shape"], ["y0"])], [("x", list(x.shape))], ["y0"],
                      {"shape": np.array(target, np.int64)})
    assert_close(ox.load(data).predict(x), ort_run(data, {"x": x})[0])
    # The shape as a runtime value (computed from a second input's shape).
    t = np.zeros(target, np.float32)
    nodes = [helper.make_node("Shape", ["t"], ["shape"]), helper.make_node("Expand", ["x", "shape"], ["y0"])]
    data = make_model(nodes, [("x", list(x.shape)), ("t", ["N", *target[1:]] if target else [])], ["y0"])
    assert_close(ox.load(data).predict({"x": x, "t": t}), ort_run(data, {"x": x, "t": t})[0])


def test_expand_error_names_node() -> None:
    data = make_model([helper.make_node("Expand", ["x", "shape"], ["y"], name="bad_expand")], [("x", [3, 2])],
                      ["y"], {"shape": np.array([4, 3], np.int64)})
    with pytest.raises(ValueError, match="bad_expand.*broadcast"):
        ox.load(data)


def test_castlike_of_a_constant_to_an_activation_dtype_folds(rng: np.random.Generator) -> None:
    """The dynamo exporter's bias for bias-free Conv: Expand(CastLike(0, x), [C])."""
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("CastLike", ["zero", "x"], ["z"]),
        helper.make_node("Expand", ["z", "c"], ["bias"]),
        helper.make_node("Conv", ["x", "W", "bias"], ["y"], name="conv"),
    ]
    data = make_model(nodes, [("x", ["N", 3, 5, 5])], ["y"],
                      {"zero": np.array(0.0, np.float32), "c": np.array([4], np.int64), "W": w}, opset=15)
    m = ox.load(data)
    assert set(m.op_counts) == {"Conv"}, m.op_counts  # folded: the bias is a constant of the layer
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    assert_close(m.predict(x), ort_run(data, {"x": x})[0])


def test_castlike_int_to_float_at_runtime(rng: np.random.Generator) -> None:
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("CastLike", ["s", "x"], ["sf"]),
             helper.make_node("Mul", ["x", "sf"], ["y"])]
    data = make_model(nodes, [("x", ["N", 2])], ["y"], opset=15)
    x = rng.standard_normal((3, 2)).astype(np.float32)
    assert_close(ox.load(data).predict(x), ort_run(data, {"x": x})[0])


@pytest.mark.parametrize("axes", [None, [2, 3], [1], [-1], [0, 2], [1, 3]])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_max_matches_onnxruntime(rng: np.random.Generator, axes: list | None, keepdims: int,
                                        opset: int) -> None:
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    inits = {}
    node_inputs = ["x"]
    attrs: dict = {"keepdims": keepdims}
    if axes is not None:
        if opset >= 18:
            inits["axes"] = np.array(axes, np.int64)
            node_inputs.append("axes")
        else:
            attrs["axes"] = axes
    data = make_model([helper.make_node("ReduceMax", node_inputs, ["y"], **attrs)], [("x", ["N", 3, 4, 5])], ["y"],
                      inits, opset=opset)
    m = ox.load(data)
    assert dict(m.op_counts) == {"ReduceMax": 1}
    assert [k for _n, _o, k in m.nodes] == ["maxpool"]
    np.testing.assert_array_equal(m.predict(x), ort_run(data, {"x": x})[0])


def test_reduce_max_int64_in_shape_arithmetic(rng: np.random.Generator) -> None:
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("ReduceMax", ["s"], ["m"], keepdims=1),
             helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT), helper.make_node("Mul", ["x", "mf"], ["y"])]
    data = make_model(nodes, [("x", ["N", 3])], ["y"], opset=13)
    x = rng.standard_normal((7, 3)).astype(np.float32)
    assert_close(ox.load(data).predict(x), ort_run(data, {"x": x})[0])
