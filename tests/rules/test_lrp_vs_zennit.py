"""The LRP rules (cpp/src/rules/lrp.cpp) against Zennit 0.5.1, the reference implementation.

Small torch models are exported with the legacy exporter and explained by onnxplain in float32;
the same models in float64 are explained by Zennit's Gradient attributor with a composite that
puts the rule under test on every Linear/Conv2d, Pass on ReLU and Norm on average pooling and on
residual sums, started from one-hot x output. Zennit does not hook a plain ``a + b``, so the
residual model uses ``zennit.layer.Sum`` on the Zennit side and ``a + b`` in the exported graph
(the same function; onnxplain gives the Add node the Norm rule, as Zennit gives Sum).

Zennit imports torchvision, which is not installed: this folder's conftest stubs it first.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn
from zennit import composites as zc
from zennit.attribution import Gradient
from zennit.composites import LayerMapComposite
from zennit.layer import Sum
from zennit.rules import AlphaBeta, Epsilon, Flat, Gamma, Norm, Pass, WSquare, ZBox, ZPlus

import onnxplain as ox
from tests.helpers.torch_models import export


class ResidualNet(nn.Module):
    """conv-relu, conv-relu, residual sum, relu, global average pool, dense."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.sum = Sum()
        self.zennit_sum = False  # True: the residual sum as zennit's Sum module (Norm rule)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.r1(self.c1(x))
        g = self.r2(self.c2(h))
        s = self.sum(torch.stack([h, g], dim=-1)) if self.zennit_sum else h + g
        return self.fc(torch.flatten(self.pool(self.r3(s)), 1))


def _mlp() -> nn.Module:
    # The bias-free layer exports as MatMul, the others as Gemm.
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 12, bias=False), nn.ReLU(), nn.Linear(12, 5))


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 2, stride=1, padding=0), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 4),
    )


def _wide_mlp() -> nn.Module:
    # 300x260 and 260x280 after a ReLU: at batch 1 these take the one-row dense products.
    return nn.Sequential(nn.Linear(40, 300), nn.ReLU(), nn.Linear(300, 260), nn.ReLU(), nn.Linear(260, 280),
                         nn.ReLU(), nn.Linear(280, 5))


def _wide_head() -> nn.Module:
    # A wide last layer (300x260) after a ReLU: its outputs reach the rules with either sign, so
    # γ's VJP through W + γW- (cotangent where the output is negative) is used too.
    return nn.Sequential(nn.Linear(40, 300), nn.ReLU(), nn.Linear(300, 260))


INPUT_SHAPES = {"mlp": (10,), "cnn": (3, 12, 12), "residual": (3, 6, 6), "wide_mlp": (40,), "wide_head": (40,)}
BUILDERS = {"mlp": _mlp, "cnn": _cnn, "residual": ResidualNet, "wide_mlp": _wide_mlp, "wide_head": _wide_head}


@functools.cache
def _model(name: str) -> tuple[nn.Module, ox.Model]:
    ref, onnx = _exported(name)
    return ref, ox.load(onnx, strip_softmax=False)


@functools.cache
def _exported(name: str) -> tuple[nn.Module, bytes]:
    torch.manual_seed(sum(map(ord, name)))
    net = BUILDERS[name]().eval()
    with torch.no_grad():  # biases of both signs and a visible size, so the bias branches matter
        for mod in net.modules():
            if getattr(mod, "bias", None) is not None:
                mod.bias.uniform_(-0.3, 0.3)
    onnx = export(net, torch.zeros((2, *INPUT_SHAPES[name])), dynamo=False)
    ref = BUILDERS[name]().eval()
    ref.load_state_dict(net.state_dict())
    ref = ref.double()
    if isinstance(ref, ResidualNet):
        ref.zennit_sum = True
    return ref, onnx


