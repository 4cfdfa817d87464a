"""Forward latency: onnxplain vs onnxruntime on VGG-16- and ResNet-50-shaped models.

Random weights, 224x224 inputs, batch 1 and 8, 1 and 2 threads, both engines in this process,
same inputs. Prints one table row per configuration with the best-of-N time of each and the ratio
onnxplain / onnxruntime (target: <= 1.5 at 2 threads). Also checks the outputs agree.

    python bench/forward.py                 # everything (a few minutes on 2 cores)
    python bench/forward.py --models resnet50 --batches 1 --threads 2 --repeats 3
    python bench/forward.py --models cnn32 mlp_mnist --batches 64 1 --threads 2

Small models (bench/archs.py SMALL: CNNs on 8x8, 16x16 and 32x32 inputs, the bundled digits CNN,
an MNIST and a tabular MLP) run at batch 64 and 1 (target: <= 1.2 against onnxruntime), large
ones at batch 1 and 8. The last column is the process's peak RSS so far.

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


def peak_rss_mb() -> float:
    """The process's peak resident set so far (ru_maxrss is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, OpenBLAS thread start
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def time_forward(data: bytes, shape: tuple[int, ...], batch: int, threads: int, repeats: int,
                 rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """(onnxplain s, onnxruntime s, max rel error) of one forward pass of `batch` samples."""
    rng = rng or np.random.default_rng(0)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name
    model = ox.load(data, threads=threads, strip_softmax=False)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    ref = sess.run(None, {feed: x})[0]
    got = model.predict(x)
    err = float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
    # Interleaved rounds, best of each: a slow spell of a shared machine then hits both.
    t_ox = t_ort = float("inf")
    for _ in range(3):
        t_ox = min(t_ox, best_of(lambda m=model, x=x: m.predict(x), max(1, repeats // 3)))
        t_ort = min(t_ort, best_of(lambda s=sess, x=x, f=feed: s.run(None, {f: x}), max(1, repeats // 3)))
    return t_ox, t_ort, err


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vgg16", "resnet50", *archs.SMALL])
    ap.add_argument("--batches", nargs="+", type=int, default=None,
                    help="default: 1 and 8 for the large models, 64 and 1 for the small ones")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    print(f"onnxplain {ox.__version__} (OpenBLAS {blas_core()}), onnxruntime {ort.__version__}")
    header = (f"{'model':<12}{'batch':>6}{'threads':>8}{'onnxplain ms':>14}{'onnxruntime ms':>16}{'ratio':>8}"
              f"{'max rel err':>13}{'peak RSS MB':>13}")
    print(header)
    print("-" * len(header))
    worst = {"large": 0.0, "small": 0.0}
    for name in args.models:
        small = name in archs.SMALL
        data = archs.build(name)
        shape = archs.SMALL[name] if small else (3, 224, 224)
        batches = args.batches or ([64, 1] if small else [1, 8])
        # Small models run many times in a loop: more repeats for a stable best-of.
        repeats = args.repeats * 10 if small else args.repeats
        for threads in args.threads:
            for batch in batches:
                t_ox, t_ort, err = time_forward(data, shape, batch, threads, repeats, rng)
                ratio = t_ox / t_ort
                if threads == max(args.threads):
                    key = "small" if small else "large"
                    worst[key] = max(worst[key], ratio)
                print(f"{name:<12}{batch:>6}{threads:>8}{t_ox * 1e3:>14.3f}{t_ort * 1e3:>16.3f}{ratio:>8.2f}"
                      f"{err:>13.1e}{peak_rss_mb():>13.0f}", flush=True)
    print(f"\nworst ratio at {max(args.threads)} threads: large models {worst['large']:.2f} (target <= 1.0 for "
          f"ResNet-50 b1, <= 1.5 otherwise), small models {worst['small']:.2f} (target <= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
