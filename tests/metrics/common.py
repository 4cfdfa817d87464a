"""Shared pieces of the metric tests: small PyTorch models exported to ONNX (the torch module is
the reference forward for the independent re-derivations), and Quantus, which imports Zennit and
so needs the torchvision stub of tests/helpers/zennit_compat.py."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import onnxplain as ox  # noqa: E402
from tests.helpers.torch_models import export  # noqa: E402


def quantus() -> Any:
    """Quantus, or skip the test."""
    from tests.helpers.zennit_compat import import_zennit

    try:
        import_zennit()
    except ImportError as e:
        pytest.skip(f"zennit (imported by quantus) is not available: {e}")
    return pytest.importorskip("quantus")


class Crop(nn.Module):
    """Runs ``inner`` on x[..., top:top+h, left:left+w]: lets a padded input stand for the original."""

    def __init__(self, inner: nn.Module, top: int, left: int, h: int, w: int) -> None:
        super().__init__()
        self.inner, self.box = inner, (top, left, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, lft, h, w = self.box
        return self.inner(x[:, :, t:t + h, lft:lft + w])


def cnn(channels: int, size: int, seed: int = 0, classes: int = 10) -> nn.Module:
    """Conv-ReLU-MaxPool-Conv-ReLU-Dense-ReLU-Dense with random weights, for (channels, size, size)."""
    torch.manual_seed(seed)
    half = size // 2
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * half * half, 16), nn.ReLU(), nn.Linear(16, classes),
    ).eval()


def cnn1d(channels: int, length: int, seed: int = 0, classes: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(channels, 6, 5, padding=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * length, classes)).eval()


@functools.cache
def case(kind: str, channels: int, size: int, seed: int = 0) -> tuple[nn.Module, bytes]:
    net = cnn(channels, size, seed) if kind == "cnn" else cnn1d(channels, size, seed)
    sample = torch.randn(2, channels, size, size) if kind == "cnn" else torch.randn(2, channels, size)
    return net, export(net, sample, dynamo=False)


def load(data: bytes) -> ox.Model:
    return ox.load(data, threads=2)


def torch_forward(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).double().numpy()


def inputs(shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)
