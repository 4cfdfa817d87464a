"""Add/Sub/Mul/Div against onnxruntime: every broadcasting pattern (scalar, per channel, rank
mismatch, both sides broadcasting, size-0 dims), constant vs runtime operands, float32 specials,
int64 (truncating division, division by zero), dynamic dims, legacy opset-6 broadcasting, and
the errors (broadcast mismatch, mixed dtypes) naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run, single_node

OPS = ["Add", "Sub", "Mul", "Div"]

# (shape of a, shape of b): the broadcasting patterns exporters produce, plus the odd ones.
SHAPE_PAIRS = {
    "same": ((2, 3, 4), (2, 3, 4)),
    "scalar_b": ((2, 3, 4), ()),
    "scalar_a": ((), (2, 3, 4)),
    "one_b": ((2, 3, 4), (1,)),
    "channel": ((2, 3, 4, 5), (3, 1, 1)),
    "channel4d": ((2, 3, 4, 5), (1, 3, 1, 1)),
    "channel_first": ((3, 1, 1), (2, 3, 4, 5)),
    "last_dim": ((2, 3, 4), (4,)),
    "rank_mismatch": ((4,), (2, 3, 4)),
    "middle": ((2, 3, 4), (3, 1)),
    "both_sides": ((3, 1), (1, 4)),
    "both_sides_4d": ((2, 1, 4, 1), (1, 3, 1, 5)),
    "row_col": ((5, 1, 3), (4, 1)),
    "batch_bcast": ((1, 3, 4), (2, 3, 4)),
    "ones": ((1, 1), (1,)),
    "zero_dim": ((0, 3), (1, 3)),
    "zero_dim_b": ((2, 3), (0, 1, 3)),
    "zero_vs_one": ((2, 0, 4), (2, 1, 4)),
}


def _operands(sa, sb, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    return a, b


def _keep_away_from_zero(b: np.ndarray) -> np.ndarray:
    return np.where(np.abs(b) < 0.1, np.float32(0.5), b).astype(np.float32)


def _same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Exact-ish comparison that also holds for inf/NaN (assert_close scales by max|expected|)."""
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != expected {expected.dtype}"
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=0, equal_nan=True)


@pytest.mark.parametrize("pair", list(SHAPE_PAIRS))
@pytest.mark.parametrize("op", OPS)
def test_broadcast_grid_runtime_operands(op: str, pair: str) -> None:
    a, b = _operands(*SHAPE_PAIRS[pair])
    if op == "Div":
        b = _keep_away_from_zero(b)
    _check_runtime(op, a, b)


def _check_runtime(op: str, a: np.ndarray, b: np.ndarray) -> None:
    # Rank-0 arrays go in as initializers: the Python API turns a 0-d input into shape (1,).
    vals = {"a": a, "b": b}
    feeds = {k: v for k, v in vals.items() if v.ndim}
    inits = {k: v for k, v in vals.items() if not v.ndim}
    model = single_node(op, inputs=feeds, initializers=inits, node_inputs=["a", "b"])
    got = ox.load(model, strip_softmax=False).predict(feeds)
    assert_close(got, ort_run(model, feeds)[0])


@pytest.mark.parametrize(
    "pair,const_side",
    [(p, side) for p in ["channel", "last_dim", "both_sides", "channel_first", "zero_dim"] for side in "ab"]
    + [("scalar_b", "b"), ("scalar_a", "a")],
)
@pytest.mark.parametrize("op", OPS)
def test_constant_operand(op: str, pair: str, const_side: str) -> None:
    a, b = _operands(*SHAPE_PAIRS[pair], seed=1)
    if op == "Div":
        b = _keep_away_from_zero(b)
    vals = {"a": a, "b": b}
    var = "b" if const_side == "a" else "a"
    model = single_node(
        op, inputs={var: vals[var]}, initializers={const_side: vals[const_side]}, node_inputs=["a", "b"]
    )
    got = ox.load(model, strip_softmax=False).predict(vals[var])
    assert_close(got, ort_run(model, {var: vals[var]})[0])


