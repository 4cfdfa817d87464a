"""deeplift.rescale against Captum DeepLift, Captum DeepLiftShap and shap DeepExplainer on PyTorch
models exported to ONNX (legacy exporter, dynamic batch), summation-to-delta on every model, and
the cases where the peers go wrong (a reused or functional ReLU, ReLU -> MaxPool with a non-zero
reference, overlapping max pooling) checked against a small DeepLIFT written here with autograd.

Captum is run in float64 (a copy of the model in double precision): the comparison then measures
onnxplain's float32 result against the exact Rescale values rather than against Captum's own
float32 rounding (Rescale divides activation differences, which amplifies rounding near Δx = 0).
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import onnxplain as ox  # noqa: E402
from tests.helpers.torch_models import export  # noqa: E402

METHOD = "deeplift.rescale"
ATTR_TOL = 1e-4  # of max|R|, against Captum / shap / the oracle
DELTA_TOL = 1e-4  # of max_c |f_c(x) - f_c(ref)|, summation-to-delta in float32

# ---------------------------------------------------------------------------------------------
# Models Captum handles: every nonlinearity a module of a type it hooks, one module per use.


class DLMLP(nn.Module):
    """Every element-wise activation Captum's DeepLift knows, each its own module."""

    def __init__(self, d_in: int = 12, hidden: int = 16, classes: int = 5) -> None:
        super().__init__()
        acts: list[nn.Module] = [nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.ELU(), nn.LeakyReLU(0.1), nn.Softplus()]
        layers: list[nn.Module] = []
        d = d_in
        for act in acts:
            layers += [nn.Linear(d, hidden), act]
            d = hidden
        layers.append(nn.Linear(hidden, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DLNormalized(nn.Module):
    """Sub, Div and Mul by constants (input normalisation, a fixed scale): linear ops."""

    def __init__(self, d_in: int = 12, hidden: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.register_buffer("mean", 0.3 * torch.randn(d_in))
        self.register_buffer("std", 0.5 + torch.rand(d_in))
        self.fc1 = nn.Linear(d_in, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1((x - self.mean) / self.std)) * 0.5)


class DLCNN(nn.Module):
    """Conv -> ReLU -> MaxPool twice. The conv biases are negative (set in build()), so that a
    zero reference has all-zero activations before each pooling: a reference window is then a
    tie whose credit is zero, and Captum's ReLU -> MaxPool hook order (see test_captum_off)
    does not matter."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 3 * 3, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DLBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()  # one module per use (Captum raises on a reused one)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.down(x))


class DLResNet(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(DLBlock(8, 8), DLBlock(8, 12, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class DLGrouped(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),  # depthwise
            nn.Conv2d(8, 12, 1, groups=4), nn.ReLU(),  # grouped pointwise
            nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=3), nn.ReLU(),
            nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12 * 2 * 2, 8), nn.ELU(), nn.Linear(8, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DLInception(nn.Module):
    """Four branches concatenated; the pooling branch averages (overlapping max pooling is one
    of the cases where Captum is wrong: see test_captum_off)."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(3, 4, 1)
        self.b3 = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Tanh(), nn.Conv2d(2, 4, 5, padding=2))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(3, 2, 1))
        self.head = nn.Sequential(nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1))


class DLBatchNorm(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.BatchNorm1d(16), nn.Sigmoid(),
                                        nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ---------------------------------------------------------------------------------------------
# Models Captum gets wrong. `relu_fn` is called for the functional ReLU so that the oracle can swap
# it; in the ONNX graph it is an ordinary Relu node.


class ReusedReLU(nn.Module):
    """One ReLU module applied twice (as torchvision's BasicBlock does) and a functional relu.
    per_use=True gives the same function with one module per use and no functional relu."""

    def __init__(self, per_use: bool = False, d_in: int = 10, hidden: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, hidden)
        self.fc4 = nn.Linear(hidden, classes)
        self.relu = nn.ReLU()
        self.per_use = per_use
        self.relu2 = nn.ReLU()
        self.relu3 = nn.ReLU()
        self.relu_fn: Callable[[torch.Tensor], torch.Tensor] = F.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.fc1(x))
        if self.per_use:
            return self.fc4(self.relu3(self.fc3(self.relu2(self.fc2(h)))))
        return self.fc4(self.relu_fn(self.fc3(self.relu(self.fc2(h)))))


