"""Occlusion against Captum's ``Occlusion`` on the torch architectures exported to ONNX: windows
over every axis of a sample, cut at the border, averaged where they overlap."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import onnxplain as ox  # noqa: E402
from tests.helpers.torch_models import build, export  # noqa: E402


def case(name: str) -> tuple[torch.nn.Module, ox.Model, tuple[int, ...]]:
    model, shape = build(name)
    data = export(model, torch.randn(2, *shape), dynamo=False)
    ref = copy.deepcopy(model)
    if name == "cnn_bn":
        ref.classifier[-1] = torch.nn.Identity()  # onnxplain strips the final softmax
    return ref.eval(), ox.load(data, threads=2), shape


def close(got: np.ndarray, expected: np.ndarray, tol: float = 1e-4) -> None:
    assert got.shape == expected.shape
    scale = float(np.max(np.abs(expected))) or 1.0
    err = float(np.max(np.abs(got - expected))) / scale
    assert err <= tol, f"max error {err:.2e} of the scale {scale:.3e}"


def captum(ref: torch.nn.Module, x: np.ndarray, window: tuple[int, ...], stride: tuple[int, ...], fill: float,
           target: list[int]) -> np.ndarray:
    with torch.no_grad():
        out = captum_attr.Occlusion(ref).attribute(torch.from_numpy(x), sliding_window_shapes=window, strides=stride,
                                                   baselines=fill, target=target, perturbations_per_eval=7)
    return out.detach().numpy()


@pytest.mark.parametrize("name", ["cnn_bn", "resnet", "inception", "grouped"])
@pytest.mark.parametrize("window,stride", [(4, 4), (5, 3), (3, 1), (6, 4)])
def test_occlusion_equals_captum_on_images(name: str, window: int, stride: int) -> None:
    ref, m, shape = case(name)
    x = np.random.default_rng(1).standard_normal((3, *shape)).astype(np.float32)
    target = [1, 0, 3]
    got = ox.explainer(m, "occlusion", window=window, stride=stride, fill=0.25).explain(x, target=target)
    c = shape[0]
    close(got, captum(ref, x, (c, window, window), (c, stride, stride), 0.25, target))


def test_occlusion_tuple_windows_equal_captum() -> None:
    ref, m, shape = case("cnn_bn")
    x = np.random.default_rng(2).standard_normal((2, *shape)).astype(np.float32)
    window, stride = (2, 5, 3), (1, 4, 2)  # windows over channels too, cut at every border
    got = ox.explainer(m, "occlusion", window=window, stride=stride).explain(x, target=[2, 2])
    close(got, captum(ref, x, window, stride, 0.0, [2, 2]))


def test_occlusion_on_a_dense_model_equals_captum() -> None:
    ref, m, shape = case("mlp")
    x = np.random.default_rng(3).standard_normal((4, *shape)).astype(np.float32)
    got = ox.explainer(m, "occlusion", window=3, stride=2, fill=-1.0).explain(x, target=[0, 1, 2, 3])
    close(got, captum(ref, x, (3,), (2,), -1.0, [0, 1, 2, 3]))
    # window 1: the drop of each feature on its own (Captum's FeatureAblation)
    one = ox.explainer(m, "occlusion", window=1, stride=1).explain(x, target=0)
    with torch.no_grad():
        fa = captum_attr.FeatureAblation(ref).attribute(torch.from_numpy(x), target=0).numpy()
    close(one, fa)


def test_occlusion_default_target_is_the_argmax() -> None:
    ref, m, shape = case("vgg_avg")
    x = np.random.default_rng(4).standard_normal((2, *shape)).astype(np.float32)
    with torch.no_grad():
        argmax = ref(torch.from_numpy(x)).argmax(1).tolist()
    got = ox.explainer(m, "occlusion").explain(x)
    close(got, captum(ref, x, (3, 8, 8), (3, 8, 8), 0.0, argmax))


@pytest.mark.parametrize("threads", [1, 2])
def test_occlusion_batches_of_copies_do_not_mix_samples(threads: int) -> None:
    # 17 samples x 16 windows: the batches of occluded copies straddle sample boundaries.
    _, m, shape = case("cnn_bn")
    x = np.random.default_rng(5).standard_normal((17, *shape)).astype(np.float32)
    ex = ox.explainer(m, "occlusion", window=4, stride=4)
    whole = ex.explain(x, target=1, threads=threads)
    for i in (0, 8, 16):
        np.testing.assert_allclose(whole[i], ex.explain(x[i:i + 1], target=1)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("params,message", [
    ({"window": 17}, "larger than a sample"),
    ({"window": 4, "stride": 5}, "exceeds the window"),
    ({"window": (3, 4)}, "one entry per axis"),
    ({"window": 0}, "integer >= 1"),
    ({"window": 2.5}, "integer >= 1"),
    ({"fill": np.zeros(3)}, "fill must be a number"),
    ({"fill": "mean"}, "must be a number"),
    ({"size": 3}, "no parameter 'size'"),
])
def test_occlusion_refuses_bad_parameters(params: dict, message: str) -> None:
    _, m, shape = case("cnn_bn")
    x = np.zeros((1, *shape), np.float32)
    with pytest.raises(ValueError, match=message):
        ox.explainer(m, "occlusion", **params).explain(x)
