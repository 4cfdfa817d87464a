"""The Python contract of Model.predict: input validation, conversions, special values."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import make_model, ort_run


@pytest.fixture(scope="module")
def conv_model() -> bytes:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r"], ["y"], name="gap"),
    ]
    return make_model(nodes, [("x", ["N", 3, 8, 8])], ["y"], {"w": w, "b": b})


def test_wrong_rank_says_expected_and_got(conv_model: bytes) -> None:
    m = ox.load(conv_model)
    with pytest.raises(ValueError, match=r"expects 4 dimensions \(N, 3, 8, 8\), got 3 .*\(3, 8, 8\).*x\[None\]"):
        m.predict(np.zeros((3, 8, 8), np.float32))


def test_wrong_channel_count(conv_model: bytes) -> None:
    m = ox.load(conv_model)
    with pytest.raises(ValueError, match=r"channel count should be 3, not 4"):
        m.predict(np.zeros((1, 4, 8, 8), np.float32))


def test_wrong_spatial_shape(conv_model: bytes) -> None:
    m = ox.load(conv_model)
    with pytest.raises(ValueError, match=r"expects shape \(N, 3, 8, 8\), got \(2, 3, 8, 9\)"):
        m.predict(np.zeros((2, 3, 8, 9), np.float32))


def test_float64_and_integers_are_converted(conv_model: bytes) -> None:
    m = ox.load(conv_model)
    x64 = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
    expected = ort_run(conv_model, {"x": x64.astype(np.float32)})[0]
    np.testing.assert_allclose(m.predict(x64), expected, rtol=1e-5, atol=1e-6)
    xi = np.random.default_rng(2).integers(-100, 100, (2, 3, 8, 8))
    expected = ort_run(conv_model, {"x": xi.astype(np.float32)})[0]
    np.testing.assert_allclose(m.predict(xi), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.predict(xi.astype(np.int8)), expected, rtol=1e-5, atol=1e-5)


def test_inexact_conversions_are_refused(conv_model: bytes) -> None:
    m = ox.load(conv_model)
    big = np.full((1, 3, 8, 8), 2**40, dtype=np.int64)
    with pytest.raises(ValueError, match=r"float32 cannot hold exactly"):
        m.predict(big)
    with pytest.raises(ValueError, match=r"beyond the float32 range"):
        m.predict(np.full((1, 3, 8, 8), 1e300))
    with pytest.raises(ValueError, match=r"needs a numeric array"):
        m.predict(np.full((1, 3, 8, 8), "a"))


def test_nan_and_inf_propagate_like_onnxruntime(conv_model: bytes) -> None:
    m = ox.load(conv_model)
    x = np.random.default_rng(3).standard_normal((3, 3, 8, 8)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    x[1, 1, 2, 2] = np.inf
    x[2, 2, 3, 3] = -np.inf
    expected = ort_run(conv_model, {"x": x})[0]
    got = m.predict(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)])
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-5, atol=1e-5)


def test_non_contiguous_equals_contiguous(conv_model: bytes) -> None:
    m = ox.load(conv_model)
    base = np.random.default_rng(4).standard_normal((3, 8, 8, 2)).astype(np.float32)
    x = np.asarray(base.transpose(3, 0, 1, 2))  # non-contiguous transpose view
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(m.predict(x), m.predict(np.ascontiguousarray(x)))
    np.testing.assert_allclose(m.predict(x), ort_run(conv_model, {"x": np.ascontiguousarray(x)})[0],
                               rtol=1e-5, atol=1e-6)


def test_empty_batch(conv_model: bytes) -> None:
    out = ox.load(conv_model).predict(np.zeros((0, 3, 8, 8), np.float32))
    assert out.shape == (0, 4, 1, 1)


def test_summary_and_repr(conv_model: bytes) -> None:
    m = ox.load(conv_model)
    s = m.summary()
    assert "x: float32[?, 3, 8, 8]" in s
    assert "Conv" in s and "kind: linear" in s
    assert "onnxplain.Model" in repr(m)


def test_unsupported_ops_listed_all_at_once() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="r"),
        helper.make_node("Shrink", ["a"], ["b"], name="shrink_1"),
        helper.make_node("Shrink", ["b"], ["c"], name="shrink_2"),
        helper.make_node("Custom", ["c"], ["y"], name="mine", domain="com.example"),
    ]
    with pytest.raises(ox.UnsupportedModelError) as info:
        ox.load(make_model(nodes, [("x", [1, 4])], ["y"]))
    msg = str(info.value)
    assert "Shrink (2 nodes: 'shrink_1', 'shrink_2')" in msg
    assert "com.example.Custom (1 node: 'mine')" in msg
    ops = {op for op, _, _ in info.value.ops}
    assert ops == {"Shrink", "Custom"}


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="cannot read the model file"):
        ox.load("/nonexistent/model.onnx")
