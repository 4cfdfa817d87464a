"""ConvTranspose (opsets 1, 11, 22; 1-D and 2-D; strides, pads, dilations, output_padding,
output_shape, group, auto_pad): forward against onnxruntime and torch's conv_transpose, the VJP
(X, W, B) against torch autograd in float64 and finite differences, Linear kind, and LRP-epsilon on a
bias-free ReLU net with a ConvTranspose: conservation and agreement with Zennit's Epsilon rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run

torch.set_num_threads(1)


def _load(model: bytes) -> ox.Model:
    return ox.load(model, strip_softmax=False)


def _ct(x, w, b=None, opset=11, as_inputs=False, **attrs) -> bytes:
    params = {"w": w} if b is None else {"w": w, "b": b}
    node = helper.make_node("ConvTranspose", ["x", *params], ["y"], name="ct", **attrs)
    if as_inputs:
        return make_model([node], [("x", x.shape), *[(k, v.shape) for k, v in params.items()]], ["y"], opset=opset)
    return make_model([node], [("x", x.shape)], ["y"], params, opset=opset)


CASES_2D = [
    ({}, 1),
    ({"strides": [2, 2]}, 1),
    ({"strides": [2, 3], "pads": [1, 0, 0, 2]}, 1),
    ({"strides": [2, 2], "output_padding": [1, 0]}, 1),
    ({"dilations": [2, 1], "pads": [1, 1, 1, 1]}, 1),
    ({"strides": [3, 2], "dilations": [1, 2], "output_padding": [2, 1]}, 1),
    ({"group": 2, "strides": [2, 2]}, 2),
    ({"group": 4}, 4),
    ({"strides": [2, 2], "output_shape": [10, 7]}, 1),
    ({"strides": [2, 2], "output_shape": [11, 8]}, 1),
    ({"strides": [2, 2], "output_shape": [10, 7], "auto_pad": "SAME_UPPER"}, 1),
    ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, 1),
    ({"strides": [2, 2], "auto_pad": "SAME_LOWER"}, 1),
    ({"strides": [3, 1], "auto_pad": "VALID"}, 1),
]


@pytest.mark.parametrize("opset", [1, 11, 22])
@pytest.mark.parametrize(("attrs", "group"), CASES_2D, ids=str)
def test_forward_2d_vs_ort(opset, attrs, group, rng) -> None:
    x = rng.standard_normal((2, 4, 5, 4)).astype(np.float32)
    w = rng.standard_normal((4, 8 // group if group > 1 else 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(w.shape[1] * group).astype(np.float32)
    for bias in (None, b):
        model = _ct(x, w, bias, opset=opset, **attrs)
        m = _load(model)
        assert m.nodes == [("ct", "ConvTranspose", "linear")]
        assert_close(m.predict(x), ort_run(model, {"x": x})[0], rtol=1e-5)


@pytest.mark.parametrize("attrs", [{}, {"strides": [3]}, {"strides": [2], "pads": [1, 2], "output_padding": [1]},
                                   {"dilations": [3], "group": 2}, {"strides": [2], "output_shape": [14]}], ids=str)
def test_forward_1d_vs_ort(attrs, rng) -> None:
    x = rng.standard_normal((3, 4, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 4)).astype(np.float32)
    model = _ct(x, w, rng.standard_normal(3 * attrs.get("group", 1)).astype(np.float32), **attrs)
    assert_close(_load(model).predict(x), ort_run(model, {"x": x})[0], rtol=1e-5)


def test_forward_large_multithreaded(rng) -> None:
    """A decoder's upsampling layer (64 -> 32 channels, stride 2, 4x4 kernel, pad 1)."""
    x = rng.standard_normal((4, 64, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((64, 32, 4, 4)) * 0.1).astype(np.float32)
    model = _ct(x, w, rng.standard_normal(32).astype(np.float32), strides=[2, 2], pads=[1, 1, 1, 1])
    want = ort_run(model, {"x": x})[0]
    for threads in (1, 4):
        assert_close(_load(model).predict(x, threads=threads), want, rtol=1e-5)


TORCH_CASES = [
    ({}, {}),
    ({"strides": [2, 2], "pads": [1, 1, 1, 1]}, {"stride": 2, "padding": 1}),
    ({"strides": [2, 3], "output_padding": [1, 2], "dilations": [1, 2]},
     {"stride": (2, 3), "output_padding": (1, 2), "dilation": (1, 2)}),
    ({"group": 2, "strides": [2, 1], "pads": [0, 1, 0, 1]}, {"groups": 2, "stride": (2, 1), "padding": (0, 1)}),
]


@pytest.mark.parametrize(("attrs", "targs"), TORCH_CASES, ids=str)
def test_vjp_vs_torch(attrs, targs, rng) -> None:
    g = attrs.get("group", 1)
    x = rng.standard_normal((2, 4, 5, 4)).astype(np.float32)
    w = rng.standard_normal((4, 6 // g, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6 // g * g).astype(np.float32)
    m = _load(_ct(x, w, b, as_inputs=True, **attrs))
    ts = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b)]
    y = F.conv_transpose2d(ts[0], ts[1], ts[2], **targs)
    assert_close(m.predict({"x": x, "w": w, "b": b}), y.detach().numpy().astype(np.float32), rtol=1e-5)
    cot = rng.standard_normal(y.shape).astype(np.float32)
    want = torch.autograd.grad(y, ts, grad_outputs=torch.tensor(cot.astype(np.float64)))
    for threads in (1, 3):
        got = m.vjp({"x": x, "w": w, "b": b}, cot, threads=threads)
        for gv, wv in zip(got, want):
            assert_close(gv, wv.numpy().astype(np.float32), rtol=1e-5)
    # constant weights: only dX
    (gx,) = _load(_ct(x, w, b, **attrs)).vjp(x, cot)
    assert_close(gx, want[0].numpy().astype(np.float32), rtol=1e-5)


def test_vjp_finite_differences(rng) -> None:
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    w = rng.standard_normal((2, 2, 2, 3)).astype(np.float32)
    model = _ct(x, w, strides=[2, 1], pads=[0, 1, 1, 0], output_padding=[1, 0])
    m = _load(model)
    cot = rng.standard_normal(m.predict(x).shape).astype(np.float32)
    (got,) = m.vjp(x, cot)
    fd = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        p, q = x.copy(), x.copy()
        p[i] += 0.5
        q[i] -= 0.5
        fd[i] = float(((ort_run(model, {"x": p})[0].astype(np.float64) - ort_run(model, {"x": q})[0]) * cot).sum())
    assert_close(got, fd.astype(np.float32), rtol=1e-4)


# ---- LRP -------------------------------------------------------------------------------------


def _decoder(rng):
    """Conv -> ReLU -> ConvTranspose (stride 2) -> ReLU -> Conv -> global pool -> Gemm, bias-free."""
    w1 = (rng.standard_normal((6, 3, 3, 3)) * 0.5).astype(np.float32)
    w2 = (rng.standard_normal((6, 4, 4, 4)) * 0.3).astype(np.float32)
    w3 = (rng.standard_normal((5, 4, 3, 3)) * 0.3).astype(np.float32)
    w4 = rng.standard_normal((3, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("ConvTranspose", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1], name="up"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1], name="conv3"),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w4"], ["y"], transB=1, name="fc"),
    ]
    data = make_model(nodes, [("x", ["N", 3, 6, 6])], ["y"], {"w1": w1, "w2": w2, "w3": w3, "w4": w4}, opset=13)
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1, bias=False), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1, bias=False), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 5, 3, padding=1, bias=False), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(5, 3, bias=False),
    )
    with torch.no_grad():
        for layer, wv in zip([tm[0], tm[2], tm[4], tm[8]], [w1, w2, w3, w4]):
            layer.weight.copy_(torch.tensor(wv))
    return data, tm


