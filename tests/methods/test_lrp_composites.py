"""LRP methods and composites against Zennit on six PyTorch architectures exported to ONNX.

Zennit is given what it needs to compute the same thing: BatchNorm merged into the preceding
layer (its SequentialMergeBatchNorm canonizer; onnxplain folds BN at load), and for the ResNet a
copy whose residual sums are zennit.layer.Sum modules, because Zennit does not see a plain `+`
(gradient would then copy R to both branches instead of splitting it; onnxplain's Add is a node
and gets the Norm rule). Start: one-hot times the output in both.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import onnxplain as ox  # noqa: E402
from tests.helpers.torch_models import ARCHITECTURES, BasicBlock, build, export  # noqa: E402
from tests.helpers.zennit_compat import import_zennit  # noqa: E402

zennit = import_zennit()
Z = zennit.rules
T = zennit.types


class _SumBlock(torch.nn.Module):
    """BasicBlock with its residual sum as a Zennit Sum module (same function)."""

    def __init__(self, block: BasicBlock) -> None:
        super().__init__()
        self.block = block
        self.sum = zennit.layer.Sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        idt = x if b.down is None else b.down(x)
        out = b.relu(b.bn1(b.conv1(x)))
        out = b.bn2(b.conv2(out))
        return b.relu(self.sum(torch.stack([out, idt], dim=-1)))


def _zennit_view(name: str, model: torch.nn.Module) -> torch.nn.Module:
    ref = copy.deepcopy(model)
    if name == "cnn_bn":
        ref.classifier[-1] = torch.nn.Identity()  # onnxplain strips the softmax
    if name == "resnet":
        ref.layers = torch.nn.Sequential(*[_SumBlock(b) for b in ref.layers])
    return ref.eval()


_CACHE: dict[str, tuple[torch.nn.Module, ox.Model, tuple[int, ...]]] = {}


def case(name: str) -> tuple[torch.nn.Module, ox.Model, tuple[int, ...]]:
    if name not in _CACHE:
        model, shape = build(name)
        data = export(model, torch.randn(2, *shape), dynamo=False)
        _CACHE[name] = (_zennit_view(name, model), ox.load(data), shape)
    return _CACHE[name]


# The single-rule methods are compared with stabilizers of 1e-3 on both sides: with 1e-6, a
# denominator that float32 rounding leaves near zero (four-channel grouped convolutions after
# ReLU6, residual sums under w^2 / flat) turns rounding differences between any two float32
# implementations into percent-level differences. The presets keep their defaults.
STAB = 1e-3


def _layer_map(linear_rule: object) -> list:
    return [(T.Activation, Z.Pass()), (zennit.layer.Sum, Z.Norm(STAB)), (T.AvgPool, Z.Norm(STAB)),
            (T.Linear, linear_rule)]


def zennit_composite(method: str) -> object:
    c = zennit.composites
    canon = [zennit.canonizers.SequentialMergeBatchNorm()]
    table = {
        "lrp.epsilon": lambda: c.LayerMapComposite(_layer_map(Z.Epsilon(STAB)), canonizers=canon),
        "lrp.z_plus": lambda: c.LayerMapComposite(_layer_map(Z.ZPlus(STAB)), canonizers=canon),
        "lrp.alpha_2_beta_1": lambda: c.LayerMapComposite(_layer_map(Z.AlphaBeta(2.0, 1.0, STAB)), canonizers=canon),
        "lrp.gamma": lambda: c.LayerMapComposite(_layer_map(Z.Gamma(0.25, STAB)), canonizers=canon),
        "lrp.w_square": lambda: c.LayerMapComposite(_layer_map(Z.WSquare(STAB)), canonizers=canon),
        "lrp.flat": lambda: c.LayerMapComposite(_layer_map(Z.Flat(STAB)), canonizers=canon),
        "lrp.epsilon_plus": lambda: c.EpsilonPlus(canonizers=canon),
        "lrp.epsilon_plus_flat": lambda: c.EpsilonPlusFlat(canonizers=canon),
        "lrp.epsilon_alpha2_beta1": lambda: c.EpsilonAlpha2Beta1(canonizers=canon),
        "lrp.epsilon_alpha2_beta1_flat": lambda: c.EpsilonAlpha2Beta1Flat(canonizers=canon),
        "lrp.epsilon_gamma_box": lambda: c.EpsilonGammaBox(low=-3.0, high=3.0, canonizers=canon),
    }
    return table[method]()


def zennit_relevance(ref: torch.nn.Module, method: str, x: np.ndarray, targets: list[int]) -> np.ndarray:
    """Zennit in float64, so that the comparison measures onnxplain's float32 error only."""
    composite = zennit_composite(method)
    with zennit.attribution.Gradient(model=copy.deepcopy(ref).double(), composite=composite) as attributor:
        def start(y: torch.Tensor) -> torch.Tensor:
            return torch.eye(y.shape[1], dtype=y.dtype)[targets] * y

        _, rel = attributor(torch.from_numpy(x).double(), start)
    return rel.detach().numpy()


def close(got: np.ndarray, expected: np.ndarray, tol: float = 1e-4) -> None:
    scale = float(np.max(np.abs(expected))) or 1.0
    err = float(np.max(np.abs(got - expected))) / scale
    assert err <= tol, f"max difference {err:.2e} of the scale {scale:.3e}"


SINGLE = ["lrp.epsilon", "lrp.z_plus", "lrp.alpha_2_beta_1", "lrp.gamma", "lrp.w_square", "lrp.flat"]
COMPOSITES = ["lrp.epsilon_plus", "lrp.epsilon_plus_flat", "lrp.epsilon_alpha2_beta1", "lrp.epsilon_alpha2_beta1_flat",
              "lrp.epsilon_gamma_box"]
