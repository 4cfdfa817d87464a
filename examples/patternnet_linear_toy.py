"""PatternNet and PatternAttribution on the linear toy of Kindermans et al. (2018), section 2 / Fig. 2.

The data are x = a_s * y + a_d * eps (+ a little isotropic noise): a signal direction a_s scaled by
the quantity y the model should recover, and a distractor a_d * eps that carries no information
about y. A linear model trained to output y has to cancel the distractor, so its weight w is
(nearly) orthogonal to a_d and therefore *not* along a_s. Explanations that are functions of the
weights alone (gradient, DeConvNet, Guided BackProp; LRP is w * x) show w; PatternNet, whose
pattern a = cov[x, y] / (w^T cov[x, y]) is learned from the model *and the data*, recovers a_s, and
PatternAttribution gives the attribution a_s * w * y.

Two toys: ``--toy image`` (default) has 8x8 inputs whose signal is a plus sign and whose distractor
is an overlapping blob, so the figure shows what each method sees; ``--toy 2d`` is the paper's
two-dimensional example, a_s = (1, 0) and a_d = (1, 1).

    python examples/patternnet_linear_toy.py                      # table, figure patternnet_toy.png
    python examples/patternnet_linear_toy.py --toy 2d --out toy2d.png

The model is exported to ONNX (one Gemm, input [N, D], output [N, 1]; every explanation is of
target 0, the only output) and explained with onnxplain. The table gives, per method, the mean over
the explained samples of |cos(R, a_s)| and |cos(R, a_s * w)|. The absolute value: methods that
start from f_t(x) (PatternNet, PatternAttribution, LRP) flip their sign with the output, the
gradient family starts from a one-hot and does not, and the question here is the direction.
Expected: PatternNet >= 0.99 against a_s, PatternAttribution >= 0.99 against a_s * w, the
gradient (and DeConvNet, Guided BackProp: no ReLU here) exactly cos(w, a_s).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox

IMAGE_SHAPE = (8, 8)


@dataclass(frozen=True)
class Toy:
    """Samples of the toy and their ground truth."""

    x: np.ndarray  # [N, D] float32 inputs
    y: np.ndarray  # [N] float64: the signal's amplitude, what the model should output
    a_s: np.ndarray  # [D] signal direction
    a_d: np.ndarray  # [D] distractor direction
    shape: tuple[int, ...]  # one sample's picture: (8, 8) for the image toy, (2,) for the 2-D one


def directions(kind: str) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Signal and distractor directions of a toy, and the shape of one sample."""
    if kind == "2d":
        return np.array([1.0, 0.0]), np.array([1.0, 1.0]), (2,)
    if kind == "image":
        signal = np.zeros(IMAGE_SHAPE)
        signal[1:7, 3:5] = 1.0  # a plus sign
        signal[3:5, 1:7] = 1.0
        rows, cols = np.mgrid[0 : IMAGE_SHAPE[0], 0 : IMAGE_SHAPE[1]]
        blob = np.exp(-((rows - 2.5) ** 2 + (cols - 4.5) ** 2) / 6.0)  # overlaps the plus's upper right
        return signal.ravel(), blob.ravel(), IMAGE_SHAPE
    raise ValueError(f"unknown toy {kind!r}: 'image' or '2d'")


def make_toy(kind: str = "image", n: int = 20000, seed: int = 0, noise: float = 0.05,
             distractor_scale: float = 2.0) -> Toy:
    """x = a_s * y + a_d * eps + noise, y ~ U(-1, 1), eps ~ N(0, distractor_scale^2), noise ~ N(0, noise^2 I).

    The distractor is stronger than the signal (as in real data); the small isotropic noise makes
    the least-squares problem well posed when D > 2.
    """
    a_s, a_d, shape = directions(kind)
    rng = np.random.default_rng(seed)
    y = rng.uniform(-1.0, 1.0, n)
    eps = rng.standard_normal(n) * distractor_scale
    x = np.outer(y, a_s) + np.outer(eps, a_d) + noise * rng.standard_normal((n, a_s.size))
    return Toy(x.astype(np.float32), y, a_s, a_d, shape)


