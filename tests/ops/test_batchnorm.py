"""BatchNormalization (inference) against onnxruntime, standalone (not folded into a linear op):
ranks 2..5, opsets, statistics as constants or as runtime inputs, after an input and after an
Add; training mode and mismatched channels are errors that name the node."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run, single_node


def _params(c: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "scale": rng.standard_normal(c).astype(np.float32),
        "bias": rng.standard_normal(c).astype(np.float32),
        "mean": rng.standard_normal(c).astype(np.float32),
        "var": rng.uniform(0.1, 2.0, c).astype(np.float32),
    }


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 2, 3), (3, 1, 7, 1)])
def test_batchnorm_standalone(shape: tuple[int, ...], opset: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    model = single_node(
        "BatchNormalization", inputs={"x": x}, initializers=_params(shape[1]), opset=opset, epsilon=1e-3
    )
    m = ox.load(model, strip_softmax=False)
    assert m.nodes[0][1:] == ("BatchNormalization", "normalization")
    assert_close(m.predict(x), ort_run(model, {"x": x})[0])


@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_batchnorm_tiny_variance(eps: float) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    p = _params(4)
    p["var"] = np.array([0.0, 1e-6, 1.0, 100.0], np.float32)
    model = single_node("BatchNormalization", inputs={"x": x}, initializers=p, epsilon=eps)
    assert_close(ox.load(model, strip_softmax=False).predict(x), ort_run(model, {"x": x})[0], rtol=1e-4)


def test_batchnorm_runtime_statistics() -> None:
    # Parameters as graph inputs: the coefficients are computed at run time.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    feeds = {"x": x, **_params(3)}
    model = single_node("BatchNormalization", inputs=feeds)
    m = ox.load(model, strip_softmax=False)
    assert_close(m.predict(feeds), ort_run(model, feeds)[0])


def test_batchnorm_after_add_dynamic_batch() -> None:
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Add", ["x", "r"], ["s"], name="residual"),
        helper.make_node("BatchNormalization", ["s", "scale", "bias", "mean", "var"], ["y"], name="bn"),
    ]
    inits = {"r": rng.standard_normal((1, 6, 1, 1)).astype(np.float32), **_params(6)}
    model = make_model(nodes, [("x", ["N", 6, 5, 5])], ["y"], inits)
    m = ox.load(model, strip_softmax=False)
    assert m.op_counts.get("BatchNormalization") == 1
    for batch in (1, 3):
        x = rng.standard_normal((batch, 6, 5, 5)).astype(np.float32)
        assert_close(m.predict(x), ort_run(model, {"x": x})[0])


def test_batchnorm_large_parallel() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 16, 32, 32)).astype(np.float32)
    model = single_node("BatchNormalization", inputs={"x": x}, initializers=_params(16))
    m = ox.load(model, strip_softmax=False)
    assert_close(m.predict(x, threads=2), ort_run(model, {"x": x})[0])


def test_batchnorm_training_mode_rejected() -> None:
    x = np.zeros((2, 3, 4), np.float32)
    model = single_node(
        "BatchNormalization", inputs={"x": x}, initializers=_params(3), opset=15, training_mode=1
    )
    with pytest.raises(ox.ModelFormatError, match=r"batchnormalization_node.*training mode.*eval mode"):
        ox.load(model, strip_softmax=False)


def test_batchnorm_channel_mismatch() -> None:
    x = np.zeros((2, 3, 4), np.float32)
    model = single_node("BatchNormalization", inputs={"x": x}, initializers=_params(5))
    with pytest.raises(ox.ModelFormatError, match=r"batchnormalization_node.*\(5,\).*3 channels"):
        ox.load(model, strip_softmax=False)


def test_batchnorm_rank1_rejected() -> None:
    x = np.zeros((3,), np.float32)
    model = single_node("BatchNormalization", inputs={"x": x}, initializers=_params(3))
    with pytest.raises(ox.ModelFormatError, match=r"batchnormalization_node.*rank >= 2"):
        ox.load(model, strip_softmax=False)


def test_batchnorm_opset7_per_activation() -> None:
    # spatial = 0 (opset 7): one parameter per (channel, position).
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    p = {k: rng.uniform(0.5, 1.5, (3, 4)).astype(np.float32) for k in ("scale", "bias", "mean", "var")}
    model = single_node("BatchNormalization", inputs={"x": x}, initializers=p, opset=7, spatial=0)
    assert_close(ox.load(model, strip_softmax=False).predict(x), ort_run(model, {"x": x})[0])
