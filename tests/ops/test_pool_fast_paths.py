"""MaxPool's 2x2 stride-2 unpadded path (kernels/pool.cpp, the small CNNs' pool) against
onnxruntime: odd and even sizes (the last row / column dropped in floor mode), tiny and batched
maps, NaN and infinities among the entries, 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxplain as ox
from tests.helpers.onnx_builders import ort_run


def _pool(shape: tuple[int, ...]) -> bytes:
    g = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (1, 3, 4, 4), (2, 5, 7, 9), (3, 2, 3, 2), (64, 32, 8, 8),
                                   (64, 32, 4, 4), (3, 1, 6, 4), (2, 4, 16, 33)])
@pytest.mark.parametrize("special", [False, True])
def test_max_pool_2x2(shape: tuple[int, ...], threads: int, special: bool) -> None:
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    if special:
        flat = x.reshape(-1)
        idx = rng.choice(flat.size, size=max(1, flat.size // 7), replace=False)
        flat[idx[0::3]] = np.inf
        flat[idx[1::3]] = -np.inf
        flat[idx[2::3]] = -0.0
    data = _pool(shape)
    expected = ort_run(data, {"x": x})[0]
    got = ox.load(data, strip_softmax=False).run({"x": x}, threads=threads)[0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 6, 18), (3, 1, 5, 11), (1, 1, 2, 16), (5, 7, 4, 4),
                                   (3, 3, 6, 4), (1, 1, 2, 4), (1, 3, 5, 4)])
def test_max_pool_2x2_nan_and_signed_zero_order(shape: tuple[int, ...], threads: int) -> None:
    """The vectorised 2x2/2 loops (four outputs at a time, a scalar tail; 4-wide maps two rows at a
    time, an odd last row alone) keep the generic
    semantics exactly: taps in the order (0,0), (0,1), (1,0), (1,1), each replacing the running
    maximum only when strictly greater, so NaN never wins and the first of +0 / -0 stays. Checked
    bit for bit against numpy doing the same (onnxruntime differs on NaN)."""
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    idx = rng.choice(flat.size, size=flat.size // 3, replace=False)
    flat[idx[0::4]] = np.nan
    flat[idx[1::4]] = 0.0
    flat[idx[2::4]] = -0.0
    flat[idx[3::4]] = -np.inf
    n, c, h, w = shape
    oh, ow = h // 2, w // 2
    v = x[:, :, : 2 * oh, : 2 * ow]
    m = np.full((n, c, oh, ow), -np.inf, dtype=np.float32)
    for t in (v[:, :, 0::2, 0::2], v[:, :, 0::2, 1::2], v[:, :, 1::2, 0::2], v[:, :, 1::2, 1::2]):
        m = np.where(t > m, t, m)
    got = ox.load(_pool(shape), strip_softmax=False).run({"x": x}, threads=threads)[0]
    np.testing.assert_array_equal(got.view(np.uint32), m.view(np.uint32))


def _pool_grad_ref(x: np.ndarray, cot: np.ndarray, k: tuple[int, int], s: tuple[int, int],
                   p: tuple[int, int]) -> np.ndarray:
    """MaxPool's gradient in numpy, written from its semantics: each window's taps in row-major
    order, the running maximum replaced only by a strictly greater entry (so NaN never wins, ties
    and -0 / +0 go to the first); a window with no winner (all -inf or NaN) routes its cotangent
    to its first in-bounds tap; contributions summed in output order."""
    n, c, h, w = x.shape
    oh, ow = cot.shape[2:]
    g = np.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            xp, gp = x[b, ch], g[b, ch]
            for oy in range(oh):
                for ox_ in range(ow):
                    best, at = -np.inf, None
                    for ky in range(k[0]):
                        iy = oy * s[0] - p[0] + ky
                        if not 0 <= iy < h:
                            continue
                        for kx in range(k[1]):
                            ix = ox_ * s[1] - p[1] + kx
                            if 0 <= ix < w and xp[iy, ix] > best:
                                best, at = xp[iy, ix], (iy, ix)
                    if at is None:
                        at = (max(0, oy * s[0] - p[0]), max(0, ox_ * s[1] - p[1]))
                    gp[at] += cot[b, ch, oy, ox_]
    return g


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("shape", "k", "s", "p"), [
    ((2, 3, 17, 23), (3, 3), (2, 2), (1, 1)),   # ResNet's stem pool, odd sizes: vector and scalar tails
    ((1, 2, 16, 40), (3, 3), (2, 2), (1, 1)),   # rows of 20 outputs: several vectors of four
    ((2, 2, 9, 18), (2, 2), (2, 2), (0, 0)),
    ((1, 3, 6, 31), (2, 3), (1, 2), (0, 1)),    # stride 2 along the row only
    ((1, 1, 5, 9), (3, 3), (2, 2), (1, 1)),     # the last vector would read past the plane
])
@pytest.mark.parametrize("special", [False, True])
def test_max_pool_stride2_gradient(shape, k, s, p, threads: int, special: bool) -> None:
    """The stride-2 backward loop (four windows from eight consecutive floats) against the numpy
    semantics above, bit for bit, with NaN, infinities, signed zeros and ties among the entries."""
    rng = np.random.default_rng(sum(shape) + k[1] + s[0])
    x = rng.integers(-2, 3, size=shape).astype(np.float32) if special else rng.standard_normal(shape).astype(np.float32)
    if special:
        flat = x.reshape(-1)
        idx = rng.choice(flat.size, size=flat.size // 3, replace=False)
        flat[idx[0::5]] = np.nan
        flat[idx[1::5]] = -np.inf
        flat[idx[2::5]] = -0.0
        flat[idx[3::5]] = np.inf
        flat[: shape[3]] = np.nan  # a first row of NaN: windows that only see NaN or padding
    g = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(k), strides=list(s),
                          pads=[p[0], p[1], p[0], p[1]])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    m = ox.load(data, strip_softmax=False)
    y = m.run({"x": x}, threads=threads)[0]
    cot = rng.standard_normal(y.shape).astype(np.float32)
    (got,) = m.vjp(x, cot, threads=threads)
    np.testing.assert_array_equal(got, _pool_grad_ref(x, cot, k, s, p))
