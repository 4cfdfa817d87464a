"""VGG-16 and ResNet-50 built from their papers' layer tables (torchvision is not importable
beside the CPU torch build we use), with random weights, exported to ONNX bytes."""

from __future__ import annotations

import io

import torch
from torch import nn

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG16(nn.Module):
    """Simonyan & Zisserman 2015, configuration D."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU()]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU()
        self.sum: nn.Module | None = None  # Zennit's Sum layer, so that Zennit sees the residual sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        if self.sum is not None:
            return self.relu(self.sum(torch.stack([self.body(x), idt], dim=-1)))
        return self.relu(self.body(x) + idt)


class ResNet50(nn.Module):
    """He et al. 2016, 50 layers (3, 4, 6, 3 bottleneck blocks)."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks: list[nn.Module] = []
        c = 64
        for width, n, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            for i in range(n):
                blocks.append(Bottleneck(c, width, stride if i == 0 else 1))
                c = width * 4
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so folding is exercised with real numbers."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def export(model: nn.Module, shape: tuple[int, ...]) -> bytes:
    """Legacy exporter, dynamic batch, eval mode."""
    model.eval()
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.zeros(shape),), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=13, dynamo=False)
    return buf.getvalue()


class SmallCNN(nn.Module):
    """The small CNNs users explain over whole data sets: two conv blocks (3x3, ReLU, 2x2 max pool)
    and two dense layers, on side x side inputs (8: digits-like, 16, 32: CIFAR-like)."""

    def __init__(self, side: int, c_in: int = 3, widths: tuple[int, int] = (32, 64), classes: int = 10) -> None:
        super().__init__()
        a, b = widths
        self.features = nn.Sequential(
            nn.Conv2d(c_in, a, 3, padding=1), nn.ReLU(), nn.Conv2d(a, a, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(b * (side // 4) ** 2, 128), nn.ReLU(),
                                  nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def mlp(sizes: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


# name -> input shape of one sample, for the small models (bench/forward.py's small rows).
SMALL = {
    "cnn8": (3, 8, 8),
    "cnn16": (3, 16, 16),
    "cnn32": (3, 32, 32),
    "digits": (1, 8, 8),
    "mlp_mnist": (784,),
    "mlp_tabular": (20,),
}


def build(name: str) -> bytes:
    torch.manual_seed(0)
    if name in ("cnn8", "cnn16", "cnn32"):
        return export(SmallCNN(SMALL[name][1]), (1, *SMALL[name]))
    if name == "digits":
        from onnxplain.demo import MODEL_PATH

        return MODEL_PATH.read_bytes()
    if name == "mlp_mnist":
        return export(mlp((784, 256, 128, 10)), (1, 784))
    if name == "mlp_tabular":
        return export(mlp((20, 64, 64, 2)), (1, 20))
    if name == "vgg16":
        return export(VGG16(), (1, 3, 224, 224))
    if name == "resnet50":
        m = ResNet50()
        randomize_batchnorm(m)
        return export(m, (1, 3, 224, 224))
    raise ValueError(f"unknown architecture {name!r}")
