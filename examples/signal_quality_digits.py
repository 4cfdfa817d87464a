"""Signal-estimator quality ρ (Kindermans et al. 2018, eq. 7) on the bundled digits CNN.

The CNN that ``onnxplain demo`` explains was trained on scikit-learn's ``load_digits``
(scripts/train_digits.py). This fits each estimator on the first half of the 1797 digits and
measures ρ per linear op on the second half, printing one table (rows: layers; columns: S_x, S_w,
S_a, S_a+-). The paper finds S_a+- >= S_a > S_w ≈ S_x on trained networks (its Fig. 3, VGG-16).

Run: ``python examples/signal_quality_digits.py`` (needs scikit-learn; a few seconds).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import onnxplain as ox

MODEL = Path(ox.__file__).resolve().parent / "data" / "digits_cnn.onnx"
ESTIMATORS = [("identity", "S_x"), ("filter", "S_w"), ("linear", "S_a"), ("relu", "S_a+-")]


def table(seed: int = 0) -> dict[str, dict[str, float]]:
    """ρ per layer and estimator: {node: {estimator: rho}}."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1], as in training
    x = x[np.random.default_rng(seed).permutation(len(x))]
    model = ox.load(MODEL)
    out: dict[str, dict[str, float]] = {}
    for est, _ in ESTIMATORS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # layers with too few held-out rows report NaN
            rho = ox.signal_quality(model, x, estimator=est, holdout=0.5)
        for node, r in rho.items():
            out.setdefault(node, {})[est] = float(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="shuffles the digits before the split")
    args = ap.parse_args()
    t = table(args.seed)
    print("rho per linear op, fitted on 898 digits, measured on 899 held-out digits (1 is best; "
          "S_x is NaN: its residual is 0)")
    print(f"{'layer':<34}" + "".join(f"{name:>9}" for _, name in ESTIMATORS))
    for node, row in t.items():
        print(f"{node:<34}" + "".join(f"{row.get(est, float('nan')):>9.4f}" for est, _ in ESTIMATORS))


if __name__ == "__main__":
    main()