@pytest.mark.parametrize(
    "sa,sb",
    [((2, 64, 32, 33), (64, 1, 1)), ((3, 50000), (3, 1)), ((70000,), ()), ((40, 3, 1000), (3, 1000))],
    ids=["channel", "rows", "scalar", "trailing"],
)
@pytest.mark.parametrize("op", ["Add", "Mul"])
def test_large_multithreaded(op: str, sa, sb) -> None:
    a, b = _operands(sa, sb, seed=2)
    model = single_node(op, inputs={"a": a}, initializers={"b": b})
    m = ox.load(model, strip_softmax=False)
    expected = ort_run(model, {"a": a})[0]
    for threads in (1, 2, 3):
        assert_close(m.predict(a, threads=threads), expected)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    rank=st.integers(0, 4),
    op=st.sampled_from(OPS),
)
def test_random_broadcast(data, rank: int, op: str) -> None:
    out = data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))

    def side():
        r = data.draw(st.integers(0, rank))
        return tuple(d if data.draw(st.booleans()) else 1 for d in out[rank - r :])

    a, b = _operands(side(), side(), seed=3)
    if op == "Div":
        b = _keep_away_from_zero(b)
    _check_runtime(op, a, b)


@pytest.mark.parametrize("op", OPS)
def test_float_specials(op: str) -> None:
    vals = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 3e38], np.float32)
    a = np.repeat(vals, vals.size).reshape(vals.size, vals.size)
    b = np.tile(vals, vals.size).reshape(vals.size, vals.size)
    model = single_node(op, inputs={"a": a, "b": b})
    with np.errstate(all="ignore"):
        _same(ox.load(model, strip_softmax=False).predict({"a": a, "b": b}), ort_run(model, {"a": a, "b": b})[0])


@pytest.mark.parametrize("opset", [7, 13, 14])
@pytest.mark.parametrize("op", OPS)
def test_opsets(op: str, opset: int) -> None:
    a, b = _operands((2, 3, 4), (3, 1), seed=4)
    b = _keep_away_from_zero(b)
    model = single_node(op, inputs={"a": a}, initializers={"b": b}, opset=opset)
    assert_close(ox.load(model, strip_softmax=False).predict(a), ort_run(model, {"a": a})[0])


@pytest.mark.parametrize("op", OPS)
def test_dynamic_batch(op: str) -> None:
    a, b = _operands((3, 4, 5), (4, 1), seed=5)
    b = _keep_away_from_zero(b)
    model = single_node(op, inputs={"a": a}, initializers={"b": b}, dynamic_batch=True)
    m = ox.load(model, strip_softmax=False)
    for n in (1, 3, 6):
        x = np.random.default_rng(n).standard_normal((n, 4, 5)).astype(np.float32)
        assert_close(m.predict(x), ort_run(model, {"a": x})[0])


def test_kinds() -> None:
    a, b = _operands((2, 3), (3,))
    for op, kind in [("Add", "sum"), ("Sub", "sum"), ("Mul", "product"), ("Div", "product")]:
        m = ox.load(single_node(op, inputs={"a": a, "b": b}), strip_softmax=False)
        assert m.nodes == [(f"{op.lower()}_node", op, kind)]


# ---- int64 ----------------------------------------------------------------------------------


