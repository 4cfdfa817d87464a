"""LRN (local response normalisation across channels): forward against onnxruntime (rank 4, odd
sizes, attributes, special values, a large multithreaded tensor, opsets 1 and 13) and against a
float64 numpy rendering of the spec where onnxruntime refuses (even sizes, rank != 4); the VJP
against torch.nn.functional.local_response_norm (odd sizes, where its window is the spec's),
torch autograd on the spec's formula (even sizes) and finite differences; the kind, LRP passing
relevance through, occlusion's local forward through it, and errors naming the node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run, single_node

torch.set_num_threads(1)


def _spec_np(x: np.ndarray, size: int, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0) -> np.ndarray:
    """The spec in float64: window [c - floor((size-1)/2), c + ceil((size-1)/2)] cut at the edges."""
    x = x.astype(np.float64)
    C, lo = x.shape[1], (size - 1) // 2
    hi = size - 1 - lo
    sq = x**2
    s = np.stack([sq[:, max(0, c - lo): min(C - 1, c + hi) + 1].sum(1) for c in range(C)], 1)
    return x / (bias + alpha / size * s) ** beta


def _spec_torch(x: torch.Tensor, size: int, alpha: float, beta: float, bias: float) -> torch.Tensor:
    C, lo = x.shape[1], (size - 1) // 2
    hi = size - 1 - lo
    sq = x**2
    s = torch.stack([sq[:, max(0, c - lo): min(C - 1, c + hi) + 1].sum(1) for c in range(C)], 1)
    return x / (bias + alpha / size * s) ** beta


def _lrn(x: np.ndarray, opset: int = 13, dynamic_batch: bool = False, **attrs) -> bytes:
    return single_node("LRN", inputs={"x": x}, opset=opset, dynamic_batch=dynamic_batch, **attrs)


def _load(model: bytes) -> ox.Model:
    return ox.load(model, strip_softmax=False)


ATTRS = [
    {"size": 5},
    {"size": 3, "alpha": 2e-3, "beta": 0.5, "bias": 2.0},
    {"size": 1, "alpha": 0.5},
    {"size": 7, "alpha": 0.1, "beta": 1.0, "bias": 0.5},
    {"size": 9, "alpha": 1e-2},  # wider than the channels
]


@pytest.mark.parametrize("attrs", ATTRS, ids=str)
@pytest.mark.parametrize("shape", [(2, 6, 5, 4), (1, 3, 1, 7), (3, 1, 2, 2), (0, 4, 3, 3)])
def test_forward_vs_ort(attrs: dict, shape, rng: np.random.Generator) -> None:
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    model = _lrn(x, **attrs)
    m = _load(model)
    assert m.nodes == [("lrn_node", "LRN", "normalization")]
    assert_close(m.predict(x), ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [1, 13])
def test_opsets(opset: int, rng: np.random.Generator) -> None:
    x = (rng.standard_normal((2, 8, 3, 3)) * 10).astype(np.float32)
    model = _lrn(x, opset=opset, size=5, alpha=1e-3)
    assert_close(_load(model).predict(x), ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_specials_stay_inside_their_window() -> None:
    """A NaN or inf reaches the outputs whose window holds it, as the spec's sum says, and no
    others. (onnxruntime slides a running sum over the channels, adding the entering square and
    subtracting the leaving one, so inf - inf spreads NaN to every later channel of that pixel.)"""
    x = np.zeros((1, 5, 2, 3), np.float32)
    x[0, 0, 0, 0] = np.nan
    x[0, 2, 1, 1] = np.inf
    x[0, 4, 0, 2] = -3e19  # its square overflows float32: the window's outputs become 0
    x[0, 3, 1, 0] = -0.0
    got = _load(_lrn(x, size=3, alpha=1.0)).predict(x)
    with np.errstate(all="ignore"):
        want = _spec_np(x, 3, alpha=1.0)
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-5, atol=1e-7, equal_nan=True)
    assert np.isnan(got[0, :2, 0, 0]).all() and not np.isnan(got[0, 2:, 0, 0]).any()
    assert np.signbit(got[0, 3, 1, 0])
    finite = np.ones_like(x)  # where neither computation meets a special value, onnxruntime agrees
    finite[0, :, 0, 0] = finite[0, :, 1, 1] = finite[0, :, 0, 2] = 0
    want_ort = ort_run(_lrn(x, size=3, alpha=1.0), {"x": x})[0]
    np.testing.assert_allclose(got[finite == 1], want_ort[finite == 1], rtol=1e-6)


def test_large_multithreaded(rng: np.random.Generator) -> None:
    """AlexNet's first LRN: 96 channels, 55 x 55."""
    x = (rng.standard_normal((2, 96, 55, 55)) * 20).astype(np.float32)
    model = _lrn(x, dynamic_batch=True, size=5, alpha=1e-4, beta=0.75, bias=2.0)
    m = _load(model)
    want = ort_run(model, {"x": x})[0]
    for threads in (1, 2):
        assert_close(m.predict(x, threads=threads), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [2, 4, 6])
