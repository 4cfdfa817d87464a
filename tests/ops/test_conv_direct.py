"""The direct mode of Conv's small-map path (kernels/small_conv: output channels along the vector in
blocks of 16, each of 6 output positions broadcast straight from the zero-padded input, no column
panels) against onnxruntime. It takes layers of depth (input channels per group x taps) >= 64 on
AVX2 CPUs without AVX-512, where a last partial block of channels wastes at most a quarter, at any
weight size (deep layers in blocks of input channels), and for stems of up to 4 input channels at
any map size.

Edges: channel counts that leave a partial last block (13, 40, 56) or fill whole ones (16, 48, 64),
positions that are not multiples of the 6-position tiles or of the 96-column chunks, chunks that
straddle images, maps from 1x1 to 32x32, strides, asymmetric pads, dilation, groups, no bias, 1-D,
1 and 2 threads, and batches 1 to 64. Each case also runs in a fresh process with the mode forced
either way (ONNXPLAIN_SMALL_CONV=panel / direct), so the panel mode stays covered for deep layers
and the direct one is checked even where it is not the default."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run, single_node

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _case(n, c, m, hw, k=(3, 3), groups=1, bias=True, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    w = (rng.standard_normal((m, c // groups, *k)) / np.sqrt(c // groups * np.prod(k))).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    inits = {"w": w} | ({"b": b} if b is not None else {})
    model = single_node("Conv", {"x": x}, inits, opset=11, dynamic_batch=True,
                        node_inputs=["x", "w"] + (["b"] if b is not None else []), group=groups, **attrs)
    return model, x


CASES = {
    # name: (batch, in, out, map, extra)
    "b1_16x16_32to32": (1, 32, 32, (16, 16), {}),
    "b7_8x8_16to16": (7, 16, 16, (8, 8), {}),
    "b64_4x4_32to32": (64, 32, 32, (4, 4), {}),
    "b3_5x7_8to13": (3, 8, 13, (5, 7), {}),  # depth 72, one partial block of 13
    "b17_3x3_16to40": (17, 16, 40, (3, 3), {}),  # 2.5 blocks; 153 positions: partial tile and chunk
    "b2_32x32_16to48": (2, 16, 48, (32, 32), {}),
    "b5_1x1_64to56": (5, 64, 56, (1, 1), {}),
    "b9_2x2_64to64": (9, 64, 64, (2, 2), {}),
    "stride2": (4, 16, 32, (9, 11), {"strides": [2, 2]}),
    "asym_pads": (3, 16, 16, (7, 6), {"pads": [2, 0, 1, 3]}),
    "dilation": (2, 16, 16, (10, 10), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    "groups": (3, 32, 64, (6, 6), {"group": 2}),  # depth 144 per group, 32 outputs per group
    "no_bias": (6, 16, 32, (8, 8), {"bias": False}),
    "k5": (2, 4, 16, (12, 12), {"k": (5, 5), "pads": [2, 2, 2, 2]}),  # depth 100
    "conv1d": (5, 32, 16, (37,), {"k": (3,), "pads": [1, 1]}),
    # Weights past the panel mode's 64K floats; deep layers in blocks of input channels (113 at most
    # for 3x3, fewer where the padded plane is large), uneven ones too; with few positions and many
    # blocks of output channels, threads split the channels instead of the positions.
    "big_weight_7x7": (1, 512, 512, (7, 7), {}),
    "channel_split_partial_block": (1, 64, 136, (3, 3), {}),
    "big_weight_stride2": (1, 256, 64, (15, 15), {"strides": [2, 2]}),
    "deep_uneven_blocks": (2, 300, 40, (6, 6), {}),
    "deep_groups": (1, 512, 64, (5, 5), {"group": 2}),
    "deep_large_plane": (1, 160, 16, (30, 30), {}),  # 32x32 padded plane: 32 channels per block
    # 1x1 kernels never take the direct mode: stride 2 with a small weight is the panel mode's,
    # with a large one im2col + sgemm's.
    "pointwise_stride2_small": (3, 64, 32, (9, 9), {"k": (1, 1), "strides": [2, 2], "pads": [0, 0, 0, 0]}),
    "pointwise_stride2_large": (1, 256, 512, (14, 14), {"k": (1, 1), "strides": [2, 2], "pads": [0, 0, 0, 0]}),
    # Stems (up to 4 channels, depth >= 64) at any map size, past the 1024 positions of small maps.
    "rgb_stem_7x7_s2": (2, 3, 64, (70, 69), {"k": (7, 7), "strides": [2, 2], "pads": [3, 3, 3, 3]}),
    "stem_5x5": (1, 4, 16, (36, 36), {"k": (5, 5), "pads": [2, 2, 2, 2]}),
    "grey_stem_9x9": (3, 1, 16, (40, 33), {"k": (9, 9), "pads": [4, 4, 4, 4]}),
}


def _build(name):
    n, c, m, hw, extra = CASES[name]
    extra = dict(extra)
    k = extra.pop("k", (3,) * len(hw))
    groups = extra.pop("group", 1)
    bias = extra.pop("bias", True)
    extra.setdefault("pads", [1] * (2 * len(hw)))
    return _case(n, c, m, hw, k=k, groups=groups, bias=bias, seed=len(name), **extra)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_against_onnxruntime(name, threads):
    model, x = _build(name)
    expected = ort_run(model, {"x": x})[0]
    m = ox.load(model, strip_softmax=False)
    for _ in range(2):  # the second call reuses the cached packed weight and the thread scratch
        assert_close(m.run({"x": x}, threads=threads)[0], expected, rtol=1e-5, atol=1e-5)


_SCRIPT = """
import sys, numpy as np, onnxplain as ox
d = np.load(sys.argv[1])
for name in d.files:
    if name.startswith("model_"):
        case = name[len("model_"):]
        m = ox.load(d[name].tobytes(), strip_softmax=False)
        for t in (1, 2):
            np.save(f"{sys.argv[2]}_{case}_{t}.npy", m.run({"x": d["x_" + case]}, threads=t)[0])
"""


def _run_mode(mode, tmp_path):
    arrays = {}
    for name in CASES:
        model, x = _build(name)
        arrays["model_" + name] = np.frombuffer(model, dtype=np.uint8)
        arrays["x_" + name] = x
    np.savez(tmp_path / "in.npz", **arrays)
    env = dict(os.environ, ONNXPLAIN_SMALL_CONV=mode)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "in.npz"), str(tmp_path / mode)],
                   check=True, env=env, timeout=600)
    return {(name, t): np.load(tmp_path / f"{mode}_{name}_{t}.npy") for name in CASES for t in (1, 2)}


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx2 " in flags and " fma " in flags


@pytest.mark.parametrize("mode", ["panel", "direct"])
def test_forced_mode(mode, tmp_path):
    got = _run_mode(mode, tmp_path)
    for name in CASES:
        model, x = _build(name)
        expected = ort_run(model, {"x": x})[0]
        for t in (1, 2):
            assert_close(got[(name, t)], expected, rtol=1e-5, atol=1e-5)


def test_modes_really_differ(tmp_path):
    """The switch reaches the kernel: at depth 288 the panel mode sums in two passes (256 + 32) and
    the direct mode in one, so on an AVX2 CPU some outputs differ in the last bits; elsewhere the
    direct mode is never taken and the two are identical."""
    panel = _run_mode("panel", tmp_path)
    direct = _run_mode("direct", tmp_path)
    key = ("b64_4x4_32to32", 1)
    if _has_avx2():
        assert not np.array_equal(panel[key], direct[key])
    else:
        np.testing.assert_array_equal(panel[key], direct[key])
