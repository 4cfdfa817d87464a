"""Explanation latency: onnxplain vs the onnxruntime forward, Zennit (LRP) and Captum (gradient, IG).

VGG-16- and ResNet-50-shaped models with random weights (bench/archs.py), 224x224, in one
process, same inputs, same targets. For each method the table gives the best-of-N time of
onnxplain, the ratio to one onnxruntime forward pass of the same batch, the peer's time and the
speed-up over it, and the largest difference to the peer relative to the explanation's scale.

After it the script prints issue 15's table in the same run: the ResNet-50 LRP ratios, integrated
gradients against Captum, the small models' and ResNet-50's forward against onnxruntime
(bench/forward.py's measurement, at the same thread count), and the peak RSS of every method at
batch 8 (bench/memory.py's measurement: each in a fresh process), each row with its target.

    python bench/explain.py                                  # everything (about an hour on 2 cores)
    python bench/explain.py --models resnet50 --batches 1 --methods gradient lrp.epsilon_plus_flat
    python bench/explain.py --skip-forward --skip-memory     # the explanation rows only

The header names the OpenBLAS kernels in use. On a CPU with AVX-512 the package loads the 512-bit
(SkylakeX) ones unless OPENBLAS_CORETYPE is set; where a machine pins it (some build machines
set OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE for old OpenBLAS builds), measure what a
user without the pin gets with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...`.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import archs  # noqa: E402
import forward  # noqa: E402
import memory  # noqa: E402

import onnxplain as ox  # noqa: E402
from onnxplain._native import blas_core  # noqa: E402
from tests.helpers.zennit_compat import import_zennit  # noqa: E402

METHODS = ["lrp.epsilon_plus_flat", "lrp.alpha_2_beta_1", "lrp.epsilon_gamma_box", "gradient", "integrated_gradients",
           "deeplift.rescale", "deeplift.reveal_cancel"]
BOX = {"low": -3.0, "high": 3.0}


def zennit_composite(zennit, method: str):
    canon = [zennit.canonizers.SequentialMergeBatchNorm()]
    if method == "lrp.epsilon_plus_flat":
        return zennit.composites.EpsilonPlusFlat(canonizers=canon)
    if method == "lrp.epsilon_gamma_box":
        return zennit.composites.EpsilonGammaBox(low=BOX["low"], high=BOX["high"], canonizers=canon)
    if method == "lrp.alpha_2_beta_1":
        r = zennit.rules
        return zennit.composites.LayerMapComposite(
            layer_map=[(zennit.types.Activation, r.Pass()), (zennit.layer.Sum, r.Norm()),
                       (zennit.types.AvgPool, r.Norm()), (zennit.types.Linear, r.AlphaBeta(alpha=2.0, beta=1.0))],
            canonizers=canon)
    raise ValueError(method)


def best_of(fn, repeats: int) -> tuple[float, object]:
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--steps", type=int, default=32, help="integrated gradients steps")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many (3x that at batch 1)")
    ap.add_argument("--skip-forward", action="store_true", help="leave out the forward rows of issue 15's table")
    ap.add_argument("--skip-memory", action="store_true", help="leave out the peak-RSS rows")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    zennit = import_zennit()
    import captum.attr as ca

    print(f"onnxplain {ox.__version__} (OpenBLAS {blas_core()}), onnxruntime {ort.__version__}, "
          f"torch {torch.__version__}, threads {args.threads}")
    head = (f"{'model':<9}{'batch':>6} {'method':<24}{'onnxplain ms':>13}{'x ORT fwd':>10}{'peer':>8}"
            f"{'peer ms':>10}{'speed-up':>9}{'rel diff':>10}")
    print(head)
    print("-" * len(head))
    rng = np.random.default_rng(0)
    results: dict[tuple[str, int, str], tuple[float, float, float]] = {}  # (ours, ORT forward, peer) s
    for name in args.models:
        torch.manual_seed(0)
        tmodel = archs.VGG16() if name == "vgg16" else archs.ResNet50()
        if name == "resnet50":
            archs.randomize_batchnorm(tmodel)
        tmodel.eval()
        data = archs.export(tmodel, (1, 3, 224, 224))
        # Zennit does not see a plain `+`: give it the residual sums as its Sum layer (the same
        # function), as its ResNet canonizer would for torchvision's blocks.
        zmodel = copy.deepcopy(tmodel)
        for m in zmodel.modules():
            if isinstance(m, archs.Bottleneck):
                m.sum = zennit.layer.Sum()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        model = ox.load(data, threads=args.threads)
        for batch in args.batches:
            x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
            # This VM's speed drifts by tens of percent: onnxruntime is timed before every method
            # and the ratios use the best of all those timings, printed once the batch is done.
            t_ort = float("inf")

            def time_ort(s=sess, x=x) -> float:
                return best_of(lambda: s.run(None, {"x": x}), max(3, args.repeats))[0]

            target = model.predict(x).argmax(axis=1)
            rows = []
            for method in args.methods:
                t_ort = min(t_ort, time_ort())
                params = dict(BOX) if method == "lrp.epsilon_gamma_box" else {}
                if method == "integrated_gradients":
                    params = {"steps": args.steps, "method": "riemann_right"}
                ex = ox.explainer(model, method, **params)
                t_ox, rel = best_of(lambda e=ex, x=x, t=target: e.explain(x, target=t),
                                    args.repeats * (3 if batch == 1 else 1))
                xt = torch.from_numpy(x)
                tt = torch.from_numpy(target)
                if method.startswith("lrp."):
                    peer = "Zennit"
                    comp = zennit_composite(zennit, method)

                    def run_peer(comp=comp, xt=xt, tt=tt, tmodel=zmodel):
                        with zennit.attribution.Gradient(model=tmodel, composite=comp) as attributor:
                            # LRP starts from f_t(x): one-hot times the output (DESIGN.md).
                            out, r = attributor(xt, lambda y, tt=tt: torch.eye(y.shape[1])[tt] * y)
                            return r.detach().numpy()
                elif method.startswith("deeplift."):
                    # Captum has Rescale only: RevealCancel is timed against it for its cost, and
                    # its rel diff is against Rescale's result (not a check).
                    peer = "Captum"

                    def run_peer(xt=xt, tt=tt, tmodel=tmodel):
                        return ca.DeepLift(tmodel).attribute(xt.clone(), target=tt).detach().numpy()
                elif method == "gradient":
                    peer = "Captum"

                    def run_peer(xt=xt, tt=tt, tmodel=tmodel):
                        return ca.Saliency(tmodel).attribute(xt.clone(), target=tt, abs=False).detach().numpy()
                else:
                    peer = "Captum"

                    def run_peer(xt=xt, tt=tt, b=batch, tmodel=tmodel):
                        ig = ca.IntegratedGradients(tmodel)
                        return ig.attribute(xt, target=tt, n_steps=args.steps, method="riemann_right",
                                            internal_batch_size=max(b, 8)).detach().numpy()
                t_peer, ref = best_of(run_peer, 1)
                rows.append((method, t_ox, peer, t_peer, rel_diff(rel, ref)))
            t_ort = min(t_ort, time_ort())
            for method, t_ox, _, t_peer, _ in rows:
                results[(name, batch, method)] = (t_ox, t_ort, t_peer)
            print(f"{name:<9}{batch:>6} {'forward (onnxruntime)':<24}{'':>13}{'':>10}{'ORT':>8}{t_ort * 1e3:>10.1f}")
            for method, t_ox, peer, t_peer, diff in rows:
                print(f"{'':<9}{'':>6} {method:<24}{t_ox * 1e3:>13.1f}{t_ox / t_ort:>10.2f}{peer:>8}"
                      f"{t_peer * 1e3:>10.1f}{t_peer / t_ox:>9.2f}{diff:>10.1e}", flush=True)
    issue_table(args, results)
    return 0


def issue_table(args: argparse.Namespace, results: dict[tuple[str, int, str], tuple[float, float, float]]) -> None:
    """Issue 15's rows: what was measured above, the forward rows and peak RSS per method."""
    print(f"\nIssue 15 (threads {args.threads}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"OpenBLAS {blas_core()})")
    head = f"{'row':<64}{'measured':>30}{'target':>12}"
    print(head)
    print("-" * len(head))

    def row(label: str, values: list[float], fmt: str, target: str) -> None:
        got = " / ".join(fmt.format(v) for v in values) if values else "(not run)"
        print(f"{label:<64}{got:>30}{target:>12}", flush=True)

    def ratios(model: str, method: str) -> list[float]:
        return [results[(model, b, method)][0] / results[(model, b, method)][1]
                for b in args.batches if (model, b, method) in results]

    bs = "/".join(f"b{b}" for b in args.batches)
    row(f"ResNet-50 lrp.epsilon_plus_flat x ORT forward, {bs}", ratios("resnet50", "lrp.epsilon_plus_flat"),
        "{:.2f}x", "<= 3.0x")
    for m in ("lrp.alpha_2_beta_1", "lrp.epsilon_gamma_box"):
        row(f"ResNet-50 {m} x ORT forward, {bs}", ratios("resnet50", m), "{:.2f}x", "<= 4.0x")
    for model in ("vgg16", "resnet50"):
        ups = [results[(model, b, "integrated_gradients")][2] / results[(model, b, "integrated_gradients")][0]
               for b in args.batches if (model, b, "integrated_gradients") in results]
        row(f"integrated gradients ({args.steps} steps) vs Captum, {model}, {bs}", ups, "{:.2f}x faster",
            ">= 2.5x")
    if not args.skip_forward:
        rng = np.random.default_rng(0)
        for batch, target in ((64, "<= 1.2x"), (1, "<= 1.2x")):
            for name, shape in archs.SMALL.items():
                t_ox, t_ort, _ = forward.time_forward(archs.build(name), shape, batch, args.threads, 30, rng)
                row(f"forward {name} b{batch} x ORT", [t_ox / t_ort], "{:.2f}x", target)
        t_ox, t_ort, _ = forward.time_forward(archs.build("resnet50"), (3, 224, 224), 1, args.threads, 10, rng)
        row("ResNet-50 forward b1 x ORT", [t_ox / t_ort], "{:.2f}x", "<= 1.0x")
    if not args.skip_memory:
        targets = {("vgg16", "lrp.alpha_2_beta_1"): "<= 2.5 GB", ("vgg16", "lrp.epsilon_plus_flat"): "<= 2.0 GB"}
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.models:
                path = os.path.join(tmp, f"{name}.onnx")
                Path(path).write_bytes(archs.build(name))
                for method in args.methods:
                    if method not in memory.METHODS:
                        continue
                    try:
                        r = memory.measure(path, method, 8, args.threads, args.steps)
                    except RuntimeError as e:
                        row(f"peak RSS {name} {method} b8", [], "", f"failed: {e}")
                        continue
                    peak = max(r["explain"], r["explain2"]) * (1 << 20) / 1e9
                    row(f"peak RSS {name} {method} b8 (GB)", [peak], "{:.2f} GB", targets.get((name, method), ""))


if __name__ == "__main__":
    sys.exit(main())
