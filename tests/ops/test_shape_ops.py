"""Shape-arithmetic ops against onnxruntime: Constant, Shape, Gather, Cast, Slice, and the chains
exporters build from them (PyTorch's legacy Shape -> Gather -> Unsqueeze -> Concat -> Reshape for
x.view(x.size(0), -1), the dynamo exporter's Shape -> Squeeze -> Reshape -> Concat -> Reshape) on
a dynamic batch, run at batch sizes 1, 3 and 0."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import ort_run
from tests.helpers.torch_models import export

ONNX_TYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}
I64_MAX = np.iinfo(np.int64).max
I64_MIN = np.iinfo(np.int64).min


def _model(
    nodes: list[Any],
    inputs: dict[str, np.ndarray],
    outputs: dict[str, int],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    dynamic: tuple[str, ...] = (),
) -> bytes:
    """Graph inputs typed and shaped like the arrays (dim 0 symbolic for names in `dynamic`)."""
    ins = [
        helper.make_tensor_value_info(
            k, ONNX_TYPE[v.dtype], (["N", *v.shape[1:]] if k in dynamic else list(v.shape))
        )
        for k, v in inputs.items()
    ]
    outs = [helper.make_tensor_value_info(k, t, None) for k, t in outputs.items()]
    inits = [numpy_helper.from_array(v, name=k) for k, v in (initializers or {}).items()]
    m = helper.make_model(
        helper.make_graph(nodes, "test", ins, outs, initializer=inits),
        opset_imports=[helper.make_opsetid("", opset)],
    )
    m.ir_version = 8
    return m.SerializeToString()


def _check(model: bytes, feeds: dict[str, np.ndarray], same_dtype: bool = True) -> list[np.ndarray]:
    """onnxplain's outputs equal onnxruntime's exactly (values; dtypes too unless told not to)."""
    expected = ort_run(model, feeds)
    got = ox.load(model, strip_softmax=False).run(feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if same_dtype:
            assert g.dtype == e.dtype, f"dtype {g.dtype} != {e.dtype}"
        assert g.shape == e.shape, f"shape {g.shape} != {e.shape}"
        np.testing.assert_array_equal(g, e.astype(g.dtype))
    return got


def _data(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    n = int(np.prod(shape))
    return (np.arange(n) - n // 3).reshape(shape).astype(dtype)


# ---------------------------------------------------------------- Constant


@pytest.mark.parametrize(
    "attrs,expect",
    [
        ({"value_float": 2.5}, np.array(2.5, np.float32)),
        ({"value_floats": [1.0, -2.0, 3.5]}, np.array([1.0, -2.0, 3.5], np.float32)),
        ({"value_int": -7}, np.array(-7, np.int64)),
        ({"value_ints": [3, 0, -1]}, np.array([3, 0, -1], np.int64)),
        ({"value": numpy_helper.from_array(_data((2, 3)))}, _data((2, 3))),
        ({"value": numpy_helper.from_array(np.array([[5, -6]], np.int64))}, np.array([[5, -6]], np.int64)),
    ],
    ids=["value_float", "value_floats", "value_int", "value_ints", "value_f32", "value_i64"],
)
def test_constant_attributes(attrs, expect):
    node = helper.make_node("Constant", [], ["c"], name="const", **attrs)
    model = _model([node], {}, {"c": ONNX_TYPE[expect.dtype]}, opset=13)
    (ref,) = ort_run(model, {})
    np.testing.assert_array_equal(ref, expect)
    (got,) = ox.load(model, strip_softmax=False).run({})
    assert got.dtype == expect.dtype and got.shape == expect.shape
    np.testing.assert_array_equal(got, expect)


def test_constant_feeds_arithmetic_and_is_folded():
    x = _data((2, 3))
    nodes = [
        helper.make_node("Constant", [], ["c"], value_floats=[1.0, 2.0, 3.0]),
        helper.make_node("Add", ["x", "c"], ["y"]),
    ]
    model = _model(nodes, {"x": x}, {"y": TensorProto.FLOAT}, opset=13)
    _check(model, {"x": x})
    assert "Constant" not in ox.load(model, strip_softmax=False).op_counts


@pytest.mark.parametrize(
    "attr",
    [
        {"sparse_value": helper.make_sparse_tensor(
            numpy_helper.from_array(np.array([1.0], np.float32)), numpy_helper.from_array(np.array([1], np.int64)), [3]
        )},
        {"value_string": "abc"},
        {"value_strings": ["a", "b"]},
    ],
    ids=["sparse_value", "value_string", "value_strings"],
)
def test_constant_unsupported_attributes_refused(attr):
    node = helper.make_node("Constant", [], ["c"], name="const", **attr)
    model = _model([node, helper.make_node("Identity", ["c"], ["y"])], {}, {"y": TensorProto.FLOAT}, opset=13)
    name = next(iter(attr))
    with pytest.raises(ox.ModelFormatError, match=name):
        ox.load(model, strip_softmax=False)


def test_constant_two_values_refused():
    node = helper.make_node("Constant", [], ["y"], name="const", value_float=1.0, value_int=2)
    with pytest.raises(ox.ModelFormatError, match=r"'const'.*exactly one of the attributes"):
        ox.load(_model([node], {}, {"y": TensorProto.FLOAT}, opset=13), strip_softmax=False)


# ---------------------------------------------------------------- Shape


@pytest.mark.parametrize(
    "start,end", [(None, None), (1, None), (-1, None), (0, -1), (-3, 2), (5, 10), (2, 1), (-10, 10)], ids=str
)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (0, 3), (7,)], ids=str)
def test_shape_start_end(shape, start, end):
    x = _data(shape)
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    node = helper.make_node("Shape", ["x"], ["y"], **attrs)
    _check(_model([node], {"x": x}, {"y": TensorProto.INT64}, opset=15), {"x": x})


@pytest.mark.parametrize("opset", [1, 13, 19, 21])
@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["f32", "i64"])
def test_shape_opsets(opset, dtype):
    x = _data((3, 1, 2), dtype)
    node = helper.make_node("Shape", ["x"], ["y"])
    _check(_model([node], {"x": x}, {"y": TensorProto.INT64}, opset=opset), {"x": x})


def test_shape_kind_is_shape_of():
    # A dynamic batch keeps the node (a fully known shape is folded at load).
    x = _data((2, 3))
    model = _model([helper.make_node("Shape", ["x"], ["y"])], {"x": x}, {"y": TensorProto.INT64}, dynamic=("x",))
    m = ox.load(model, strip_softmax=False)
    assert [k for _, _, k in m.nodes] == ["shape"]
    for n in (1, 4, 0):
        np.testing.assert_array_equal(m.predict(_data((n, 3))), np.array([n, 3], np.int64))


def test_shape_of_static_input_is_folded():
    x = _data((2, 3))
    model = _model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Cast", ["s"], ["y"], to=1)],
                   {"x": x}, {"y": TensorProto.FLOAT})
    m = ox.load(model, strip_softmax=False)
    assert m.nodes == []
    _check(model, {"x": x})


# ---------------------------------------------------------------- Gather

GATHER_INDICES = [
    np.array(1, np.int64),
    np.array([0, -1], np.int64),
    np.array([[0, 1], [2, -1]], np.int64),
    np.array([2, 2, 0], np.int64),
    np.zeros((0,), np.int64),
    np.array([-2], np.int32),
]


@pytest.mark.parametrize("idx", GATHER_INDICES, ids=lambda a: f"{a.dtype}{list(a.shape)}")
@pytest.mark.parametrize("axis", [-3, -1, 0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["f32", "i64"])
def test_gather_grid(idx, axis, dtype):
    x = _data((3, 4, 5), dtype)
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    _check(_model([node], {"x": x}, {"y": ONNX_TYPE[x.dtype]}, {"i": idx}, opset=13), {"x": x})


def test_gather_runtime_indices():
    x, i = _data((4, 3)), np.array([[3, 0], [-1, 1]], np.int64)
    node = helper.make_node("Gather", ["x", "i"], ["y"])
    _check(_model([node], {"x": x, "i": i}, {"y": TensorProto.FLOAT}), {"x": x, "i": i})


def test_gather_large_rows_multithreaded(rng):
    x = rng.standard_normal((2, 50, 2000)).astype(np.float32)
    i = rng.integers(-50, 50, size=(40,)).astype(np.int64)
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=1)
    model = _model([node], {"x": x}, {"y": TensorProto.FLOAT}, {"i": i})
    got = ox.load(model, strip_softmax=False).run({"x": x}, threads=2)[0]
    np.testing.assert_array_equal(got, ort_run(model, {"x": x})[0])


def test_gather_out_of_range_constant_index_fails_at_load():
    x = _data((3, 4))
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=1)
    model = _model([node], {"x": x}, {"y": TensorProto.FLOAT}, {"i": np.array([0, 4], np.int64)})
    with pytest.raises(ValueError, match=r"'pick'.*index 4 is out of range for axis 1 of size 4"):
        ox.load(model, strip_softmax=False)


def test_gather_out_of_range_runtime_index():
    x = _data((3, 4))
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="pick")
    model = _model([node], {"x": x, "i": np.array([0, 0], np.int64)}, {"y": TensorProto.FLOAT})
    m = ox.load(model, strip_softmax=False)
    with pytest.raises(ValueError, match=r"'pick'.*index -4 is out of range for axis 0 of size 3"):
        m.run({"x": x, "i": np.array([1, -4], np.int64)})


def test_gather_out_of_range_on_dynamic_batch():
    # The axis size is only known at run time: index 2 is fine for batch 3, not for batch 2.
    x = _data((3, 4))
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="pick")
    model = _model([node], {"x": x}, {"y": TensorProto.FLOAT}, {"i": np.array(2, np.int64)}, dynamic=("x",))
    m = ox.load(model, strip_softmax=False)
    np.testing.assert_array_equal(m.predict(x), x[2])
    with pytest.raises(ValueError, match=r"'pick'.*index 2 is out of range for axis 0 of size 2"):
        m.predict(x[:2])


# ---------------------------------------------------------------- Cast

FLOAT_TARGETS = [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16]
SIGNED_TARGETS = [TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8]
UNSIGNED_TARGETS = [TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64]


def _cast_model(x: np.ndarray, to: int, opset: int = 13) -> bytes:
    node = helper.make_node("Cast", ["x"], ["y"], name="cast", to=to)
    return _model([node], {"x": x}, {"y": to}, opset=opset)


@pytest.mark.parametrize("to", FLOAT_TARGETS + SIGNED_TARGETS + [TensorProto.BOOL], ids=TensorProto.DataType.Name)
def test_cast_from_float(to):
    # Values exact in float16 and in int8, so narrowing (not emulated) does not show.
    x = np.array([[-3.75, -1.5, -0.0, 0.0, 0.25, 2.5, 100.0, -0.5]], np.float32)
    expected = ort_run(_cast_model(x, to), {"x": x})[0]
    got = ox.load(_cast_model(x, to), strip_softmax=False).predict(x)
    is_float = to in FLOAT_TARGETS
    assert got.dtype == (np.float32 if is_float else np.int64)
    np.testing.assert_array_equal(got, expected.astype(got.dtype))


@pytest.mark.parametrize("to", UNSIGNED_TARGETS, ids=TensorProto.DataType.Name)
def test_cast_float_to_unsigned(to):
    x = np.array([0.0, 0.9, 1.5, 200.7], np.float32)
    _check(_cast_model(x, to), {"x": x}, same_dtype=False)


@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL],
                         ids=TensorProto.DataType.Name)
def test_cast_from_int64(to):
    x = np.array([[-5, 0, 1, 7, 1 << 20]], np.int64)
    _check(_cast_model(x, to), {"x": x}, same_dtype=False)


@pytest.mark.parametrize("opset", [6, 9, 13, 19, 21])
def test_cast_opsets(opset):
    x = np.array([1.7, -2.2], np.float32)
    _check(_cast_model(x, TensorProto.INT64, opset), {"x": x})


def test_cast_opset1_type_name():
    x = np.array([1.7, -2.2], np.float32)
    node = helper.make_node("Cast", ["x"], ["y"], to="INT64")
    m = ox.load(_model([node], {"x": x}, {"y": TensorProto.INT64}, opset=1), strip_softmax=False)
    np.testing.assert_array_equal(m.predict(x), np.array([1, -2], np.int64))


def test_cast_nonfinite_to_int64_is_defined():
    x = np.array([np.nan, np.inf, -np.inf, 3e30, 5.0], np.float32)
    got = ox.load(_cast_model(x, TensorProto.INT64), strip_softmax=False).predict(x)
    np.testing.assert_array_equal(got, np.array([I64_MIN, I64_MIN, I64_MIN, I64_MIN, 5], np.int64))


@pytest.mark.parametrize("to", [TensorProto.STRING, TensorProto.COMPLEX64])
def test_cast_unsupported_target_refused(to):
    x = np.array([1.0], np.float32)
    with pytest.raises(ox.ModelFormatError, match=r"'cast'.*cast to ONNX type .* is not supported"):
        ox.load(_cast_model(x, to), strip_softmax=False)


# ---------------------------------------------------------------- Slice

SLICE_CASES = [
    ([1], [3], [0], None),
    ([0, 1], [I64_MAX, -1], [1, 2], None),
    ([-1], [I64_MIN], [0], [-1]),
    ([4], [-100], [1], [-2]),
    ([10], [20], [0], None),
    ([-2], [-1], [-1], None),
    ([0], [7], [2], [3]),
    ([5], [0], [2], [-2]),
    ([1, 2, 3], [4, 5, 6], None, None),
    ([0], [I64_MAX], [0], [I64_MAX]),
    ([I64_MAX], [I64_MIN], [-3], [-(2**62)]),
    ([-100], [100], [-2], [2]),
    ([3], [1], [1], None),
    ([0, 0, 0], [1, 1, 1], [0, 1, 2], [1, 1, 1]),
    ([2, -1], [-1, 0], [1, 0], [1, -1]),
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICE_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.int64], ids=["f32", "i64"])
def test_slice_grid(starts, ends, axes, steps, dtype):
    x = _data((5, 6, 7), dtype)
    inits = {"s": np.array(starts, np.int64), "e": np.array(ends, np.int64)}
    names = ["x", "s", "e"]
    if axes is not None:
        inits["a"] = np.array(axes, np.int64)
    if steps is not None:
        inits["t"] = np.array(steps, np.int64)
    names += ["a" if axes is not None else "", "t"] if steps is not None else (["a"] if axes is not None else [])
    node = helper.make_node("Slice", names, ["y"])
    _check(_model([node], {"x": x}, {"y": ONNX_TYPE[x.dtype]}, inits, opset=13), {"x": x})


@pytest.mark.parametrize(
    "shape,starts,ends,axes,steps",
    [((0, 4), [0], [2], [0], [1]), ((0, 4), [-1], [I64_MIN], [0], [-1]), ((3, 0), [1], [3], [0], [1]),
     ((3, 0), [2], [-5], [1], [-1])],
    ids=str,
)
def test_slice_zero_size(shape, starts, ends, axes, steps):
    x = _data(shape)
    inits = {k: np.array(v, np.int64) for k, v in (("s", starts), ("e", ends), ("a", axes), ("t", steps))}
    node = helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])
    _check(_model([node], {"x": x}, {"y": TensorProto.FLOAT}, inits, opset=13), {"x": x})


@pytest.mark.parametrize("opset", [1, 9])
def test_slice_opset1_attributes(opset):
    x = _data((4, 5))
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[1000, -1], axes=[0, 1])
    _check(_model([node], {"x": x}, {"y": TensorProto.FLOAT}, opset=opset), {"x": x})
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1], ends=[3])  # axes omitted
    _check(_model([node], {"x": x}, {"y": TensorProto.FLOAT}, opset=opset), {"x": x})


@pytest.mark.parametrize("opset", [10, 11, 13])
def test_slice_runtime_starts_ends(opset):
    x = _data((4, 5, 6))
    feeds = {"x": x, "s": np.array([1, -4], np.int64), "e": np.array([I64_MAX, -1], np.int64)}
    node = helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])
    model = _model([node], feeds, {"y": TensorProto.FLOAT}, {"a": np.array([0, 2], np.int64)}, opset=opset)
    assert ox.load(model, strip_softmax=False).outputs[0].shape == (None, 5, None)
    _check(model, feeds)


def test_slice_large_strided_multithreaded(rng):
    x = rng.standard_normal((4, 64, 40, 40)).astype(np.float32)
    inits = {"s": np.array([1, -1], np.int64), "e": np.array([63, 0], np.int64), "a": np.array([1, 3], np.int64),
             "t": np.array([2, -3], np.int64)}
    node = helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])
    model = _model([node], {"x": x}, {"y": TensorProto.FLOAT}, inits)
    got = ox.load(model, strip_softmax=False).run({"x": x}, threads=2)[0]
    np.testing.assert_array_equal(got, ort_run(model, {"x": x})[0])


def test_slice_step_zero_names_node():
    x = _data((4, 5))
    inits = {k: np.array(v, np.int64) for k, v in (("s", [0]), ("e", [3]), ("a", [1]), ("t", [0]))}
    node = helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"], name="cut")
    with pytest.raises(ValueError, match=r"'cut'.*step 0 on axis 1"):
        ox.load(_model([node], {"x": x}, {"y": TensorProto.FLOAT}, inits), strip_softmax=False)


def test_slice_length_mismatch_names_node():
    x = _data((4, 5))
    inits = {"s": np.array([0, 1], np.int64), "e": np.array([3], np.int64)}
    node = helper.make_node("Slice", ["x", "s", "e"], ["y"], name="cut")
    with pytest.raises(ValueError, match=r"'cut'.*differ in length"):
        ox.load(_model([node], {"x": x}, {"y": TensorProto.FLOAT}, inits), strip_softmax=False)


# ---------------------------------------------------------------- exporter chains


def _legacy_flatten_chain(opset: int, with_gemm: bool) -> bytes:
    """x.view(x.size(0), -1) as torch's legacy exporter writes it, on x of shape (N, 8, 2, 2)."""
    if opset >= 13:
        unsq = helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"])
        extra = {"ax0": np.array([0], np.int64)}
    else:
        unsq = helper.make_node("Unsqueeze", ["b"], ["b1"], axes=[0])
        extra = {}
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        unsq,
        helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["b1", "m1"], ["shp"], axis=0),
        helper.make_node("Reshape", ["x", "shp"], ["flat"], name="flatten"),
    ]
    inits = dict(extra)
    out = "flat"
    if with_gemm:
        rng = np.random.default_rng(1)
        inits["w"] = rng.standard_normal((5, 32)).astype(np.float32)
        inits["bias"] = rng.standard_normal(5).astype(np.float32)
        nodes.append(helper.make_node("Gemm", ["flat", "w", "bias"], ["y"], transB=1))
        out = "y"
    return _model(nodes, {"x": _data((2, 8, 2, 2))}, {out: TensorProto.FLOAT}, inits, opset=opset, dynamic=("x",))


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("with_gemm", [False, True], ids=["reshape", "gemm"])
def test_legacy_flatten_chain_dynamic_batch(opset, with_gemm, rng):
    model = _legacy_flatten_chain(opset, with_gemm)
    m = ox.load(model, strip_softmax=False)
    assert m.outputs[0].shape[0] is None
    for n in (1, 3):
        x = rng.standard_normal((n, 8, 2, 2)).astype(np.float32)
        expected = ort_run(model, {"x": x})[0]
        np.testing.assert_allclose(m.predict(x), expected, rtol=1e-5, atol=1e-5)
    # Batch 0: the chain computes [0, -1]; the 0 copies the empty batch dim (onnxruntime refuses).
    y0 = m.predict(np.zeros((0, 8, 2, 2), np.float32))
    assert y0.shape == ((0, 5) if with_gemm else (0, 32))


