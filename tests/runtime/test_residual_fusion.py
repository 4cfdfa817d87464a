"""Conv followed by Add (a residual sum) and optionally Relu in a plain forward pass: the
convolution writes conv + shortcut (then max(., 0)) itself and the Add and Relu nodes are skipped
(runtime/model.cpp, Op::fuses_residual; kernels/conv.hpp Epilogue), as onnxruntime fuses Conv +
Add + Relu. Checked on every convolution kernel and threading path (im2col + sgemm per thread's
images, per tile and per layer; several images per GEMM; 1x1; the Winograd and small-map kernels,
which fuse only the rectifier and take the sum in a pass after) against onnxruntime, and bit for
bit against the same graph with the convolution's output also a graph output, which keeps the
separate nodes; with NaN among the inputs, both orders of the sum's terms. Where the other term
is broadcast, or the sum's output has another reader, or the other term is read later, the
result stays right; ONNXPLAIN_PROFILE shows which nodes ran."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run

# name: (batch, in, out, map, kernel, winograd)
CASES = {
    "direct": (3, 16, 32, 8, 3, True),
    "panel_rgb": (2, 3, 8, 8, 3, True),
    "winograd": (16, 64, 64, 16, 3, True),
    "im2col_tiles_b1": (1, 64, 64, 64, 3, False),  # 2 threads: a tile per thread; 1: tiles in turn
    "im2col_per_thread_images": (3, 64, 64, 40, 3, False),
    "im2col_several_images": (9, 8, 16, 40, 3, False),  # four images per GEMM, three GEMMs
    "pointwise_b1": (1, 64, 32, 30, 1, True),
    "pointwise_batched": (3, 64, 32, 9, 1, True),
    "strided_1x1": (2, 32, 64, 14, 1, True),
}


def _graph(case: str, *, relu: bool, shortcut_first: bool, expose_conv: bool = False,
           shortcut_shape: tuple[int, ...] | None = None, sum_read_again: bool = False,
           shortcut_read_later: bool = False) -> tuple[bytes, tuple[int, ...], tuple[int, ...]]:
    n, c, m, hw, k, _ = CASES[case]
    stride = 2 if case == "strided_1x1" else 1
    rng = np.random.default_rng(c * 100 + m + k)
    w = (rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) * 0.1
    out_hw = (hw + 2 * (k // 2) - k) // stride + 1
    s_shape = shortcut_shape or (n, m, out_hw, out_hw)
    terms = ["s", "c"] if shortcut_first else ["c", "s"]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[k // 2] * 4, strides=[stride, stride]),
             helper.make_node("Add", terms, ["z"])]
    last = "z"
    if relu:
        nodes.append(helper.make_node("Relu", ["z"], ["y"]))
        last = "y"
    outputs = [last]
    if sum_read_again:
        outputs.append("z")
    if shortcut_read_later:
        nodes.append(helper.make_node("Mul", [last, "s"], ["q"]))
        outputs.append("q")
    if expose_conv:
        outputs.append("c")
    x_shape = (n, c, hw, hw)
    return make_model(nodes, [("x", x_shape), ("s", s_shape)], outputs, {"w": w, "b": b}), x_shape, s_shape


def _inputs(x_shape, s_shape, special: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(sum(x_shape) + sum(s_shape))
    x = rng.standard_normal(x_shape).astype(np.float32)
    s = rng.standard_normal(s_shape).astype(np.float32)
    if special:
        x.reshape(-1)[:: max(1, x.size // 5)] = np.nan
        s.reshape(-1)[1:: max(1, s.size // 7)] = np.nan
        s.reshape(-1)[2:: max(1, s.size // 7)] = -0.0
    return {"x": x, "s": s}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_equals_separate_nodes(name: str, relu: bool, threads: int) -> None:
    wino = CASES[name][5]
    for shortcut_first in (False, True):
        fused, xs, ss = _graph(name, relu=relu, shortcut_first=shortcut_first)
        separate, _, _ = _graph(name, relu=relu, shortcut_first=shortcut_first, expose_conv=True)
        feeds = _inputs(xs, ss, special=False)
        got = ox.load(fused, strip_softmax=False, winograd=wino).run(feeds, threads=threads)[0]
        assert_close(got, ort_run(fused, feeds)[0], rtol=1e-4, atol=1e-4)
        for special in (False, True):
            feeds = _inputs(xs, ss, special)
            got = ox.load(fused, strip_softmax=False, winograd=wino).run(feeds, threads=threads)[0]
            ref = ox.load(separate, strip_softmax=False, winograd=wino).run(feeds, threads=threads)
            np.testing.assert_array_equal(got.view(np.uint32), ref[0].view(np.uint32))
            z = ref[1] + feeds["s"] if not shortcut_first else feeds["s"] + ref[1]
            np.testing.assert_array_equal(ref[0], np.where(z < 0, np.float32(0), z) if relu else z)


@pytest.mark.parametrize("variant", ["broadcast_shortcut", "batch_broadcast", "sum_read_again", "shortcut_read_later"])
@pytest.mark.parametrize("name", ["pointwise_b1", "winograd", "im2col_per_thread_images"])
def test_declined_or_partial_fusion_stays_right(name: str, variant: str) -> None:
    n, _, m, _, _, wino = CASES[name]
    kw: dict = {}
    if variant == "broadcast_shortcut":
        kw["shortcut_shape"] = (1, m, 1, 1)
    elif variant == "batch_broadcast":
        _, _, ss = _graph(name, relu=True, shortcut_first=False)
        kw["shortcut_shape"] = (n + 1, *ss[1:]) if n == 1 else (1, *ss[1:])
    elif variant == "sum_read_again":
        kw["sum_read_again"] = True
    else:
        kw["shortcut_read_later"] = True
    model, xs, ss = _graph(name, relu=True, shortcut_first=False, **kw)
    feeds = _inputs(xs, ss, special=False)
    got = ox.load(model, strip_softmax=False, winograd=wino).run(feeds, threads=2)
    want = ort_run(model, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=1e-4, atol=1e-4)


def _nodes_run(model: bytes, feeds: dict[str, np.ndarray], tmp_path) -> set[str]:
    path = tmp_path / "m.onnx"
    path.write_bytes(model)
    np.savez(tmp_path / "in.npz", **feeds)
    code = ("import numpy as np, onnxplain as ox, sys; f = dict(np.load(sys.argv[2]));"
            "ox.load(sys.argv[1], strip_softmax=False).run(f, threads=2)")
    env = dict(os.environ, ONNXPLAIN_PROFILE="2")
    err = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "in.npz")], env=env,
                         capture_output=True, text=True, check=True).stderr
    forward = err.split("[onnxplain profile] forward")[1]
    return {line.split()[0] for line in forward.splitlines()[1:] if line.strip()}


def test_the_sum_and_the_rectifier_do_not_run(tmp_path) -> None:
    model, xs, ss = _graph("pointwise_b1", relu=True, shortcut_first=True)
    assert _nodes_run(model, _inputs(xs, ss, False), tmp_path) == {"Conv"}
    # A broadcast shortcut is declined: the sum runs, and writes the rectifier itself.
    model, xs, ss = _graph("pointwise_b1", relu=True, shortcut_first=True, shortcut_shape=(1, 32, 1, 1))
    assert _nodes_run(model, _inputs(xs, ss, False), tmp_path) == {"Conv", "Add"}
    # The sum read again: the Add is fused, the Relu is not.
    model, xs, ss = _graph("pointwise_b1", relu=True, shortcut_first=True, sum_read_again=True)
    assert _nodes_run(model, _inputs(xs, ss, False), tmp_path) == {"Conv", "Relu"}
