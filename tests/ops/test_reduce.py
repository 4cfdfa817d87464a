"""ReduceMean and ReduceSum against onnxruntime: axes as attribute (ReduceMean < 18, ReduceSum
< 13) and as input (constant or runtime), negative/several/all axes, keepdims,
noop_with_empty_axes, int64 ReduceSum, and axis errors that name the node."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run

# (op, opset, axes as input?)
FORMS = [
    ("ReduceMean", 11, False),
    ("ReduceMean", 13, False),
    ("ReduceMean", 18, True),
    ("ReduceSum", 11, False),
    ("ReduceSum", 13, True),
]
FORM_IDS = [f"{op}-{opset}" for op, opset, _ in FORMS]

AXES = [None, [0], [-1], [1], [1, 2], [-1, 0], [2, 3], [0, 1, 2, 3], [-3, -2]]


def reduce_model(
    op: str,
    opset: int,
    axes_input: bool,
    shape: tuple[int, ...],
    axes: list[int] | None,
    runtime_axes: bool = False,
    dtype: int = TensorProto.FLOAT,
    **attrs: object,
) -> bytes:
    """One Reduce node; axes as attribute, as an int64 initializer, or as a runtime graph input."""
    inputs = [helper.make_tensor_value_info("x", dtype, list(shape))]
    inits = []
    node_inputs = ["x"]
    if axes is not None and axes_input:
        node_inputs.append("axes")
        if runtime_axes:
            inputs.append(helper.make_tensor_value_info("axes", TensorProto.INT64, [len(axes)]))
        else:
            inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
    elif axes is not None:
        attrs["axes"] = axes
    node = helper.make_node(op, node_inputs, ["y"], name=f"{op.lower()}_node", **attrs)
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("y", dtype, None)], initializer=inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _check(model: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    m = ox.load(model, strip_softmax=False)
    assert m.nodes[0][2] == "avgpool"
    got = m.predict(feeds if len(feeds) > 1 else feeds["x"])
    expected = ort_run(model, feeds)[0]
    assert got.dtype == expected.dtype
    assert_close(got, expected)
    return got


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", AXES, ids=[str(a) for a in AXES])
@pytest.mark.parametrize("op,opset,axes_input", FORMS, ids=FORM_IDS)
def test_reduce_grid(op: str, opset: int, axes_input: bool, axes: list[int] | None, keepdims: int) -> None:
    shape = (2, 3, 4, 5)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    _check(reduce_model(op, opset, axes_input, shape, axes, keepdims=keepdims), {"x": x})


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("op,opset", [("ReduceMean", 18), ("ReduceSum", 13)])
def test_reduce_runtime_axes(op: str, opset: int, keepdims: int) -> None:
    shape = (2, 3, 4)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    model = reduce_model(op, opset, True, shape, [0, 2], runtime_axes=True, keepdims=keepdims)
    m = ox.load(model, strip_softmax=False)
    for axes in ([0, 2], [-1, 1]):
        feeds = {"x": x, "axes": np.array(axes, np.int64)}
        assert_close(m.predict(feeds), ort_run(model, feeds)[0])


@pytest.mark.parametrize("op,opset", [("ReduceMean", 18), ("ReduceSum", 13)])
def test_reduce_noop_with_empty_axes(op: str, opset: int) -> None:
    shape = (2, 3, 4)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    # No axes and noop_with_empty_axes=1: the identity.
    got = _check(reduce_model(op, opset, True, shape, None, noop_with_empty_axes=1), {"x": x})
    np.testing.assert_array_equal(got, x)
    # An empty axes tensor: also the identity with the flag, all axes without it.
    for noop in (0, 1):
        _check(reduce_model(op, opset, True, shape, [], noop_with_empty_axes=noop, keepdims=0), {"x": x})
    # Axes given: the flag changes nothing.
    _check(reduce_model(op, opset, True, shape, [1], noop_with_empty_axes=1), {"x": x})


@pytest.mark.parametrize("axes", [None, [0], [-1], [0, 1]], ids=str)
@pytest.mark.parametrize("opset,axes_input", [(11, False), (13, True)])
def test_reduce_sum_int64(opset: int, axes_input: bool, axes: list[int] | None) -> None:
    shape = (3, 4)
    x = np.random.default_rng(3).integers(-1000, 1000, shape).astype(np.int64)
    model = reduce_model("ReduceSum", opset, axes_input, shape, axes, dtype=TensorProto.INT64, keepdims=0)
    got = _check(model, {"x": x})
    assert got.dtype == np.int64


@pytest.mark.parametrize("shape", [(1, 1), (7,), (1, 5, 1), (3, 1, 2, 1, 4), (2, 2049), (64, 3, 33)])
@pytest.mark.parametrize("op,opset", [("ReduceMean", 13), ("ReduceSum", 11)])
def test_reduce_odd_shapes_last_and_first(op: str, opset: int, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    for axes in ([-1], [0]):
        _check(reduce_model(op, opset, False, shape, axes, keepdims=1), {"x": x})


def test_reduce_mean_global_pool_parallel() -> None:
    # The dynamo exporter's global average pooling: ReduceMean over [2, 3] with keepdims.
    shape = (4, 64, 28, 28)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    model = reduce_model("ReduceMean", 18, True, shape, [-2, -1], keepdims=1)
    m = ox.load(model, strip_softmax=False)
    assert_close(m.predict(x, threads=2), ort_run(model, {"x": x})[0])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_reduce_random(data: st.DataObject) -> None:
    rank = data.draw(st.integers(1, 4))
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    picked = data.draw(st.lists(st.integers(0, rank - 1), unique=True, max_size=rank))
    axes = [a - rank if data.draw(st.booleans()) else a for a in picked]
    keepdims = data.draw(st.integers(0, 1))
    op, opset, axes_input = data.draw(st.sampled_from(FORMS))
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    _check(reduce_model(op, opset, axes_input, shape, axes or None, keepdims=keepdims), {"x": x})


@pytest.mark.parametrize(
    "axes,pattern", [([3], r"axis 3 is out of range for rank 3"), ([1, -2], r"axis -2 is repeated")]
)
@pytest.mark.parametrize("op,opset,axes_input", FORMS, ids=FORM_IDS)
def test_reduce_axis_errors(op: str, opset: int, axes_input: bool, axes: list[int], pattern: str) -> None:
    model = reduce_model(op, opset, axes_input, (2, 3, 4), axes)
    with pytest.raises(ox.ModelFormatError, match=rf"{op.lower()}_node.*{pattern}.*\(2, 3, 4\)"):
        ox.load(model, strip_softmax=False)


def test_reduce_runtime_axis_error() -> None:
    model = reduce_model("ReduceSum", 13, True, (2, 3), [0], runtime_axes=True)
    m = ox.load(model, strip_softmax=False)
    with pytest.raises(ox.ShapeError, match=r"reducesum_node.*axis 5 is out of range"):
        m.predict({"x": np.zeros((2, 3), np.float32), "axes": np.array([5], np.int64)})
