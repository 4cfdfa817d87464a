"""Perturbation methods and metrics: onnxplain vs Captum ``Occlusion`` and Quantus, same process;
and prediction difference on tabular data through onnxruntime against a plain Python loop.

- occlusion, window 16, stride 8 (27 x 27 = 729 occluded copies per image) on one image, against
  Captum's ``Occlusion`` with its default ``perturbations_per_eval=1`` and with 16 (its batched
  form, the same batch onnxplain uses);
- AOPC / region perturbation, 100 steps of 9 x 9 regions, MoRF, on 8 images, against Quantus's
  ``RegionPerturbation`` (patch_size 9, regions_evaluation 100; its batch of 8 per step).

Models with random weights: ResNet-50-shaped at 224 x 224 (bench/archs.py), and a small CNN at
32 x 32 where per-call overhead rather than arithmetic decides. 2 threads for everyone.
Targets (issue 13): occlusion >= 2x faster than Captum, AOPC >= 5x faster than Quantus.

Tabular (issue 16, ``--models tabular``): scikit-learn's breast-cancer data (569 x 30),
StandardScaler + RandomForestClassifier(n_estimators=50, random_state=0) converted by skl2onnx,
which onnxplain's engine cannot run, so ``ox.load`` runs it through onnxruntime. Explained:
``--rows`` rows (default 1,000) drawn from the data with replacement, each feature multiplied by
1 + 0.01 N(0, 1) (seed 0) so that the rows are distinct. ``prediction_difference`` in its tabular
form, ``samples=None`` (eq. 22: every training value of a feature, weighted by its frequency),
weight of evidence (eq. 19, Laplace-corrected probabilities), fitted on all 569 rows with
``max_values=None`` (no binning: 15,340 perturbed copies per explained row), onnxplain's batches
of 4,096 perturbed rows per onnxruntime call; against the same computation written as a plain
loop over a separate ``onnxruntime.InferenceSession`` (same threads); onnxplain and the per-row
loop are timed in turn, at least twice each (best of ``--repeats``):

- "one call per row": per explained row, one call holding the row and its 15,340 perturbed copies
  (each feature in turn set to each of its distinct training values), the mean probabilities
  weighted by the values' frequencies accumulated per feature with NumPy;
- "one call per perturbed input": the naive loop, per row, per feature, per distinct value, one
  single-row call; timed on ``--naive-rows`` rows (default 3) and scaled to ``--rows``.

The table states the largest difference of the relevance from the per-row loop.

    python bench/perturbation.py                       # all models
    python bench/perturbation.py --models small --repeats 3
    python bench/perturbation.py --models tabular --rows 200

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

IMAGE_MODELS = ("resnet50", "small")


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


def breast_cancer_forest() -> tuple[bytes, np.ndarray]:
    """The skl2onnx pipeline (StandardScaler + RandomForestClassifier(n_estimators=50)) and its data."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=50, random_state=0)).fit(x, y)
    return to_onnx(pipe, x[:1], options={"zipmap": False}).SerializeToString(), x


def log2_odds(p: np.ndarray, n: int, k: int) -> np.ndarray:
    """log2 odds of the Laplace-corrected probability (p n + 1) / (n + k) (Robnik-Sikonja & Kononenko 2008)."""
    lp = (np.asarray(p, dtype=np.float64) * n + 1.0) / (n + k)
    return np.log2(lp / (1.0 - lp))