class _ViewNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(y.view(y.size(0), -1))


def test_torch_legacy_view_flatten_export():
    torch.manual_seed(0)
    net = _ViewNet().eval()
    m = ox.load(export(net, torch.randn(2, 3, 6, 6), dynamo=False), strip_softmax=False)
    for n in (1, 3, 0):
        x = torch.randn(n, 3, 6, 6)
        got = m.predict(x.numpy())
        if n == 0:  # torch itself refuses view(0, -1) on an empty batch
            assert got.shape == (0, 5)
            continue
        with torch.no_grad():
            expected = net(x).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_dynamo_view_flatten_chain(rng):
    # What torch.onnx.export(dynamo=True) writes for y.view(y.size(0), -1) (built by hand: the
    # dynamo exporter takes ~10 s to start).
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], start=0, end=1),
        helper.make_node("Squeeze", ["s"], ["n"]),
        helper.make_node("Constant", [], ["m1"], value_ints=[-1]),
        helper.make_node("Reshape", ["n", "m1"], ["n1"], allowzero=0),
        helper.make_node("Constant", [], ["m1b"], value_ints=[-1]),
        helper.make_node("Concat", ["n1", "m1b"], ["shp"], axis=0),
        helper.make_node("Reshape", ["x", "shp"], ["y"], name="view", allowzero=1),
    ]
    model = _model(nodes, {"x": _data((2, 4, 3))}, {"y": TensorProto.FLOAT}, opset=20, dynamic=("x",))
    m = ox.load(model, strip_softmax=False)
    for n in (1, 3):
        x = rng.standard_normal((n, 4, 3)).astype(np.float32)
        _check(model, {"x": x})
    # allowzero=1 makes [0, -1] invalid (the spec forbids 0 with -1 there), as in onnxruntime.
    with pytest.raises(ValueError, match=r"'view'.*-1 together with 0 while allowzero=1"):
        m.predict(np.zeros((0, 4, 3), np.float32))


@pytest.mark.parametrize(
    "arr",
    [np.array([1, -2], np.int32), np.array([True, False]), np.array([1.5], np.float64), np.array([0.5], np.float16)],
    ids=lambda a: str(a.dtype),
)
def test_constant_other_dtypes_map_to_ir_dtypes(arr):
    # The IR has float32 and int64: floating constants become float32, integer and bool int64.
    node = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(arr))
    model = _model([node], {}, {"c": helper.np_dtype_to_tensor_dtype(arr.dtype)}, opset=13)
    (ref,) = ort_run(model, {})
    (got,) = ox.load(model, strip_softmax=False).run({})
    assert got.dtype == (np.float32 if arr.dtype.kind == "f" else np.int64)
    np.testing.assert_array_equal(got, ref.astype(got.dtype))
