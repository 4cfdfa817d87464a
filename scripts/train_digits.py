"""Trains the small digits CNN that ships with onnxplain for ``onnxplain demo`` and exports it.

Data: ``sklearn.datasets.load_digits`` (8x8 grey digits, 1797 samples), scaled to [0, 1].
Writes ``python/onnxplain/data/digits_cnn.onnx`` (legacy torch.onnx exporter, dynamic batch,
BatchNormalization kept in the graph so that the demo shows onnxplain folding it) and
``digits_samples.npz`` (held-out images ``x`` (N, 1, 8, 8) float32 and labels ``y``).

Run from the repository root: ``python scripts/train_digits.py`` (needs torch and scikit-learn;
about 20 s on 2 cores). The outputs are committed; the package never trains at run time.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "python" / "onnxplain" / "data"


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10),
                                        nn.Softmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def main() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1500], order[1500:]
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    for _epoch in range(40):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            logits = model.classifier[:-1](model.features(xt[idx]))
            loss = nn.functional.cross_entropy(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x[test])).argmax(1).numpy() == y[test]).mean()
    print(f"held-out accuracy: {acc:.3f} on {len(test)} digits")

    buf = io.BytesIO()
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), buf, input_names=["image"], output_names=["probabilities"],
                      dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}}, opset_version=13,
                      do_constant_folding=False, dynamo=False, training=torch.onnx.TrainingMode.EVAL)
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name = "onnxplain scripts/train_digits.py (pytorch)"
    onnx.checker.check_model(proto)
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, OUT / "digits_cnn.onnx")
    np.savez_compressed(OUT / "digits_samples.npz", x=x[test], y=y[test])
    print(f"wrote {OUT / 'digits_cnn.onnx'} ({(OUT / 'digits_cnn.onnx').stat().st_size} bytes) and digits_samples.npz")


if __name__ == "__main__":
    main()
