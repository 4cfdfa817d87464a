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


# ---- the local forward pass (runtime/local_forward.cpp) on the geometry it must get right ---------------------

def _conv(name: str, x: str, w: np.ndarray, y: str, **attrs: object) -> tuple[object, dict[str, np.ndarray]]:
    from onnx import helper

    return helper.make_node("Conv", [x, name + "_w", name + "_b"], [y], name=name, **attrs), {
        name + "_w": w, name + "_b": np.linspace(-0.2, 0.2, w.shape[0]).astype(np.float32)}


def _local_geometry_models() -> dict[str, tuple[bytes, tuple[int, ...]]]:
    """ONNX graphs whose local ops have strides, pads (asymmetric), dilation, ceil_mode, averages
    that exclude the padding, depthwise groups, broadcast constants and residual sums, in 1-D,
    2-D and 3-D."""
    from onnx import helper

    from tests.helpers.onnx_builders import make_model

    r = np.random.default_rng(7)

    def w(*s: int) -> np.ndarray:
        return (r.standard_normal(s) / np.sqrt(np.prod(s[1:]))).astype(np.float32)

    out: dict[str, tuple[bytes, tuple[int, ...]]] = {}
    nodes, init = [], {}
    for node, params in [
        _conv("c1", "x", w(4, 3, 3, 3), "a1", strides=[2, 2], pads=[1, 1, 1, 1]),
        (helper.make_node("Relu", ["a1"], ["r1"]), {}),
        (helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                          ceil_mode=1), {}),
        _conv("c2", "p1", w(4, 4, 3, 3), "a2", dilations=[2, 2], pads=[2, 2, 2, 2]),
        (helper.make_node("PRelu", ["a2", "slope"], ["r2"]), {"slope": np.full((4, 1, 1), 0.1, np.float32)}),
        (helper.make_node("AveragePool", ["r2"], ["p2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                          count_include_pad=0), {}),
        (helper.make_node("Add", ["p2", "shift"], ["s2"]), {"shift": np.linspace(-1, 1, 4).reshape(4, 1, 1)
                                                           .astype(np.float32)}),
        (helper.make_node("Add", ["s2", "r2"], ["res"]), {}),
        _conv("c3", "res", w(4, 1, 3, 3), "a3", group=4, pads=[0, 1, 2, 1]),
        (helper.make_node("Sigmoid", ["a3"], ["g3"]), {}),
        (helper.make_node("GlobalAveragePool", ["g3"], ["gp"]), {}),
        (helper.make_node("Flatten", ["gp"], ["f"]), {}),
        (helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1),
         {"fc_w": w(3, 4), "fc_b": np.array([0.1, -0.2, 0.3], np.float32)}),
    ]:
        nodes.append(node)
        init.update(params)
    out["2d"] = (make_model(nodes, [("x", ["N", 3, 23, 19])], ["y"], init), (3, 23, 19))

    nodes1, init1 = [], {}
    for node, params in [
        _conv("d1", "x", w(5, 2, 5), "a1", strides=[3], pads=[2, 0]),
        (helper.make_node("Relu", ["a1"], ["r1"]), {}),
        (helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2], strides=[2]), {}),
        (helper.make_node("Flatten", ["p1"], ["f"]), {}),
        (helper.make_node("Gemm", ["f", "fc_w"], ["y"], transB=1), {"fc_w": w(3, 50)}),
    ]:
        nodes1.append(node)
        init1.update(params)
    out["1d"] = (make_model(nodes1, [("x", ["N", 2, 64])], ["y"], init1), (2, 64))

    nodes3, init3 = [], {}
    for node, params in [
        _conv("e1", "x", w(3, 1, 3, 3, 3), "a1", pads=[1, 1, 1, 1, 1, 1]),
        (helper.make_node("Relu", ["a1"], ["r1"]), {}),
        _conv("e2", "r1", w(2, 3, 2, 2, 2), "a2", strides=[2, 2, 2]),
        (helper.make_node("Flatten", ["a2"], ["f"]), {}),
        (helper.make_node("Gemm", ["f", "fc_w"], ["y"], transB=1), {"fc_w": w(3, 2 * 4 * 5 * 4)}),
    ]:
        nodes3.append(node)
        init3.update(params)
    out["3d"] = (make_model(nodes3, [("x", ["N", 1, 9, 11, 9])], ["y"], init3), (1, 9, 11, 9))
    return out


_GEOMETRY = _local_geometry_models()


def _ort_occlusion(data: bytes, x: np.ndarray, window: tuple[int, ...], stride: tuple[int, ...], fill: float,
                   target: list[int]) -> np.ndarray:
    """Captum's occlusion written out with onnxruntime forwards: the independent oracle."""
    import itertools

    from tests.helpers.onnx_builders import ort_run

    sample = x.shape[1:]
    starts = [[k * s for k in range(-(-(d - w) // s) + 1)] for d, w, s in zip(sample, window, stride)]
    base = ort_run(data, {"x": x})[0][np.arange(len(x)), target]
    acc = np.zeros(x.shape, np.float64)
    cover = np.zeros(sample, np.float64)
    boxes = [tuple(slice(a, a + w) for a, w in zip(st, window)) for st in itertools.product(*starts)]
    copies = np.repeat(x[:, None], len(boxes), axis=1)
    for j, bx in enumerate(boxes):
        copies[(slice(None), j, *bx)] = fill
        cover[bx] += 1
    y = ort_run(data, {"x": copies.reshape(-1, *sample)})[0].reshape(len(x), len(boxes), -1)
    for j, bx in enumerate(boxes):
        d = base - y[np.arange(len(x)), j, target]
        acc[(slice(None), *bx)] += d.reshape(-1, *([1] * len(sample)))
    return acc / cover


@pytest.mark.parametrize("name,window,stride", [
    ("2d", (3, 4, 4), (3, 4, 4)), ("2d", (3, 5, 3), (3, 2, 3)), ("2d", (3, 2, 2), (3, 1, 1)),
    ("2d", (1, 6, 7), (1, 5, 4)), ("1d", (2, 4), (2, 3)), ("1d", (1, 7), (1, 7)),
    ("3d", (1, 3, 3, 3), (1, 2, 3, 2)),
])
@pytest.mark.parametrize("threads", [1, 2])
def test_local_forward_equals_onnxruntime_and_the_whole_pass(name: str, window: tuple[int, ...],
                                                            stride: tuple[int, ...], threads: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data, shape = _GEOMETRY[name]
    m = ox.load(data, threads=threads)
    x = np.random.default_rng(8).standard_normal((2, *shape)).astype(np.float32)
    target = [0, 2]
    ex = ox.explainer(m, "occlusion", window=window, stride=stride, fill=0.5)
    local = ex.explain(x, target=target)
    monkeypatch.setenv("ONNXPLAIN_LOCAL_FORWARD", "0")
    whole = ex.explain(x, target=target)
    expected = _ort_occlusion(data, x, window, stride, 0.5, target)
    # Differences of outputs: compare on the scale of the outputs, not of the (small) drops.
    scale = float(np.max(np.abs(m.predict(x))))
    np.testing.assert_allclose(local, expected, rtol=0, atol=2e-6 * scale)
    np.testing.assert_allclose(whole, expected, rtol=0, atol=2e-6 * scale)
