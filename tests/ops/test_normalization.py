"""InstanceNormalization (opsets 6, 22) and LayerNormalization (opset 17: axis, epsilon, Scale/B
broadcasting, optional B, the Mean and InvStdDev outputs): forward against onnxruntime, the VJP
(data and parameters) against torch autograd in float64 and finite differences, the kind (LRP passes
relevance through), and errors naming the node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run, single_node

torch.set_num_threads(1)


def _load(model: bytes) -> ox.Model:
    return ox.load(model, strip_softmax=False)


def _inorm(x, scale, bias, opset=22, eps=None, as_inputs=False) -> bytes:
    attrs = {} if eps is None else {"epsilon": eps}
    if as_inputs:
        return single_node("InstanceNormalization", inputs={"x": x, "s": scale, "b": bias}, opset=opset, **attrs)
    return single_node("InstanceNormalization", inputs={"x": x}, initializers={"s": scale, "b": bias}, opset=opset,
                       **attrs)


@pytest.mark.parametrize("opset", [6, 22])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 4, 7), (2, 2, 3, 2, 2), (3, 5, 1, 2)])
def test_instance_norm_forward_vs_ort(opset, shape, rng) -> None:
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    s = rng.standard_normal(shape[1]).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    for eps in (None, 1e-2):
        model = _inorm(x, s, b, opset, eps)
        m = _load(model)
        assert m.nodes == [("instancenormalization_node", "InstanceNormalization", "normalization")]
        assert_close(m.predict(x), ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_instance_norm_large_multithreaded(rng) -> None:
    x = (rng.standard_normal((4, 64, 32, 32)) * 5).astype(np.float32)
    s, b = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    model = _inorm(x, s, b)
    want = ort_run(model, {"x": x})[0]
    for threads in (1, 3):
        assert_close(_load(model).predict(x, threads=threads), want, rtol=1e-5)


def _torch_grads(fn, arrays, cot):
    ts = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in arrays]
    gs = torch.autograd.grad(fn(*ts), ts, grad_outputs=torch.tensor(cot.astype(np.float64)))
    return [g.numpy().astype(np.float32) for g in gs]


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 2, 6)])
def test_instance_norm_vjp_vs_torch(shape, rng) -> None:
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    s, b = rng.standard_normal(shape[1]).astype(np.float32), rng.standard_normal(shape[1]).astype(np.float32)
    cot = rng.standard_normal(shape).astype(np.float32)
    m = _load(_inorm(x, s, b, eps=1e-3, as_inputs=True))
    got = m.vjp({"x": x, "s": s, "b": b}, cot)
    want = _torch_grads(lambda t, u, v: F.instance_norm(t, weight=u, bias=v, eps=1e-3), [x, s, b], cot)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=1e-5)
    (gx,) = _load(_inorm(x, s, b, eps=1e-3)).vjp(x, cot, threads=2)
    assert_close(gx, want[0], rtol=1e-5)


def _inorm_np(x, s, b, eps):
    ax = tuple(range(2, x.ndim))
    mu = x.mean(ax, keepdims=True)
    var = ((x - mu) ** 2).mean(ax, keepdims=True)
    sh = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mu) / np.sqrt(var + eps) * s.reshape(sh) + b.reshape(sh)


def _fd(f, x, cot, eps=1e-6):
    base = x.astype(np.float64)
    out = np.zeros_like(base)
    for i in np.ndindex(base.shape):
        p, q = base.copy(), base.copy()
        p[i] += eps
        q[i] -= eps
        out[i] = float(((f(p) - f(q)) * cot).sum()) / (2 * eps)
    return out.astype(np.float32)


def test_instance_norm_vjp_finite_differences(rng) -> None:
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    s, b = rng.standard_normal(2).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    (got,) = _load(_inorm(x, s, b, eps=1e-2)).vjp(x, cot)
    assert_close(got, _fd(lambda t: _inorm_np(t, s.astype(np.float64), b.astype(np.float64), 1e-2), x, cot), rtol=1e-4)


def test_instance_norm_lrp_passes_relevance_through(rng) -> None:
    x = (rng.standard_normal((2, 3, 2, 2)) * 3).astype(np.float32)
    s, b = np.abs(rng.standard_normal(3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    m = _load(_inorm(x, s, b))
    y = m.predict(x)
    for method in ("lrp.epsilon", "lrp.z_plus"):
        R = ox.explainer(m, method).explain(x, target=5)
        want = np.zeros_like(y)
        want.reshape(2, -1)[:, 5] = y.reshape(2, -1)[:, 5]
        np.testing.assert_allclose(R, want, rtol=1e-6, atol=1e-7)


def test_instance_norm_errors_name_the_node() -> None:
    x = np.zeros((1, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"node 'instancenormalization_node' \(InstanceNormalization\).*channels"):
        _load(_inorm(x, np.ones(4, np.float32), np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match=r"node 'instancenormalization_node' \(InstanceNormalization\).*rank >= 3"):
        _load(_inorm(np.zeros((2, 3), np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)))


# ---- LayerNormalization ------------------------------------------------------------------------


def _lnorm(x, scale, bias=None, outputs=1, as_inputs=False, **attrs) -> bytes:
    params = {"s": scale} if bias is None else {"s": scale, "b": bias}
    outs = ["y", "mean", "inv"][:outputs]
    node = helper.make_node("LayerNormalization", ["x", *params], outs, name="ln", **attrs)
    if as_inputs:
        return make_model([node], [("x", x.shape), *[(k, v.shape) for k, v in params.items()]], outs, opset=17)
    return make_model([node], [("x", x.shape)], outs, params, opset=17)


CASES = [
    ((2, 3, 4, 5), -1, (5,)),
    ((2, 3, 4, 5), 1, (3, 4, 5)),
    ((2, 3, 4, 5), 2, (1, 5)),  # Scale broadcast over the normalised shape
    ((2, 3, 4, 5), -2, (4, 1)),
    ((4, 6), 0, (4, 6)),
    ((3, 7), 1, (1,)),
]


@pytest.mark.parametrize(("shape", "axis", "pshape"), CASES, ids=str)
def test_layer_norm_forward_vs_ort(shape, axis, pshape, rng) -> None:
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    s = rng.standard_normal(pshape).astype(np.float32)
    b = rng.standard_normal(pshape).astype(np.float32)
    for bias in (b, None):
        for eps in (1e-5, 0.1):
            model = _lnorm(x, s, bias, outputs=3, axis=axis, epsilon=eps)
            got = _load(model).run({"x": x})
            want = ort_run(model, {"x": x})
            assert len(got) == 3
            for g, w in zip(got, want):
                assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_layer_norm_default_axis_and_one_output(rng) -> None:
    x = rng.standard_normal((2, 8, 16)).astype(np.float32)
    s = rng.standard_normal(16).astype(np.float32)
    model = _lnorm(x, s)
    m = _load(model)
    assert m.nodes == [("ln", "LayerNormalization", "normalization")]
    assert_close(m.predict(x, threads=2), ort_run(model, {"x": x})[0], rtol=1e-5)


@pytest.mark.parametrize(("shape", "axis", "pshape"), CASES, ids=str)
def test_layer_norm_vjp_vs_torch(shape, axis, pshape, rng) -> None:
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    s = rng.standard_normal(pshape).astype(np.float32)
    b = rng.standard_normal(pshape).astype(np.float32)
    cot = rng.standard_normal(shape).astype(np.float32)
    m = _load(_lnorm(x, s, b, as_inputs=True, axis=axis, epsilon=1e-3))
    got = m.vjp({"x": x, "s": s, "b": b}, cot)
    a = axis % len(shape)
    ax = tuple(range(a, len(shape)))

    def fn(t, u, v):
        mu = t.mean(ax, keepdim=True)
        var = ((t - mu) ** 2).mean(ax, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-3) * u + v

    want = _torch_grads(fn, [x, s, b], cot)
    for g, w in zip(got, want):
        assert_close(g, w, rtol=1e-5)


def test_layer_norm_vjp_of_the_statistics_outputs(rng) -> None:
    """Cotangents on Mean and InvStdDev too, against finite differences of the three outputs."""
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    s = rng.standard_normal(4).astype(np.float32)
    cots = [rng.standard_normal(x.shape), rng.standard_normal((2, 3, 1)), rng.standard_normal((2, 3, 1))]
    cots = [c.astype(np.float32) for c in cots]
    m = _load(_lnorm(x, s, outputs=3, epsilon=1e-2))
    (got,) = m.vjp(x, cots)

    def f(t):
        mu = t.mean(-1, keepdims=True)
        inv = 1 / np.sqrt(((t - mu) ** 2).mean(-1, keepdims=True) + 1e-2)
        return np.concatenate([((t - mu) * inv * s).ravel(), mu.ravel(), inv.ravel()])

    cat = np.concatenate([c.ravel() for c in cots]).astype(np.float64)
    assert_close(got, _fd(f, x, cat), rtol=1e-4)


def test_layer_norm_errors_name_the_node() -> None:
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"node 'ln' \(LayerNormalization\).*broadcast"):
        _load(_lnorm(x, np.ones(3, np.float32)))
    with pytest.raises(ox.ModelFormatError, match=r"node 'ln' \(LayerNormalization\).*axis 3"):
        _load(_lnorm(x, np.ones(4, np.float32), axis=3))


def test_layer_norm_lrp_passes_relevance_through(rng) -> None:
    x = (rng.standard_normal((2, 3, 4)) * 3).astype(np.float32)
    m = _load(_lnorm(x, np.abs(rng.standard_normal(4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)))
    y = m.predict(x)
    for method in ("lrp.epsilon", "lrp.epsilon_plus_flat"):
        R = ox.explainer(m, method).explain(x, target=6)
        want = np.zeros_like(y)
        want.reshape(2, -1)[:, 6] = y.reshape(2, -1)[:, 6]
        np.testing.assert_allclose(R, want, rtol=1e-6, atol=1e-7)