def run_tabular(args: argparse.Namespace) -> Iterator[tuple[Any, ...]]:
    import onnxruntime as ort

    data, train = breast_cancer_forest()
    model = ox.load(data, threads=args.threads)
    assert model.backend == "onnxruntime", model.backend
    n_train, f = train.shape
    rng = np.random.default_rng(0)
    rows = train[rng.integers(0, n_train, args.rows)]
    rows = (rows * (1.0 + 0.01 * rng.standard_normal(rows.shape))).astype(np.float32)
    targets = model.predict(rows).argmax(axis=1)
    k = int(model.predict(rows[:1]).shape[1])
    ex = ox.explainer(model, "prediction_difference", samples=None, measure="weight_of_evidence", max_values=None)
    ex.fit(train, progress=False)
    ex.explain(rows[:2], target=targets[:2], progress=False)  # warm-up

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    inp, out = sess.get_inputs()[0].name, "probabilities"
    tables = [np.unique(train[:, j], return_counts=True) for j in range(f)]
    feats = np.concatenate([np.full(len(v), j) for j, (v, _) in enumerate(tables)])
    vals = np.concatenate([v for v, _ in tables]).astype(np.float32)
    wts = np.concatenate([c / n_train for _, c in tables])
    per_row = len(feats)

    def one_call_per_row() -> np.ndarray:
        rel = np.empty((len(rows), f))
        for i in range(len(rows)):
            batch = np.repeat(rows[i:i + 1], per_row + 1, axis=0)
            batch[np.arange(1, per_row + 1), feats] = vals
            p = sess.run([out], {inp: batch})[0][:, targets[i]].astype(np.float64)
            q = np.bincount(feats, weights=wts * p[1:], minlength=f)
            rel[i] = log2_odds(p[0], n_train, k) - log2_odds(q, n_train, k)
        return rel

    def one_call_per_input(count: int) -> np.ndarray:
        rel = np.empty((count, f))
        for i in range(count):
            t = targets[i]
            p0 = float(sess.run([out], {inp: rows[i:i + 1]})[0][0, t])
            q = np.zeros(f)
            for j, (values, counts) in enumerate(tables):
                row = rows[i:i + 1].copy()
                for v, c in zip(values, counts):
                    row[0, j] = v
                    q[j] += c / n_train * float(sess.run([out], {inp: row})[0][0, t])
            rel[i] = log2_odds(p0, n_train, k) - log2_odds(q, n_train, k)
        return rel

    # Interleaved (onnxplain, loop, onnxplain, loop, ...), best of each: a machine shared with other work
    # slows both alike.
    t_ox = t_row = float("inf")
    for _ in range(max(args.repeats, 2)):
        t, r_ox = best_of(lambda: ex.explain(rows, target=targets, progress=False), 1)
        t_ox = min(t_ox, t)
        t, r_row = best_of(one_call_per_row, 1)
        t_row = min(t_row, t)
    naive = min(args.naive_rows, len(rows))
    t_naive, r_naive = best_of(lambda: one_call_per_input(naive), 1)
    diff = max(float(np.max(np.abs(r_ox - r_row))), float(np.max(np.abs(r_ox[:naive] - r_naive))))
    yield (("tabular", f"pred. diff. WoE, {len(rows)} x {f}, {per_row} copies/row", t_ox,
            [("ORT one call per row", t_row),
             (f"ORT one call per input ({naive} rows, x{len(rows) / naive:.0f})", t_naive * len(rows) / naive)],
            diff))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50", "small", "tabular"],
                    choices=["resnet50", "small", "tabular"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per measurement (best of)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["occlusion", "aopc"])
    ap.add_argument("--rows", type=int, default=1000, help="tabular: rows explained (default 1000)")
    ap.add_argument("--naive-rows", type=int, default=3,
                    help="tabular: rows the one-call-per-perturbed-input loop is timed on (scaled to --rows)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = [m for m in args.models if m in IMAGE_MODELS]
    quantus: Any = None
    occlusion_cls: Any = None
    if images:
        import_zennit()  # quantus imports zennit, which imports torchvision
        import quantus
        from captum.attr import Occlusion as occlusion_cls  # noqa: N813
    import onnxruntime

    peers = f"quantus {quantus.__version__}, " if quantus is not None else ""
    print(f"onnxplain {ox.__version__} (OpenBLAS {blas_core()}), torch {torch.__version__}, {peers}"
          f"onnxruntime {onnxruntime.__version__}, threads {args.threads}")
    print(f"\n{'model':<10} {'work':<44} {'onnxplain':>10}   peer: time, speed-up", flush=True)
    rows = (row for model_name in args.models
            for row in (run_tabular(args) if model_name == "tabular" else
                        run_model(model_name, args, quantus, occlusion_cls)))
    for name, work, t_ox, peers, diff in rows:
        peer_txt = "; ".join(f"{p} {t:.3f} s, {t / t_ox:.2f}x" for p, t in peers)
        extra = "" if np.isnan(diff) else f"   max diff {diff:.1e}"
        print(f"{name:<10} {work:<44} {t_ox:>8.3f} s   {peer_txt}{extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