class FunctionalReLU(nn.Module):
    """A ReLU module and a functional relu, nothing reused: Captum runs, and the functional relu
    silently passes the plain gradient."""

    def __init__(self, per_use: bool = False, d_in: int = 10, hidden: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)
        self.relu = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.per_use = per_use
        self.relu_fn: Callable[[torch.Tensor], torch.Tensor] = F.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc2(self.relu(self.fc1(x)))
        return self.fc3(self.relu2(h) if self.per_use else self.relu_fn(h))


class ReLUMaxPool(nn.Module):
    """Conv -> ReLU -> MaxPool with positive and negative biases (a reference activates units)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 2 * 2, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class OverlapMaxPool(nn.Module):
    """Overlapping max pooling (kernel 3, stride 1 and 2) on convolutions, no ReLU before it."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 6, 3, padding=1), nn.MaxPool2d(3, 1, 1),
            nn.Conv2d(6, 6, 3, padding=1), nn.MaxPool2d(3, 2, 1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (DLMLP, (12,)),
    "normalized": (DLNormalized, (12,)),
    "cnn_maxpool": (DLCNN, (2, 12, 12)),
    "resnet": (DLResNet, (3, 8, 8)),
    "grouped": (DLGrouped, (4, 8, 8)),
    "inception": (DLInception, (3, 8, 8)),
    "batchnorm": (DLBatchNorm, (3, 8, 8)),
    "reused_relu": (ReusedReLU, (10,)),
    "functional_relu": (FunctionalReLU, (10,)),
    "relu_maxpool": (ReLUMaxPool, (2, 8, 8)),
    "overlap_maxpool": (OverlapMaxPool, (2, 8, 8)),
}
CAPTUM_OK = ["mlp", "cnn_maxpool", "resnet", "grouped", "inception", "batchnorm"]
CAPTUM_OFF = ["reused_relu", "functional_relu", "relu_maxpool", "overlap_maxpool"]


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """Random weights (seeded), non-trivial BatchNorm statistics, eval mode."""
    torch.manual_seed(seed)
    cls, shape = MODELS[name]
    model = cls()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    if name in ("mlp", "normalized"):
        # Default init shrinks the output differences of six saturating layers to ~5e-2; with gain 2
        # f(x) - f(ref) is ~2, so float32 rounding of the outputs stays small beside it.
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 2.0 / m.in_features**0.5)
                nn.init.uniform_(m.bias, -0.5, 0.5)
    if name == "cnn_maxpool":
        for m in model.features:
            if isinstance(m, nn.Conv2d):
                m.bias.data.uniform_(-0.3, -0.05)
    return model.eval(), shape


_CACHE: dict[str, tuple[nn.Module, bytes, tuple[int, ...]]] = {}


def case(name: str) -> tuple[nn.Module, ox.Model, tuple[int, ...]]:
    if name not in _CACHE:
        model, shape = build(name)
        _CACHE[name] = (model, export(model, torch.randn(2, *shape), dynamo=False), shape)
    model, data, shape = _CACHE[name]
    return model, ox.load(data), shape


