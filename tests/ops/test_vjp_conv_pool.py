"""Vector-Jacobian products of Conv, MaxPool, AveragePool, GlobalMaxPool and GlobalAveragePool,
through Model.vjp, against torch autograd in float64 (F.conv*/max_pool*/avg_pool* where their
semantics are ONNX's; elsewhere a float64 torch re-implementation of the ONNX forward, itself
checked against onnxruntime) and central finite differences. Conv: groups, depthwise, strides,
asymmetric pads, dilations, auto_pad, 1-D/2-D/3-D, the row-tiled GEMM path, and weight/bias
gradients when W and B are graph inputs; pools: ceil_mode, count_include_pad, ties (first
maximum in window order wins) and windows reaching into the padding."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run, single_node


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    # Tiny float64 convs: torch's thread pool costs far more than it saves on a shared machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rng(*parts):
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _t(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _torch_vjp(fn, args, cot):
    """Gradients of <cot, fn(*args)> w.r.t. every arg (float64)."""
    ts = [_t(a) for a in args]
    y = fn(*ts)
    grads = torch.autograd.grad(y, ts, grad_outputs=torch.tensor(cot, dtype=torch.float64))
    return y.detach().numpy(), [g.numpy() for g in grads]


def _fd(fn, args, cot, which, eps=1e-6):
    """Central finite differences of <cot, fn(*args)> in float64 w.r.t. args[which]."""
    base = [np.asarray(a, dtype=np.float64) for a in args]
    c = np.asarray(cot, dtype=np.float64)
    g = np.zeros_like(base[which])
    flat = g.reshape(-1)
    for i in range(flat.size):
        vals = []
        for sgn in (1.0, -1.0):
            a = [b.copy() for b in base]
            a[which].reshape(-1)[i] += sgn * eps
            with torch.no_grad():
                vals.append(float((fn(*[torch.from_numpy(v) for v in a]).numpy() * c).sum()))
        flat[i] = (vals[0] - vals[1]) / (2 * eps)
    return g


# ----------------------------------------------------------------------------------------- Conv


def _conv_model(x, w, b=None, w_input=False, b_input=False, **attrs):
    inputs, inits = {"x": x}, {}
    (inputs if w_input else inits)["w"] = w
    if b is not None:
        (inputs if b_input else inits)["b"] = b
    node_inputs = ["x", "w"] + (["b"] if b is not None else [])
    return single_node("Conv", inputs, inits, opset=11, node_inputs=node_inputs, **attrs)


def _torch_conv(nd, strides, pads, dilations, groups):
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    # ONNX pads are (begins..., ends...); F.pad wants (last begin, last end, ...).
    fpad = []
    for a in reversed(range(nd)):
        fpad += [pads[a], pads[a + nd]]

    def fn(x, w, b=None):
        return conv(F.pad(x, fpad), w, b, stride=tuple(strides), dilation=tuple(dilations), groups=groups)

    return fn


def _same_pads(in_sp, kernel, strides, dilations, upper):
    pads_b, pads_e = [], []
    for n, k, s, d in zip(in_sp, kernel, strides, dilations):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        b = total // 2 if upper else total - total // 2
        pads_b.append(b)
        pads_e.append(total - b)
    return pads_b + pads_e


def _check_conv(x, w, b, strides, pads, dilations, groups, cot_seed=0, auto_pad=None, w_input=False, threads=1):
    nd = x.ndim - 2
    attrs = {"strides": list(strides), "dilations": list(dilations), "group": groups}
    if auto_pad:
        attrs["auto_pad"] = auto_pad
        pads = _same_pads(x.shape[2:], w.shape[2:], strides, dilations, auto_pad == "SAME_UPPER")
    else:
        attrs["pads"] = list(pads)
    model = _conv_model(x, w, b, w_input=w_input, b_input=w_input and b is not None, **attrs)
    fn = _torch_conv(nd, strides, pads, dilations, groups)
    args = [x, w] + ([b] if b is not None else [])
    with torch.no_grad():
        y64 = fn(*[torch.from_numpy(a.astype(np.float64)) for a in args]).numpy()
    cot = _rand(_rng("cot", cot_seed, x.shape, w.shape), *y64.shape)
    _, grads = _torch_vjp(fn, args, cot)
    m = ox.load(model, strip_softmax=False)
    feeds = {"x": x} if not w_input else dict(zip(["x", "w", "b"], args))
    assert_close(m.run(feeds)[0], y64.astype(np.float32))
    got = m.vjp(feeds, cot, threads=threads)
    assert len(got) == len(feeds)
    for g, e in zip(got, grads):
        assert_close(g, e.astype(np.float32))
    return got, grads


GEOM_CONV_2D = list(
    itertools.product(
        [(1, 1), (3, 3), (2, 3)],  # kernel
        [(1, 1), (2, 2)],  # strides (uneven strides: auto_pad, random and FD tests)
        [(0, 0, 0, 0), (1, 1, 1, 1), (1, 0, 2, 1)],  # pads
        [(1, 1), (2, 1)],  # dilations
    )
)


@pytest.mark.parametrize("groups", ["1", "2", "dw", "dw2"])
@pytest.mark.parametrize("kernel,strides,pads,dilations", GEOM_CONV_2D)
def test_conv2d_input_grad_grid(kernel, strides, pads, dilations, groups):
    rng = _rng("c2", kernel, strides, pads, dilations, groups)
    C = 4
    G, M = {"1": (1, 3), "2": (2, 6), "dw": (C, C), "dw2": (C, 2 * C)}[groups]
    x = _rand(rng, 2, C, 7, 8)
    w = _rand(rng, M, C // G, *kernel)
    b = _rand(rng, M) if kernel != (1, 1) else None
    _check_conv(x, w, b, strides, pads, dilations, G)


GEOM_CONV_1D = [
    (k, s, p, d)
    for k, s, p, d in itertools.product([1, 2, 3, 5], [1, 2, 3], [(0, 0), (2, 0), (1, 3)], [1, 2])
]


@pytest.mark.parametrize("groups", ["1", "3", "dw"])
@pytest.mark.parametrize("kernel,strides,pads,dilation", GEOM_CONV_1D)
def test_conv1d_input_grad_grid(kernel, strides, pads, dilation, groups):
    rng = _rng("c1", kernel, strides, pads, dilation, groups)
    C = 3
    G, M = {"1": (1, 4), "3": (3, 6), "dw": (C, C)}[groups]
    x = _rand(rng, 2, C, 13)
    w = _rand(rng, M, C // G, kernel)
    _check_conv(x, w, _rand(rng, M), [strides], pads, [dilation], G)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("strides", [(1, 1), (2, 2), (3, 2)])
def test_conv_auto_pad_input_grad(auto_pad, groups, strides):
    rng = _rng("ap", auto_pad, groups, strides)
    x = _rand(rng, 1, 3, 7, 6)
    w = _rand(rng, 6, 3 // groups, 4, 3)
    _check_conv(x, w, _rand(rng, 6), strides, None, (1, 1), groups, auto_pad=auto_pad)


def test_conv3d_input_grad():
    rng = _rng("c3")
    x = _rand(rng, 2, 4, 5, 6, 7)
    _check_conv(x, _rand(rng, 6, 2, 3, 2, 3), _rand(rng, 6), (2, 1, 2), (1, 0, 1, 0, 1, 1), (1, 2, 1), 2)
    _check_conv(x, _rand(rng, 4, 1, 3, 3, 3), None, (1, 1, 1), (1, 1, 1, 1, 1, 1), (1, 1, 1), 4)


@pytest.mark.parametrize("threads", [1, 2])
def test_conv_row_tiled_and_batched(threads):
    # 32 channels x 9 taps x 48 columns x 48 rows is past the column tile: several GEMM tiles per
    # image, for the input and the weight gradient; batch 3 with a pointwise conv too.
    rng = _rng("tile")
    x = _rand(rng, 2, 32, 48, 48)
    _check_conv(x, _rand(rng, 8, 32, 3, 3), _rand(rng, 8), (1, 1), (1, 1, 1, 1), (1, 1), 1, w_input=True,
                threads=threads)
    x = _rand(rng, 3, 16, 5, 7)
    _check_conv(x, _rand(rng, 12, 8, 1, 1), _rand(rng, 12), (1, 1), (0, 0, 0, 0), (1, 1), 2, w_input=True,
                threads=threads)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "batch,size,kernel,groups",
    [(5, 14, 3, 1), (5, 14, 3, 2), (4, 14, 1, 1), (3, 40, 3, 1), (1, 14, 3, 1)],
)
def test_strided_conv_input_grad_batched(batch, size, kernel, groups, threads):
    """dX alone of a strided conv (the col2im path) at batch > 1: images split over threads, and
    a small output map (7x7: 49 positions) several images to one W^T product, each scattered
    back to its own image; a 20x20 map (past the narrow limit) one image per product."""
    rng = _rng("strided", batch, size, kernel, groups)
    x = _rand(rng, batch, 32, size, size)
    w = _rand(rng, 48, 32 // groups, kernel, kernel)
    pads = (1, 1, 1, 1) if kernel == 3 else (0, 0, 0, 0)
    _check_conv(x, w, _rand(rng, 48), (2, 2), pads, (1, 1), groups, threads=threads)


@pytest.mark.parametrize(
    "kernel,strides,pads,dilations,groups",
    [
        ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
        ((2, 3), (2, 1), (1, 0, 2, 1), (2, 1), 2),
        ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
        ((1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 2),
        ((3, 3), (2, 2), (1, 1, 0, 0), (1, 2), 4),  # depthwise
        ((3, 2), (1, 1), (0, 1, 1, 0), (1, 1), 4),  # depthwise
    ],
)
def test_conv_weight_and_bias_grads(kernel, strides, pads, dilations, groups):
    """W and B as graph inputs: need[1] and need[2] are set and dL/dW, dL/dB come back."""
    rng = _rng("wg", kernel, strides, pads, dilations, groups)
    x = _rand(rng, 3, 4, 6, 7)
    M = 8
    w = _rand(rng, M, 4 // groups, *kernel)
    got, _ = _check_conv(x, w, _rand(rng, M), strides, pads, dilations, groups, w_input=True)
    assert [g.shape for g in got] == [x.shape, w.shape, (M,)]


def test_conv_weight_grad_without_bias_and_1d():
    rng = _rng("wg1")
    x = _rand(rng, 2, 6, 11)
    got, _ = _check_conv(x, _rand(rng, 6, 2, 3), None, (2,), (1, 2), (2,), 3, w_input=True)
    assert [g.shape for g in got] == [x.shape, (6, 2, 3)]


def test_conv_forward_and_vjp_use_the_weight_passed_in():
    """With W a graph input, each call computes with the W it is given (nothing cached at load)."""
    rng = _rng("fresh")
    x = _rand(rng, 1, 2, 5, 5)
    w1, w2 = _rand(rng, 3, 2, 3, 3), _rand(rng, 3, 2, 3, 3)
    model = _conv_model(x, w1, w_input=True, pads=[1, 1, 1, 1])
    m = ox.load(model, strip_softmax=False)
    cot = _rand(rng, 1, 3, 5, 5)
    fn = _torch_conv(2, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    for w in (w1, w2, np.abs(w1), np.ones_like(w1)):
        feeds = {"x": x, "w": w}
        assert_close(m.run(feeds)[0], ort_run(model, feeds)[0])
        _, (gx, gw) = _torch_vjp(fn, [x, w], cot)
        got = m.vjp(feeds, cot)
        assert_close(got[0], gx.astype(np.float32))
        assert_close(got[1], gw.astype(np.float32))


@pytest.mark.parametrize(
    "shape,wshape,strides,pads,dilations,groups",
    [
        ((1, 2, 5, 4), (3, 2, 2, 3), (1, 2), (1, 0, 0, 1), (1, 1), 1),
        ((2, 2, 6), (2, 1, 3), (2,), (2, 1), (2,), 2),
        ((1, 3, 4, 4), (3, 1, 3, 3), (2, 1), (1, 1, 1, 1), (1, 1), 3),
    ],
)
def test_conv_finite_differences(shape, wshape, strides, pads, dilations, groups):
    rng = _rng("fd", shape, wshape)
    x, w, b = _rand(rng, *shape), _rand(rng, *wshape), _rand(rng, wshape[0])
    fn = _torch_conv(len(shape) - 2, strides, pads, dilations, groups)
    model = _conv_model(x, w, b, w_input=True, b_input=True, strides=list(strides), pads=list(pads),
                        dilations=list(dilations), group=groups)
    with torch.no_grad():
        ys = fn(*[torch.from_numpy(a.astype(np.float64)) for a in (x, w, b)]).shape
    cot = _rand(rng, *ys)
    got = ox.load(model, strip_softmax=False).vjp({"x": x, "w": w, "b": b}, cot)
    for i in range(3):
        assert_close(got[i], _fd(fn, [x, w, b], cot, i).astype(np.float32))


def test_conv_batch_zero_and_bad_cotangent():
    rng = _rng("zero")
    w = _rand(rng, 3, 2, 3, 3)
    x = np.zeros((0, 2, 5, 5), np.float32)
    model = single_node("Conv", {"x": x}, {"w": w}, dynamic_batch=True, pads=[1, 1, 1, 1])
    m = ox.load(model, strip_softmax=False)
    g = m.vjp(x, np.zeros((0, 3, 5, 5), np.float32))
    assert g[0].shape == x.shape
    x1 = _rand(rng, 1, 2, 5, 5)
    with pytest.raises(ValueError, match="shape"):
        m.vjp(x1, np.zeros((1, 3, 4, 5), np.float32))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    cg=st.integers(1, 3),
    mg=st.integers(1, 3),
    groups=st.integers(1, 3),
    h=st.integers(3, 9),
    k=st.integers(1, 3),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    p=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    seed=st.integers(0, 2**31 - 1),
)
def test_conv_vjp_random(n, cg, mg, groups, h, k, s, d, p, seed):
    rng = np.random.default_rng(seed)
    w_ext = (k - 1) * d + 1
    if h + p[0] + p[2] < w_ext or h + 1 + p[1] + p[3] < w_ext:
        return
    x = _rand(rng, n, cg * groups, h, h + 1)
    w = _rand(rng, mg * groups, cg, k, k)
    _check_conv(x, w, _rand(rng, mg * groups), (s, s), p, (d, d), groups, cot_seed=seed, w_input=bool(seed % 2))


# ---------------------------------------------------------------------------------------- Pools


def _axis(n, k, s, d, pb, pe, ceil):
    """Output size of one axis as ONNX (and the forward) computes it."""
    dk = (k - 1) * d + 1
    span = n + pb + pe - dk
    out = span // s + 1
    if ceil and span % s:
        out += 1
        if (out - 1) * s >= n + pb:
            out -= 1
    return out


def _ref_pool(kind, kernel, strides, pads, dilations, ceil, count_include_pad):
    """float64 torch re-implementation of the ONNX pool forward (differentiable; ties of max go
    to the first tap in window order, as torch.max(dim) returns the first maximum)."""
    nd = len(kernel)

    def fn(x):
        sp = x.shape[2:]
        outs = [_axis(sp[a], kernel[a], strides[a], dilations[a], pads[a], pads[a + nd], ceil) for a in range(nd)]
        # Index of each tap in an input padded by (pb, enough) on each axis; -1 marks out of input.
        idx, inside, inpad = [], [], []
        for a in range(nd):
            o = torch.arange(outs[a])[:, None] * strides[a] + torch.arange(kernel[a])[None, :] * dilations[a]
            pos = o - pads[a]
            idx.append(pos.clamp(0, sp[a] - 1))
            inside.append((pos >= 0) & (pos < sp[a]))
            inpad.append(pos < sp[a] + pads[a + nd])
        g = x
        for a in range(nd):  # gather axis 2+a -> (out_a, k_a) placed at the end
            g = g.index_select(2 + a, idx[a].reshape(-1))
        # g: N, C, (o0*k0), (o1*k1), ... -> N, C, o0, k0, o1, k1 -> N, C, o0, o1, k0, k1
        shp = list(x.shape[:2])
        for a in range(nd):
            shp += [outs[a], kernel[a]]
        g = g.reshape(shp)
        perm = [0, 1] + [2 + 2 * a for a in range(nd)] + [3 + 2 * a for a in range(nd)]
        g = g.permute(perm)
        mask = torch.ones([*outs, *kernel], dtype=torch.bool)
        cnt_pad = torch.ones([*outs, *kernel], dtype=torch.float64)
        for a in range(nd):
            view = [1] * (2 * nd)
            view[a], view[nd + a] = outs[a], kernel[a]
            mask = mask & inside[a].reshape(view)
            cnt_pad = cnt_pad * inpad[a].reshape(view)
        flat = [*x.shape[:2], *outs, -1]
        if kind == "max":
            g = torch.where(mask, g, torch.tensor(-np.inf, dtype=torch.float64))
            return g.reshape(flat).max(dim=-1).values
        g = torch.where(mask, g, torch.zeros((), dtype=torch.float64))
        cnt = (cnt_pad if count_include_pad else mask.double()).reshape(*outs, -1).sum(-1)
        return g.reshape(flat).sum(-1) / cnt

    return fn


def _pool_model(op, x, kernel, strides, pads, dilations, ceil, cip=0):
    attrs = {"kernel_shape": list(kernel), "strides": list(strides), "pads": list(pads), "ceil_mode": ceil}
    if any(d != 1 for d in dilations):
        attrs["dilations"] = list(dilations)
    if op == "AveragePool":
        attrs["count_include_pad"] = cip
    return single_node(op, {"x": x}, opset=19, **attrs)


def _check_pool(op, x, kernel, strides, pads, dilations, ceil, cip=0, torch_fn=None, threads=1):
    kind = "max" if op == "MaxPool" else "avg"
    ref = _ref_pool(kind, kernel, strides, pads, dilations, ceil, cip)
    model = _pool_model(op, x, kernel, strides, pads, dilations, ceil, cip)
    y_ort = ort_run(model, {"x": x})[0]
    with torch.no_grad():
        y_ref = ref(torch.from_numpy(x.astype(np.float64))).numpy()
    assert_close(y_ref.astype(np.float32), y_ort)  # the reference is the ONNX forward
    cot = _rand(_rng("pcot", op, x.shape, kernel, strides, pads, ceil), *y_ref.shape)
    _, (g_ref,) = _torch_vjp(ref, [x], cot)
    m = ox.load(model, strip_softmax=False)
    (got,) = m.vjp(x, cot, threads=threads)
    assert_close(got, g_ref.astype(np.float32))
    if torch_fn is not None:
        _, (g_t,) = _torch_vjp(torch_fn, [x], cot)
        assert_close(got, g_t.astype(np.float32))
    return got, cot


def _torch_pool_fn(op, kernel, strides, pads, dilations, ceil, cip):
    """F.max_pool / F.avg_pool when they mean what ONNX means here (symmetric pads at most half
    the kernel; avg_pool has no dilation), else None."""
    nd = len(kernel)
    if list(pads[:nd]) != list(pads[nd:]) or any(2 * p > k for p, k in zip(pads[:nd], kernel)):
        return None
    if op == "MaxPool":
        f = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
        return lambda x: f(x, kernel, strides, pads[:nd], dilations, ceil_mode=bool(ceil))
    if any(d != 1 for d in dilations):
        return None
    f = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    return lambda x: f(x, kernel, strides, pads[:nd], ceil_mode=bool(ceil), count_include_pad=bool(cip))


GEOM_POOL_2D = [
    g
    for g in itertools.product(
        [(2, 2), (3, 3), (3, 2)],  # kernel
        [(1, 1), (2, 2), (3, 1)],  # strides
        [(0, 0, 0, 0), (1, 1, 1, 1), (1, 0, 0, 1)],  # pads
        [(1, 1), (2, 1)],  # dilations
        [0, 1],  # ceil_mode
    )
]


@pytest.mark.parametrize("kernel,strides,pads,dilations,ceil", GEOM_POOL_2D)
def test_maxpool2d_vjp_grid(kernel, strides, pads, dilations, ceil):
    x = _rand(_rng("mp", kernel, strides, pads, dilations, ceil), 2, 3, 7, 9)
    fn = _torch_pool_fn("MaxPool", kernel, strides, pads, dilations, ceil, 0)
    _check_pool("MaxPool", x, kernel, strides, pads, dilations, ceil, torch_fn=fn)


# count_include_pad only matters with pads.
@pytest.mark.parametrize("kernel,strides,pads,dilations,ceil,cip", [(*g, c) for g in GEOM_POOL_2D for c in (0, 1)
                                                                    if c == 0 or any(g[2])])
def test_avgpool2d_vjp_grid(kernel, strides, pads, dilations, ceil, cip):
    x = _rand(_rng("ap", kernel, strides, pads, dilations, ceil, cip), 2, 3, 7, 9)
    fn = _torch_pool_fn("AveragePool", kernel, strides, pads, dilations, ceil, cip)
    _check_pool("AveragePool", x, kernel, strides, pads, dilations, ceil, cip, torch_fn=fn)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize(
    "kernel,strides,pads,ceil",
    [(k, s, p, c) for k, s, p, c in itertools.product([1, 2, 3], [1, 2, 3], [(0, 0), (1, 0), (0, 1), (1, 1)], [0, 1])
     if max(p) < k],
)
def test_pool1d_vjp(op, kernel, strides, pads, ceil):
    x = _rand(_rng("p1", op, kernel, strides, pads, ceil), 2, 2, 10)
    for cip in [0, 1] if op == "AveragePool" else [0]:
        fn = _torch_pool_fn(op, [kernel], [strides], pads, [1], ceil, cip)
        _check_pool(op, x, [kernel], [strides], pads, [1], ceil, cip, torch_fn=fn)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool3d_and_threads(op):
    rng = _rng("p3", op)
    x = _rand(rng, 2, 3, 5, 6, 7)
    for cip in [0, 1] if op == "AveragePool" else [0]:
        fn = _torch_pool_fn(op, [3, 2, 3], [2, 2, 1], [1, 0, 1, 1, 0, 1], [1, 1, 1], 1, cip)
        _check_pool(op, x, [3, 2, 3], [2, 2, 1], [1, 0, 1, 1, 0, 1], [1, 1, 1], 1, cip, torch_fn=fn)
    # Enough planes that the backward kernel runs on two threads.
    x = _rand(rng, 4, 64, 20, 20)
    _check_pool(op, x, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0, threads=2)


def test_maxpool_ties_go_to_the_first_maximum():
    # Few distinct values: most windows tie, and overlapping windows share winners.
    rng = _rng("ties")
    x = rng.integers(0, 3, size=(2, 3, 8, 9)).astype(np.float32)
    for kernel, strides, pads in [((3, 3), (1, 1), (1, 1, 1, 1)), ((2, 2), (2, 2), (0, 0, 0, 0)),
                                  ((3, 2), (2, 1), (0, 0, 0, 0))]:
        fn = _torch_pool_fn("MaxPool", kernel, strides, pads, (1, 1), 0, 0)
        _check_pool("MaxPool", x, kernel, strides, pads, (1, 1), 0, torch_fn=fn)
    # All-equal windows: the first tap of each window (window order) receives everything.
    x = np.ones((1, 1, 4, 4), np.float32)
    m = ox.load(_pool_model("MaxPool", x, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 0), strip_softmax=False)
    (g,) = m.vjp(x, np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2))
    expected = np.zeros((4, 4), np.float32)
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(g[0, 0], expected)


def test_maxpool_padding_never_wins():
    # All inputs negative: a zero from padding would beat them if padding took part.
    x = -np.abs(_rand(_rng("neg"), 1, 2, 5, 5)) - 1
    got, cot = _check_pool("MaxPool", x, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1)
    # Every cotangent entry lands on some input: nothing is lost to the padding.
    np.testing.assert_allclose(got.sum(axis=(2, 3)), cot.sum(axis=(2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dilations", [(1, 1), (2, 1)])  # the 2-D row kernels, the generic loops
def test_maxpool_windows_without_a_finite_maximum(dilations):
    """A window of only NaN / -inf has no strict improvement: its gradient goes to the window's
    first tap inside the input (left/top padding skipped), and NaN never wins over a number."""
    x = np.full((1, 1, 6, 7), -np.inf, np.float32)
    x[0, 0, 4:, :] = np.nan
    x[0, 0, 5, 6] = 1.0  # the only number, in the last window
    m = ox.load(_pool_model("MaxPool", x, (3, 3), (2, 2), (1, 1, 1, 1), dilations, 0), strip_softmax=False)
    y = m.predict(x)
    cot = np.arange(1, y.size + 1, dtype=np.float32).reshape(y.shape)
    (g,) = m.vjp(x, cot)
    d = dilations[0]
    expected = np.zeros((6, 7), np.float32)
    for oy in range(y.shape[2]):
        for ox_ in range(y.shape[3]):
            rows = [r for r in range(oy * 2 - 1, oy * 2 - 1 + 3 * d, d) if 0 <= r < 6]
            cols = [c for c in range(ox_ * 2 - 1, ox_ * 2 - 1 + 3, 1) if 0 <= c < 7]
            taps = [(r, c) for r in rows for c in cols]
            win = [t for t in taps if x[0, 0, t[0], t[1]] == 1.0] or [taps[0]]
            expected[win[0]] += cot[0, 0, oy, ox_]
    np.testing.assert_array_equal(g[0, 0], expected)


@pytest.mark.parametrize(
    "op,kernel,strides,pads,dilations,ceil,cip",
    [
        ("MaxPool", (3, 2), (2, 1), (1, 0, 2, 1), (1, 2), 1, 0),
        ("AveragePool", (3, 3), (2, 2), (0, 1, 2, 0), (1, 1), 1, 1),
        ("AveragePool", (2, 3), (3, 2), (1, 2, 1, 0), (2, 1), 1, 0),
        ("AveragePool", (3, 2), (2, 3), (2, 1, 1, 1), (1, 1), 1, 1),
    ],
)
def test_pool_finite_differences(op, kernel, strides, pads, dilations, ceil, cip):
    x = _rand(_rng("pfd", op, kernel, strides), 1, 2, 6, 7)
    got, cot = _check_pool(op, x, kernel, strides, pads, dilations, ceil, cip)
    ref = _ref_pool("max" if op == "MaxPool" else "avg", kernel, strides, pads, dilations, ceil, cip)
    assert_close(got, _fd(ref, [x], cot, 0).astype(np.float32))


def test_avgpool_ceil_mode_divisor_corner_cases():
    """ceil_mode windows that overhang the end padding: the divisor counts taps inside the padded
    input only (count_include_pad) or inside the input only; checked where torch agrees too."""
    x = _rand(_rng("ceil"), 1, 2, 6, 6)
    for pads, cip in itertools.product([(0, 0, 0, 0), (1, 1, 1, 1), (1, 1, 0, 0), (0, 0, 1, 1)], [0, 1]):
        fn = _torch_pool_fn("AveragePool", (3, 3), (2, 2), pads, (1, 1), 1, cip)
        _check_pool("AveragePool", x, (3, 3), (2, 2), pads, (1, 1), 1, cip, torch_fn=fn)


@pytest.mark.parametrize("op", ["GlobalMaxPool", "GlobalAveragePool"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 2, 4), (3, 1, 1, 1), (4, 40, 30, 30)])
def test_global_pools_vjp(op, shape):
    rng = _rng("g", op, shape)
    x_fd = x = _rand(rng, *shape)
    if op == "GlobalMaxPool" and shape[-1] > 2:
        x = x.copy()
        x[..., 1] = x[..., 0] = x.max() + 1  # ties: the first element of the plane wins
    nd = len(shape) - 2
    model = single_node(op, {"x": x})
    keep = tuple(range(2, 2 + nd))
    if op == "GlobalMaxPool":
        def fn(t):
            return t.flatten(2).max(dim=-1).values.reshape(*t.shape[:2], *([1] * nd))
    else:
        def fn(t):
            return t.mean(dim=keep, keepdim=True)
    cot = _rand(rng, *shape[:2], *([1] * nd))
    _, (g_ref,) = _torch_vjp(fn, [x], cot)
    m = ox.load(model, strip_softmax=False)
    for threads in (1, 2):
        (got,) = m.vjp(x, cot, threads=threads)
        assert_close(got, g_ref.astype(np.float32))
    if x.size <= 60:  # finite differences need a unique maximum
        (got,) = m.vjp(x_fd, cot)
        assert_close(got, _fd(fn, [x_fd], cot, 0).astype(np.float32))


def test_pool_zero_cotangent_and_chain():
    """A chain Conv -> MaxPool -> GlobalAveragePool: gradients compose; a None cotangent is zeros."""
    from onnx import helper

    from tests.helpers.onnx_builders import make_model

    rng = _rng("chain")
    x = _rand(rng, 2, 3, 9, 9)
    w = _rand(rng, 4, 3, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("AveragePool", ["p"], ["a"], name="avg", kernel_shape=[2, 2], pads=[1, 1, 0, 0],
                         count_include_pad=1),
        helper.make_node("GlobalAveragePool", ["a"], ["y"], name="gap"),
    ]
    model = make_model(nodes, [("x", x.shape)], ["y"], {"w": w}, opset=19)
    m = ox.load(model, strip_softmax=False)

    def fn(t):
        c = F.conv2d(t, torch.from_numpy(w.astype(np.float64)), padding=1)
        p = F.max_pool2d(c, 3, 2, ceil_mode=True)
        a = F.avg_pool2d(F.pad(p, (1, 0, 1, 0)), 2, 1, count_include_pad=True)
        return a.mean(dim=(2, 3), keepdim=True)

    cot = _rand(rng, 2, 4, 1, 1)
    _, (g_ref,) = _torch_vjp(fn, [x], cot)
    assert_close(m.vjp(x, cot)[0], g_ref.astype(np.float32))
    (g0,) = m.vjp(x, None)
    assert g0.shape == x.shape and not g0.any()


@pytest.mark.parametrize("kernel", [(2, 2), (3, 3), (2, 3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_maxpool_non_overlapping_windows(kernel, threads):
    # Stride = kernel, no padding: the row-wise 2-D path (kernels/pool.cpp), with rows and
    # columns left over past the last window and enough planes to split over threads.
    x = _rand(_rng("tiled", kernel), 2, 24, 11, 14)
    fn = _torch_pool_fn("MaxPool", kernel, kernel, (0, 0, 0, 0), (1, 1), 0, 0)
    _check_pool("MaxPool", x, kernel, kernel, (0, 0, 0, 0), (1, 1), 0, torch_fn=fn, threads=threads)