def _zennit(net: nn.Module, composite, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    xd = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    with Gradient(net, composite) as attributor:
        _, rel = attributor(xd, attr_output=lambda out: torch.eye(out.shape[1], dtype=out.dtype)[target] * out)
    return rel.detach().numpy()


def _layer_map(rule, stabilizer: float = 1e-6) -> LayerMapComposite:
    """As Zennit's composites build it (layer_map_base): Norm with the method's stabilizer."""
    norm = Norm(stabilizer=stabilizer)
    return LayerMapComposite([
        (nn.ReLU, Pass()), (Sum, norm), (nn.AvgPool2d, norm), (nn.AdaptiveAvgPool2d, norm),
        ((nn.Linear, nn.Conv2d), rule),
    ])


def _assert_matches(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32
    scale = float(np.abs(ref).max()) or 1.0
    err = np.abs(ours.astype(np.float64) - ref)
    bad = err > 1e-4 * np.abs(ref) + 1e-5 * scale
    assert not bad.any(), f"max error {err.max():.3g} at scale {scale:.3g} ({int(bad.sum())} of {ref.size} entries off)"


def _input(name: str, n: int, seed: int, kind: str = "normal") -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, *INPUT_SHAPES[name])
    if kind == "box":
        return rng.uniform(-1, 1, shape).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "positive":
        return np.abs(x)
    if kind == "negative":
        return -np.abs(x)
    if kind == "zero_row":
        x[0] = 0
    return x


# (onnxplain method, its parameters, the Zennit rule on every linear layer)
RULES = [
    ("lrp.z", {}, lambda: Epsilon(0.0)),
    ("lrp.epsilon", {}, lambda: Epsilon()),
    ("lrp.epsilon", {"epsilon": 0.25}, lambda: Epsilon(0.25)),
    ("lrp.z_plus", {}, lambda: ZPlus()),
    ("lrp.z_plus", {"stabilizer": 0.01}, lambda: ZPlus(stabilizer=0.01)),
    ("lrp.alpha_1_beta_0", {}, lambda: AlphaBeta(1, 0)),
    ("lrp.alpha_2_beta_1", {}, lambda: AlphaBeta(2, 1)),
    ("lrp.alpha_beta", {"alpha": 3.0, "beta": 2.0}, lambda: AlphaBeta(3, 2)),
    ("lrp.gamma", {}, lambda: Gamma()),
    ("lrp.gamma", {"gamma": 1.0, "stabilizer": 1e-3}, lambda: Gamma(1.0, stabilizer=1e-3)),
    ("lrp.w_square", {}, lambda: WSquare()),
    ("lrp.flat", {}, lambda: Flat()),
    ("lrp", {"rules": {"linear": ("zbox", {"low": -1, "high": 1})}}, lambda: ZBox(-1.0, 1.0)),
    ("lrp", {"rules": {"linear": ("zbox", {"low": -2.0, "high": 0.5, "stabilizer": 1e-4})}},
     lambda: ZBox(-2.0, 0.5, stabilizer=1e-4)),
]


def _rule_id(r) -> str:
    return r[0] + ("" if not r[1] else "-" + "-".join(f"{k}" for k in r[1]))


@pytest.mark.parametrize("name", ["mlp", "cnn", "residual"])
@pytest.mark.parametrize("rule", RULES, ids=[_rule_id(r) for r in RULES])
def test_rule_matches_zennit(name: str, rule) -> None:
    method, params, zennit_rule = rule
    net, model = _model(name)
    x = _input(name, 3, 1, "box" if "rules" in params else "normal")
    target = np.array([0, 2, 1])
    ours = ox.explainer(model, method, **params).explain(x, target=target)
    _assert_matches(ours, _zennit(net, _layer_map(zennit_rule(), params.get("stabilizer", 1e-6)), x, target))


@pytest.mark.parametrize("kind", ["positive", "negative", "zero_row"])
@pytest.mark.parametrize("rule", [r for r in RULES if r[0] in ("lrp.z_plus", "lrp.alpha_2_beta_1", "lrp.gamma")],
                         ids=lambda r: _rule_id(r))
def test_sign_split_rules_on_one_signed_inputs(kind: str, rule) -> None:
    """Inputs without negative (or positive) entries take the path that skips the all-zero branches;
    the bias of the skipped-input branch must still enter the denominator."""
    method, params, zennit_rule = rule
    for name in ("mlp", "cnn"):
        net, model = _model(name)
        x = _input(name, 2, 7, kind)
        target = np.array([1, 3])
        ours = ox.explainer(model, method, **params).explain(x, target=target)
        _assert_matches(ours, _zennit(net, _layer_map(zennit_rule(), params.get("stabilizer", 1e-6)), x, target))


def _untransposed(model: bytes) -> bytes:
    """The same graph with every constant-weight Gemm stored as B [K, N] (transB = 0)."""
    m = onnx.load_from_string(model)
    inits = {t.name: t for t in m.graph.initializer}
    for node in m.graph.node:
        attr = next((a for a in node.attribute if a.name == "transB"), None)
        if node.op_type == "Gemm" and attr is not None and attr.i == 1 and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.T), node.input[1]))
            attr.i = 0
    return m.SerializeToString()


