"""Pad against onnxruntime: opset 2 attributes, opset 11/13 inputs (pads, optional
constant_value), opset 18/19 axes input, negative pads that crop, 0-size dims, int64 data,
runtime pads; modes reflect/edge (opset 2+) and wrap (19+) with their VJP; errors naming the node."""

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


MODE_CASES = [
    ((2, 3), [1, 2, 0, 1]),
    ((3, 4), [2, 3, 2, 3]),  # pads up to dim - 1 (reflect's limit in onnxruntime)
    ((2, 3, 4), [0, 1, 2, 0, 1, 2]),
    ((1, 2, 5, 5), [0, 0, 1, 1, 0, 0, 1, 1]),
    ((1, 2, 5, 6), [0, 0, 2, 3, 0, 0, 4, 1]),
    ((5,), [4, 3]),
]


@pytest.mark.parametrize("shape,pads", MODE_CASES, ids=str)
@pytest.mark.parametrize(
    ("mode", "opset"),
    [(m, o) for m in ("reflect", "edge", "wrap") for o in (2, 11, 18, 19) if m != "wrap" or o >= 19],
)
def test_pad_modes_vs_ort(shape, pads, mode, opset):
    x = _data(shape)
    _check(_pad_model(x, pads, mode=mode, opset=opset), {"x": x})
    if opset >= 11:
        _check(_pad_model(x, pads, value=3.0, mode=mode, opset=opset), {"x": x})  # the constant is ignored


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_pad_modes_int64_and_axes(mode):
    x = _data((2, 4, 5), np.int64)
    _check(_pad_model(x, [1, 2, 0, 1, 3, 0], mode=mode, opset=13), {"x": x})
    xf = _data((2, 4, 5))
    _check(_pad_model(xf, [2, 1, 3, 2], axes=[2, -2], mode=mode, opset=18), {"x": xf})


def test_pad_edge_with_crop():
    x = _data((3, 5))
    _check(_pad_model(x, [2, -1, -1, 3], mode="edge", opset=13), {"x": x})


def test_pad_modes_large_multithreaded(rng):
    x = rng.standard_normal((4, 16, 64, 64)).astype(np.float32)
    for mode in ("reflect", "edge"):
        _check(_pad_model(x, [0, 0, 3, 2, 0, 0, 1, 3], mode=mode), {"x": x}, threads=3)


@pytest.mark.parametrize("opset", [2, 13, 18])
def test_pad_wrap_before_opset_19_refused(opset):
    x = _data((2, 3))
    with pytest.raises(ox.ModelFormatError, match=r"'pad'.*Pad mode 'wrap' is not supported.*from opset 19"):
        ox.load(_pad_model(x, [1, 1, 1, 1], mode="wrap", opset=opset), strip_softmax=False)


def test_pad_unknown_mode_refused():
    with pytest.raises(ox.ModelFormatError, match=r"'pad'.*Pad mode 'mirror' is not supported"):
        ox.load(_pad_model(_data((2, 3)), [1, 1, 1, 1], mode="mirror", opset=19), strip_softmax=False)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
def test_pad_mode_on_empty_axis_names_node(mode):
    x = np.zeros((2, 0), np.float32)
    with pytest.raises(ValueError, match=rf"'pad'.*cannot pad the empty axis 1.*{mode}"):
        ox.load(_pad_model(x, [0, 1, 0, 1], mode=mode, opset=19), strip_softmax=False)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
@pytest.mark.parametrize(("shape", "pads"), [((2, 3, 4, 5), [0, 1, 2, 3, 0, 0, 3, 1]), ((4, 3), [3, 2, 1, 2])])
def test_pad_mode_vjp_vs_torch_and_fd(mode, shape, pads, rng):
    """The VJP sums the cotangent of every copy back onto its source: torch autograd through
    numpy-equivalent index gathers (float64), and central differences of the onnxruntime forward."""
    import torch

    x = rng.standard_normal(shape).astype(np.float32)
    model = _pad_model(x, pads, mode=mode, opset=19)
    m = ox.load(model, strip_softmax=False)
    y = m.predict(x)
    cot = rng.standard_normal(y.shape).astype(np.float32)
    (got,) = m.vjp(x, cot)
    n = len(shape)
    idx = np.arange(x.size).reshape(shape)
    src = np.pad(idx, [(pads[k], pads[k + n]) for k in range(n)], mode=mode)
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    yt = t.reshape(-1)[torch.tensor(src.reshape(-1))].reshape(src.shape)
    (want,) = torch.autograd.grad(yt, [t], grad_outputs=torch.tensor(cot.astype(np.float64)))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=1e-6)
    # finite differences of onnxruntime's forward (linear: exact up to rounding) on a few entries
    eps = 1e-2
    for i in [tuple(int(v) for v in rng.integers(0, shape)) for _ in range(4)]:
        p, q = x.copy(), x.copy()
        p[i] += eps
        q[i] -= eps
        fd = float(((ort_run(model, {"x": p})[0] - ort_run(model, {"x": q})[0]) * cot).sum()) / (2 * eps)
        assert abs(got[i] - fd) <= 1e-3 * (1 + abs(fd))


def test_pad_mode_lrp_conserves(rng):
    """Routing: each copy's relevance goes back to its source, so the total is kept."""
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    m = ox.load(_pad_model(x, [0, 0, 2, 1, 0, 0, 1, 2], mode="reflect"), strip_softmax=False)
    R = ox.explainer(m, "lrp.epsilon").explain(x, target=7)
    y = m.predict(x).reshape(2, -1)[:, 7]
    np.testing.assert_allclose(R.reshape(2, -1).sum(1), y, rtol=1e-5)


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
