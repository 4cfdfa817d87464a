"""Conv followed by Relu in a plain forward pass: the convolution writes max(y, 0) itself and the
Relu node is skipped (runtime/model.cpp, Op::fuses_rectifier). Checked on every convolution
kernel (the direct and panel small-map modes, Winograd, im2col + sgemm, 1x1, depthwise) against
onnxruntime, and bit for bit against the same graph with the convolution's output also a graph
output, which keeps the separate Relu pass: NaN and -0 must pass the fused rectifier as they pass
the Relu op. Where the convolution's output has another reader, nothing is fused."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run

# name: (batch, in, out, map, kernel, group, winograd) - which kernel each exercises
CASES = {
    "direct": (3, 16, 32, 8, 3, 1, True),
    "panel_rgb": (2, 3, 8, 8, 3, 1, True),
    "panel_small_depth": (5, 4, 20, 6, 3, 1, True),
    "winograd": (16, 64, 64, 16, 3, 1, True),
    "im2col_large_map": (1, 8, 8, 40, 3, 1, True),
    "im2col_no_winograd": (2, 64, 64, 40, 3, 1, False),
    "pointwise": (2, 64, 32, 9, 1, 1, True),
    "depthwise": (2, 8, 8, 10, 3, 8, True),
}


def _graph(c: int, m: int, k: int, group: int, also_conv_out: bool, extra_reader: bool, shape) -> bytes:
    rng = np.random.default_rng(c * 100 + m)
    w = (rng.standard_normal((m, c // group, k, k)) / np.sqrt(c // group * k * k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) * 0.1
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[k // 2] * 4, group=group),
             helper.make_node("Relu", ["c"], ["y"])]
    outputs = ["y"]
    if extra_reader:
        nodes.append(helper.make_node("Add", ["c", "y"], ["z"]))
        outputs.append("z")
    if also_conv_out:
        outputs.append("c")
    return make_model(nodes, [("x", shape)], outputs, {"w": w, "b": b})


def _input(shape, special: bool) -> np.ndarray:
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    if special:
        x.reshape(-1)[:: max(1, x.size // 5)] = np.nan
    return x


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_equals_separate_relu(name: str, threads: int) -> None:
    n, c, m, hw, k, group, wino = CASES[name]
    shape = (n, c, hw, hw)
    fused = _graph(c, m, k, group, also_conv_out=False, extra_reader=False, shape=shape)
    separate = _graph(c, m, k, group, also_conv_out=True, extra_reader=False, shape=shape)
    x = _input(shape, special=False)
    got = ox.load(fused, strip_softmax=False, winograd=wino).run({"x": x}, threads=threads)[0]
    assert_close(got, ort_run(fused, {"x": x})[0], rtol=1e-4, atol=1e-4)
    for special in (False, True):
        x = _input(shape, special)
        got = ox.load(fused, strip_softmax=False, winograd=wino).run({"x": x}, threads=threads)[0]
        ref_y, ref_c = ox.load(separate, strip_softmax=False, winograd=wino).run({"x": x}, threads=threads)
        np.testing.assert_array_equal(got.view(np.uint32), ref_y.view(np.uint32))
        np.testing.assert_array_equal(ref_y, np.where(ref_c < 0, np.float32(0), ref_c))
        if special:
            assert np.isnan(got).any()  # NaN went through the fused rectifier as through Relu


@pytest.mark.parametrize("name", ["direct", "winograd", "pointwise"])
def test_no_fusion_when_the_conv_output_is_read_again(name: str) -> None:
    n, c, m, hw, k, group, wino = CASES[name]
    shape = (n, c, hw, hw)
    model = _graph(c, m, k, group, also_conv_out=False, extra_reader=True, shape=shape)
    x = _input(shape, special=False)
    y, z = ox.load(model, strip_softmax=False, winograd=wino).run({"x": x}, threads=2)
    ry, rz = ort_run(model, {"x": x})
    assert_close(y, ry, rtol=1e-4, atol=1e-4)
    assert_close(z, rz, rtol=1e-4, atol=1e-4)  # c + relu(c): c itself was not rectified
    assert (z < 0).any()


# A sum followed by Relu (no convolution before it, or a broadcast term the convolution declines):
# Add and Sub write max(a +- b, 0) themselves, in one pass for operands of the output's shape and
# in a second pass after a broadcast (ops/binary_arith.hpp).
SUM_SHAPES = {
    "same": ((4, 8, 5, 5), (4, 8, 5, 5)),
    "broadcast_rhs": ((4, 8, 5, 5), (1, 8, 1, 1)),
    "broadcast_lhs": ((8, 1, 1), (4, 8, 5, 5)),
    "large": ((3, 64, 33, 33), (3, 64, 33, 33)),  # several chunks per thread
}


def _sum_graph(op: str, a_shape, b_shape, expose_sum: bool) -> bytes:
    nodes = [helper.make_node(op, ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    return make_model(nodes, [("a", a_shape), ("b", b_shape)], ["y", "s"] if expose_sum else ["y"], {})


def _sum_inputs(op: str, a_shape, b_shape, special: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(len(a_shape) + len(b_shape))
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    if special:
        a.reshape(-1)[:: max(1, a.size // 7)] = np.nan
        b.reshape(-1)[:: max(1, b.size // 3)] = 0.0
        if a_shape == b_shape:  # -0 + -0 and -0 - 0 are -0, which the rectifier keeps
            a.reshape(-1)[1::5] = -0.0
            b.reshape(-1)[1::5] = -0.0 if op == "Add" else 0.0
    return {"a": a, "b": b}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shapes", sorted(SUM_SHAPES))
@pytest.mark.parametrize("op", ["Add", "Sub"])
def test_sum_writes_its_rectifier(op: str, shapes: str, threads: int) -> None:
    a_shape, b_shape = SUM_SHAPES[shapes]
    fused = _sum_graph(op, a_shape, b_shape, expose_sum=False)
    separate = _sum_graph(op, a_shape, b_shape, expose_sum=True)
    for special in (False, True):
        feeds = _sum_inputs(op, a_shape, b_shape, special)
        got = ox.load(fused, strip_softmax=False).run(feeds, threads=threads)[0]
        ref_y, ref_s = ox.load(separate, strip_softmax=False).run(feeds, threads=threads)
        np.testing.assert_array_equal(got.view(np.uint32), ref_y.view(np.uint32))
        np.testing.assert_array_equal(ref_y, np.where(ref_s < 0, np.float32(0), ref_s))
        if not special:
            assert_close(got, ort_run(fused, feeds)[0], rtol=1e-6, atol=1e-6)
        else:
            assert np.isnan(got).any()
            assert a_shape != b_shape or (np.signbit(got) & (got == 0)).any()  # -0 kept


def test_sum_rectifier_fusion_skips_the_relu(tmp_path) -> None:
    import os
    import subprocess
    import sys

    path = tmp_path / "m.onnx"
    path.write_bytes(_sum_graph("Add", (2, 4, 3, 3), (2, 4, 3, 3), expose_sum=False))
    code = ("import numpy as np, onnxplain as ox, sys; m = ox.load(sys.argv[1], strip_softmax=False);"
            "m.run({'a': np.ones((2, 4, 3, 3), np.float32), 'b': -np.ones((2, 4, 3, 3), np.float32)}, threads=2)")
    err = subprocess.run([sys.executable, "-c", code, str(path)], env=dict(os.environ, ONNXPLAIN_PROFILE="2"),
                         capture_output=True, text=True, check=True).stderr
    forward = err.split("[onnxplain profile] forward")[1]
    assert {line.split()[0] for line in forward.splitlines()[1:] if line.strip()} == {"Add"}
