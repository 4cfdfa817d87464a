"""The gradient family against Captum (and torch autograd where Captum is wrong or absent) on six
PyTorch architectures exported to ONNX with the legacy exporter."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import onnxplain as ox  # noqa: E402
from tests.helpers.torch_models import ARCHITECTURES, build, export  # noqa: E402

_CACHE: dict[str, tuple[torch.nn.Module, bytes, tuple[int, ...]]] = {}


def case(name: str) -> tuple[torch.nn.Module, ox.Model, tuple[int, ...]]:
    """The torch model (final softmax removed, as onnxplain strips it) and the loaded ONNX model."""
    if name not in _CACHE:
        model, shape = build(name)
        data = export(model, torch.randn(2, *shape), dynamo=False)
        ref = copy.deepcopy(model)
        if name == "cnn_bn":
            ref.classifier[-1] = torch.nn.Identity()
        _CACHE[name] = (ref.eval(), data, shape)
    ref, data, shape = _CACHE[name]
    return ref, ox.load(data), shape


def close(got: np.ndarray, expected: np.ndarray, tol: float = 1e-4) -> None:
    """Tolerance relative to the explanation's scale."""
    assert got.shape == expected.shape
    scale = float(np.max(np.abs(expected))) or 1.0
    err = float(np.max(np.abs(got - expected))) / scale
    assert err <= tol, f"max error {err:.2e} of the scale {scale:.3e}"


def inputs(shape: tuple[int, ...], n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


NAMES = sorted(ARCHITECTURES)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_and_input_x_gradient_equal_captum(name: str) -> None:
    ref, m, shape = case(name)
    x = inputs(shape)
    targets = [1, 4, 2]
    xt = torch.from_numpy(x)
    sal = captum_attr.Saliency(ref).attribute(xt, target=targets, abs=False).detach().numpy()
    close(ox.explainer(m, "gradient").explain(x, target=targets), sal)
    ixg = captum_attr.InputXGradient(ref).attribute(xt, target=targets).detach().numpy()
    close(ox.explainer(m, "input_t_gradient").explain(x, target=targets), ixg)


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
                                    "gausslegendre"])
@pytest.mark.parametrize("name", ["mlp", "resnet", "inception"])
def test_integrated_gradients_equal_captum(name: str, method: str) -> None:
    ref, m, shape = case(name)
    x = inputs(shape, n=2)
    # Not a constant image: ties in max pooling would make the argmax depend on rounding.
    base = (0.1 * np.random.default_rng(5).standard_normal(shape)).astype(np.float32)
    ig = captum_attr.IntegratedGradients(ref)
    expected, delta = ig.attribute(torch.from_numpy(x), baselines=torch.from_numpy(base[None]), target=3, n_steps=12,
                                   method=method, return_convergence_delta=True)
    got, ours = ox.explainer(m, "integrated_gradients", steps=12, method=method, baseline=base).explain(
        x, target=3, return_delta=True)
    close(got, expected.detach().numpy(), 2e-4)
    # Same completeness gap as Captum's (both approximate the same integral the same way).
    np.testing.assert_allclose(ours, delta.detach().numpy(), atol=1e-3 * float(np.abs(got).sum()))


def test_integrated_gradients_completeness_with_many_steps() -> None:
    _, m, shape = case("vgg_avg")
    x = inputs(shape, n=2)
    _, delta = ox.explainer(m, "integrated_gradients", steps=128, method="gausslegendre").explain(
        x, return_delta=True)
    fx = m.predict(x).max(axis=1)
    assert np.all(np.abs(delta) <= 1e-3 * np.abs(fx).max())


class _Rectifier(torch.autograd.Function):
    """ReLU whose backward is DeconvNet's or Guided BackProp's, by definition (Springenberg 2015)."""

    mode = "guided"

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if _Rectifier.mode == "deconvnet":
            return g.clamp(min=0)
        return g.clamp(min=0) * (x > 0).to(g.dtype)


class _RectifierModule(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Rectifier.apply(x)


def _definition_oracle(ref: torch.nn.Module, x: np.ndarray, targets: list[int], mode: str) -> np.ndarray:
    model = copy.deepcopy(ref)
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if type(child) is torch.nn.ReLU:
                setattr(parent, child_name, _RectifierModule())
    _Rectifier.mode = mode
    xt = torch.from_numpy(x).requires_grad_(True)
    out = model(xt)
    sel = out[torch.arange(len(targets)), torch.tensor(targets)].sum()
    (g,) = torch.autograd.grad(sel, xt)
    return g.numpy()


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
@pytest.mark.parametrize("name", NAMES)
def test_guided_backprop_and_deconvnet(name: str, method: str) -> None:
    """Against the definition (every ReLU's backward replaced); and against Captum where Captum
    can be right: it hooks ReLU modules, so it misses reused modules (the ResNet's BasicBlock calls
    one nn.ReLU twice, as torchvision does) and functional ReLUs."""
    ref, m, shape = case(name)
    x = inputs(shape)
    targets = [0, 3, 4]
    got = ox.explainer(m, method).explain(x, target=targets)
    close(got, _definition_oracle(ref, x, targets, "guided" if method == "guided_backprop" else "deconvnet"))
    if name != "resnet":
        cls = captum_attr.GuidedBackprop if method == "guided_backprop" else captum_attr.Deconvolution
        expected = cls(ref).attribute(torch.from_numpy(x), target=targets).detach().numpy()
        close(got, expected)


def test_smoothgrad_properties() -> None:
    _, m, shape = case("cnn_bn")
    x = inputs(shape, n=2)
    grad = ox.explainer(m, "gradient").explain(x, target=1)
    close(ox.explainer(m, "smoothgrad", noise_level=0.0, samples=4).explain(x, target=1), grad, 1e-5)
    a = ox.explainer(m, "smoothgrad", samples=8, seed=3).explain(x, target=1)
    b = ox.explainer(m, "smoothgrad", samples=8, seed=3).explain(x, target=1)
    c = ox.explainer(m, "smoothgrad", samples=8, seed=4).explain(x, target=1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # For tiny noise on a smooth enough net the mean of the noisy gradients is the gradient.
    _, mlp, mlp_shape = case("mlp")
    xm = inputs(mlp_shape, n=2)
    many = ox.explainer(mlp, "smoothgrad", samples=32, noise_level=1e-6).explain(xm, target=1)
    close(many, ox.explainer(mlp, "gradient").explain(xm, target=1), 1e-3)


def test_bad_arguments_fail_before_any_work() -> None:
    _, m, shape = case("mlp")
    x = inputs(shape)
    with pytest.raises(ValueError, match="unknown method 'lrp.epsilonn'"):
        ox.explainer(m, "lrp.epsilonn")
    with pytest.raises(ValueError, match="has no parameter 'eps'.*epsilon"):
        ox.explainer(m, "lrp.epsilon", eps=0.1)
    with pytest.raises(ValueError, match="alpha - beta must be 1"):
        ox.explainer(m, "lrp.alpha_beta", alpha=2.0, beta=0.5)
    ex = ox.explainer(m, "gradient")
    with pytest.raises(ValueError, match="target 5 is out of range.*0..4"):
        ex.explain(x, target=5)
    with pytest.raises(ValueError, match="target has 2 entries for a batch of 3"):
        ex.explain(x, target=[0, 1])
    with pytest.raises(ValueError, match="expects 2 dimensions"):
        ex.explain(x[0])
    with pytest.raises(ValueError, match="unknown method 'riemann_up'"):
        ox.explainer(m, "integrated_gradients", method="riemann_up").explain(x)
