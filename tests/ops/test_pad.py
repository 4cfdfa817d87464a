"""Pad against onnxruntime: opset 2 attributes, opset 11/13 inputs (pads, optional
constant_value), opset 18/19 axes input, negative pads that crop, 0-size dims, int64 data,
runtime pads; modes other than constant refused with the mode named; errors naming the node."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import ort_run

ONNX_TYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}


def _model(
    node: Any,
    inputs: dict[str, np.ndarray],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 13,
    dynamic: bool = False,
) -> bytes:
    x = inputs["x"]
    ins = [
        helper.make_tensor_value_info(
            k, ONNX_TYPE[v.dtype], (["N", *v.shape[1:]] if dynamic and k == "x" else list(v.shape))
        )
        for k, v in inputs.items()
    ]
    outs = [helper.make_tensor_value_info("y", ONNX_TYPE[x.dtype], None)]
    inits = [numpy_helper.from_array(v, name=k) for k, v in (initializers or {}).items()]
    m = helper.make_model(
        helper.make_graph([node], "test", ins, outs, initializer=inits), opset_imports=[helper.make_opsetid("", opset)]
    )
    m.ir_version = 8
    return m.SerializeToString()


def _pad_model(x, pads, value=None, axes=None, opset=13, mode=None, name="pad") -> bytes:
    """Pad with constant pads/value/axes inputs (opset 11+) or attributes (opset < 11)."""
    attrs = {"mode": mode} if mode else {}
    if opset < 11:
        if value is not None:
            attrs["value"] = float(value)
        node = helper.make_node("Pad", ["x"], ["y"], name=name, pads=list(pads), **attrs)
        return _model(node, {"x": x}, opset=opset)
    inits = {"p": np.array(pads, np.int64)}
    names = ["x", "p"]
    if value is not None:
        inits["v"] = np.array(value, x.dtype)
        names.append("v")
    if axes is not None:
        if value is None:
            names.append("")
        inits["a"] = np.array(axes, np.int64)
        names.append("a")
    node = helper.make_node("Pad", names, ["y"], name=name, **attrs)
    return _model(node, {"x": x}, inits, opset=opset)


def _check(model: bytes, feeds: dict[str, np.ndarray], threads: int = 1) -> np.ndarray:
    (expected,) = ort_run(model, feeds)
    (got,) = ox.load(model, strip_softmax=False).run(feeds, threads=threads)
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_array_equal(got, expected)
    return got


def _data(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    n = int(np.prod(shape))
    return (np.arange(n) + 1).reshape(shape).astype(dtype)


PAD_CASES = [
    ((2, 3), [1, 2, 0, 1]),
    ((2, 3), [0, 0, 0, 0]),
    ((2, 3, 4), [0, 1, 2, 0, 1, 2]),
    ((2, 3, 4), [-1, 0, -2, 0, 1, -1]),  # crop and pad mixed
    ((1, 2, 5, 5), [0, 0, 1, 1, 0, 0, 1, 1]),  # Conv-style spatial padding
    ((1, 2, 5, 5), [0, 0, -2, -1, 0, 0, -2, -3]),  # crop only
    ((4,), [3, 0]),
    ((4,), [-4, 0]),  # crop to empty
    ((0, 3), [1, 0, 1, 0]),  # pad an empty tensor
    ((2, 0), [0, 1, 0, 2]),
]


@pytest.mark.parametrize("shape,pads", PAD_CASES, ids=str)
@pytest.mark.parametrize("opset", [2, 11, 13, 18, 19])
def test_pad_grid(shape, pads, opset):
    x = _data(shape)
    _check(_pad_model(x, pads, value=None, opset=opset), {"x": x})
    _check(_pad_model(x, pads, value=-2.5, opset=opset), {"x": x})


@pytest.mark.parametrize("shape,pads", PAD_CASES[:6], ids=str)
def test_pad_int64(shape, pads):
    x = _data(shape, np.int64)
    _check(_pad_model(x, pads, value=None), {"x": x})
    _check(_pad_model(x, pads, value=-7), {"x": x})


@pytest.mark.parametrize(
    "axes,pads", [([1], [1, 2]), ([-1], [2, 0]), ([0, 2], [1, 0, -1, 3]), ([2, -3], [1, 1, 0, 2]), ([], [])], ids=str
)
@pytest.mark.parametrize("opset", [18, 19])
def test_pad_axes_input(axes, pads, opset):
    x = _data((2, 3, 4))
    _check(_pad_model(x, pads, axes=axes, opset=opset), {"x": x})
    _check(_pad_model(x, pads, value=9.0, axes=axes, opset=opset), {"x": x})


def test_pad_runtime_pads_and_value():
    x = _data((2, 3))
    for v in (np.array(4.0, np.float32), np.array([-1.5], np.float32)):  # scalar or one-element
        feeds = {"x": x, "p": np.array([0, 1, 2, -1], np.int64), "v": v}
        model = _model(helper.make_node("Pad", ["x", "p", "v"], ["y"]), feeds)
        _check(model, feeds)


def test_pad_infers_dynamic_batch():
    x = _data((2, 3, 4, 4))
    model = _model(
        helper.make_node("Pad", ["x", "p"], ["y"]),
        {"x": x},
        {"p": np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64)},
        dynamic=True,
    )
    m = ox.load(model, strip_softmax=False)
    assert m.outputs[0].shape == (None, 3, 6, 6)
    for n in (1, 3, 0):
        _check(model, {"x": _data((n, 3, 4, 4))})


def test_pad_large_multithreaded(rng):
    x = rng.standard_normal((2, 32, 56, 56)).astype(np.float32)
    _check(_pad_model(x, [0, 0, 1, 1, 0, 0, 1, 1], value=0.5), {"x": x}, threads=2)


@pytest.mark.parametrize(
    ("mode", "opset"),
    # wrap exists from opset 19 only.
    [(m, o) for m in ("reflect", "edge", "wrap") for o in (2, 13, 19) if m != "wrap" or o >= 19],
)
def test_pad_non_constant_mode_refused(mode, opset):
    x = _data((2, 3))
    with pytest.raises(ox.ModelFormatError, match=rf"'pad'.*Pad mode '{mode}' is not supported"):
        ox.load(_pad_model(x, [1, 1, 1, 1], mode=mode, opset=opset), strip_softmax=False)


def test_pad_explicit_constant_mode():
    x = _data((2, 3))
    _check(_pad_model(x, [1, 0, 0, 1], mode="constant"), {"x": x})


def test_pad_crop_too_much_names_node():
    x = _data((2, 3))
    with pytest.raises(ValueError, match=r"'pad'.*crop more than dim 1 of \(2, 3\)"):
        ox.load(_pad_model(x, [0, -2, 0, -2]), strip_softmax=False)


def test_pad_wrong_pads_length_names_node():
    x = _data((2, 3))
    with pytest.raises(ValueError, match=r"'pad'.*pads \[1, 1\] should hold 4 values"):
        ox.load(_pad_model(x, [1, 1]), strip_softmax=False)


def test_pad_kind_is_routing():
    x = _data((2, 3))
    m = ox.load(_pad_model(x, [1, 1, 1, 1]), strip_softmax=False)
    assert [k for _, _, k in m.nodes] == ["routing"]
