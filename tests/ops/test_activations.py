"""Elementwise activations against onnxruntime: LeakyRelu, PRelu, Elu, Sigmoid, Tanh, Softplus,
Clip (opset-6 attributes and opset-11+ optional inputs), with attribute variants, NaN/inf inputs,
large multithreaded tensors, kinds, and the errors naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run, single_node

SPECIALS = np.array(
    [
        np.nan,
        np.inf,
        -np.inf,
        0.0,
        -0.0,
        1e-8,
        -1e-8,
        0.5,
        -0.5,
        6.0,
        7.0,
        -7.0,
        20.0,
        -20.0,
        90.0,
        -90.0,
        3e38,
        -3e38,
    ],
    np.float32,
)

# op -> attribute variants (kwargs for single_node)
UNARY = {
    "LeakyRelu": [{}, {"alpha": 0.2}, {"alpha": 0.0}, {"alpha": -1.5}],
    "Elu": [{}, {"alpha": 0.5}, {"alpha": 2.0}],
    "Sigmoid": [{}],
    "Tanh": [{}],
    "Softplus": [{}],
}
UNARY_CASES = [(op, attrs) for op, variants in UNARY.items() for attrs in variants]


def _ids(case) -> str:
    op, attrs = case
    return op + "".join(f"-{k}{v}" for k, v in attrs.items())


def _same(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Elementwise closeness that treats NaN == NaN and inf == inf (no scaling by max|expected|)."""
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("case", UNARY_CASES, ids=_ids)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7,), (0, 3), (1,)])
def test_unary_random(case, shape) -> None:
    op, attrs = case
    x = (np.random.default_rng(0).standard_normal(shape) * 4).astype(np.float32)
    model = single_node(op, inputs={"x": x}, **attrs)
    assert_close(ox.load(model, strip_softmax=False).predict(x), ort_run(model, {"x": x})[0])


@pytest.mark.parametrize("case", UNARY_CASES, ids=_ids)
def test_unary_specials(case) -> None:
    """NaN stays NaN, +-inf and huge values saturate the way onnxruntime's kernels do."""
    op, attrs = case
    model = single_node(op, inputs={"x": SPECIALS}, **attrs)
    with np.errstate(all="ignore"):
        _same(ox.load(model, strip_softmax=False).predict(SPECIALS), ort_run(model, {"x": SPECIALS})[0])


@pytest.mark.parametrize("case", UNARY_CASES, ids=_ids)
def test_unary_large_multithreaded(case) -> None:
    op, attrs = case
    x = (np.random.default_rng(1).standard_normal((3, 64, 33, 17)) * 5).astype(np.float32)
    model = single_node(op, inputs={"x": x}, dynamic_batch=True, **attrs)
    m = ox.load(model, strip_softmax=False)
    expected = ort_run(model, {"x": x})[0]
    for threads in (1, 2):
        assert_close(m.predict(x, threads=threads), expected)


@pytest.mark.parametrize("opset", [6, 13])
@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "LeakyRelu", "Elu"])
def test_unary_opsets(op: str, opset: int) -> None:
    x = np.linspace(-5, 5, 23, dtype=np.float32).reshape(1, 23)
    model = single_node(op, inputs={"x": x}, opset=opset)
    assert_close(ox.load(model, strip_softmax=False).predict(x), ort_run(model, {"x": x})[0])


def test_sigmoid_softplus_extremes_are_finite() -> None:
    x = np.array([-1e4, -100.0, -88.0, 88.0, 100.0, 1e4], np.float32)
    for op in ("Sigmoid", "Softplus", "Tanh"):
        model = single_node(op, inputs={"x": x})
        got = ox.load(model, strip_softmax=False).predict(x)
        assert np.all(np.isfinite(got)), (op, got)
        _same(got, ort_run(model, {"x": x})[0])


# ---- PRelu ------------------------------------------------------------------------------------

PRELU_SHAPES = {
    "channel": ((2, 3, 4, 5), (3, 1, 1)),
    "channel4d": ((2, 3, 4, 5), (1, 3, 1, 1)),
    "scalar_one": ((2, 3, 4, 5), (1,)),
    "scalar": ((2, 3, 4, 5), ()),
    "features": ((4, 6), (6,)),
    "same": ((2, 3, 4), (2, 3, 4)),
    "last": ((2, 3, 4, 5), (5,)),
    "seq": ((2, 7, 3), (3,)),
    "zero": ((0, 3), (3,)),
}