@pytest.mark.parametrize("shape", [(2, 7, 3, 2), (2, 5, 6), (1, 6, 2, 3, 2), (3, 4)])
def test_even_sizes_and_other_ranks_follow_the_spec(size: int, shape, rng: np.random.Generator) -> None:
    """onnxruntime refuses even sizes and ranks other than 4; the spec's formula covers them."""
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    got = _load(_lrn(x, size=size, alpha=0.3, beta=0.6, bias=1.5)).predict(x)
    assert_close(got, _spec_np(x, size, 0.3, 0.6, 1.5).astype(np.float32), rtol=1e-5)


def test_odd_size_other_ranks_match_torch(rng: np.random.Generator) -> None:
    for shape in [(2, 5, 6), (1, 6, 2, 3, 2)]:
        x = (rng.standard_normal(shape) * 4).astype(np.float32)
        got = _load(_lrn(x, size=3, alpha=0.3, beta=0.6, bias=1.5)).predict(x)
        want = F.local_response_norm(torch.tensor(x.astype(np.float64)), 3, alpha=0.3, beta=0.6, k=1.5)
        assert_close(got, want.numpy().astype(np.float32), rtol=1e-5)


# ---- VJP -------------------------------------------------------------------------------------


def _torch_grad(fn, x: np.ndarray, cot: np.ndarray) -> np.ndarray:
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    (g,) = torch.autograd.grad(fn(t), [t], grad_outputs=torch.tensor(cot.astype(np.float64)))
    return g.numpy()


@pytest.mark.parametrize("attrs", ATTRS, ids=str)
@pytest.mark.parametrize("shape", [(2, 6, 4, 3), (2, 5, 7), (1, 4, 2, 2, 3)])
def test_vjp_vs_torch_local_response_norm(attrs: dict, shape, rng: np.random.Generator) -> None:
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    cot = rng.standard_normal(shape).astype(np.float32)
    a = {"alpha": 1e-4, "beta": 0.75, "bias": 1.0, **attrs}
    (got,) = _load(_lrn(x, **attrs)).vjp(x, cot)
    want = _torch_grad(lambda t: F.local_response_norm(t, a["size"], alpha=a["alpha"], beta=a["beta"], k=a["bias"]),
                       x, cot)
    assert got.dtype == np.float32
    assert_close(got, want.astype(np.float32), rtol=1e-5)


@pytest.mark.parametrize("size", [2, 4])
def test_vjp_even_size_vs_spec_autograd(size: int, rng: np.random.Generator) -> None:
    x = (rng.standard_normal((2, 7, 3, 2)) * 3).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    (got,) = _load(_lrn(x, size=size, alpha=0.4, beta=0.8, bias=1.2)).vjp(x, cot)
    want = _torch_grad(lambda t: _spec_torch(t, size, 0.4, 0.8, 1.2), x, cot)
    assert_close(got, want.astype(np.float32), rtol=1e-5)


@pytest.mark.parametrize("size", [3, 4])
def test_vjp_finite_differences(size: int, rng: np.random.Generator) -> None:
    x = (rng.standard_normal((1, 5, 2, 2)) * 2).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    (got,) = _load(_lrn(x, size=size, alpha=0.5, beta=0.75, bias=1.0)).vjp(x, cot)
    base, eps = x.astype(np.float64), 1e-6
    fd = np.zeros_like(base)
    for i in np.ndindex(base.shape):
        p, m = base.copy(), base.copy()
        p[i] += eps
        m[i] -= eps
        fd[i] = float(((_spec_np(p, size, 0.5) - _spec_np(m, size, 0.5)) * cot).sum()) / (2 * eps)
    assert_close(got, fd.astype(np.float32), rtol=1e-4)


