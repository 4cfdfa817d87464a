"""Conv's small-map path (kernels/small_conv: batch folded into one panel GEMM, im2col written into
panels from a zero-padded copy, weight packed once) against onnxruntime: channel counts and
positions that are not multiples of the panels (6 rows, 16 columns), run lengths 16 / out_w / 1
of the column builder, batch 1, 2, 7, 64, strides, pads (asymmetric too), dilations, groups,
bias or none, 1 and 2 threads, maps on both sides of the size threshold (1024 output positions
per image), the tiny maps it takes from Winograd, a runtime weight, and the input gradient that
runs as a convolution with the flipped weight."""

from __future__ import annotations

import numpy as np
import pytest

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run, single_node

THRESHOLD = 1024  # kernels::kSmallConvMaxPositions


def _model(x, w, b, const_w=True, **attrs):
    inputs = {"x": x}
    inits = {}
    (inits if const_w else inputs)["w"] = w
    if b is not None:
        inits["b"] = b
    return single_node("Conv", inputs, inits, opset=11, dynamic_batch=True,
                       node_inputs=["x", "w"] + (["b"] if b is not None else []), **attrs)


def _check(n, c, m, hw, k=(3, 3), groups=1, bias=True, threads=1, const_w=True, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    w = rng.standard_normal((m, c // groups, *k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    model = _model(x, w, b, const_w=const_w, group=groups, **attrs)
    feeds = {"x": x} if const_w else {"x": x, "w": w}
    expected = ort_run(model, feeds)[0]
    m_ = ox.load(model, strip_softmax=False)
    for _ in range(2):  # the second call reuses the cached packed weight and the thread scratch
        assert_close(m_.run(feeds, threads=threads)[0], expected, rtol=1e-5, atol=1e-6)
    return model, feeds, expected


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 2, 7, 64])
@pytest.mark.parametrize("c,m", [(3, 32), (5, 7), (13, 20), (32, 64)])
@pytest.mark.parametrize("hw", [(8, 8), (4, 4), (2, 2), (6, 7), (16, 16)])
def test_batches_channels_maps(threads, batch, c, m, hw):
    _check(batch, c, m, hw, threads=threads, pads=[1, 1, 1, 1], seed=batch + c)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "attrs",
    [
        {"strides": [1, 1], "pads": [0, 0, 0, 0]},
        {"strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"strides": [2, 1], "pads": [1, 0, 2, 1]},
        {"strides": [1, 2], "pads": [0, 2, 1, 0]},
        {"strides": [1, 1], "pads": [2, 2, 2, 2], "dilations": [2, 2]},
        {"strides": [1, 1], "pads": [3, 0, 0, 3]},
    ],
)
def test_strides_pads_groups_bias(threads, groups, bias, attrs):
    for batch in (1, 7):
        _check(batch, 6, 10, (9, 8), groups=groups, bias=bias, threads=threads, **attrs)


@pytest.mark.parametrize("k", [(1, 3), (3, 1), (5, 5), (2, 2)])
def test_kernel_shapes(k):
    _check(3, 4, 9, (8, 10), k=k, threads=2, pads=[1, 1, 1, 1])


@pytest.mark.parametrize("threads", [1, 2])
def test_conv1d(threads):
    # 1-D runs as a map of one row: positions are the columns.
    for length, stride in [(16, 1), (13, 1), (20, 2)]:
        _check(5, 4, 11, (length,), k=(3,), threads=threads, strides=[stride], pads=[1, 2])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("side,stride", [(32, 1), (33, 1), (64, 2), (65, 2)])
def test_threshold(threads, side, stride):
    # 32x32 output (1024 positions) is the largest map the path takes, 33x33 goes to im2col + sgemm;
    # with stride 2 the output of 64x64 is 32x32 (in), of 65x65 33x33 (out).
    out = (side + 2 - 3) // stride + 1
    assert (out * out <= THRESHOLD) == (side in (32, 64))
    _check(3, 5, 8, (side, side), threads=threads, strides=[stride, stride], pads=[1, 1, 1, 1])


@pytest.mark.parametrize("winograd", [True, False])
@pytest.mark.parametrize("side", [2, 4, 5, 6])
def test_winograd_sized_layers(winograd, side):
    # 64 channels in and out at batch 16: Winograd applies; tiles less than half used (2x2, 5x5)
    # go to the small path instead.
    rng = np.random.default_rng(side)
    x = rng.standard_normal((16, 64, side, side)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    model = _model(x, w, b, pads=[1, 1, 1, 1])
    expected = ort_run(model, {"x": x})[0]
    got = ox.load(model, strip_softmax=False, winograd=winograd).run({"x": x}, threads=2)[0]
    assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_runtime_weight():
    # A weight fed as an input is packed afresh on every call (never cached).
    _check(4, 8, 12, (8, 8), const_w=False, pads=[1, 1, 1, 1])
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8, 8, 8)).astype(np.float32)
    w1 = rng.standard_normal((12, 8, 3, 3)).astype(np.float32)
    model = _model(x, w1, None, const_w=False, pads=[1, 1, 1, 1])
    m = ox.load(model, strip_softmax=False)
    for _ in range(3):
        w = rng.standard_normal((12, 8, 3, 3)).astype(np.float32)
        feeds = {"x": x, "w": w}
        assert_close(m.run(feeds)[0], ort_run(model, feeds)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_input_gradient_through_flipped_conv(threads):
    # dX of a stride-1 conv with >= 16 input channels runs as a convolution of dY with the flipped
    # weight, on the small path for small maps: compare with the transposed convolution
    # (onnxruntime ConvTranspose is the exact adjoint).
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((20, 16, 3, 3)).astype(np.float32)
    model = _model(x, w, None, pads=[1, 1, 1, 1])
    m = ox.load(model, strip_softmax=False)
    gy = rng.standard_normal((5, 20, 8, 8)).astype(np.float32)
    gx = m.vjp({"x": x}, gy, threads=threads)[0]
    ct = single_node("ConvTranspose", {"gy": gy}, {"w": w}, opset=11, dynamic_batch=True,
                     node_inputs=["gy", "w"], pads=[1, 1, 1, 1])
    expected = ort_run(ct, {"gy": gy})[0]
    assert_close(gx, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c,m", [(64, 113), (72, 114)])  # 65088 and 73872 weight floats: either side of the cap
def test_weight_size_cap(threads, c, m):
    for batch in (1, 3):
        _check(batch, c, m, (7, 7), threads=threads, pads=[1, 1, 1, 1], seed=c)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("c", [1, 3, 4, 5])  # up to 4 input channels: the small-map path at any map size
@pytest.mark.parametrize("k,s,pad,hw", [(7, 2, 3, (64, 61)), (3, 1, 1, (40, 40)), (5, 2, 2, (33, 35))])
def test_few_channel_large_maps(threads, c, k, s, pad, hw):
    for batch in (1, 3):
        _check(batch, c, 24, hw, k=(k, k), threads=threads, strides=[s, s], pads=[pad] * 4, seed=c + k)
