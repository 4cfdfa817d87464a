"""``onnxplain demo``: loads the bundled digits CNN, runs it and checks it against onnxruntime.

The model (``data/digits_cnn.onnx``) is a small CNN trained on scikit-learn's 8x8 digits by
``scripts/train_digits.py`` and exported with torch.onnx; it keeps a BatchNormalization node and
a final Softmax so that the demo shows the load-time rewrites.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import model as _model

DATA = Path(__file__).resolve().parent / "data"
MODEL_PATH = DATA / "digits_cnn.onnx"
SAMPLES_PATH = DATA / "digits_samples.npz"

_SHADES = " .:-=+*#%@"


def load_samples() -> tuple[np.ndarray, np.ndarray]:
    """The held-out digits shipped with the package: images (N, 1, 8, 8) in [0, 1] and labels."""
    with np.load(SAMPLES_PATH) as f:
        return f["x"].astype(np.float32), f["y"].astype(np.int64)


def ascii_digits(images: np.ndarray, captions: list[str]) -> str:
    """Renders 8x8 images side by side in characters (two per pixel, so they look square)."""
    rows = []
    for r in range(images.shape[-2]):
        cells = []
        for img in images:
            v = np.clip(img.reshape(images.shape[-2], images.shape[-1])[r], 0.0, 1.0)
            cells.append("".join(_SHADES[int(round(p * (len(_SHADES) - 1)))] * 2 for p in v))
        rows.append("   ".join(cells))
    width = 2 * images.shape[-1]
    rows.append("   ".join(c[:width].center(width) for c in captions))
    return "\n".join(rows)


def _best_time(fn: Callable[[], object], repeats: int = 20) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


DEMO_METHODS: list[tuple[str, dict[str, Any]]] = [
    ("gradient", {}),
    ("integrated_gradients", {"steps": 32}),
    ("lrp.epsilon_plus_flat", {}),
    ("lrp.epsilon_gamma_box", {"low": 0.0, "high": 1.0}),
    ("deep_taylor.bounded", {"low": 0.0, "high": 1.0}),
]


def run(print_fn: Callable[[str], None] = print, threads: int | None = None,
        out_png: str = "onnxplain_demo.png") -> int:
    """Runs the demo; returns 0 when onnxplain agrees with onnxruntime, 1 otherwise."""
    import onnxruntime as ort

    x, y = load_samples()
    print_fn(f"onnxplain demo: {MODEL_PATH.name}, {len(x)} held-out digits from sklearn's load_digits\n")
    model = _model.load(str(MODEL_PATH), threads=threads)
    print_fn(model.summary())

    logits = model.predict(x)
    pred = logits.argmax(axis=1)
    print_fn(f"\naccuracy on the bundled digits: {(pred == y).mean():.3f}\n")
    show = np.arange(8)
    print_fn(ascii_digits(x[show], [f"{y[i]}->{pred[i]}" for i in show]))
    print_fn("(true label -> predicted)\n")

    # The oracle: onnxruntime on the unmodified file (it keeps the softmax), against onnxplain with
    # the softmax kept as well.
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(MODEL_PATH), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = sess.run(None, {name: x})[0]
    kept = _model.load(str(MODEL_PATH), strip_softmax=False, threads=threads)
    probs = kept.predict(x)
    err = float(np.max(np.abs(probs - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
    same = bool((probs.argmax(1) == ref.argmax(1)).all())
    ok = err <= 1e-4 and same
    print_fn(f"onnxplain vs onnxruntime (softmax kept): max relative error {err:.2e}, "
             f"same predicted class for all {len(x)}: {same}  ->  {'OK' if ok else 'MISMATCH'}")
    t_ox = _best_time(lambda: model.predict(x))
    t_ort = _best_time(lambda: sess.run(None, {name: x}))
    print_fn(f"forward of the batch of {len(x)}: onnxplain {t_ox * 1e3:.2f} ms, onnxruntime {t_ort * 1e3:.2f} ms "
             f"(ratio {t_ox / t_ort:.2f})")

    # Explanations of the first digits: one row per method, the input on top.
    from . import explain as _explain
    from . import viz

    shown = x[:8]
    rows = [[viz.grey(img) for img in shown]]
    print_fn("\nexplanations of the first 8 digits (target = predicted class):")
    for method, params in DEMO_METHODS:
        ex = _explain.explainer(model, method, **params)
        t0 = time.perf_counter()
        if ex.info.family in ("lrp", "deep_taylor"):
            rel, delta = ex.explain(shown, return_delta=True)
            fx = model.predict(shown).max(axis=1)
            note = f"sum(R) - f(x): max |delta| {np.max(np.abs(delta)):.2e} (f(x) ~ {np.mean(np.abs(fx)):.1f})"
        else:
            rel = ex.explain(shown)
            note = ""
        dt = time.perf_counter() - t0
        rows.append([viz.heatmap(r) for r in rel])
        print_fn(f"  {method:<26} {dt * 1e3:7.1f} ms  {note}")
    out = Path(out_png)
    viz.save_png(out, viz.grid(rows))
    print_fn(f"wrote {out.resolve()} (rows: input, " + ", ".join(m for m, _ in DEMO_METHODS) + "; red = for the class, "
             "blue = against)")
    print_fn("\nNext: `onnxplain inspect model.onnx` and `onnxplain explain model.onnx x.npy --method lrp.epsilon` "
             "on your own model; `onnxplain methods` lists the methods.")
    return 0 if ok else 1