@pytest.mark.parametrize("pair", list(PRELU_SHAPES))
@pytest.mark.parametrize("const_slope", [True, False], ids=["const", "runtime"])
def test_prelu(pair: str, const_slope: bool) -> None:
    sx, ss = PRELU_SHAPES[pair]
    rng = np.random.default_rng(2)
    x = rng.standard_normal(sx).astype(np.float32)
    slope = rng.uniform(-0.5, 0.8, ss).astype(np.float32)
    if const_slope or slope.ndim == 0:
        model = single_node("PRelu", inputs={"x": x}, initializers={"slope": slope})
        feeds = {"x": x}
    else:
        model = single_node("PRelu", inputs={"x": x, "slope": slope})
        feeds = {"x": x, "slope": slope}
    m = ox.load(model, strip_softmax=False)
    assert m.nodes[0][2] == "activation"
    assert_close(m.predict(feeds), ort_run(model, feeds)[0])


def test_prelu_dynamic_batch_large() -> None:
    rng = np.random.default_rng(3)
    slope = rng.uniform(0, 0.5, (64, 1, 1)).astype(np.float32)
    x = rng.standard_normal((3, 64, 20, 31)).astype(np.float32)
    model = single_node("PRelu", inputs={"x": x}, initializers={"slope": slope}, dynamic_batch=True)
    m = ox.load(model, strip_softmax=False)
    for threads in (1, 2):
        assert_close(m.predict(x, threads=threads), ort_run(model, {"x": x})[0])
        assert_close(m.predict(x[:1], threads=threads), ort_run(model, {"x": x[:1]})[0])


def test_prelu_specials() -> None:
    x = SPECIALS.reshape(1, -1)
    slope = np.array([0.25], np.float32)
    model = single_node("PRelu", inputs={"x": x}, initializers={"slope": slope})
    with np.errstate(all="ignore"):
        _same(ox.load(model, strip_softmax=False).predict(x), ort_run(model, {"x": x})[0])


@pytest.mark.parametrize("sx,ss", [((2, 3, 4), (5,)), ((3, 1), (3, 4)), ((4,), (2, 4))])
def test_prelu_slope_must_broadcast_to_x(sx, ss) -> None:
    x = np.zeros(sx, np.float32)
    model = single_node("PRelu", inputs={"x": x}, initializers={"slope": np.ones(ss, np.float32)})
    with pytest.raises(ValueError, match=r"node 'prelu_node' \(PRelu\).*slope of shape .* does not broadcast"):
        ox.load(model, strip_softmax=False)


# ---- Clip -------------------------------------------------------------------------------------


def _clip_model(x: np.ndarray, lo, hi, opset: int, runtime_bounds: bool = False) -> tuple[bytes, dict]:
    """Clip with bounds as inputs (opset >= 11; None = omitted) or attributes (opset 6)."""
    feeds = {"x": x}
    if opset < 11:
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        return single_node("Clip", inputs={"x": x}, opset=opset, **attrs), feeds
    inits, names = {}, ["x"]
    for name, v in (("lo", lo), ("hi", hi)):
        if v is None:
            names.append("")
            continue
        names.append(name)
        arr = np.array(v, np.float32)
        if runtime_bounds:
            arr = arr.reshape(1)  # 0-d graph inputs are not supported by the Python API
            feeds[name] = arr
        else:
            inits[name] = arr
    while names[-1] == "":
        names.pop()
    inputs = {k: v for k, v in feeds.items()}
    return single_node("Clip", inputs=inputs, initializers=inits, opset=opset, node_inputs=names), feeds


CLIP_BOUNDS = [(0.0, 6.0), (-1.0, 1.0), (None, 2.0), (-2.0, None), (None, None), (3.0, -3.0), (0.5, 0.5)]