@pytest.mark.parametrize("name", ["wide_mlp", "wide_head"])
@pytest.mark.parametrize("layout", ["transB", "untransposed"])
@pytest.mark.parametrize("rule", [r for r in RULES if r[0] in ("lrp.alpha_2_beta_1", "lrp.alpha_beta", "lrp.gamma")],
                         ids=lambda r: _rule_id(r))
def test_sign_split_wide_dense_layers_one_row(rule, layout: str, name: str) -> None:
    """At batch 1 a wide dense layer after a ReLU makes αβ's W+x and W-x (γ's W^γ+ x and
    W^γ- x), and later both VJPs, in one pass over its weight (Op::forward_sign_split /
    vjp_sign_split), for both weight layouts; a batch of 3 takes the two-product path. Both
    against Zennit; on the wide head the targets include outputs below zero."""
    method, params, zennit_rule = rule
    net, exported = _exported(name)
    model = ox.load(exported if layout == "transB" else _untransposed(exported), strip_softmax=False)
    ex = ox.explainer(model, method, **params)
    for n, target in ((1, [3]), (3, [0, 4, 2])):
        x = _input(name, n, 5)
        t = np.array(target)
        if name == "wide_head":
            t = np.argsort(model.predict(x), axis=1)[:, 2]  # among the lowest outputs: negative
            assert (model.predict(x)[np.arange(n), t] < 0).all()
        for threads in (1, 2):
            ours = ex.explain(x, target=t, threads=threads)
            _assert_matches(ours, _zennit(net, _layer_map(zennit_rule()), x, t))


def test_batch_of_one_and_argmax_target() -> None:
    net, model = _model("cnn")
    x = _input("cnn", 1, 3)
    target = np.array([int(np.argmax(model.predict(x)[0]))])
    ours = ox.explainer(model, "lrp.alpha_2_beta_1").explain(x)
    _assert_matches(ours, _zennit(net, _layer_map(AlphaBeta(2, 1)), x, target))


@pytest.mark.parametrize("shape", ["scalar", "channel", "sample", "batch"])
def test_zbox_bounds_broadcast_like_zennit(shape: str) -> None:
    net, model = _model("cnn")
    x = _input("cnn", 2, 5, "box") * 0.5
    rng = np.random.default_rng(11)
    full = {"scalar": (), "channel": (1, 3, 1, 1), "sample": (3, 12, 12), "batch": (2, 3, 12, 12)}[shape]
    low = -1.0 + 0.4 * rng.uniform(size=full)
    high = 1.0 - 0.4 * rng.uniform(size=full)
    low_t, high_t = (torch.tensor(v)[None] if shape == "sample" else torch.tensor(v) for v in (low, high))
    if shape == "scalar":
        low, high = float(low), float(high)
    target = np.array([2, 0])
    ours = ox.explainer(model, "lrp", rules={"first": ("zbox", {"low": low, "high": high}), "linear": "epsilon"}
                        ).explain(x, target=target)
    comp = zc.SpecialFirstLayerMapComposite(
        layer_map=[(nn.ReLU, Pass()), (nn.AvgPool2d, Norm()), ((nn.Linear, nn.Conv2d), Epsilon())],
        first_map=[(nn.Conv2d, ZBox(low_t, high_t))])
    _assert_matches(ours, _zennit(net, comp, x, target))


