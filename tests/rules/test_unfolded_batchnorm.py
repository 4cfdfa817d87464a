"""BatchNormalization that cannot be folded into a linear op: after a Concat (DenseNet) and at the
start of a pre-activation block (ResNet v2: BN -> ReLU -> Conv). Exported by torch with
do_constant_folding=False so the BN nodes stay. Forward against onnxruntime, the gradient against
torch autograd, and the LRP composites against Zennit: Zennit's MergeBatchNorm canonizers merge a BN
into the linear layer before it (as our fold_batch_norm pass does); a BN it cannot merge stays. onnxplain
treats such a BN (kind Normalization) as pass-through, R_in = R_out, as Zennit's composites do
(their base layer map gives BatchNorm the Pass rule).

Zennit imports torchvision, which is not installed: this folder's conftest stubs it first.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn
from zennit import composites as zc
from zennit.attribution import Gradient
from zennit.canonizers import NamedMergeBatchNorm
from zennit.core import Hook
from zennit.layer import Sum

import onnxplain as ox
from tests.helpers.onnx_builders import ort_run
from tests.helpers.torch_models import export


class PreActBlock(nn.Module):
    """He et al. 2016 (identity mappings): BN -> ReLU -> Conv -> BN -> ReLU -> Conv, plus the
    shortcut (a 1x1 conv of the pre-activated input where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU()
        # conv1 -> bn2 in one Sequential: Zennit's SequentialMergeBatchNorm merges it, as we fold it.
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out))
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.short = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None
        self.sum = Sum()
        self.zennit_sum = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu1(self.bn1(x))
        idt = x if self.short is None else self.short(a)
        out = self.conv2(self.relu2(self.conv1(a)))
        return self.sum(torch.stack([idt, out], dim=-1)) if self.zennit_sum else idt + out


class PreActResNet(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.blocks = nn.ModuleList([PreActBlock(8, 8), PreActBlock(8, 12, 2)])
        self.bn = nn.BatchNorm2d(12)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.fc(torch.flatten(self.pool(self.relu(self.bn(x))), 1))


class DenseLayer(nn.Module):
    """DenseNet-BC: BN -> ReLU -> 1x1 Conv -> BN -> ReLU -> 3x3 Conv, concatenated to its input."""

    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Sequential(nn.Conv2d(c_in, 2 * growth, 1, bias=False), nn.BatchNorm2d(2 * growth))
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv2(self.relu2(self.conv1(self.relu1(self.bn1(x)))))], 1)


class DenseNetSmall(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.block1 = nn.Sequential(DenseLayer(8, 4), DenseLayer(12, 4))
        self.trans = nn.Sequential(nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 1, bias=False), nn.AvgPool2d(2))
        self.block2 = DenseLayer(8, 4)
        self.bn = nn.BatchNorm2d(12)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.trans(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(self.relu(self.bn(x))), 1))


BUILDERS = {"preact_resnet": PreActResNet, "densenet": DenseNetSmall}
# BN nodes no linear op precedes: the pre-activation BNs (one per block) and the final one;
# DenseNet's BNs after a Concat (or the stem conv's output read by two nodes), the transition's and the final one.
UNFOLDABLE = {"preact_resnet": 3, "densenet": 5}
SHAPE = (3, 10, 10)