def test_vjp_multithreaded(rng: np.random.Generator) -> None:
    x = (rng.standard_normal((2, 64, 27, 27)) * 20).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    m = _load(_lrn(x, size=5, alpha=1e-4, beta=0.75, bias=1.0))
    want = _torch_grad(lambda t: F.local_response_norm(t, 5, alpha=1e-4, beta=0.75, k=1.0), x, cot)
    for threads in (1, 2):
        assert_close(m.vjp(x, cot, threads=threads)[0], want.astype(np.float32), rtol=1e-5)


# ---- methods ---------------------------------------------------------------------------------


def test_lrp_passes_relevance_through(rng: np.random.Generator) -> None:
    """Normalization kind: every LRP composite hands the output's relevance to the input as is."""
    x = (rng.standard_normal((3, 6, 2, 2)) * 3).astype(np.float32)
    m = _load(_lrn(x, size=3, alpha=0.5))
    y = m.predict(x)
    for method in ("lrp.epsilon", "lrp.epsilon_plus_flat", "lrp.z_plus"):
        R = ox.explainer(m, method).explain(x, target=5)
        want = np.zeros_like(y)
        want.reshape(3, -1)[:, 5] = y.reshape(3, -1)[:, 5]
        np.testing.assert_allclose(R, want, rtol=1e-6, atol=1e-7)


def _alexnet_block(rng: np.random.Generator) -> bytes:
    """Conv -> Relu -> LRN -> MaxPool -> Conv -> GlobalAveragePool -> Flatten -> Gemm, as in AlexNet."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("LRN", ["r1"], ["n1"], size=5, alpha=1e-2, beta=0.75, bias=1.0, name="lrn1"),
        helper.make_node("MaxPool", ["n1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w3"], ["y"], transB=1, name="fc"),
    ]
    inits = {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.5).astype(np.float32),
        "b1": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((6, 8, 3, 3)) * 0.3).astype(np.float32),
        "w3": rng.standard_normal((4, 6)).astype(np.float32),
    }
    return make_model(nodes, [("x", ["N", 3, 12, 12])], ["y"], inits, opset=13)


def test_model_with_lrn_predicts_and_explains(rng: np.random.Generator) -> None:
    data = _alexnet_block(rng)
    m = _load(data)
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    assert_close(m.predict(x), ort_run(data, {"x": x})[0], rtol=1e-5)
    R, delta = ox.explainer(m, "lrp.epsilon_plus_flat").explain(x, target=1, return_delta=True)
    assert R.shape == x.shape and np.all(np.isfinite(R))
    g = ox.explainer(m, "gradient").explain(x, target=1)
    # gradient through the whole block against central differences on a few pixels
    eps = 1e-2
    for idx in [(0, 0, 3, 4), (1, 2, 7, 7), (0, 1, 11, 0)]:
        p, q = x.copy(), x.copy()
        p[idx] += eps
        q[idx] -= eps
        fd = (ort_run(data, {"x": p})[0][idx[0], 1] - ort_run(data, {"x": q})[0][idx[0], 1]) / (2 * eps)
        assert abs(g[idx] - fd) <= 2e-3 * (abs(fd) + 1e-2), (idx, g[idx], fd)


def test_occlusion_local_forward_through_lrn(rng: np.random.Generator) -> None:
    """LRN is spatially pointwise, so occlusion recomputes only each window's cone through it:
    the result equals occlusion run through onnxruntime on whole images."""
    data = _alexnet_block(rng)
    x = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    got = ox.explainer(_load(data), "occlusion", window=4, stride=4).explain(x, target=[0, 3])
    want = ox.explainer(ox.load(data, backend="onnxruntime"), "occlusion", window=4, stride=4).explain(x, target=[0, 3])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * float(np.abs(want).max()))


# ---- errors ----------------------------------------------------------------------------------


def test_size_is_required() -> None:
    with pytest.raises(ox.ModelFormatError, match=r"node 'lrn_node' \(LRN\).*size"):
        _load(_lrn(np.zeros((1, 3, 2, 2), np.float32)))


@pytest.mark.parametrize("size", [0, -3])
def test_size_must_be_positive(size: int) -> None:
    with pytest.raises(ox.ModelFormatError, match=r"node 'lrn_node' \(LRN\).*size must be positive"):
        _load(_lrn(np.zeros((1, 3, 2, 2), np.float32), size=size))


def test_rank_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"node 'lrn_node' \(LRN\).*rank >= 2"):
        _load(_lrn(np.zeros(5, np.float32), size=3))