CONV_ARCHS = ["cnn_bn", "resnet", "vgg_avg", "grouped"]


def _cases() -> list[tuple[str, str]]:
    out = [(n, m) for n in sorted(ARCHITECTURES) for m in SINGLE]
    for m in COMPOSITES:
        # Zennit's "first layer" is the first module in definition order; onnxplain's is every linear
        # op the input reaches directly: they agree except for the inception net (four input convs),
        # which is compared on the single-rule methods only. EpsilonGammaBox's box goes to Zennit's
        # first *convolution*, so networks without one (the MLP) are not compared on it.
        names = CONV_ARCHS if m == "lrp.epsilon_gamma_box" else [n for n in sorted(ARCHITECTURES) if n != "inception"]
        out += [(n, m) for n in names]
    return out


@pytest.mark.parametrize(("name", "method"), _cases())
def test_equals_zennit(name: str, method: str) -> None:
    ref, m, shape = case(name)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    targets = [1, 3]
    params: dict = {"low": -3.0, "high": 3.0} if method == "lrp.epsilon_gamma_box" else {}
    if method in SINGLE:
        params = {"epsilon": STAB, "stabilizer": STAB} if method == "lrp.epsilon" else {"stabilizer": STAB}
    got = ox.explainer(m, method, **params).explain(x, target=targets)
    # float32 against float64: 1e-3 of the scale leaves room for stabilised denominators near zero.
    close(got, zennit_relevance(ref, method, x, targets), 1e-3)


def test_custom_composite_by_category_name_and_first() -> None:
    ref, m, shape = case("vgg_avg")
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    # The same as Zennit's EpsilonPlusFlat, spelled as a custom composite.
    custom = ox.explainer(m, "lrp", rules={"first": "flat", "conv": "zplus", "dense": ("epsilon", {"epsilon": 1e-6})})
    preset = ox.explainer(m, "lrp.epsilon_plus_flat")
    np.testing.assert_array_equal(custom.explain(x, target=2), preset.explain(x, target=2))
    # Keys by op type and node name take precedence over categories.
    first_conv = next(n for n, op, _k in m.nodes if op == "Conv")
    ex = ox.explainer(m, "lrp", rules={"Conv": "zplus", first_conv: "flat", "dense": "epsilon"})
    assert ex.node_rules[first_conv] == "flat"
    assert {r for n, r in ex.node_rules.items() if n != first_conv and n.endswith("Conv")} <= {"zplus"}
    with pytest.raises(ValueError, match="rules key 'convv'"):
        ox.explainer(m, "lrp", rules={"convv": "epsilon"})
    with pytest.raises(ValueError, match="unknown rule 'epsilonn'"):
        ox.explainer(m, "lrp", rules={"conv": "epsilonn"})


@pytest.mark.parametrize("method", ["lrp.alpha_2_beta_1", "lrp.gamma", "lrp.epsilon_gamma_box"])
def test_repeated_explanations_reuse_modified_weights_correctly(method: str) -> None:
    """The modified weights kept by an explainer across calls give what a fresh explainer gives,
    also for another input and another model."""
    _, m, shape = case("vgg_avg")
    _, m2, shape2 = case("cnn_bn")
    params = {"low": -3.0, "high": 3.0} if method == "lrp.epsilon_gamma_box" else {}
    ex = ox.explainer(m, method, **params)
    rng = np.random.default_rng(7)
    for _ in range(2):
        x = rng.standard_normal((2, *shape)).astype(np.float32)
        np.testing.assert_array_equal(ex.explain(x, target=1), ox.explainer(m, method, **params).explain(x, target=1))
    x2 = rng.standard_normal((1, *shape2)).astype(np.float32)
    np.testing.assert_array_equal(ox.explainer(m2, method, **params).explain(x2, target=0),
                                  ox.explainer(m2, method, **params).explain(x2, target=0))


class _SignMix(torch.nn.Module):
    """A convolution fed by MaxPool of a ReLU (no negative inputs, known without a scan), one fed
    by a Concat of a ReLU output with a signed tensor (its x- branches must run), and a dense
    layer fed by Flatten of a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.c1 = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.c2 = torch.nn.Conv2d(6, 6, 3, padding=1)
        self.c3 = torch.nn.Conv2d(12, 5, 3, padding=1)
        self.fc = torch.nn.Linear(5 * 4 * 4, 4)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
        self.r1, self.r2, self.r3 = torch.nn.ReLU(), torch.nn.ReLU(), torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.c2(self.pool(self.r1(self.c1(x))))
        h = torch.cat([self.r2(b), b], dim=1)
        return self.fc(torch.flatten(self.r3(self.c3(h)), 1))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("method", ["lrp.z_plus", "lrp.alpha_2_beta_1", "lrp.gamma"])
def test_sign_knowledge_through_pooling_and_concat(method: str, batch: int) -> None:
    """Non-negativity is carried through MaxPool and Flatten (those layers take the rectified
    path) but not through a Concat with a signed input (that layer must run its x- branches);
    one image and a batch (z+ stacks its products only for one image) agree with Zennit."""
    model = _SignMix().eval()
    m = ox.load(export(model, torch.randn(2, 3, 8, 8), dynamo=False))
    x = np.random.default_rng(4).standard_normal((batch, 3, 8, 8)).astype(np.float32)
    targets = [1, 3, 0][:batch]
    got = ox.explainer(m, method, stabilizer=STAB).explain(x, target=targets)
    close(got, zennit_relevance(model, method, x, targets), 1e-3)