@pytest.mark.parametrize("bounds", CLIP_BOUNDS, ids=str)
@pytest.mark.parametrize("opset", [6, 11, 12, 13])
def test_clip(bounds, opset: int) -> None:
    lo, hi = bounds
    x = np.concatenate([(np.random.default_rng(4).standard_normal(40) * 5).astype(np.float32), SPECIALS])
    model, feeds = _clip_model(x, lo, hi, opset)
    m = ox.load(model, strip_softmax=False)
    assert m.nodes[0][2] == "activation"
    if opset < 11 and lo is not None and hi is not None and lo > hi:
        # onnxruntime refuses min > max for Clip-6; like the later opsets, onnxplain returns max.
        expected = np.minimum(np.maximum(x, np.float32(lo)), np.float32(hi))
    else:
        expected = ort_run(model, feeds)[0]
    _same(m.predict(feeds), expected)


@pytest.mark.parametrize("bounds", [(0.0, 6.0), (None, 1.0), (-1.0, None)], ids=str)
def test_clip_runtime_bounds(bounds) -> None:
    lo, hi = bounds
    x = (np.random.default_rng(5).standard_normal((3, 50)) * 5).astype(np.float32)
    model, feeds = _clip_model(x, lo, hi, 13, runtime_bounds=True)
    _same(ox.load(model, strip_softmax=False).predict(feeds), ort_run(model, feeds)[0])


def test_clip_large_multithreaded() -> None:
    x = (np.random.default_rng(6).standard_normal((2, 32, 40, 40)) * 8).astype(np.float32)
    model, feeds = _clip_model(x, 0.0, 6.0, 13)
    m = ox.load(model, strip_softmax=False)
    for threads in (1, 2):
        _same(m.predict(x, threads=threads), ort_run(model, feeds)[0])


def test_clip_int64() -> None:
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="iclip")
    graph = helper.make_graph(
        [node],
        "iclip",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [6])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
        initializer=[
            numpy_helper.from_array(np.array(-2, np.int64), "lo"),
            numpy_helper.from_array(np.array(3, np.int64), "hi"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    mb = model.SerializeToString()
    x = np.array([-10, -2, 0, 3, 4, np.iinfo(np.int64).max], np.int64)
    got = ox.load(mb, strip_softmax=False).predict({"x": x})
    np.testing.assert_array_equal(got, ort_run(mb, {"x": x})[0])


def test_clip_bound_must_be_scalar() -> None:
    x = np.zeros((2, 3), np.float32)
    model = single_node(
        "Clip",
        inputs={"x": x},
        initializers={"lo": np.zeros(3, np.float32)},
        opset=13,
        node_inputs=["x", "lo"],
    )
    with pytest.raises(ValueError, match=r"node 'clip_node' \(Clip\).*min must be a scalar, got shape \(3,\)"):
        ox.load(model, strip_softmax=False)


def test_clip_bound_dtype_mismatch() -> None:
    x = np.zeros((2, 3), np.float32)
    model = single_node(
        "Clip",
        inputs={"x": x},
        initializers={"hi": np.array(3, np.int64)},
        opset=13,
        node_inputs=["x", "", "hi"],
    )
    with pytest.raises(ox.ModelFormatError, match=r"clip_node.*max has dtype int64, input has float32"):
        ox.load(model, strip_softmax=False)


# ---- kinds and errors -------------------------------------------------------------------------


@pytest.mark.parametrize("op", list(UNARY))
def test_kind_is_activation(op: str) -> None:
    x = np.zeros((2, 3), np.float32)
    m = ox.load(single_node(op, inputs={"x": x}), strip_softmax=False)
    assert m.nodes == [(f"{op.lower()}_node", op, "activation")]


@pytest.mark.parametrize("op", list(UNARY))
def test_int_input_is_rejected(op: str) -> None:
    node = helper.make_node(op, ["x"], ["y"], name="bad")
    graph = helper.make_graph(
        [node],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    with pytest.raises(ox.ModelFormatError, match=rf"node 'bad' \({op}\).*float32.*int64"):
        ox.load(model.SerializeToString(), strip_softmax=False)


def test_relu_specials() -> None:
    """Relu is not in this file's ops, but its NaN/inf behaviour must match like theirs."""
    model = single_node("Relu", inputs={"x": SPECIALS})
    _same(ox.load(model, strip_softmax=False).predict(SPECIALS), ort_run(model, {"x": SPECIALS})[0])