def _randomize(net: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(torch.rand(c, generator=g) * 1.5 + 0.25)
                mod.bias.copy_(torch.rand(c, generator=g) * 0.6 - 0.3)
                mod.running_mean.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            elif getattr(mod, "bias", None) is not None and isinstance(mod, (nn.Conv2d, nn.Linear)):
                mod.bias.uniform_(-0.3, 0.3, generator=g)


@functools.cache
def _exported(name: str) -> tuple[nn.Module, bytes]:
    torch.manual_seed(sum(map(ord, name)))
    net = BUILDERS[name]().eval()
    _randomize(net, 7)
    data = export(net, torch.zeros((2, *SHAPE)), dynamo=False, keep_batchnorm=True)
    ref = BUILDERS[name]().eval()
    ref.load_state_dict(net.state_dict())
    return ref.double(), data


def _input(n: int, seed: int, box: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if box:
        return rng.uniform(-1, 1, (n, *SHAPE)).astype(np.float32)
    return rng.standard_normal((n, *SHAPE)).astype(np.float32)


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def _assert_matches(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32
    scale = float(np.abs(ref).max()) or 1.0
    err = np.abs(ours.astype(np.float64) - ref)
    bad = err > 1e-4 * np.abs(ref) + 1e-5 * scale
    assert not bad.any(), f"max error {err.max():.3g} at scale {scale:.3g} ({int(bad.sum())} of {ref.size} entries off)"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_unfoldable_batchnorm_stays_and_forward_matches_onnxruntime(name: str) -> None:
    _, data = _exported(name)
    model = ox.load(data, strip_softmax=False)
    assert model.op_counts.get("BatchNormalization", 0) == UNFOLDABLE[name]
    assert ("BatchNormalization", "normalization") in {(op, kind) for _, op, kind in model.nodes}
    unfolded = ox.load(data, strip_softmax=False, fold_batch_norm=False)
    assert unfolded.op_counts["BatchNormalization"] > UNFOLDABLE[name]
    for batch in (1, 3):
        x = _input(batch, batch)
        expected = ort_run(data, {"x": x})[0]
        assert _rel_err(model.predict(x), expected) <= 1e-4
        assert _rel_err(unfolded.predict(x), expected) <= 1e-4


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "kept"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_gradient_matches_torch_autograd(name: str, fold: bool) -> None:
    net, data = _exported(name)
    model = ox.load(data, strip_softmax=False, fold_batch_norm=fold)
    x = _input(3, 11)
    target = np.array([0, 3, 1])
    ours = ox.explainer(model, "gradient").explain(x, target=target)
    xd = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = net(xd)
    out[torch.arange(3), torch.as_tensor(target)].sum().backward()
    _assert_matches(ours, xd.grad.numpy())


class _GradientHook(Hook):
    """A Zennit hook that changes nothing: the plain gradient goes through the module."""

    def backward(self, module, grad_input, grad_output):  # noqa: ANN001, ANN201 - Zennit's signature
        return grad_input


class _ExactMergeBatchNorm(NamedMergeBatchNorm):
    """Zennit's merge, after which the merged BN is exactly the identity. Zennit's own leaves it
    computing x / sqrt(1 + eps) (running_var reset to 1 with eps kept): a 5e-6 change of the block's
    conv branch that the residual Sum's Norm rule, R_i = x_i / (x_1 + x_2) * R, amplifies where the
    two branches nearly cancel (to 3e-3 of the largest relevance on this net,
    test_zennit_merge_residue_is_amplified_by_the_sum). Our fold removes the BN, so the oracle is
    the net the merge describes, with nothing left in place of the BN."""

    def register(self, linears, batch_norm):  # noqa: ANN001, ANN201 - Zennit's signature
        super().register(linears, batch_norm)
        self.eps = batch_norm.eps
        batch_norm.eps = 0.0

    def remove(self):  # noqa: ANN201 - Zennit's signature
        super().remove()
        self.batch_norm.eps = self.eps


def _merge_pairs(net: nn.Module) -> list[tuple[list[str], str]]:
    return [([f"{name}.0"], f"{name}.1") for name, mod in net.named_modules()
            if isinstance(mod, nn.Sequential) and len(mod) == 2 and isinstance(mod[1], nn.BatchNorm2d)]


def _merge(net: nn.Module, exact: bool = True) -> NamedMergeBatchNorm:
    """Merges each (Conv, BN) pair held in one Sequential, as our fold does. Not Zennit's
    SequentialMergeBatchNorm: it pairs leaves in registration order, so here it would also merge
    the stem conv into the next block's first BN, although the conv's output is read by the shortcut
    or the Concat as well (fold_batch_norm folds only into a linear op whose output the BN alone reads)."""
    return (_ExactMergeBatchNorm if exact else NamedMergeBatchNorm)(_merge_pairs(net))


def _zennit(net: nn.Module, composite, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    for mod in net.modules():
        if isinstance(mod, PreActBlock):
            mod.zennit_sum = True  # the residual sum as Zennit's Sum module (Norm rule), as ours
    xd = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    with Gradient(net, composite) as attributor:
        _, rel = attributor(xd, attr_output=lambda out: torch.eye(out.shape[1], dtype=out.dtype)[target] * out)
    return rel.detach().numpy()


COMPOSITES = [
    ("lrp.epsilon_plus_flat", {}, zc.EpsilonPlusFlat, {}, False),
    ("lrp.epsilon_gamma_box", {"low": -1.0, "high": 1.0}, zc.EpsilonGammaBox, {"low": -1.0, "high": 1.0}, True),
    ("lrp.epsilon_gamma_box", {"low": -2.0, "high": 3.0, "gamma": 0.5}, zc.EpsilonGammaBox,
     {"low": -2.0, "high": 3.0, "gamma": 0.5}, True),
]


def _assert_close_to_float64(ours: np.ndarray, ref: np.ndarray) -> None:
    # Zennit itself run in float32 differs from its float64 result by up to 6e-5 of the largest
    # relevance on these nets (sums over 10+ layers, gamma's and epsilon's divisions).
    assert ours.shape == ref.shape and ours.dtype == np.float32
    scale = float(np.abs(ref).max())
    err = np.abs(ours.astype(np.float64) - ref)
    assert err.max() <= 2e-4 * scale, f"max error {err.max():.3g} at scale {scale:.3g}"


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("comp", COMPOSITES, ids=["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_gamma_box_2"])
def test_composites_pass_relevance_through_batchnorm(name: str, comp) -> None:
    """Every BN kept (fold_batch_norm=False): the composites against Zennit's, which give BatchNorm
    the Pass rule in their base layer map, and not the gradient (a per-channel scale) through it."""
    method, params, make, zparams, box = comp
    net, data = _exported(name)
    model = ox.load(data, strip_softmax=False, fold_batch_norm=False)
    x = _input(2, 5, box=box)
    target = np.array([2, 0])
    ours = ox.explainer(model, method, **params).explain(x, target=target)
    _assert_close_to_float64(ours, _zennit(net, make(**zparams), x, target))
    grad_bn = _zennit(net, make(**zparams, layer_map=[(nn.BatchNorm2d, _GradientHook())]), x, target)
    assert _rel_err(ours.astype(np.float64), grad_bn) > 1e-2


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("comp", COMPOSITES, ids=["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_gamma_box_2"])
def test_composites_with_the_foldable_batchnorms_folded(name: str, comp) -> None:
    """The default load: the BNs after a conv folded, the others kept. Zennit merging the same pairs
    is the oracle."""
    method, params, make, zparams, box = comp
    net, data = _exported(name)
    model = ox.load(data, strip_softmax=False)
    x = _input(2, 5, box=box)
    target = np.array([2, 0])
    ours = ox.explainer(model, method, **params).explain(x, target=target)
    assert np.isfinite(ours).all() and np.abs(ours).max() > 0
    _assert_close_to_float64(ours, _zennit(net, make(**zparams, canonizers=[_merge(net)]), x, target))


@pytest.mark.parametrize("comp", COMPOSITES, ids=["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_gamma_box_2"])
def test_zennit_merge_residue_is_amplified_by_the_sum(comp) -> None:
    """Why the oracle above makes the merged BN exactly the identity: with Zennit's plain merge
    (BN left as x / sqrt(1 + 1e-5)) the pre-activation net's relevance moves by far more than
    that 5e-6, because the residual Sum's Norm rule divides by the sum of its branches; the
    forward output moves by no more than ~1e-5 of its scale."""
    method, params, make, zparams, box = comp
    net, _ = _exported("preact_resnet")
    x = _input(2, 5, box=box)
    target = np.array([2, 0])
    exact = _zennit(net, make(**zparams, canonizers=[_merge(net)]), x, target)
    plain = _zennit(net, make(**zparams, canonizers=[_merge(net, exact=False)]), x, target)
    assert np.abs(plain - exact).max() > 1e-4 * np.abs(exact).max()
    xd = torch.tensor(x, dtype=torch.float64)
    with torch.no_grad():
        before = net(xd)
        handles = _merge(net, exact=False).apply(net)
        after = net(xd)
        for h in handles:
            h.remove()
    assert (after - before).abs().max() <= 1e-5 * before.abs().max()


def test_pass_through_conserves_relevance_at_the_batchnorm() -> None:
    # A bias-free ReLU net whose first op is an unfoldable BN: LRP-z (epsilon ~ 0) on the net equals
    # LRP-z on the net without the BN applied to BN(x), the BN passing relevance unchanged.
    torch.manual_seed(3)
    body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 10 * 10, 4, bias=False)).eval()
    bn = nn.BatchNorm2d(3).eval()
    _randomize(bn, 1)
    with torch.no_grad():
        bn.bias.zero_()
        bn.running_mean.zero_()  # BN(x) = a * x: no shift, so LRP-0 conserves f_t exactly
    whole = ox.load(export(nn.Sequential(bn, body).eval(), torch.zeros(2, *SHAPE), dynamo=False), strip_softmax=False)
    rest = ox.load(export(body, torch.zeros(2, *SHAPE), dynamo=False), strip_softmax=False)
    assert whole.op_counts["BatchNormalization"] == 1
    x = _input(3, 9)
    with torch.no_grad():
        bx = bn(torch.tensor(x)).numpy()
    r_whole = ox.explainer(whole, "lrp.z").explain(x, target=1)
    r_rest = ox.explainer(rest, "lrp.z").explain(bx, target=1)
    np.testing.assert_allclose(r_whole, r_rest, rtol=1e-4, atol=1e-6 * np.abs(r_rest).max())
    f = whole.predict(x)[:, 1]
    np.testing.assert_allclose(r_whole.reshape(3, -1).sum(1), f, rtol=1e-4, atol=1e-5 * np.abs(f).max())
