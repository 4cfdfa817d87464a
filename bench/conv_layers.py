"""Single convolution layers: onnxplain (Winograd on and off) vs onnxruntime, same process.

The layer shapes of VGG-16 and ResNet-50 at 224x224, random He-scaled weights, 2 threads. For
each layer: best-of-N milliseconds, achieved GFLOP/s (direct-convolution FLOPs), the ratio to
onnxruntime, and the largest difference to onnxruntime relative to the output's scale. This is
what kernels/winograd.cpp's `winograd_applies` rule was read from.

    python bench/conv_layers.py
    python bench/conv_layers.py --batch 8 --repeats 10

The header names the OpenBLAS kernels in use. On a CPU with AVX-512 the package loads the 512-bit
(SkylakeX) ones unless OPENBLAS_CORETYPE is set; where a machine pins it (some build machines
set OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE for old OpenBLAS builds), measure what a
user without the pin gets with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from onnxplain._native import blas_core

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward import best_of  # noqa: E402

# (in channels, out channels, input size, kernel, stride)
LAYERS = [
    (64, 64, 224, 3, 1), (64, 128, 112, 3, 1), (128, 128, 112, 3, 1), (256, 256, 56, 3, 1),
    (512, 512, 28, 3, 1), (512, 512, 14, 3, 1), (64, 64, 56, 3, 1), (128, 128, 28, 3, 1),
    (256, 256, 14, 3, 1), (512, 512, 7, 3, 1), (256, 64, 56, 1, 1), (64, 256, 56, 1, 1),
    (1024, 256, 14, 1, 1), (3, 64, 224, 7, 2),
]


def conv_model(c: int, m: int, size: int, k: int, stride: int, rng: np.random.Generator) -> bytes:
    w = (rng.standard_normal((m, c, k, k)) * np.sqrt(2.0 / (c * k * k))).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k], pads=[k // 2] * 4,
                            strides=[stride, stride])
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, c, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    head = (f"{'layer':<24}{'ORT ms':>9}{'GF/s':>7}{'wino ms':>9}{'GF/s':>7}{'x ORT':>7}{'err':>9}"
            f"{'direct ms':>10}{'GF/s':>7}{'x ORT':>7}{'err':>9}")
    print(f"onnxplain {ox.__version__} (OpenBLAS {blas_core()}), onnxruntime {ort.__version__}, "
          f"batch {args.batch}, threads {args.threads}")
    print(head)
    print("-" * len(head))
    for c, m, size, k, stride in LAYERS:
        data = conv_model(c, m, size, k, stride, rng)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        x = rng.standard_normal((args.batch, c, size, size)).astype(np.float32)
        ref = sess.run(None, {"x": x})[0]
        out = ref.shape[2]
        flops = 2.0 * args.batch * m * c * k * k * out * out
        t_ort = best_of(lambda s=sess, x=x: s.run(None, {"x": x}), args.repeats)
        row = f"{f'{c}->{m} {size}x{size} k{k} s{stride}':<24}{t_ort * 1e3:>9.2f}{flops / t_ort / 1e9:>7.0f}"
        for wino in (True, False):
            model = ox.load(data, strip_softmax=False, winograd=wino, threads=args.threads)
            got = model.predict(x)
            t = best_of(lambda mm=model, x=x: mm.predict(x), args.repeats)
            err = float(np.abs(got - ref).max() / np.abs(ref).max())
            row += f"{t * 1e3:>{9 if wino else 10}.2f}{flops / t / 1e9:>7.0f}{t / t_ort:>7.2f}{err:>9.1e}"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
