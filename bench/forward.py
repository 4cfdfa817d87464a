"""Forward latency: onnxplain vs onnxruntime on VGG-16- and ResNet-50-shaped models.

Random weights, 224x224 inputs, batch 1 and 8, 1 and 2 threads, both engines in this process,
same inputs. Prints one table row per configuration with the best-of-N time of each and the ratio
onnxplain / onnxruntime (target: <= 1.5 at 2 threads). Also checks the outputs agree.

    python bench/forward.py                 # everything (a few minutes on 2 cores)
    python bench/forward.py --models resnet50 --batches 1 --threads 2 --repeats 3

The header names the OpenBLAS kernels in use. On a CPU with AVX-512 the package loads the 512-bit
(SkylakeX) ones unless OPENBLAS_CORETYPE is set; where a machine pins it (some build machines
set OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE for old OpenBLAS builds), measure what a
user without the pin gets with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import archs  # noqa: E402

import onnxplain as ox  # noqa: E402
from onnxplain._native import blas_core  # noqa: E402


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, OpenBLAS thread start
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    print(f"onnxplain {ox.__version__} (OpenBLAS {blas_core()}), onnxruntime {ort.__version__}")
    header = (f"{'model':<10}{'batch':>6}{'threads':>8}{'onnxplain ms':>14}{'onnxruntime ms':>16}{'ratio':>8}"
              f"{'max rel err':>13}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name in args.models:
        data = archs.build(name)
        for threads in args.threads:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            model = ox.load(data, threads=threads)
            for batch in args.batches:
                x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
                ref = sess.run(None, {"x": x})[0]
                got = model.predict(x)
                err = float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
                t_ox = best_of(lambda m=model, x=x: m.predict(x), args.repeats)
                t_ort = best_of(lambda s=sess, x=x: s.run(None, {"x": x}), args.repeats)
                ratio = t_ox / t_ort
                if threads == max(args.threads):
                    worst = max(worst, ratio)
                print(f"{name:<10}{batch:>6}{threads:>8}{t_ox * 1e3:>14.1f}{t_ort * 1e3:>16.1f}{ratio:>8.2f}"
                      f"{err:>13.1e}", flush=True)
    print(f"\nworst ratio at {max(args.threads)} threads: {worst:.2f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