def test_lrp_epsilon_conserves_and_matches_zennit(rng) -> None:
    data, tm = _decoder(rng)
    m = _load(data)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert_close(m.predict(x), ort_run(data, {"x": x})[0], rtol=1e-5)
    R = ox.explainer(m, "lrp.epsilon", epsilon=1e-9).explain(x, target=1)
    y = m.predict(x)[:, 1]
    np.testing.assert_allclose(R.reshape(2, -1).sum(1), y, rtol=1e-3, atol=1e-5)

    from tests.helpers.zennit_compat import import_zennit

    zennit = import_zennit()
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon, Norm, Pass

    comp = LayerMapComposite(layer_map=[
        (torch.nn.ReLU, Pass()),
        (torch.nn.AdaptiveAvgPool2d, Norm()),
        ((torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear), Epsilon(epsilon=1e-9)),
    ])
    xt = torch.tensor(x, requires_grad=True)
    with zennit.attribution.Gradient(model=tm, composite=comp) as attributor:
        out, rel = attributor(xt, torch.eye(3)[[1, 1]] * tm(xt).detach()[:, [1]])
    assert_close(R, rel.numpy(), rtol=1e-4, atol=1e-6)


def test_dynamic_batch(rng) -> None:
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="ct", strides=[2, 2])
    model = make_model([node], [("x", ["N", 4, 5, 5])], ["y"], {"w": w}, opset=11)
    m = _load(model)
    for n in (1, 3):
        assert_close(m.predict(x[:n]), ort_run(model, {"x": x[:n]})[0], rtol=1e-5)


def test_errors_name_the_node(rng) -> None:
    x = np.zeros((1, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"node 'ct' \(ConvTranspose\).*expected W.shape\[0\] = 4"):
        _load(_ct(x, np.zeros((3, 2, 3, 3), np.float32)))
    with pytest.raises(ValueError, match=r"node 'ct' \(ConvTranspose\).*group 3 does not divide"):
        _load(_ct(x, np.zeros((4, 2, 3, 3), np.float32), group=3))
    with pytest.raises(ValueError, match=r"node 'ct' \(ConvTranspose\).*output_padding"):
        _load(_ct(x, np.zeros((4, 2, 3, 3), np.float32), strides=[2, 2], output_padding=[2, 0]))
    with pytest.raises(ValueError, match=r"node 'ct' \(ConvTranspose\).*B must have shape \(2\)"):
        _load(_ct(x, np.zeros((4, 2, 3, 3), np.float32), np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match=r"node 'ct' \(ConvTranspose\).*strides \[2\] should hold 2"):
        _load(_ct(x, np.zeros((4, 2, 3, 3), np.float32), strides=[2]))


def test_forward_3d_vs_ort(rng) -> None:
    x = rng.standard_normal((2, 3, 3, 4, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 3, 2)).astype(np.float32)
    model = _ct(x, w, rng.standard_normal(2).astype(np.float32), strides=[2, 1, 2], pads=[0, 1, 0, 1, 0, 1])
    assert_close(_load(model).predict(x), ort_run(model, {"x": x})[0], rtol=1e-5)