def _int_model(op: str, sa, sb, opset: int = 13, const_b: np.ndarray | None = None) -> bytes:
    """int64 in, int64 out; b is a graph input, or an initializer when const_b is given."""
    node = helper.make_node(op, ["a", "b"], ["y"], name=f"{op.lower()}_node")
    inputs = [helper.make_tensor_value_info("a", TensorProto.INT64, list(sa))]
    if const_b is None:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.INT64, list(sb)))
    graph = helper.make_graph(
        [node],
        "int",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
        initializer=[] if const_b is None else [numpy_helper.from_array(const_b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("pair", ["same", "scalar_b", "last_dim", "both_sides", "rank_mismatch", "zero_dim"])
@pytest.mark.parametrize("op", OPS)
def test_int64(op: str, pair: str) -> None:
    sa, sb = SHAPE_PAIRS[pair]
    rng = np.random.default_rng(6)
    a = rng.integers(-1000, 1000, sa, dtype=np.int64)
    b = rng.integers(-20, 20, sb, dtype=np.int64)
    if op == "Div":
        b = np.where(b == 0, 7, b)
    if b.ndim == 0:  # 0-d graph inputs are not supported by the Python API: a constant instead
        model = _int_model(op, sa, sb, const_b=b)
        feeds = {"a": a}
    else:
        model = _int_model(op, sa, sb)
        feeds = {"a": a, "b": b}
    got = ox.load(model, strip_softmax=False).predict(feeds)
    _same(got, ort_run(model, feeds)[0])


def test_int64_div_truncates_toward_zero() -> None:
    a = np.array([7, -7, 7, -7, 0, 1, -1, np.iinfo(np.int64).max], np.int64)
    b = np.array([2, 2, -2, -2, 5, 3, 3, -1], np.int64)
    model = _int_model("Div", a.shape, b.shape)
    got = ox.load(model, strip_softmax=False).predict({"a": a, "b": b})
    _same(got, ort_run(model, {"a": a, "b": b})[0])
    np.testing.assert_array_equal(got, [3, -3, -3, 3, 0, 0, 0, -np.iinfo(np.int64).max])


def test_int64_div_by_zero_is_an_error() -> None:
    model = _int_model("Div", (3,), (3,))
    m = ox.load(model, strip_softmax=False)
    with pytest.raises(ValueError, match=r"node 'div_node' \(Div\): integer division by zero"):
        m.predict({"a": np.array([1, 2, 3]), "b": np.array([1, 0, 1])})
    # Still usable afterwards.
    np.testing.assert_array_equal(m.predict({"a": np.array([4, 6, 8]), "b": np.array([2, 3, 4])}), [2, 2, 2])


def test_int64_div_by_zero_constant_folded_at_load() -> None:
    node = helper.make_node("Div", ["a", "b"], ["y"], name="fold_div")
    graph = helper.make_graph(
        [
            node,
            helper.make_node("Cast", ["y"], ["z"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["x", "z"], ["out"]),
        ],
        "fold",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        initializer=[
            helper.make_tensor("a", TensorProto.INT64, [2], [4, 5]),
            helper.make_tensor("b", TensorProto.INT64, [2], [2, 0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    with pytest.raises(ValueError, match="fold_div.*integer division by zero"):
        ox.load(model.SerializeToString(), strip_softmax=False)


def test_int64_shape_arithmetic_folds() -> None:
    """Reshape to (N, C*H*W) computed from Shape -> Gather -> Mul, as the PyTorch exporter does."""
    x = np.random.default_rng(7).standard_normal((2, 3, 4, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Gather", ["s", "i1"], ["c"], axis=0),
        helper.make_node("Gather", ["s", "i2"], ["h"], axis=0),
        helper.make_node("Gather", ["s", "i3"], ["w"], axis=0),
        helper.make_node("Mul", ["c", "h"], ["ch"]),
        helper.make_node("Mul", ["ch", "w"], ["chw"]),
        helper.make_node("Sub", ["chw", "zero"], ["chw2"]),
        helper.make_node("Add", ["chw2", "zero"], ["chw3"]),
        helper.make_node("Div", ["chw3", "one"], ["chw4"]),
        helper.make_node("Concat", ["n", "chw4"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = {f"i{k}": np.array([k], np.int64) for k in range(4)}
    inits["zero"] = np.array([0], np.int64)
    inits["one"] = np.array([1], np.int64)
    model = make_model(nodes, [("x", ["N", 3, 4, 5])], ["y"], inits, opset=13)
    got = ox.load(model, strip_softmax=False).predict(x)
    assert_close(got, ort_run(model, {"x": x})[0])
    assert got.shape == (2, 60)


# ---- legacy opset 6 broadcasting --------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "sb,axis",
    [((3,), 1), ((3, 4), 1), ((5,), None), ((4, 5), None), ((), None), ((1,), 2), ((2, 3), 0), ((5,), -1)],
)
def test_legacy_opset6_broadcast(op: str, sb, axis) -> None:
    a, b = _operands((2, 3, 4, 5), sb, seed=8)
    b = _keep_away_from_zero(b)
    attrs = {"broadcast": 1} if axis is None else {"broadcast": 1, "axis": axis}
    model = single_node(op, inputs={"a": a}, initializers={"b": b}, opset=6, **attrs)
    ax = 0 if axis is None else (axis % 4)
    b_aligned = b.reshape(b.shape + (1,) * (4 - ax - b.ndim)) if axis is not None else b
    fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
    assert_close(ox.load(model, strip_softmax=False).predict(a), fn(a, b_aligned))


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
def test_broadcast_error_at_load(op: str) -> None:
    a, b = _operands((2, 3), (4,))
    model = single_node(op, inputs={"a": a}, initializers={"b": b})
    with pytest.raises(ValueError, match=rf"node '{op.lower()}_node' \({op}\).*cannot broadcast \(2, 3\) with \(4,\)"):
        ox.load(model, strip_softmax=False)


def test_broadcast_error_with_unknown_dims() -> None:
    a, b = _operands((2, 3), (4, 5))
    model = single_node("Add", inputs={"a": a}, initializers={"b": b}, dynamic_batch=True)
    with pytest.raises(ValueError, match=r"add_node.*cannot broadcast \(\?, 3\) with \(4, 5\)"):
        ox.load(model, strip_softmax=False)


def test_broadcast_error_at_run_time() -> None:
    """Both dims dynamic: the mismatch only shows when running."""
    a, b = _operands((2, 3), (1, 3))
    model = make_model(
        [helper.make_node("Mul", ["a", "b"], ["y"], name="late_mul")],
        [("a", ["N", 3]), ("b", ["M", 3])],
        ["y"],
    )
    m = ox.load(model, strip_softmax=False)
    assert_close(m.predict({"a": a, "b": b}), a * b)
    with pytest.raises(ValueError, match=r"late_mul.*cannot broadcast \(2, 3\) with \(4, 3\)"):
        m.predict({"a": a, "b": np.ones((4, 3), np.float32)})


@pytest.mark.parametrize("op", OPS)
def test_mixed_dtypes_error(op: str) -> None:
    node = helper.make_node(op, ["a", "b"], ["y"], name="mixed")
    graph = helper.make_graph(
        [node],
        "mixed",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("b", TensorProto.INT64, [3], [1, 2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    with pytest.raises(ox.ModelFormatError, match=r"node 'mixed'.*float32 and int64"):
        ox.load(model.SerializeToString(), strip_softmax=False)


@pytest.mark.parametrize(
    "sb,expected",
    [((3, 4, 5), (3, 4, 5)), ((1, 4, 5), (None, 4, 5)), ((5,), (None, 4, 5)), ((2, 3, 1, 5), (2, 3, 4, 5))],
)
def test_inferred_shape_with_unknown_batch(sb, expected) -> None:
    """An unknown dim against a known one > 1 can only be that one; against 1 it stays unknown."""
    a, b = _operands((3, 4, 5), sb)
    m = ox.load(single_node("Add", inputs={"a": a}, initializers={"b": b}, dynamic_batch=True), strip_softmax=False)
    assert m.outputs[0].shape == expected
