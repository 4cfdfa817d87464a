"""Inputs the loader fuzzer (scripts/fuzz.sh, cpp/fuzz/fuzz_load.cpp) found crashing the library, one
file each in fuzz_regressions/, named after what they found. Each goes through ``ox.load`` (bytes)
and, if it loads, one forward pass on the fuzzer's small deterministic input, in a subprocess: a
regression that crashes the process fails its test instead of taking pytest down. Every one must
end in a typed onnxplain error (the class named below) or a result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"

# file name -> how it must end: the onnxplain exception class, or "ok" for a model that loads and runs.
# What each found (on the code before its fix) is in the comment.
EXPECTED: dict[str, str] = {
    # UBSan: signed overflow multiplying Reshape's requested dims (ops/reshape.cpp resolve).
    "reshape_dims_product_overflow.onnx": "ModelFormatError",
    # UBSan: float -> int64 conversion of NaN, a DOUBLE shape initializer read by Reshape (Tensor::to_i64_vector).
    "reshape_double_shape_nan_to_int64.onnx": "ModelFormatError",
    # UBSan: float -> int64 conversion of inf, float pads read by Pad's shape inference (Tensor::to_i64_vector).
    "pad_float_pads_inf_to_int64.onnx": "ShapeError",
    # UBSan: signed overflow adding huge pads to a dim in Pad's shape inference.
    "pad_infer_pads_sum_overflow.onnx": "ModelFormatError",
    # UBSan: signed overflow in the strides of Pad's output shape (routing_util strides_of).
    "pad_forward_strides_overflow.onnx": "ModelFormatError",
    # ASan: allocation-size-too-big, an edge-mode Pad's index map for an axis of 2^48 before the pads of a
    # later axis were found to crop more than it holds.
    "pad_empty_output_long_axis_map.onnx": "ShapeError",
    # UBSan: float -> int64 conversion of scale x dim = 3e29 in Upsample/Resize's output shape.
    "resize_scale_out_dim_float_overflow.onnx": "ShapeError",
    # ASan: out-of-memory (400 GB), Resize's index map for an axis of 5e10 on an empty output.
    "resize_empty_output_long_axis_map.onnx": "ok",
    # Slow unit (6 s, 200 MB): linear Resize to sizes (0, 8388618, 851975, 18949) built index maps of millions
    # of entries for an empty output.
    "resize_empty_output_slow_index_maps.onnx": "ok",
    # UBSan: signed overflow adding Split's sizes.
    "split_sizes_sum_overflow.onnx": "ModelFormatError",
    # The library's internal check "float32 access to a int64 tensor": Relu on an INT32 graph input.
    "relu_int64_input_float_access.onnx": "ModelFormatError",
    # UBSan: load of a null pointer in Mul: a Constant whose TENSOR attribute has no tensor (an empty scalar).
    "constant_tensor_attr_without_tensor.onnx": "ModelFormatError",
}

# What the fuzz harness does with a model, in Python: load from bytes with the default options, then
# run every output on inputs whose dynamic dims are 1, float entries ((i * 7) % 17 - 8) / 4 and
# integer entries i % 3. Prints the outcome's class name.
CHILD = r"""
import sys
import numpy as np
import onnxplain as ox

data = open(sys.argv[1], "rb").read()
try:
    m = ox.load(data, backend="onnxplain")
    feeds = {}
    for spec in m.inputs:
        shape = tuple(1 if d is None else d for d in spec.shape)
        i = np.arange(int(np.prod(shape)), dtype=np.int64)
        if spec.dtype == "float32":
            feeds[spec.name] = (((i * 7) % 17 - 8) * 0.25).astype(np.float32).reshape(shape)
        else:
            feeds[spec.name] = (i % 3).reshape(shape)
    if sum(a.size for a in feeds.values()) <= 1 << 16:
        m.run(feeds, threads=1)
except ox.OnnxplainError as e:
    print("RESULT", type(e).__name__, "|", str(e).splitlines()[0][:300])
except (ox.ShapeError, ox.InvalidArgument) as e:
    print("RESULT", type(e).__name__, "|", str(e).splitlines()[0][:300])
else:
    print("RESULT ok")
"""


def _cases() -> list[str]:
    return sorted(p.name for p in REGRESSIONS.iterdir() if p.is_file()) if REGRESSIONS.is_dir() else []


def test_every_regression_file_has_an_expectation():
    assert set(_cases()) == set(EXPECTED), "fuzz_regressions/ and EXPECTED must list the same files"


@pytest.mark.parametrize("name", _cases())
def test_fuzz_regression(name: str):
    # As in the harness: no buffer pool, tensors over 64 MiB refused.
    env = dict(os.environ, ONNXPLAIN_POOL_MB="0", ONNXPLAIN_MAX_TENSOR_MB="64", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(REGRESSIONS / name)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, f"{name}: the process died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"{name}: no result:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    outcome = lines[-1].split()[1]
    assert outcome == EXPECTED[name], f"{name}: expected {EXPECTED[name]}, got {lines[-1]}"
