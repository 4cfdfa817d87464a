"""Softmax and LogSoftmax against onnxruntime: the opset < 13 semantics (coerce to 2D at `axis`,
default 1) and the opset >= 13 semantics (one axis, default -1) over every axis including
negative ones, large and extreme inputs (stability, NaN/inf), multithreading, kinds, errors."""

from __future__ import annotations

import numpy as np
import pytest

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run, single_node

OPS = ["Softmax", "LogSoftmax"]
SHAPE = (2, 3, 4, 5)


def _check(op: str, x: np.ndarray, opset: int, rtol: float = 1e-4, **attrs) -> np.ndarray:
    model = single_node(op, inputs={"x": x}, opset=opset, **attrs)
    got = ox.load(model, strip_softmax=False).predict(x)
    assert_close(got, ort_run(model, {"x": x})[0], rtol=rtol)
    return got


def _x(shape, scale: float = 3.0, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("axis", [None, -4, -3, -2, -1, 0, 1, 2, 3])
@pytest.mark.parametrize("opset", [1, 11, 13])
@pytest.mark.parametrize("op", OPS)
def test_axes_and_opsets(op: str, opset: int, axis) -> None:
    attrs = {} if axis is None else {"axis": axis}
    x = _x(SHAPE)
    got = _check(op, x, opset, **attrs)
    # The two semantics really differ: check the normalisation itself, not only the oracle.
    a = (1 if opset < 13 else -1) if axis is None else axis
    a = a % 4
    sum_axes = tuple(range(a, 4)) if opset < 13 else (a,)
    total = np.exp(got).sum(axis=sum_axes) if op == "LogSoftmax" else got.sum(axis=sum_axes)
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


@pytest.mark.parametrize("shape,axis", [((7,), 0), ((7,), -1), ((3, 7), 1), ((3, 7), 0), ((1, 1), -1), ((4, 1, 6), 1)])
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op", OPS)
def test_small_ranks(op: str, opset: int, shape, axis) -> None:
    _check(op, _x(shape, seed=1), opset, axis=axis)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op", OPS)
def test_zero_sized(op: str, opset: int) -> None:
    _check(op, np.zeros((0, 5), np.float32), opset, axis=1)
    _check(op, np.zeros((3, 0, 2), np.float32), opset, axis=-1)


@pytest.mark.parametrize("scale", [1e2, 1e4, 1e6])
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op", OPS)
def test_large_inputs_stay_finite(op: str, opset: int, scale: float) -> None:
    x = _x((4, 10), scale=scale, seed=2)
    x[0] += np.float32(scale)  # a shifted row: only differences matter
    got = _check(op, x, opset, rtol=1e-5)
    assert np.all(np.isfinite(got))


def test_log_softmax_1e4_precision() -> None:
    """(x - max) - log(sum) keeps the small log term next to 1e4-sized values."""
    x = np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0, -1e4]], np.float32)
    model = single_node("LogSoftmax", inputs={"x": x})
    got = ox.load(model, strip_softmax=False).predict(x)
    ref = x.astype(np.float64) - x.max() - np.log(np.exp(x.astype(np.float64) - x.max()).sum())
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, ort_run(model, {"x": x})[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op", OPS)
def test_nan_and_inf_rows(op: str, opset: int) -> None:
    x = np.array(
        [
            [np.nan, 1.0, 2.0],
            [np.inf, 1.0, 2.0],
            [-np.inf, 1.0, 2.0],
            [-np.inf, -np.inf, -np.inf],
            [np.inf, np.inf, 0.0],
            [3e38, -3e38, 0.0],
            [1.0, 2.0, 3.0],
        ],
        np.float32,
    )
    model = single_node(op, inputs={"x": x}, opset=opset, axis=1)
    got = ox.load(model, strip_softmax=False).predict(x)
    np.testing.assert_allclose(got, ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize(
    "shape,axis,opset",
    [
        ((64, 1000), -1, 13),
        ((8, 10, 64, 64), 1, 13),
        ((8, 10, 64, 64), 1, 11),
        ((4, 5, 3000), 0, 13),
        ((1, 10, 50, 61), 1, 13),
        ((2, 5, 130), 1, 13),
        ((1, 7, 65), -2, 13),
    ],
)
@pytest.mark.parametrize("op", OPS)
def test_large_multithreaded(op: str, shape, axis: int, opset: int) -> None:
    x = _x(shape, seed=3)
    model = single_node(op, inputs={"x": x}, opset=opset, axis=axis)
    m = ox.load(model, strip_softmax=False)
    expected = ort_run(model, {"x": x})[0]
    for threads in (1, 2, 3):
        assert_close(m.predict(x, threads=threads), expected)


@pytest.mark.parametrize("op", OPS)
def test_dynamic_batch(op: str) -> None:
    x = _x((3, 6, 5), seed=4)
    model = single_node(op, inputs={"x": x}, dynamic_batch=True, axis=1)
    m = ox.load(model, strip_softmax=False)
    for n in (1, 3, 7):
        xb = _x((n, 6, 5), seed=n)
        assert_close(m.predict(xb), ort_run(model, {"x": xb})[0])


@pytest.mark.parametrize("op", OPS)
def test_kind(op: str) -> None:
    x = _x((2, 3))
    m = ox.load(single_node(op, inputs={"x": x}), strip_softmax=False)
    assert m.nodes == [(f"{op.lower()}_node", op, "softmax")]


@pytest.mark.parametrize("axis", [4, -5])
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op", OPS)
def test_axis_out_of_range(op: str, opset: int, axis: int) -> None:
    x = _x(SHAPE)
    model = single_node(op, inputs={"x": x}, opset=opset, axis=axis)
    with pytest.raises(ValueError, match=rf"node '{op.lower()}_node' \({op}\).*axis {axis} is out of range.*rank 4"):
        ox.load(model, strip_softmax=False)
