"""Perturbation methods and metrics: onnxplain vs Captum ``Occlusion`` and Quantus, same process.

- occlusion, window 16, stride 8 (27 x 27 = 729 occluded copies per image) on one image, against
  Captum's ``Occlusion`` with its default ``perturbations_per_eval=1`` and with 16 (its batched
  form, the same batch onnxplain uses);
- AOPC / region perturbation, 100 steps of 9 x 9 regions, MoRF, on 8 images, against Quantus's
  ``RegionPerturbation`` (patch_size 9, regions_evaluation 100; its batch of 8 per step).

Models with random weights: ResNet-50-shaped at 224 x 224 (bench/archs.py), and a small CNN at
32 x 32 where per-call overhead rather than arithmetic decides. 2 threads for everyone.
Targets (issue 13): occlusion >= 2x faster than Captum, AOPC >= 5x faster than Quantus.

    python bench/perturbation.py                       # both models
    python bench/perturbation.py --models small --repeats 3

Measure without this workplace's OpenBLAS pin as well: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import archs  # noqa: E402

import onnxplain as ox  # noqa: E402
from onnxplain._native import blas_core  # noqa: E402
from tests.helpers.zennit_compat import import_zennit  # noqa: E402


class SmallCNN(nn.Module):
    """A CIFAR-sized CNN: 3 x 32 x 32, three conv blocks, a dense head."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(128 * 16, 256), nn.ReLU(), nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def run_model(name: str, args: argparse.Namespace, quantus: Any, occlusion_cls: Any) -> Iterator[tuple[Any, ...]]:
    if name == "resnet50":
        net, shape = archs.ResNet50().eval(), (3, 224, 224)
        archs.randomize_batchnorm(net)
        window, stride = 16, 8
    else:
        torch.manual_seed(0)
        net, shape = SmallCNN().eval(), (3, 32, 32)
        window, stride = 4, 2
    model = ox.load(archs.export(net, (1, *shape)), threads=args.threads)
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, *shape)).astype(np.float32)
    target = int(model.predict(x1).argmax())
    if "occlusion" not in args.skip:
        ex = ox.explainer(model, "occlusion", window=window, stride=stride)
        model.predict(np.repeat(x1, 16, axis=0))  # warm-up: allocations, OpenBLAS threads
        t_ox, r_ox = best_of(lambda: ex.explain(x1, target=target), args.repeats)
        occ = occlusion_cls(net)
        c = shape[0]

        def captum(per_eval: int) -> np.ndarray:
            with torch.no_grad():
                return occ.attribute(torch.from_numpy(x1), sliding_window_shapes=(c, window, window),
                                     strides=(c, stride, stride), target=target,
                                     perturbations_per_eval=per_eval).numpy()

        t_c1, r_c = best_of(lambda: captum(1), args.repeats)
        t_c16, _ = best_of(lambda: captum(16), args.repeats)
        n_win = ((shape[1] - window + stride - 1) // stride + 1) ** 2
        yield ((name, f"occlusion w{window} s{stride} ({n_win} copies), 1 image", t_ox,
                     [("Captum per_eval=1", t_c1), ("Captum per_eval=16", t_c16)], rel_diff(r_ox, r_c)))
    if "aopc" not in args.skip:
        n, steps = 8, 100
        region = 9 if shape[1] >= 100 else 3  # 100 steps need at least 100 tiles
        x8 = rng.standard_normal((n, *shape)).astype(np.float32)
        y8 = model.predict(x8).argmax(axis=1)
        rel = np.abs(rng.standard_normal((n, 1, *shape[1:]))).astype(np.float32)
        t_ox, res = best_of(lambda: ox.metrics.aopc(model, x8, rel, target=y8, region=region, steps=steps,
                                                    order="morf", perturbation="constant", fill=0.0),
                            args.repeats)
        metric = quantus.RegionPerturbation(patch_size=region, regions_evaluation=steps, order="morf",
                                            perturb_baseline="black", disable_warnings=True,
                                            display_progressbar=False)
        t_q, _ = best_of(lambda: metric(model=net, x_batch=x8, y_batch=y8, a_batch=rel, device="cpu",
                                        batch_size=n), args.repeats)
        yield ((name, f"AOPC {steps} steps of {region}x{region}, {n} images", t_ox,
                     [("Quantus RegionPerturbation", t_q)], float("nan")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50", "small"], choices=["resnet50", "small"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per measurement (best of)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["occlusion", "aopc"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import_zennit()  # quantus imports zennit, which imports torchvision
    import quantus
    from captum.attr import Occlusion

    print(f"onnxplain {ox.__version__} (OpenBLAS {blas_core()}), torch {torch.__version__}, "
          f"quantus {quantus.__version__}, threads {args.threads}")
    print(f"\n{'model':<10} {'work':<44} {'onnxplain':>10}   peer: time, speed-up", flush=True)
    rows = (row for model_name in args.models for row in run_model(model_name, args, quantus, Occlusion))
    for name, work, t_ox, peers, diff in rows:
        peer_txt = "; ".join(f"{p} {t:.3f} s, {t / t_ox:.2f}x" for p, t in peers)
        extra = "" if np.isnan(diff) else f"   max diff {diff:.1e}"
        print(f"{name:<10} {work:<44} {t_ox:>8.3f} s   {peer_txt}{extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