def test_zbox_on_a_dense_layer_after_flatten_takes_bounds_shaped_like_the_model_input() -> None:
    """low/high shaped like one sample of the model input fit the flattened input of the first layer."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    model = ox.load(export(net, torch.zeros(2, 3, 4), dynamo=False))
    x = np.random.default_rng(2).uniform(-1, 1, (2, 3, 4)).astype(np.float32)
    low = np.full((3, 4), -1.5, np.float32)
    high = np.linspace(1, 2, 12, dtype=np.float32).reshape(3, 4)
    target = np.array([0, 2])
    ours = ox.explainer(model, "lrp", rules={"first": ("zbox", {"low": low, "high": high})}).explain(x, target=target)
    comp = zc.SpecialFirstLayerMapComposite(
        layer_map=[(nn.ReLU, Pass()), (nn.Linear, Epsilon())],
        first_map=[(nn.Linear, ZBox(torch.tensor(low.reshape(1, 12)), torch.tensor(high.reshape(1, 12))))])
    _assert_matches(ours, _zennit(net.double(), comp, x, target))


COMPOSITES = [
    ("lrp.epsilon_plus", {}, lambda: zc.EpsilonPlus()),
    ("lrp.epsilon_plus_flat", {}, lambda: zc.EpsilonPlusFlat()),
    ("lrp.epsilon_alpha2_beta1", {"epsilon": 0.1}, lambda: zc.EpsilonAlpha2Beta1(epsilon=0.1)),
    ("lrp.epsilon_alpha2_beta1_flat", {}, lambda: zc.EpsilonAlpha2Beta1Flat()),
    ("lrp.epsilon_gamma_box", {"low": -3.0, "high": 3.0, "gamma": 0.5},
     lambda: zc.EpsilonGammaBox(low=-3.0, high=3.0, gamma=0.5)),
]


@pytest.mark.parametrize("name", ["cnn", "residual"])
@pytest.mark.parametrize("comp", COMPOSITES, ids=[c[0] for c in COMPOSITES])
def test_named_composites_match_zennit(name: str, comp) -> None:
    """Zennit's composites, whose layer maps add Norm on Sum/AvgPool (AdaptiveAvgPool included) and
    Pass on activations, and a special first layer."""
    method, params, make = comp
    net, model = _model(name)
    x = _input(name, 2, 4)
    target = np.array([1, 0])
    ours = ox.explainer(model, method, **params).explain(x, target=target)
    _assert_matches(ours, _zennit(net, make(), x, target))


def test_relevance_is_conserved_by_z_plus_without_biases() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8, bias=False), nn.ReLU(), nn.Linear(8, 4, bias=False)).eval()
    model = ox.load(export(net, torch.zeros(2, 8), dynamo=False))
    x = np.abs(np.random.default_rng(0).standard_normal((4, 8))).astype(np.float32)
    rel, delta = ox.explainer(model, "lrp.z_plus").explain(x, target=1, return_delta=True)
    y = model.predict(x)[:, 1]
    assert np.all(np.abs(delta[y > 0]) <= 1e-5 * np.abs(y[y > 0]).max())


def test_linear_only_rule_on_an_activation_names_the_node_and_rule() -> None:
    _, model = _model("mlp")
    x = _input("mlp", 2, 0)
    with pytest.raises(ValueError, match=r"(?s)node '.*'.*zplus.*needs a linear op"):
        ox.explainer(model, "lrp", rules={"activation": "zplus"}).explain(x)


def test_zbox_bounds_that_do_not_broadcast_are_refused() -> None:
    _, model = _model("cnn")
    x = _input("cnn", 2, 0, "box")
    msg = r"(?s)zbox: low of shape \(5,\) does not broadcast to the input \(2, 3, 12, 12\)"
    with pytest.raises(ValueError, match=msg):
        ox.explainer(model, "lrp", rules={"first": ("zbox", {"low": np.zeros(5), "high": 1.0})}).explain(x)


def test_epsilon_on_a_weightless_op_is_the_proportional_rule() -> None:
    """Zennit's Epsilon on a module without parameters is x * VJP(R / stab(y)), like Norm."""
    net, model = _model("cnn")
    x = _input("cnn", 2, 9)
    target = np.array([0, 3])
    ours = ox.explainer(model, "lrp", rules={"avgpool": ("epsilon", {"epsilon": 0.5}), "linear": "epsilon"}
                        ).explain(x, target=target)
    comp = LayerMapComposite([(nn.ReLU, Pass()), (nn.AvgPool2d, Epsilon(0.5)), ((nn.Linear, nn.Conv2d), Epsilon())])
    _assert_matches(ours, _zennit(net, comp, x, target))
