"""Routing ops against onnxruntime: Flatten, Reshape, Transpose, Concat, Squeeze, Unsqueeze,
Identity, Dropout. Grids over shapes, (negative) axes, 0-size dims, float32 and int64 data and
opset variants; shape inference with an unknown batch dim; errors that name the node."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import ort_run

ONNX_TYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}


def _model(
    nodes: list[Any],
    inputs: dict[str, np.ndarray],
    outputs: dict[str, int],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    dynamic: tuple[str, ...] = (),
) -> bytes:
    """Graph inputs typed and shaped like the arrays (dim 0 symbolic for names in `dynamic`);
    outputs name -> ONNX element type."""
    ins = [
        helper.make_tensor_value_info(
            k, ONNX_TYPE[v.dtype], (["N", *v.shape[1:]] if k in dynamic else list(v.shape))
        )
        for k, v in inputs.items()
    ]
    outs = [helper.make_tensor_value_info(k, t, None) for k, t in outputs.items()]
    inits = [numpy_helper.from_array(v, name=k) for k, v in (initializers or {}).items()]
    graph = helper.make_graph(nodes, "test", ins, outs, initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


def _one(op: str, inputs: dict[str, np.ndarray], initializers=None, opset=17, node_inputs=None, **attrs) -> bytes:
    """One node reading the inputs then the initializers; output y typed like the first input."""
    names = node_inputs if node_inputs is not None else [*inputs, *(initializers or {})]
    node = helper.make_node(op, names, ["y"], name=f"{op.lower()}_node", **attrs)
    first = next(iter(inputs.values()))
    return _model([node], inputs, {"y": ONNX_TYPE[first.dtype]}, initializers, opset)


def _check(model: bytes, feeds: dict[str, np.ndarray], threads: int = 1) -> list[np.ndarray]:
    """onnxplain's outputs equal onnxruntime's exactly (routing ops move values, no arithmetic)."""
    expected = ort_run(model, feeds)
    got = ox.load(model, strip_softmax=False).run(feeds, threads=threads)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype, f"dtype {g.dtype} != {e.dtype}"
        assert g.shape == e.shape, f"shape {g.shape} != {e.shape}"
        np.testing.assert_array_equal(g, e)
    return got


def _data(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    n = int(np.prod(shape))
    return (np.arange(n) - n // 3).reshape(shape).astype(dtype)


# ---------------------------------------------------------------- Flatten

FLATTEN_SHAPES = [(2, 3, 4, 5), (3,), (0, 4, 2), (2, 1, 3), (4, 0)]


@pytest.mark.parametrize(
    "shape,axis", [(s, a) for s in FLATTEN_SHAPES for a in range(-len(s), len(s) + 1)], ids=str
)
def test_flatten_axes(shape, axis):
    x = _data(shape)
    _check(_one("Flatten", {"x": x}, opset=13, axis=axis), {"x": x})


@pytest.mark.parametrize("opset", [1, 9, 11, 13, 21])
def test_flatten_default_axis_opsets(opset):
    x = _data((2, 3, 2))
    _check(_one("Flatten", {"x": x}, opset=opset), {"x": x})


def test_flatten_axis_out_of_range_names_node():
    x = _data((2, 3))
    with pytest.raises(ValueError, match=r"flatten_node.*axis 3 is out of range"):
        ox.load(_one("Flatten", {"x": x}, axis=3), strip_softmax=False)


def test_flatten_infers_unknown_batch():
    x = _data((2, 3, 4))
    node = helper.make_node("Flatten", ["x"], ["y"], axis=1)
    m = ox.load(_model([node], {"x": x}, {"y": TensorProto.FLOAT}, dynamic=("x",)), strip_softmax=False)
    assert m.outputs[0].shape == (None, 12)
    for n in (1, 3, 0):
        xb = _data((n, 3, 4))
        np.testing.assert_array_equal(m.predict(xb), xb.reshape(n, 12))


# ---------------------------------------------------------------- Reshape

RESHAPE_CASES = [
    ((2, 3, 4), [4, -1], 0),
    ((2, 3, 4), [0, -1], 0),
    ((2, 3, 4), [0, 0, 4], 0),
    ((2, 3, 4), [-1], 0),
    ((2, 3, 4), [2, 3, 2, 2], 0),
    ((2, 3, 4), [-1, 2, 0], 0),
    ((2, 3, 4), [1, 24, 1], 0),
    ((0, 4), [-1, 2], 0),
    ((0, 4), [2, 0, 4], 1),
    ((0, 4), [0, 4], 1),
    ((3, 0), [0, 0], 0),
    ((), [1, 1], 0),
    ((1, 1), [], 0),
    ((6,), [-1, 3], 1),
]


@pytest.mark.parametrize("shape,req,allowzero", RESHAPE_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["f32", "i64"])
def test_reshape_constant_shape(shape, req, allowzero, dtype):
    x = _data(shape, dtype)
    attrs = {"allowzero": allowzero} if allowzero else {}
    model = _one("Reshape", {"x": x}, {"s": np.array(req, np.int64)}, opset=14, **attrs)
    _check(model, {"x": x})


@pytest.mark.parametrize("shape,req", [((2, 3, 4), [4, -1]), ((2, 3, 4), [0, -1]), ((5, 2), [2, 5])], ids=str)
def test_reshape_runtime_shape_input(shape, req):
    # The shape is a graph input: nothing is known at load, forward must still work.
    x = _data(shape)
    s = np.array(req, np.int64)
    _check(_one("Reshape", {"x": x, "s": s}, opset=13), {"x": x, "s": s})


@pytest.mark.parametrize("opset", [5, 13, 14, 19, 21])
def test_reshape_opsets(opset):
    x = _data((2, 6))
    _check(_one("Reshape", {"x": x}, {"s": np.array([3, -1, 2], np.int64)}, opset=opset), {"x": x})


def test_reshape_opset1_attribute():
    x = _data((2, 6))
    m = ox.load(_one("Reshape", {"x": x}, opset=4, shape=[0, 3, -1]), strip_softmax=False)
    # onnxruntime has no Reshape-1 kernel; the expected value is numpy's.
    np.testing.assert_array_equal(m.predict(x), x.reshape(2, 3, 2))


@pytest.mark.parametrize("req,expect", [([-1, 512], (None, 512)), ([0, -1], (None, 512)), ([0, 512], (None, 512))])
def test_reshape_infers_unknown_batch(req, expect):
    x = _data((2, 512, 1, 1))
    node = helper.make_node("Reshape", ["x", "s"], ["y"], name="r")
    model = _model([node], {"x": x}, {"y": TensorProto.FLOAT}, {"s": np.array(req, np.int64)}, dynamic=("x",))
    m = ox.load(model, strip_softmax=False)
    assert m.outputs[0].shape == expect
    for n in (1, 3):
        xb = _data((n, 512, 1, 1))
        _check(model, {"x": xb})
    # A batch of 0: [0, -1] copies the 0 and infers the rest (onnxruntime refuses 0 / 0).
    assert m.predict(np.zeros((0, 512, 1, 1), np.float32)).shape == (0, 512)


def test_reshape_runtime_shape_input_infers_rank():
    x = _data((2, 3, 4))
    node = helper.make_node("Reshape", ["x", "s"], ["y"])
    model = _model([node], {"x": x, "s": np.array([4, 6], np.int64)}, {"y": TensorProto.FLOAT})
    assert ox.load(model, strip_softmax=False).outputs[0].shape == (None, None)


@pytest.mark.parametrize(
    "shape,req,allowzero,msg",
    [
        ((2, 3, 4), [5, -1], 0, r"cannot reshape \(2, 3, 4\) to \[5, -1\]"),
        ((2, 3, 4), [5, 5], 0, r"cannot reshape \(2, 3, 4\) to \[5, 5\].*24 elements"),
        ((2, 3, 4), [-1, -1], 0, r"more than one -1"),
        ((2, 3, 4), [2, -3, 4], 0, r"negative dimension -3"),
        ((2, 3), [0, 0, 0], 0, r"copies a dimension the input does not have"),
        ((2, 3), [0, -1], 1, r"-1 together with 0"),
    ],
)
def test_reshape_errors_name_node_and_shapes(shape, req, allowzero, msg):
    x = _data(shape)
    model = _one("Reshape", {"x": x}, {"s": np.array(req, np.int64)}, allowzero=allowzero)
    with pytest.raises(ValueError, match=r"reshape_node.*" + msg):
        ox.load(model, strip_softmax=False)


def test_reshape_mismatch_at_run_time_names_node():
    # Dynamic batch: the mismatch is only visible once the batch size is known.
    x = _data((2, 6))
    node = helper.make_node("Reshape", ["x", "s"], ["y"], name="flat")
    model = _model([node], {"x": x}, {"y": TensorProto.FLOAT}, {"s": np.array([4, 3], np.int64)}, dynamic=("x",))
    m = ox.load(model, strip_softmax=False)
    np.testing.assert_array_equal(m.predict(x), x.reshape(4, 3))
    with pytest.raises(ValueError, match=r"'flat'.*cannot reshape \(3, 6\) to \[4, 3\]"):
        m.predict(_data((3, 6)))


# ---------------------------------------------------------------- Transpose


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))), ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["f32", "i64"])
def test_transpose_rank3_all_perms(perm, dtype):
    x = _data((2, 3, 4), dtype)
    _check(_one("Transpose", {"x": x}, perm=list(perm)), {"x": x})


@pytest.mark.parametrize(
    "shape,perm",
    [
        ((2, 8, 9, 10), [0, 2, 3, 1]),  # NCHW -> NHWC (tiled path)
        ((2, 9, 10, 8), [0, 3, 1, 2]),  # NHWC -> NCHW
        ((33, 70), [1, 0]),
        ((1, 3, 1, 5), [3, 2, 1, 0]),
        ((0, 3, 4), [2, 0, 1]),
        ((5,), [0]),
        ((2, 3, 4, 5, 2), [4, 1, 3, 0, 2]),
    ],
    ids=str,
)
def test_transpose_shapes(shape, perm):
    x = _data(shape)
    _check(_one("Transpose", {"x": x}, perm=perm), {"x": x})


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (4,), ()], ids=str)
def test_transpose_default_perm_reverses(shape):
    # Also covers rank 0 (perm [] cannot be written with onnx.helper).
    x = _data(shape)
    _check(_one("Transpose", {"x": x}), {"x": x})


@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [0, 3, 1, 2], [3, 1, 2, 0]], ids=str)
def test_transpose_large_multithreaded(perm, rng):
    x = rng.standard_normal((2, 64, 40, 36)).astype(np.float32)
    _check(_one("Transpose", {"x": x}, perm=perm), {"x": x}, threads=2)


@pytest.mark.parametrize("perm", [[0, 0, 1], [0, 1], [0, 1, 3]], ids=str)
def test_transpose_bad_perm_names_node(perm):
    x = _data((2, 3, 4))
    with pytest.raises(ValueError, match=r"transpose_node.*perm .* is not a permutation"):
        ox.load(_one("Transpose", {"x": x}, perm=perm), strip_softmax=False)


# ---------------------------------------------------------------- Concat


@pytest.mark.parametrize("axis", [-3, -2, -1, 0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["f32", "i64"])
def test_concat_axes(axis, dtype):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for i, s in enumerate(shapes):
        s[axis] = i + 1
    a, b = _data(tuple(shapes[0]), dtype), _data(tuple(shapes[1]), dtype) + 100
    c = _data(tuple(shapes[2]), dtype) * 2  # an initializer
    model = _one("Concat", {"a": a, "b": b}, {"c": c}, axis=axis)
    _check(model, {"a": a, "b": b})


@pytest.mark.parametrize(
    "shapes,axis",
    [
        ([(2, 0, 3), (2, 4, 3)], 1),
        ([(0, 3), (0, 3)], 0),
        ([(0, 3), (0, 3)], 1),
        ([(2, 3), (0, 3), (1, 3)], 0),
        ([(5,)], 0),
        ([(0,), (2,), (0,)], 0),
    ],
    ids=str,
)
def test_concat_zero_size_and_single(shapes, axis):
    feeds = {f"x{i}": _data(s) + i for i, s in enumerate(shapes)}
    _check(_one("Concat", feeds, axis=axis), feeds)


def test_concat_large_multithreaded(rng):
    a = rng.standard_normal((4, 96, 30, 30)).astype(np.float32)
    b = rng.standard_normal((4, 32, 30, 30)).astype(np.float32)
    _check(_one("Concat", {"a": a, "b": b}, axis=1), {"a": a, "b": b}, threads=2)


def test_concat_opset4_and_opset11_negative():
    a, b = _data((2, 3)), _data((2, 2))
    _check(_one("Concat", {"a": a, "b": b}, opset=4, axis=1), {"a": a, "b": b})
    _check(_one("Concat", {"a": a, "b": b}, opset=11, axis=-1), {"a": a, "b": b})


def test_concat_mismatch_names_node():
    a, b = _data((2, 3)), _data((3, 3))
    with pytest.raises(ValueError, match=r"concat_node.*\(2, 3\) and \(3, 3\) differ in dim 0"):
        ox.load(_one("Concat", {"a": a, "b": b}, axis=1), strip_softmax=False)


def test_concat_dynamic_batch_mismatch_at_run_time():
    a = _data((2, 3))
    node = helper.make_node("Concat", ["a", "c"], ["y"], name="cat", axis=1)
    model = _model([node], {"a": a}, {"y": TensorProto.FLOAT}, {"c": _data((2, 1))}, dynamic=("a",))
    m = ox.load(model, strip_softmax=False)
    assert m.outputs[0].shape == (2, 4)  # the constant pins the batch
    _check(model, {"a": a})
    with pytest.raises(ValueError, match=r"'cat'.*differ in dim 0"):
        m.predict(_data((3, 3)))


# ---------------------------------------------------------------- Squeeze / Unsqueeze

SQUEEZE_CASES = [
    ((1, 3, 1, 4), [0]),
    ((1, 3, 1, 4), [-2]),
    ((1, 3, 1, 4), [0, 2]),
    ((1, 3, 1, 4), [2, -4]),
    ((1, 3, 1, 4), None),
    ((1, 1), None),
    ((1,), [0]),
    ((0, 1, 2), [1]),
    ((2, 3), None),
]


@pytest.mark.parametrize("shape,axes", SQUEEZE_CASES, ids=str)
@pytest.mark.parametrize("opset", [11, 13, 21])
def test_squeeze(shape, axes, opset):
    x = _data(shape)
    if opset < 13:
        model = _one("Squeeze", {"x": x}, opset=opset, **({"axes": axes} if axes is not None else {}))
    elif axes is None:
        model = _one("Squeeze", {"x": x}, opset=opset)
    else:
        model = _one("Squeeze", {"x": x}, {"a": np.array(axes, np.int64)}, opset=opset)
    _check(model, {"x": x})


def test_squeeze_non_one_dim_names_node():
    x = _data((1, 3))
    with pytest.raises(ValueError, match=r"squeeze_node.*cannot squeeze axis 1 of \(1, 3\)"):
        ox.load(_one("Squeeze", {"x": x}, {"a": np.array([1], np.int64)}), strip_softmax=False)


def test_squeeze_axes_runtime_input():
    x, a = _data((1, 3, 1)), np.array([0, 2], np.int64)
    _check(_one("Squeeze", {"x": x, "a": a}), {"x": x, "a": a})


UNSQUEEZE_CASES = [
    ((3, 4), [0]),
    ((3, 4), [-1]),
    ((3, 4), [1, 3]),
    ((3, 4), [-1, 0]),
    ((), [0]),
    ((), [0, 1]),
    ((0, 2), [2, 0]),
    ((2,), [1, -1]),
]


@pytest.mark.parametrize("shape,axes", UNSQUEEZE_CASES, ids=str)
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["f32", "i64"])
def test_unsqueeze(shape, axes, opset, dtype):
    x = _data(shape, dtype)
    if opset < 13:
        model = _one("Unsqueeze", {"x": x}, opset=opset, axes=axes)
    else:
        model = _one("Unsqueeze", {"x": x}, {"a": np.array(axes, np.int64)}, opset=opset)
    _check(model, {"x": x})


def test_unsqueeze_bad_axes_name_node():
    x = _data((3, 4))
    with pytest.raises(ValueError, match=r"unsqueeze_node.*axis 3 is out of range for rank 3"):
        ox.load(_one("Unsqueeze", {"x": x}, {"a": np.array([3], np.int64)}), strip_softmax=False)
    with pytest.raises(ValueError, match=r"unsqueeze_node.*repeat axis 0"):
        ox.load(_one("Unsqueeze", {"x": x}, {"a": np.array([0, -4], np.int64)}), strip_softmax=False)


# ---------------------------------------------------------------- Identity / Dropout


@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["f32", "i64"])
def test_identity(dtype):
    x = _data((2, 3), dtype)
    _check(_one("Identity", {"x": x}), {"x": x})


def test_identity_between_ops_is_removed():
    x = _data((2, 3))
    nodes = [
        helper.make_node("Identity", ["x"], ["t"]),
        helper.make_node("Relu", ["t"], ["u"]),
        helper.make_node("Identity", ["u"], ["y"]),
    ]
    model = _model(nodes, {"x": x}, {"y": TensorProto.FLOAT})
    m = ox.load(model, strip_softmax=False)
    _check(model, {"x": x})
    assert "Identity" not in m.op_counts


@pytest.mark.parametrize("opset", [7, 10, 12, 13])
def test_dropout_is_identity_at_inference(opset):
    x = _data((3, 4))
    attrs = {"ratio": 0.3} if opset < 12 else {}
    inits = {"r": np.array(0.3, np.float32)} if opset >= 12 else None
    _check(_one("Dropout", {"x": x}, inits, opset=opset, **attrs), {"x": x})


def test_dropout_used_mask_is_all_kept():
    # ONNX's mask is bool; the IR maps bool to int64 (as Cast does): all ones, nothing dropped.
    x = _data((2, 3))
    nodes = [
        helper.make_node("Dropout", ["x", "r"], ["d", "mask"], name="drop"),
        helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["d", "m"], ["y"]),
    ]
    model = _model(nodes, {"x": x}, {"y": TensorProto.FLOAT}, {"r": np.array(0.5, np.float32)}, opset=13)
    m = ox.load(model, strip_softmax=False)
    assert "Dropout" in m.op_counts  # kept: its mask is read
    _check(model, {"x": x})


def test_dropout_training_mode_refused():
    x = _data((2, 3))
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")
    inits = {"r": np.array(0.5, np.float32), "t": np.array(True)}
    with pytest.raises(ox.ModelFormatError, match=r"'drop'.*training_mode=true is not supported"):
        ox.load(_model([node], {"x": x}, {"y": TensorProto.FLOAT}, inits, opset=13), strip_softmax=False)


def test_dropout_training_mode_false_runs():
    x = _data((2, 3))
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")
    inits = {"r": np.array(0.5, np.float32), "t": np.array(False)}
    _check(_model([node], {"x": x}, {"y": TensorProto.FLOAT}, inits, opset=13), {"x": x})


def test_routing_kinds():
    x = _data((1, 2, 3))
    nodes = [
        helper.make_node("Transpose", ["x"], ["a"], perm=[0, 2, 1]),
        helper.make_node("Flatten", ["a"], ["b"]),
        helper.make_node("Unsqueeze", ["b", "ax"], ["c"]),
        helper.make_node("Squeeze", ["c", "ax"], ["d"]),
        helper.make_node("Concat", ["d", "d"], ["e"], axis=1),
        helper.make_node("Reshape", ["e", "s"], ["y"]),
    ]
    inits = {"ax": np.array([0], np.int64), "s": np.array([-1], np.int64)}
    model = _model(nodes, {"x": x}, {"y": TensorProto.FLOAT}, inits, opset=13)
    m = ox.load(model, strip_softmax=False)
    assert {kind for _, _, kind in m.nodes} == {"routing"}
    _check(model, {"x": x})
