"""PatternAttribution: fitting throughput and explanation latency against the onnxruntime forward.

VGG-16- and ResNet-50-shaped models with random weights (bench/archs.py), 224x224 random inputs,
in one process. Two tables:

1. Fitting: samples/s of ``ox.explainer(model, "pattern.attribution").fit(x, batch_size=32)`` (one
   forward pass plus the per-linear-op statistics; best of --repeats fits, each on a fresh explainer
   over --fit-batches batches) against onnxruntime's forward throughput at batch 32, and the ratio
   (target: >= 0.35); for context onnxplain's own forward throughput at batch 32 and the fit's
   share of it. Memory: RSS before the fit (onnxplain's tensor pool keeps what earlier models
   used) and the peak during it (VmHWM, reset before each fit where the kernel allows it,
   otherwise the process's peak so far).
2. Explaining (after the fit): best-of-N time of ``ex.explain(x)`` at batch 1 and 8 against one
   onnxruntime forward pass of the same batch, and the ratio (target: <= 2); for context the
   time of ``gradient`` (one plain reverse sweep) and the ratio to it.

    python bench/patterns.py                                    # both models, a few minutes on 2 cores
    python bench/patterns.py --models resnet50 --fit-batches 1 --repeats 1

The header names the OpenBLAS kernels in use. On a CPU with AVX-512 the package loads the 512-bit
(SkylakeX) ones unless OPENBLAS_CORETYPE is set; where a machine pins it (some build machines
set OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE for old OpenBLAS builds), measure what a
user without the pin gets with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...`.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import archs  # noqa: E402

import onnxplain as ox  # noqa: E402
from onnxplain._native import blas_core  # noqa: E402

FIT_TARGET = 0.35  # fit samples/s over onnxruntime forward samples/s at batch 32, at least
EXPLAIN_TARGET = 2.0  # explain time over onnxruntime forward time, at most


def best_of(fn: Callable[[], Any], repeats: int, warm_up: bool = True) -> tuple[float, Any]:
    out = fn() if warm_up else None  # warm-up: allocations, pools, OpenBLAS start
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS counter (VmHWM) of this process; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """VmHWM (since the last reset) in MiB, or the process's lifetime peak where /proc is missing."""
    hwm = _status_kib("VmHWM")
    kib = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vgg16", "resnet50"], choices=["vgg16", "resnet50"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (best of)")
    ap.add_argument("--fit-batches", type=int, default=2, help="batches per timed fit")
    ap.add_argument("--fit-batch-size", type=int, default=32)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="explanation batch sizes")
    ap.add_argument("--estimator", default="relu", choices=["relu", "linear", "filter", "identity"])
    args = ap.parse_args()

    print(f"onnxplain {ox.__version__} (OpenBLAS {blas_core()}), onnxruntime {ort.__version__}, "
          f"threads {args.threads}, pattern.attribution estimator={args.estimator}")
    rng = np.random.default_rng(0)
    fit_rows: list[str] = []
    explain_rows: list[str] = []
    hwm_resets = True
    for name in args.models:
        data = archs.build(name)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        model = ox.load(data, threads=args.threads)
        bs = args.fit_batch_size
        x_fit = rng.standard_normal((args.fit_batches * bs, 3, 224, 224), dtype=np.float32)

        # This VM's speed drifts: onnxruntime is timed right before each onnxplain measurement.
        t_ort, _ = best_of(lambda s=sess, x=x_fit[:bs]: s.run(None, {"x": x}), args.repeats)
        # onnxplain's own forward at the fit's batch size (also its warm-up): what the statistics add to it
        t_oxf, _ = best_of(lambda m=model, x=x_fit[:bs]: m.predict(x), args.repeats)
        hwm_resets = reset_peak_rss() and hwm_resets
        rss_before = (_status_kib("VmRSS") or 0) / 1024.0
        t_fit = float("inf")
        ex: ox.Explainer | None = None
        for _ in range(args.repeats):
            ex = ox.explainer(model, "pattern.attribution", estimator=args.estimator)
            t0 = time.perf_counter()
            ex.fit(x_fit, batch_size=bs, progress=False)
            t_fit = min(t_fit, time.perf_counter() - t0)
        rss = peak_rss_mib()
        assert ex is not None
        ort_tput = bs / t_ort
        fit_tput = len(x_fit) / t_fit
        ratio = fit_tput / ort_tput
        fit_rows.append(f"{name:<9}{len(x_fit):>8}{t_fit:>9.2f}{fit_tput:>12.2f}{ort_tput:>13.2f}{ratio:>8.2f}"
                        f"{'ok' if ratio >= FIT_TARGET else 'MISS':>6}{bs / t_oxf:>12.2f}{fit_tput * t_oxf / bs:>10.2f}"
                        f"{rss_before:>12.0f}{rss:>10.0f}")
        print(fit_rows[-1].replace(name, f"[fit] {name}", 1), flush=True)

        grad = ox.explainer(model, "gradient")
        for batch in args.batches:
            x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
            t_fwd, _ = best_of(lambda s=sess, x=x: s.run(None, {"x": x}), max(3, args.repeats))
            t_ex, rel = best_of(lambda e=ex, x=x: e.explain(x), max(3, args.repeats))
            t_fwd = min(t_fwd, best_of(lambda s=sess, x=x: s.run(None, {"x": x}), max(3, args.repeats))[0])
            t_grad, _ = best_of(lambda g=grad, x=x: g.explain(x), max(3, args.repeats))
            finite = bool(np.all(np.isfinite(rel))) and float(np.max(np.abs(rel))) > 0
            ratio = t_ex / t_fwd
            explain_rows.append(f"{name:<9}{batch:>6}{t_fwd * 1e3:>12.1f}{t_ex * 1e3:>12.1f}{ratio:>8.2f}"
                                f"{'ok' if ratio <= EXPLAIN_TARGET else 'MISS':>6}{t_grad * 1e3:>13.1f}"
                                f"{t_ex / t_grad:>9.2f}{'yes' if finite else 'NO':>8}")
            print(explain_rows[-1].replace(name, f"[explain] {name}", 1), flush=True)
        del ex, grad, sess, model

    rss_note = ("RSS before the fit and peak RSS during it" if hwm_resets
                else "RSS before the fit and peak RSS of the process so far")
    print()
    print(f"Fitting pattern.attribution (batch {args.fit_batch_size}) vs onnxruntime forward (batch "
          f"{args.fit_batch_size}); target ratio >= {FIT_TARGET}; RSS: {rss_note}")
    head = (f"{'model':<9}{'samples':>8}{'fit s':>9}{'fit smp/s':>12}{'ORT smp/s':>13}{'ratio':>8}{'':>6}"
            f"{'ox fwd smp/s':>12}{'fit/fwd':>10}{'RSS0 MiB':>12}{'peak MiB':>10}")
    print(head)
    print("-" * len(head))
    print("\n".join(fit_rows))
    print()
    print(f"Explaining with pattern.attribution (after the fit) vs one onnxruntime forward; target ratio <= "
          f"{EXPLAIN_TARGET}")
    head = (f"{'model':<9}{'batch':>6}{'ORT ms':>12}{'explain ms':>12}{'ratio':>8}{'':>6}{'gradient ms':>13}"
            f"{'x grad':>9}{'finite':>8}")
    print(head)
    print("-" * len(head))
    print("\n".join(explain_rows))
    print(f"\nprocess peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