def fit_linear(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares with intercept (float64): the w, b minimising |w^T x + b - y|^2."""
    x64 = np.asarray(x, np.float64)
    mx, my = x64.mean(axis=0), float(np.mean(y))
    w = np.linalg.lstsq(x64 - mx, np.asarray(y, np.float64) - my, rcond=None)[0]
    return w, my - float(mx @ w)


def export_onnx(w: np.ndarray, b: float, form: str = "gemm") -> bytes:
    """The linear model y = w^T x + b as ONNX bytes: input "x" [N, D], output "y" [N, K].

    form: "gemm" (Gemm, transB=1, weight [1, D], as torch exports nn.Linear), "gemm_t" (Gemm,
    weight [D, 1]), "matmul_add" (MatMul + Add, as tf2onnx exports Dense), "gemm2" (two outputs,
    f and -f: weight rows w and -w, a two-class variant; both outputs are well defined).
    """
    d = w.size
    w32 = np.asarray(w, np.float32)
    inits: dict[str, np.ndarray]
    k = 1
    if form == "gemm":
        inits = {"W": w32.reshape(1, d), "B": np.array([b], np.float32)}
        nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["y"], name="dense", transB=1)]
    elif form == "gemm_t":
        inits = {"W": w32.reshape(d, 1).copy(), "B": np.array([b], np.float32)}
        nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["y"], name="dense")]
    elif form == "matmul_add":
        inits = {"W": w32.reshape(d, 1).copy(), "B": np.array([b], np.float32)}
        nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"], name="dense"),
                 helper.make_node("Add", ["xw", "B"], ["y"], name="bias")]
    elif form == "gemm2":
        k = 2
        inits = {"W": np.stack([w32, -w32]), "B": np.array([b, -b], np.float32)}
        nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["y"], name="dense", transB=1)]
    else:
        raise ValueError(f"unknown form {form!r}")
    graph = helper.make_graph(
        nodes, "linear_toy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", k])],
        initializer=[numpy_helper.from_array(v, name=name) for name, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="patternnet_toy")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """cos of the angle between two vectors (0 if either is zero)."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / den if den > 0 else 0.0


def cosines(relevance: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Per sample cos(R_i, direction), [N]."""
    r = np.asarray(relevance, np.float64).reshape(len(relevance), -1)
    d = np.ravel(direction).astype(np.float64)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(d)
    return np.divide(r @ d, den, out=np.zeros(len(r)), where=den > 0)


def mean_abs_cosine(relevance: np.ndarray, direction: np.ndarray) -> float:
    """Mean over samples of |cos(R_i, direction)|: how well R points along the direction (either way)."""
    return float(np.mean(np.abs(cosines(relevance, direction))))


# (label, method, parameters, what the paper predicts on this toy)
METHODS: list[tuple[str, str, dict[str, Any], str]] = [
    ("pattern.net (linear)", "pattern.net", {"estimator": "linear"}, "a_s"),
    ("pattern.net (relu)", "pattern.net", {"estimator": "relu"}, "a_s"),
    ("pattern.net (filter)", "pattern.net", {"estimator": "filter"}, "w: S_w is no signal estimator"),
    ("pattern.attribution (linear)", "pattern.attribution", {"estimator": "linear"}, "a_s * w"),
    ("pattern.attribution (relu)", "pattern.attribution", {"estimator": "relu"}, "a_s * w"),
    ("pattern.attribution (identity)", "pattern.attribution", {"estimator": "identity"}, "w * x (LRP-z)"),
    ("gradient", "gradient", {}, "w"),
    ("deconvnet", "deconvnet", {}, "w"),
    ("guided_backprop", "guided_backprop", {}, "w"),
    ("input_t_gradient", "input_t_gradient", {}, "w * x"),
    ("lrp.z", "lrp.z", {}, "w * x"),
    ("lrp.epsilon", "lrp.epsilon", {"epsilon": 1e-3}, "w * x"),
]


@dataclass
class Result:
    label: str
    method: str
    relevance: np.ndarray  # [N, D]
    cos_signal: float  # mean |cos(R, a_s)|
    cos_attribution: float  # mean |cos(R, a_s * w)|
    expected: str


def explain_all(model: ox.Model, train: np.ndarray, test: np.ndarray, a_s: np.ndarray, w: np.ndarray,
                methods: Sequence[tuple[str, str, dict[str, Any], str]] = METHODS,
                batch_size: int = 256) -> tuple[list[Result], dict[str, ox.Explainer]]:
    """Fits (where the method learns) on `train` and explains `test` with target 0 for every method."""
    results: list[Result] = []
    explainers: dict[str, ox.Explainer] = {}
    for label, method, params, expected in methods:
        ex = ox.explainer(model, method, **params)
        if method.startswith("pattern."):
            ex.fit(train, batch_size=batch_size)
        rel = np.asarray(ex.explain(test, target=0))
        results.append(Result(label, method, rel.reshape(len(test), -1), mean_abs_cosine(rel, a_s),
                              mean_abs_cosine(rel, a_s * w), expected))
        explainers[label] = ex
    return results, explainers


def print_table(toy: Toy, w: np.ndarray, results: Sequence[Result]) -> None:
    a_s, a_d = toy.a_s, toy.a_d
    dims = "x".join(str(d) for d in toy.shape)
    print(f"toy: {dims} inputs, {len(toy.x)} samples; cos(a_s, a_d) = {cosine(a_s, a_d):.3f}")
    print(f"least-squares weight w: cos(w, a_s) = {cosine(w, a_s):.4f}, cos(w, a_d) = {cosine(w, a_d):+.4f} "
          f"(w cancels the distractor instead of pointing at the signal)")
    head = f"{'method':<32}{'|cos(R, a_s)|':>14}{'|cos(R, a_s*w)|':>17}   paper: R ∝"
    print(head)
    print("-" * (len(head) + 18))
    print(f"{'(weight w)':<32}{abs(cosine(w, a_s)):>14.4f}{abs(cosine(w, a_s * w)):>17.4f}")
    for r in results:
        print(f"{r.label:<32}{r.cos_signal:>14.4f}{r.cos_attribution:>17.4f}   {r.expected}")


def save_figure(path: str, toy: Toy, w: np.ndarray, pattern: np.ndarray, test: np.ndarray, f_test: np.ndarray,
                results: Sequence[Result]) -> bool:
    """Signal, distractor, weight, the learned pattern and each method's explanation of one sample."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure (pip install matplotlib)")
        return False
    i = int(np.argmax(f_test))  # the sample with the largest positive output: every R points its natural way
    if len(toy.shape) == 1:
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 5))
        pts = toy.x[:600]
        ax0.scatter(pts[:, 0], pts[:, 1], s=4, c=toy.y[:600], cmap="coolwarm", alpha=0.6)
        for vec, name, color in [(toy.a_s, "signal a_s", "C2"), (toy.a_d, "distractor a_d", "C7"),
                                 (w, "weight w", "C3"), (pattern, "pattern a (fitted)", "C0")]:
            v = vec / np.linalg.norm(vec) * 3
            ax0.plot([0, v[0]], [0, v[1]], color=color, lw=2.5, label=name)
            ax0.plot([v[0]], [v[1]], "o", color=color)
        ax0.legend(loc="lower right", fontsize=8)
        ax0.set_aspect("equal")
        ax0.set_title("data x = a_s y + a_d eps (colour: y)")
        ax1.plot([0, 1], [0, 0], color="black", lw=6, alpha=0.15, label="true signal a_s")
        styles = ["-", "--", ":", "-."]
        for k, r in enumerate(results):
            v = r.relevance[i] / max(float(np.linalg.norm(r.relevance[i])), 1e-30)
            ax1.plot([0, v[0]], [0, v[1]], styles[k % 4], color=f"C{k % 10}", lw=2, label=r.label)
            ax1.plot([v[0]], [v[1]], "o", color=f"C{k % 10}")
        ax1.legend(loc="lower left", fontsize=7)
        ax1.set_xlim(-1.3, 1.3)
        ax1.set_ylim(-1.3, 1.3)
        ax1.set_aspect("equal")
        ax1.set_title(f"direction of each explanation of sample {i} (f(x) > 0)")
    else:
        panels = [("signal a_s", toy.a_s), ("distractor a_d", toy.a_d), ("weight w", w),
                  ("pattern a (fitted)", pattern), ("a_s * w", toy.a_s * w), (f"input x[{i}]", test[i])]
        panels += [(f"{r.label}\n|cos a_s| {r.cos_signal:.2f}, |cos a_s*w| {r.cos_attribution:.2f}", r.relevance[i])
                   for r in results]
        cols = 6
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows))
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (title, img) in zip(axes.ravel(), panels):
            v = float(np.max(np.abs(img))) or 1.0
            ax.imshow(np.reshape(img, toy.shape), cmap="bwr", vmin=-v, vmax=v)
            ax.set_title(title, fontsize=7)
    fig.suptitle("Linear toy (Kindermans et al. 2018): only PatternNet recovers the signal, "
                 "only PatternAttribution attributes it", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"figure: {path}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", choices=["image", "2d"], default="image")
    ap.add_argument("--samples", type=int, default=20000, help="training samples (the patterns are fitted on them)")
    ap.add_argument("--explain", type=int, default=200, help="held-out samples to explain")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="patternnet_toy.png", help="figure path (needs matplotlib)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    toy = make_toy(args.toy, n=args.samples + args.explain, seed=args.seed)
    train, test = toy.x[: args.samples], toy.x[args.samples :]
    w, b = fit_linear(train, toy.y[: args.samples])
    model = ox.load(export_onnx(w, b))
    f_test = model.predict(test)[:, 0]
    r2 = 1.0 - float(np.mean((f_test - toy.y[args.samples :]) ** 2) / np.var(toy.y[args.samples :]))
    print(f"linear model: held-out R^2 = {r2:.4f}")

    results, explainers = explain_all(model, train, test, toy.a_s, w)
    print_table(toy, w, results)
    pattern = explainers["pattern.net (linear)"].patterns["dense"]["a_pos"].ravel()
    print(f"fitted pattern a: cos(a, a_s) = {cosine(pattern, toy.a_s):.4f}")
    if hasattr(ox, "signal_quality"):
        rho = {est: ox.signal_quality(model, toy.x, estimator=est)["dense"] for est in ("linear", "relu", "filter")}
        print("signal estimator quality rho (paper eq. 7, higher is better; measured on held-out samples, so even "
              "a perfect estimator scores about sqrt(D / samples) below 1): "
              + ", ".join(f"{k} {v:.3f}" for k, v in rho.items()))
    save_figure(args.out, toy, w, pattern, test, f_test, results)
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