def inputs(shape: tuple[int, ...], n: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


# Rescale in float32 is ill-conditioned where a smooth activation's output barely changes: the
# multiplier (y(x) - y(ref)) / (x - ref) carries the rounding of y, ulp(y) / |Δy| relative, and
# that goes straight into the contributions. Measured on a BatchNorm/Sigmoid conv net with random
# inputs: onnxplain's and Captum's own float32 DeepLift both miss the float64 result by up to
# ~5e-3 of max|R| on some samples (~1e-5 typically). The comparisons against the peers therefore
# draw inputs whose every rounding-sensitive neuron (Sigmoid, Tanh, Softplus; ELU and LeakyReLU on
# their negative side; ReLU and positive sides are exact) changes by at least COND of its
# magnitude: over 100 draws per model the worst error is then 2.5e-5 of max|R| (tolerance 1e-4).
# Summation-to-delta holds regardless and is tested on unconditioned inputs.
COND = 2e-3
ROUNDED = (nn.Sigmoid, nn.Tanh, nn.Softplus, nn.ELU, nn.LeakyReLU)


def pairs(x: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Every (input, reference) pair DeepLIFT forms: base of 1 row (shared), n rows (one per
    sample) or K rows (a stack: each sample against each row). Returns xs, refs and K."""
    n = len(x)
    if len(base) in (1, n):
        return x, np.broadcast_to(base, x.shape), 1
    k = len(base)
    return np.repeat(x, k, axis=0), np.tile(base, (n,) + (1,) * (base.ndim - 1)), k


def conditioning(model: nn.Module, x: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per sample, min over rounding-sensitive neurons of |y(x) - y(ref)| / max(|y(x)|, |y(ref)|)."""
    m = copy.deepcopy(model).double()
    seen: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    handles = [mod.register_forward_hook(lambda mod, i, o: seen.append((mod, i[0], o)))
               for mod in m.modules() if isinstance(mod, ROUNDED)]
    xs, rs, k = pairs(x, base)
    with torch.no_grad():
        m(torch.from_numpy(np.concatenate([xs, rs]).astype(np.float64)))
    for h in handles:
        h.remove()
    cond = np.full(len(xs), np.inf)
    for mod, zin, zout in seen:
        a, b = (t.reshape(len(xs), -1).numpy() for t in zin.chunk(2))
        ya, yb = (t.reshape(len(xs), -1).numpy() for t in zout.chunk(2))
        sensitive = a != b
        if isinstance(mod, (nn.ELU, nn.LeakyReLU)):
            sensitive &= (a < 0) | (b < 0)
        ratio = np.abs(ya - yb) / np.maximum(np.maximum(np.abs(ya), np.abs(yb)), 1e-30)
        cond = np.minimum(cond, np.where(sensitive, ratio, np.inf).min(axis=1))
    return cond.reshape(len(x), k).min(axis=1)


def conditioned_inputs(model: nn.Module, shape: tuple[int, ...], n: int, base: np.ndarray, seed: int = 1
                       ) -> np.ndarray:
    """n standard normal inputs (float32) drawn until each is well conditioned (see COND) with its
    references: base of 1 row, n rows (row i for sample i) or a stack."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for _ in range(200):
        cand = rng.standard_normal((64, *shape)).astype(np.float32)
        if len(base) == n and n > 1:
            b = base[len(out):len(out) + 1]
            ok = np.flatnonzero(conditioning(model, cand, b) >= COND)
            out += [cand[i] for i in ok[:1]]
        else:
            ok = np.flatnonzero(conditioning(model, cand, base) >= COND)
            out += [cand[i] for i in ok[: n - len(out)]]
        if len(out) == n:
            return np.stack(out)
    raise AssertionError("no well-conditioned inputs found")


def references(kind: str, shape: tuple[int, ...], n: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(our `reference` argument, the same references batched for the torch side: [1 or n or K, *shape])."""
    rng = np.random.default_rng(7)
    if kind == "zero":
        return None, np.zeros((1, *shape), np.float32)
    if kind == "sample":
        r = (0.7 * rng.standard_normal(shape)).astype(np.float32)
        return r, r[None]
    if kind == "batch":
        r = (0.7 * rng.standard_normal((n, *shape))).astype(np.float32)
        return r, r
    raise AssertionError(kind)


def targets_for(n: int, classes: int) -> list[int]:
    return [(2 * i + 1) % classes for i in range(n)]


def forward64(model: nn.Module, a: np.ndarray) -> np.ndarray:
    m = copy.deepcopy(model).double()
    with torch.no_grad():
        return m(torch.from_numpy(a.astype(np.float64))).numpy()


def rel_err(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per sample max |got - expected| / max|expected| (over the whole batch)."""
    scale = float(np.max(np.abs(expected))) or 1.0
    return np.abs(got.astype(np.float64) - expected).reshape(len(got), -1).max(axis=1) / scale


def close(got: np.ndarray, expected: np.ndarray, tol: float = ATTR_TOL, what: str = "") -> None:
    """Tolerance relative to the attribution's scale; the message names the worst sample."""
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert np.all(np.isfinite(got)), f"{what}: non-finite values"
    err = rel_err(got, expected)
    worst = int(np.argmax(err))
    scale = float(np.max(np.abs(expected)))
    assert err[worst] <= tol, (f"{what}: sample {worst} max error {err[worst]:.2e} of max|R| {scale:.3e} "
                               f"(tolerance {tol:.1e}); all {err}")


def captum_deeplift(model: nn.Module, x: np.ndarray, base: np.ndarray | float, targets: Any,
                    shap_mean: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Captum DeepLift (DeepLiftShap with shap_mean) in float64: attributions and convergence delta."""
    m = copy.deepcopy(model).double()
    cls = captum_attr.DeepLiftShap if shap_mean else captum_attr.DeepLift
    baselines = base if isinstance(base, float) else torch.from_numpy(base.astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr, delta = cls(m).attribute(torch.from_numpy(x.astype(np.float64)), baselines=baselines, target=targets,
                                       return_convergence_delta=True)
    return attr.detach().numpy(), delta.detach().numpy()


def output_differences(model: nn.Module, x: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, float]:
    """f(x) - f(ref) per sample and class in float64 (f(ref) averaged over a stack of K != n
    references), and the largest |f| seen (float32 rounding of the outputs themselves)."""
    out = forward64(model, np.concatenate([x, base]))
    fx, fr = out[: len(x)], out[len(x):]
    if len(base) not in (1, len(x)):
        fr = fr.mean(axis=0, keepdims=True)
    return fx - fr, float(np.abs(out).max())


def delta_scale(model: nn.Module, x: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per sample max_c |f_c(x) - f_c(ref)|."""
    return np.abs(output_differences(model, x, base)[0]).max(axis=1)


def check_delta(model: nn.Module, x: np.ndarray, base: np.ndarray, targets: list[int], rel: np.ndarray,
                delta: np.ndarray, what: str) -> None:
    """The reported delta equals sum(R) - (f_t(x) - f_t(ref)) computed here, and is within
    float32 rounding of zero: |delta| <= DELTA_TOL * max_c |f_c(x) - f_c(ref)| per sample."""
    diff, fmax = output_differences(model, x, base)
    expected = rel.reshape(len(x), -1).sum(axis=1, dtype=np.float64) - diff[np.arange(len(x)), targets]
    scale = np.abs(diff).max(axis=1)
    assert delta.shape == (len(x),), delta.shape
    # ours takes f from its float32 forward: rounding of |f| itself is allowed for
    atol = 1e-5 * float(scale.max()) + 1e-6 * fmax
    np.testing.assert_allclose(delta, expected, rtol=0, atol=atol, err_msg=f"{what}: reported delta")
    ratio = np.abs(delta) / scale
    worst = int(np.argmax(ratio))
    assert ratio[worst] <= DELTA_TOL, (f"{what}: sample {worst} |delta| {abs(delta[worst]):.3e} = {ratio[worst]:.2e} "
                                       f"of max|f(x)-f(ref)| {scale[worst]:.3e}; all {ratio}")


# ---------------------------------------------------------------------------------------------
# An independent DeepLIFT-Rescale for ReLU and 2-D max pooling: the input and the references run
# stacked in one batch [x; ref] (as Captum does) through autograd Functions whose backward applies
# the rule; the multipliers of the input half are read back. Max pooling credits by scatter-add,
# so overlapping windows add up.


class _RescaleReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        return z.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        zx, zr = z.chunk(2)
        dx = zx - zr
        dy = zx.clamp(min=0) - zr.clamp(min=0)
        small = dx.abs() < 1e-10
        m = torch.where(small, (zx > 0).to(g.dtype), dy / torch.where(small, torch.ones_like(dx), dx))
        return g * torch.cat([m, m])


def _rescale_relu(z: torch.Tensor) -> torch.Tensor:
    return _RescaleReLUFn.apply(z)


class _RescaleReLU(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _rescale_relu(z)


class _CrossMaxPoolFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:  # type: ignore[override]
        y, idx = F.max_pool2d(z, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, True)
        ctx.save_for_backward(z, y, idx)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        z, y, idx = ctx.saved_tensors
        zx, zr = z.chunk(2)
        yx, yr = y.chunk(2)
        ix, ir = (i.flatten(2) for i in idx.chunk(2))
        gx = g.chunk(2)[0]
        cross = torch.maximum(yx, yr)
        flat = zx.flatten(2)
        credit = torch.zeros_like(flat)
        credit.scatter_add_(2, ix, (gx * (cross - yr)).flatten(2))  # to the input's max
        credit.scatter_add_(2, ir, (gx * (yx - cross)).flatten(2))  # to the reference's max
        grad = torch.zeros_like(flat).scatter_add_(2, ix, gx.flatten(2))
        dx = (zx - zr).flatten(2)
        small = dx.abs() < 1e-10
        m = torch.where(small, grad, credit / torch.where(small, torch.ones_like(dx), dx)).view_as(zx)
        return torch.cat([m, m]), None


class _CrossMaxPool(nn.Module):
    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _CrossMaxPoolFn.apply(z, self.pool)


def oracle_deeplift(model: nn.Module, x: np.ndarray, base: np.ndarray, targets: list[int]) -> np.ndarray:
    """DeepLIFT-Rescale contributions in float64 for models made of ReLU, MaxPool2d and linear ops,
    one reference per sample (base of 1 or n rows)."""
    m = copy.deepcopy(model).double()
    for parent in list(m.modules()):
        for child_name, child in parent.named_children():
            if type(child) is nn.ReLU:
                setattr(parent, child_name, _RescaleReLU())
            elif type(child) is nn.MaxPool2d:
                setattr(parent, child_name, _CrossMaxPool(child))
            else:
                assert not isinstance(child, (nn.Tanh, nn.Sigmoid, nn.ELU, nn.LeakyReLU, nn.Softplus,
                                              nn.MaxPool1d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)), child
    if hasattr(m, "relu_fn"):
        m.relu_fn = _rescale_relu
    n = len(x)
    xt = torch.from_numpy(x.astype(np.float64))
    rt = torch.from_numpy(np.broadcast_to(base, x.shape).astype(np.float64))
    both = torch.cat([xt, rt]).requires_grad_(True)
    out = m(both)
    (g,) = torch.autograd.grad(out[torch.arange(n), torch.tensor(targets)].sum(), both)
    return (g[:n] * (xt - rt)).detach().numpy()


# ---------------------------------------------------------------------------------------------
# 1. Equal to Captum DeepLift.

EQUAL_CASES = [(name, kind) for name in CAPTUM_OK for kind in ("zero", "sample", "batch")
               if not (name == "cnn_maxpool" and kind != "zero")]


@pytest.mark.parametrize(("name", "kind"), EQUAL_CASES)
def test_rescale_equals_captum_deeplift(name: str, kind: str) -> None:
    model, m, shape = case(name)
    n = 3
    ours_ref, base = references(kind, shape, n)
    x = conditioned_inputs(model, shape, n, base)
    classes = m.predict(x[:1]).shape[1]
    targets = targets_for(n, classes)
    expected, captum_delta = captum_deeplift(model, x, base, targets)
    # Captum is a sound oracle here: its own float64 delta is at rounding level on these models.
    scale = delta_scale(model, x, base)
    assert np.all(np.abs(captum_delta) <= 1e-9 * scale), captum_delta / scale
    got, delta = ox.explainer(m, METHOD, reference=ours_ref).explain(x, target=targets, return_delta=True)
    close(got, expected, what=f"{name}/{kind}")
    check_delta(model, x, base, targets, got, delta, f"{name}/{kind}")


@pytest.mark.parametrize("kind", ["zero", "sample"])
def test_sub_div_mul_by_constants_are_linear(kind: str) -> None:
    """(x - mean) / std and h * 0.5 with constant mean, std: Sub, Div, Mul whose second input is an
    initializer, linear in the activation (not a product of two activations)."""
    model, m, shape = case("normalized")
    ours_ref, base = references(kind, shape, 3)
    x = conditioned_inputs(model, shape, 3, base)
    tg = targets_for(3, 4)
    expected, _ = captum_deeplift(model, x, base, tg)
    got, delta = ox.explainer(m, METHOD, reference=ours_ref).explain(x, target=tg, return_delta=True)
    close(got, expected, what=f"normalized/{kind}")
    check_delta(model, x, base, tg, got, delta, f"normalized/{kind}")


def test_default_target_is_the_argmax() -> None:
    model, m, shape = case("resnet")
    _, base = references("sample", shape, 4)
    x = conditioned_inputs(model, shape, 4, base, seed=3)
    argmax = forward64(model, x).argmax(axis=1).tolist()
    ex = ox.explainer(m, METHOD, reference=base[0])
    got = ex.explain(x)
    expected, _ = captum_deeplift(model, x, base, argmax)
    close(got, expected, what="target=None")
    close(ex.explain(x, target=argmax), expected, what="explicit argmax")


def test_reference_forms_agree() -> None:
    """zeros(sample) == None; a stack of one reference == that reference; per-sample references all
    equal to r == r; an int target == that target for every sample."""
    model, m, shape = case("batchnorm")
    n = 2
    _, base = references("sample", shape, n)
    zeros = np.zeros((1, *shape), np.float32)
    quarter = np.full((1, *shape), 0.25, np.float32)
    x = conditioned_inputs(model, shape, n, np.concatenate([zeros, base, quarter]), seed=4)
    expected0, _ = captum_deeplift(model, x, zeros, [2, 2])
    close(ox.explainer(m, METHOD, reference=zeros[0]).explain(x, target=2), expected0, what="zeros")
    close(ox.explainer(m, METHOD).explain(x, target=2), expected0, what="None")
    expected, _ = captum_deeplift(model, x, base, [1, 1])
    for label, r in [("sample", base[0]), ("stack of 1", base), ("per-sample copies", np.repeat(base, n, axis=0))]:
        close(ox.explainer(m, METHOD, reference=r).explain(x, target=1), expected, what=label)
    # A scalar is accepted too (the shape error lists it): a constant reference, as in Captum.
    expected_c, _ = captum_deeplift(model, x, 0.25, [1, 1])
    close(ox.explainer(m, METHOD, reference=0.25).explain(x, target=1), expected_c, what="scalar 0.25")


def test_reference_equal_to_input_gives_zero() -> None:
    """Δx = 0 everywhere: the gradient fallback, no NaN, and nothing to distribute."""
    model, m, shape = case("mlp")
    x = inputs(shape, 3)
    rel, delta = ox.explainer(m, METHOD, reference=x.copy()).explain(x, target=[0, 1, 2], return_delta=True)
    assert np.all(np.isfinite(rel))
    assert np.all(rel == 0.0)
    assert np.all(np.abs(delta) <= 1e-6 * np.abs(forward64(model, x)).max())


def test_one_explainer_several_batches() -> None:
    """A fixed reference (and its cached activations) serves any batch; a 3-row reference is one
    per sample for a batch of 3 and a stack to average for a batch of 2."""
    model, m, shape = case("inception")
    _, one = references("sample", shape, 1)
    _, three = references("batch", shape, 3)
    x = conditioned_inputs(model, shape, 5, np.concatenate([one, three]), seed=6)
    ex1 = ox.explainer(m, METHOD, reference=one[0])
    for part in (x[:3], x[3:], x[:1]):
        tg = targets_for(len(part), 5)
        close(ex1.explain(part, target=tg), captum_deeplift(model, part, one, tg)[0], what=f"one ref, n={len(part)}")
    ex3 = ox.explainer(m, METHOD, reference=three)
    tg = targets_for(3, 5)
    close(ex3.explain(x[:3], target=tg), captum_deeplift(model, x[:3], three, tg)[0], what="per-sample")
    tg = targets_for(2, 5)
    avg = captum_deeplift(model, x[3:], three, tg, shap_mean=True)[0]
    close(ex3.explain(x[3:], target=tg), avg, what="stack of 3 for a batch of 2")
    close(ex3.explain(x[:3], target=targets_for(3, 5)), captum_deeplift(model, x[:3], three, targets_for(3, 5))[0],
          what="per-sample again")


# ---------------------------------------------------------------------------------------------
# 2. Where Captum goes wrong: ours equals the autograd oracle and keeps summation-to-delta.


def test_oracle_equals_captum_where_captum_holds() -> None:
    """The oracle itself against Captum, on the ReLU/MaxPool CNN with a zero reference."""
    model, _, shape = case("cnn_maxpool")
    x = inputs(shape, 3)
    base = np.zeros((1, *shape), np.float32)
    tg = targets_for(3, 4)
    close(oracle_deeplift(model, x, base, tg), captum_deeplift(model, x, base, tg)[0], tol=1e-10, what="oracle")


@pytest.mark.parametrize("name", CAPTUM_OFF)
def test_captum_off(name: str) -> None:
    model, m, shape = case(name)
    n = 4
    x = inputs(shape, n, seed=2)
    _, base = references("sample", shape, n)  # a random reference: it activates units of its own
    tg = targets_for(n, 4)
    scale = delta_scale(model, x, base)
    if name == "reused_relu":
        # Captum refuses a module used twice (its backward hook finds the stored input deleted by the
        # first use): "A Module ReLU() was detected that does not contain some of the input/output
        # attributes ... used more than once".
        with pytest.raises(RuntimeError, match="more than once"):
            captum_deeplift(model, x, base, tg)
    else:
        # Captum's float64 |delta| / max|f(x) - f(ref)| measured on these four samples (Captum 0.9.0):
        # functional_relu 0.07, 0.93, 0.64, 3.3 (F.relu is not hooked: it passes the plain gradient);
        # relu_maxpool 0.47, 0.56, 0.20, 0.76 (Captum's ReLU hooks the gradient of its output tensor
        # before the MaxPool hooks the same tensor as its input, so the ReLU rescales the plain
        # max-pool gradient instead of the cross-max multipliers); overlap_maxpool 0.93, 0.34, 0.87,
        # 0.88 (max_unpool2d writes, it does not add, where overlapping windows share an argmax).
        # Ours: <= 5e-7 on the same samples.
        _, captum_delta = captum_deeplift(model, x, base, tg)
        assert np.max(np.abs(captum_delta) / scale) > 0.1, np.abs(captum_delta) / scale
    got, delta = ox.explainer(m, METHOD, reference=base[0]).explain(x, target=tg, return_delta=True)
    close(got, oracle_deeplift(model, x, base, tg), what=f"{name} vs oracle")
    check_delta(model, x, base, tg, got, delta, name)
    if name in ("reused_relu", "functional_relu"):
        # The same function with one ReLU module per use is what Captum can do: equal to ours.
        per_use = MODELS[name][0](per_use=True)  # type: ignore[call-arg]
        per_use.load_state_dict(model.state_dict())
        close(got, captum_deeplift(per_use.eval(), x, base, tg)[0], what=f"{name} vs Captum one module per use")


# ---------------------------------------------------------------------------------------------
# 3. Averaged references (DeepSHAP): shap.DeepExplainer and Captum DeepLiftShap.

K = 4  # background rows, != the batch size 3


def background(shape: tuple[int, ...]) -> np.ndarray:
    return (0.7 * np.random.default_rng(11).standard_normal((K, *shape))).astype(np.float32)


@pytest.mark.parametrize("name", [*CAPTUM_OK, "relu_maxpool"])
def test_averaged_references_equal_shap_deep_explainer(name: str) -> None:
    shap = pytest.importorskip("shap")
    model, m, shape = case(name)
    bg = background(shape)
    x = conditioned_inputs(model, shape, 3, bg, seed=8)

    def shap_values(dtype: Any) -> np.ndarray:
        mm = copy.deepcopy(model).to(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = shap.DeepExplainer(mm, torch.from_numpy(bg).to(dtype))
            return np.asarray(explainer.shap_values(torch.from_numpy(x).to(dtype), check_additivity=False),
                              np.float64)

    phis = shap_values(torch.float64)
    classes = m.predict(x[:1]).shape[1]
    assert phis.shape == (*x.shape, classes), phis.shape
    ex = ox.explainer(m, METHOD, reference=bg)
    for t in range(classes):
        got, delta = ex.explain(x, target=t, return_delta=True)
        close(got, phis[..., t], what=f"{name} class {t}")
        check_delta(model, x, bg, [t] * len(x), got, delta, f"{name} class {t}")


@pytest.mark.parametrize("name", [n for n in CAPTUM_OK if n != "cnn_maxpool"])
def test_averaged_references_equal_captum_deeplift_shap(name: str) -> None:
    model, m, shape = case(name)
    bg = background(shape)
    x = conditioned_inputs(model, shape, 3, bg, seed=9)
    classes = m.predict(x[:1]).shape[1]
    tg = targets_for(3, classes)
    expected, _ = captum_deeplift(model, x, bg, tg, shap_mean=True)
    got, delta = ox.explainer(m, METHOD, reference=bg).explain(x, target=tg, return_delta=True)
    close(got, expected, what=name)
    check_delta(model, x, bg, tg, got, delta, name)


# ---------------------------------------------------------------------------------------------
# 4. Summation-to-delta on every model and every reference form, float32.


@pytest.mark.parametrize("kind", ["zero", "sample", "batch", "stack"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_summation_to_delta(name: str, kind: str) -> None:
    model, m, shape = case(name)
    n = 3
    x = inputs(shape, n, seed=12)
    if kind == "stack":
        base = background(shape)
        ours_ref: np.ndarray | None = base
    else:
        ours_ref, base = references(kind, shape, n)
    classes = m.predict(x[:1]).shape[1]
    tg = targets_for(n, classes)
    rel, delta = ox.explainer(m, METHOD, reference=ours_ref).explain(x, target=tg, return_delta=True)
    assert rel.shape == x.shape and rel.dtype == np.float32
    check_delta(model, x, base, tg, rel, delta, f"{name}/{kind}")


# ---------------------------------------------------------------------------------------------
# 5. Errors.


@pytest.mark.parametrize(("name", "bad"), [("mlp", (13,)), ("mlp", (3, 13)), ("mlp", (2, 3, 12)), ("mlp", (12, 1)),
                                         ("resnet", (3, 8, 9)), ("resnet", (2, 8, 8)), ("resnet", (2, 3, 8)),
                                         ("resnet", (1, 1, 3, 8, 8)), ("resnet", (8, 8, 3))])
def test_reference_of_a_wrong_shape_is_refused(name: str, bad: tuple[int, ...]) -> None:
    """The error names the shape given and the sample shape the accepted forms are built on."""
    _, m, shape = case(name)
    x = inputs(shape, 3)
    with pytest.raises(ValueError, match="(?i)shape") as err:
        ox.explainer(m, METHOD, reference=np.zeros(bad, np.float32)).explain(x)
    assert str(bad) in str(err.value) and str(shape) in str(err.value), str(err.value)


class _SoftmaxHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_softmax_kept_is_refused_naming_it() -> None:
    torch.manual_seed(0)
    data = export(_SoftmaxHead().eval(), torch.randn(2, 6), dynamo=False)
    x = inputs((6,), 2)
    stripped = ox.load(data)  # default: the softmax is stripped and DeepLIFT applies
    _, delta = ox.explainer(stripped, METHOD).explain(x, target=0, return_delta=True)
    assert np.all(np.abs(delta) <= 1e-5 * np.abs(stripped.predict(x)).max())
    with pytest.raises(ValueError, match="(?i)softmax"):
        ox.explainer(ox.load(data, strip_softmax=False), METHOD).explain(x, target=0)


class _Swish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(h))


def test_product_of_activations_is_refused_naming_it() -> None:
    torch.manual_seed(0)
    m = ox.load(export(_Swish().eval(), torch.randn(2, 6), dynamo=False))
    mul = [name for name, op, _ in m.nodes if op == "Mul"]
    assert len(mul) == 1, m.summary()
    with pytest.raises(ValueError, match=re.escape(mul[0])):
        ox.explainer(m, METHOD).explain(inputs((6,), 2), target=0)
