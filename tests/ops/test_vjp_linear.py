"""Vector-Jacobian products of Gemm, MatMul, BatchNormalization and ReduceMean/ReduceSum/ReduceMax,
through Model.vjp, against torch autograd in float64 and central finite differences. Gemm: transA,
transB, alpha, beta, every C broadcast (dC summed back to C's shape); MatMul: 1-D operands, batch
broadcasting, the fused bias input, both operands at run time (kind Product); weight and bias
gradients when they are graph inputs; BatchNormalization (inference) with constant parameters
(cached coefficients) and parameters fed as graph inputs (all five gradients), opset 7
spatial=0; Reduce*: axes as attribute / constant input / runtime input, keepdims,
noop_with_empty_axes, and ReduceMax routing to the first maximum with NaNs skipped."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run, single_node


def _rng(*parts):
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _torch_vjp(fn, args, cot):
    """Forward value and gradients of <cot, fn(*args)> w.r.t. every arg, in float64."""
    ts = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in args]
    y = fn(*ts)
    grads = torch.autograd.grad(y, ts, grad_outputs=torch.tensor(cot, dtype=torch.float64), allow_unused=True)
    return y.detach().numpy(), [np.zeros(a.shape) if g is None else g.numpy() for a, g in zip(args, grads)]


def _torch_fwd(fn, args):
    with torch.no_grad():
        return fn(*[torch.tensor(np.asarray(a, dtype=np.float64)) for a in args]).numpy()


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


def _model_vjp(model, feeds, cot, threads=1, **load_kw):
    """onnxplain's forward output and gradients (one per graph input, in feeds' order)."""
    m = ox.load(model, strip_softmax=False, threads=threads, **load_kw)
    x = feeds if len(feeds) > 1 else next(iter(feeds.values()))
    y = m.predict(x)
    grads = m.vjp(x, cot)
    assert len(grads) == len(feeds)
    return m, y, grads


# ----------------------------------------------------------------------------------------- Gemm


def _torch_gemm(trans_a, trans_b, alpha, beta, has_c):
    def f(a, b, c=None):
        a2 = a.T if trans_a else a
        b2 = b.T if trans_b else b
        y = alpha * (a2 @ b2)
        if has_c:
            y = y + beta * c
        return y

    return f


C_SHAPES = {"none": None, "scalar": (), "one": (1,), "row": "N", "row2": "1N", "col": "M1", "full": "MN", "1x1": (1, 1)}


def _c_shape(kind, M, N):
    spec = C_SHAPES[kind]
    if spec is None or isinstance(spec, tuple):
        return spec
    return {"N": (N,), "1N": (1, N), "M1": (M, 1), "MN": (M, N)}[spec]


GEMM_CASES = [(c, r) for c in C_SHAPES for r in ["A", "AB", "AC", "ABC"] if c != "none" or "C" not in r]


@pytest.mark.parametrize("c_kind,runtime", GEMM_CASES, ids=[f"{c}-{r}" for c, r in GEMM_CASES])
@pytest.mark.parametrize("trans", [(0, 0), (1, 0), (0, 1), (1, 1)], ids=["NN", "TN", "NT", "TT"])
def test_gemm_vjp(trans, c_kind, runtime) -> None:
    ta, tb = trans
    M, K, N = 3, 5, 4
    rng = _rng("gemm", trans, c_kind, runtime)
    a = _rand(rng, *((K, M) if ta else (M, K)))
    b = _rand(rng, *((N, K) if tb else (K, N)))
    cs = _c_shape(c_kind, M, N)
    c = None if cs is None else _rand(rng, *cs)
    alpha, beta = (0.7, -1.3) if ta else (1.0, 1.0)
    inputs, inits = {"a": a}, {}
    (inputs if "B" in runtime else inits)["b"] = b
    if c is not None:
        (inputs if "C" in runtime else inits)["c"] = c
    node_inputs = ["a", "b"] + ([] if c is None else ["c"])
    model = single_node("Gemm", inputs, inits, node_inputs=node_inputs, transA=ta, transB=tb, alpha=alpha, beta=beta)
    cot = _rand(rng, M, N)
    m, y, grads = _model_vjp(model, inputs, cot)
    assert m.nodes[0][2] == ("product" if "B" in runtime else "linear")
    args = [a, b] + ([] if c is None else [c])
    y_ref, g_ref = _torch_vjp(_torch_gemm(ta, tb, alpha, beta, c is not None), args, cot)
    assert_close(y, y_ref.astype(np.float32))
    expected = {"a": g_ref[0], "b": g_ref[1], "c": g_ref[2] if c is not None else None}
    for name, g in zip(inputs, grads):
        assert g.dtype == np.float32
        assert_close(g, expected[name].astype(np.float32))


def test_gemm_vjp_beta_zero_and_fd() -> None:
    rng = _rng("gemm-fd")
    a, b, c = _rand(rng, 2, 3), _rand(rng, 4, 3), _rand(rng, 1, 4)
    model = single_node("Gemm", {"a": a, "b": b, "c": c}, transB=1, alpha=0.5, beta=0.0)
    cot = _rand(rng, 2, 4)
    _, _, grads = _model_vjp(model, {"a": a, "b": b, "c": c}, cot)
    fn = _torch_gemm(0, 1, 0.5, 0.0, True)
    for i, g in enumerate(grads):
        assert_close(g, _fd(fn, [a, b, c], cot, i).astype(np.float32))
    assert not grads[2].any()  # beta = 0: C does not reach the output


def test_gemm_vjp_larger_threads() -> None:
    rng = _rng("gemm-large")
    a, w, c = _rand(rng, 33, 70), _rand(rng, 65, 70), _rand(rng, 65)
    model = single_node("Gemm", {"a": a}, {"w": w, "c": c}, transB=1)
    cot = _rand(rng, 33, 65)
    _, _, (ga,) = _model_vjp(model, {"a": a}, cot, threads=2)
    assert_close(ga, (cot.astype(np.float64) @ w.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_vjp_one_row_with_zero_cotangents(trans_b: int) -> None:
    """Batch 1 on a wide layer takes the one-row product, which skips zero multipliers (a ReLU
    zeroes about half of a cotangent row): runs of zeros, single zeros and a zero row at the end
    give the dense answer, on 1 and 2 threads."""
    rng = _rng("gemm-one-row", trans_b)
    K, N = 300, 260  # N * K >= 2**16: the one-row path
    a = _rand(rng, 1, K)
    w = _rand(rng, N, K) if trans_b else _rand(rng, K, N)
    model = single_node("Gemm", {"a": a}, {"w": w}, transB=trans_b)
    cot = _rand(rng, 1, N)
    cot[0, ::3] = 0.0
    cot[0, 40:90] = 0.0
    cot[0, -1] = 0.0
    w_kn = (w.T if trans_b else w).astype(np.float64)  # op(B) as [K, N]
    expected = (cot.astype(np.float64) @ w_kn.T).astype(np.float32)
    for threads in (1, 2):
        _, _, (ga,) = _model_vjp(model, {"a": a}, cot, threads=threads)
        assert_close(ga, expected)


# --------------------------------------------------------------------------------------- MatMul

MATMUL_SHAPES = {
    "1d_2d": ((4,), (4, 3)),
    "2d_1d": ((2, 4), (4,)),
    "1d_1d": ((4,), (4,)),
    "2d_2d": ((3, 4), (4, 5)),
    "3d_2d": ((2, 3, 4), (4, 5)),
    "4d_2d": ((2, 2, 3, 4), (4, 5)),
    "3d_1d": ((2, 3, 4), (4,)),
    "1d_3d": ((4,), (2, 4, 5)),
    "2d_3d": ((3, 4), (2, 4, 5)),
    "3d_3d": ((2, 3, 4), (2, 4, 5)),
    "bcast_a1": ((1, 3, 4), (2, 4, 5)),
    "bcast_b1": ((2, 3, 4), (1, 4, 5)),
    "bcast_4d_3d": ((2, 1, 3, 4), (3, 4, 5)),
    "bcast_both": ((2, 1, 3, 4), (1, 3, 4, 2)),
    "bcast_rank": ((3, 2, 1, 2, 4), (2, 3, 4, 3)),
    "n1": ((3, 4), (4, 1)),
    "k1": ((2, 3, 1), (2, 1, 5)),
}


@pytest.mark.parametrize("const_b", [True, False], ids=["constB", "runtimeB"])
@pytest.mark.parametrize("case", list(MATMUL_SHAPES))
def test_matmul_vjp(case, const_b) -> None:
    sa, sb = MATMUL_SHAPES[case]
    rng = _rng("matmul", case, const_b)
    a, b = _rand(rng, *sa), _rand(rng, *sb)
    inputs, inits = {"a": a}, {}
    (inits if const_b else inputs)["b"] = b
    model = single_node("MatMul", inputs, inits, node_inputs=["a", "b"])
    cot = _rand(rng, *np.matmul(a, b).shape)
    y_ref, g_ref = _torch_vjp(torch.matmul, [a, b], cot)
    _, y, grads = _model_vjp(model, inputs, cot)
    assert_close(y, y_ref.astype(np.float32))
    for g, r in zip(grads, g_ref):
        assert g.shape == r.shape
        assert_close(g, r.astype(np.float32))


@pytest.mark.parametrize("case", ["1d_1d", "2d_3d", "bcast_both", "k1"])
def test_matmul_vjp_fd(case) -> None:
    sa, sb = MATMUL_SHAPES[case]
    rng = _rng("matmul-fd", case)
    a, b = _rand(rng, *sa), _rand(rng, *sb)
    cot = _rand(rng, *np.matmul(a, b).shape)
    model = single_node("MatMul", {"a": a, "b": b})
    _, _, grads = _model_vjp(model, {"a": a, "b": b}, cot)
    for i, g in enumerate(grads):
        assert_close(g, _fd(torch.matmul, [a, b], cot, i).astype(np.float32))


@pytest.mark.parametrize("sa,sb", [((4, 64, 96), (96, 128)), ((3, 33, 17), (3, 17, 65)), ((1, 300), (300, 7))])
def test_matmul_vjp_larger(sa, sb) -> None:
    rng = _rng("matmul-large", sa, sb)
    a, b = _rand(rng, *sa), _rand(rng, *sb)
    cot = _rand(rng, *np.matmul(a, b).shape)
    _, _, grads = _model_vjp(single_node("MatMul", {"a": a, "b": b}), {"a": a, "b": b}, cot, threads=2)
    _, g_ref = _torch_vjp(torch.matmul, [a, b], cot)
    for g, r in zip(grads, g_ref):
        assert_close(g, r.astype(np.float32))


@pytest.mark.parametrize("x_shape,bias_shape", [((3, 4), (5,)), ((2, 3, 4), (1, 1, 5)), ((4,), (5,))])
def test_matmul_fused_bias_vjp(x_shape, bias_shape) -> None:
    # MatMul + Add(constant bias) becomes one Linear node with a bias input (fuse_matmul_add).
    rng = _rng("matmul-bias", x_shape)
    x, w, bias = _rand(rng, *x_shape), _rand(rng, x_shape[-1], bias_shape[-1]), _rand(rng, *bias_shape)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "bias"], ["y"])]
    model = make_model(nodes, [("x", list(x_shape))], ["y"], {"w": w, "bias": bias})
    cot = _rand(rng, *(np.matmul(x, w) + bias).shape)
    m, y, (gx,) = _model_vjp(model, {"x": x}, cot)
    assert m.op_counts == {"MatMul": 1}
    assert_close(y, ort_run(model, {"x": x})[0])
    wt = torch.from_numpy(w.astype(np.float64))
    _, (gref,) = _torch_vjp(lambda x: torch.matmul(x, wt), [x], cot.reshape(np.matmul(x, w).shape))
    assert_close(gx, gref.astype(np.float32))


@pytest.mark.parametrize("x_shape,bias_shape", [((3, 4), (5,)), ((2, 3, 4), (5,)), ((2, 3, 4), (1, 5))])
def test_matmul_bias_input_gradient(x_shape, bias_shape) -> None:
    # A MatMul node with the pass's third (bias) input fed from the graph inputs (W and bias
    # too): every gradient is asked for.
    rng = _rng("matmul-bias-grad", x_shape, bias_shape)
    x, w, bias = _rand(rng, *x_shape), _rand(rng, x_shape[-1], bias_shape[-1]), _rand(rng, *bias_shape)
    node = helper.make_node("MatMul", ["x", "w", "bias"], ["y"], name="mm")
    model = make_model([node], [("x", list(x_shape)), ("w", list(w.shape)), ("bias", list(bias.shape))], ["y"])
    fn = lambda x, w, b: torch.matmul(x, w) + b.reshape(-1)  # noqa: E731
    cot = _rand(rng, *np.matmul(x, w).shape)
    y_ref, g_ref = _torch_vjp(fn, [x, w, bias], cot)
    _, y, grads = _model_vjp(model, {"x": x, "w": w, "bias": bias}, cot)
    assert_close(y, y_ref.astype(np.float32))
    for g, r in zip(grads, g_ref):
        assert_close(g, r.astype(np.float32))


# --------------------------------------------------------------------------- BatchNormalization


def _torch_bn(eps, pshape):
    def f(x, s, b, m, v):
        r = lambda t: t.reshape(pshape)  # noqa: E731
        return r(s) * (x - r(m)) / torch.sqrt(r(v) + eps) + r(b)

    return f


def _bn_params(rng, n):
    return [_rand(rng, n), _rand(rng, n), _rand(rng, n), (rng.random(n) + 0.1).astype(np.float32)]


@pytest.mark.parametrize("params_input", [False, True], ids=["constParams", "inputParams"])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (2, 4, 3, 3), (1, 2, 2, 2, 3)])
def test_batchnorm_vjp(shape, params_input) -> None:
    rng = _rng("bn", shape, params_input)
    x = _rand(rng, *shape)
    params = _bn_params(rng, shape[1])
    names = ["scale", "B", "mean", "var"]
    inputs, inits = {"x": x}, {}
    for n, p in zip(names, params):
        (inputs if params_input else inits)[n] = p
    model = single_node("BatchNormalization", inputs, inits, node_inputs=["x", *names], epsilon=1e-3)
    cot = _rand(rng, *shape)
    pshape = (1, shape[1]) + (1,) * (len(shape) - 2)
    y_ref, g_ref = _torch_vjp(_torch_bn(1e-3, pshape), [x, *params], cot)
    _, y, grads = _model_vjp(model, inputs, cot)
    assert_close(y, y_ref.astype(np.float32))
    assert len(grads) == (5 if params_input else 1)
    for g, r in zip(grads, g_ref):
        assert_close(g, r.astype(np.float32))


def test_batchnorm_vjp_fd_all_params() -> None:
    rng = _rng("bn-fd")
    x = _rand(rng, 2, 2, 3)
    params = _bn_params(rng, 2)
    inputs = dict(zip(["x", "scale", "B", "mean", "var"], [x, *params]))
    cot = _rand(rng, 2, 2, 3)
    _, _, grads = _model_vjp(single_node("BatchNormalization", inputs, epsilon=1e-2), inputs, cot)
    fn = _torch_bn(1e-2, (1, 2, 1))
    for i, g in enumerate(grads):
        assert_close(g, _fd(fn, [x, *params], cot, i).astype(np.float32))


def test_batchnorm_vjp_opset7_not_spatial() -> None:
    # spatial = 0: one parameter per (channel, position).
    rng = _rng("bn7")
    x = _rand(rng, 2, 3, 2, 2)
    params = [p.reshape(3, 2, 2) for p in _bn_params(rng, 12)]
    names = ["scale", "B", "mean", "var"]
    model = single_node("BatchNormalization", {"x": x}, dict(zip(names, params)), opset=7, spatial=0)
    cot = _rand(rng, *x.shape)
    y_ref, g_ref = _torch_vjp(_torch_bn(1e-5, (1, 3, 2, 2)), [x, *params], cot)
    _, y, (gx,) = _model_vjp(model, {"x": x}, cot)
    assert_close(y, y_ref.astype(np.float32))
    assert_close(gx, g_ref[0].astype(np.float32))


def test_batchnorm_vjp_large_threads() -> None:
    rng = _rng("bn-large")
    x = _rand(rng, 4, 16, 24, 24)
    params = _bn_params(rng, 16)
    names = ["scale", "B", "mean", "var"]
    model = single_node("BatchNormalization", {"x": x}, dict(zip(names, params)))
    cot = _rand(rng, *x.shape)
    _, y, (gx,) = _model_vjp(model, {"x": x}, cot, threads=2)
    assert_close(y, ort_run(model, {"x": x})[0])
    a = params[0] / np.sqrt(params[3].astype(np.float64) + 1e-5)
    assert_close(gx, (cot * a.reshape(1, -1, 1, 1)).astype(np.float32))


# ------------------------------------------------------------------------------------- Reduce*

# (op, opset, axes as input?)
REDUCE_FORMS = [
    ("ReduceMean", 13, False),
    ("ReduceMean", 18, True),
    ("ReduceSum", 11, False),
    ("ReduceSum", 13, True),
    ("ReduceMax", 13, False),
    ("ReduceMax", 18, True),
]
REDUCE_IDS = [f"{op}-{opset}" for op, opset, _ in REDUCE_FORMS]
REDUCE_AXES = [None, [0], [-1], [1], [1, 2], [-1, 0], [2, 3], [0, 1, 2, 3], [-3, -2], [0, 2]]


def _reduce_model(op, opset, axes_input, shape, axes, runtime_axes=False, **attrs):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]
    inits, node_inputs = [], ["x"]
    if axes is not None and axes_input:
        node_inputs.append("axes")
        if runtime_axes:
            inputs.append(helper.make_tensor_value_info("axes", TensorProto.INT64, [len(axes)]))
        else:
            inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
    elif axes is not None:
        attrs["axes"] = axes
    node = helper.make_node(op, node_inputs, ["y"], name=f"{op.lower()}_node", **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _torch_reduce(op, axes, keepdims, rank):
    dims = tuple(range(rank)) if not axes else tuple(a % rank for a in axes)
    f = {"ReduceMean": torch.mean, "ReduceSum": torch.sum, "ReduceMax": torch.amax}[op]
    return lambda x: f(x, dim=dims, keepdim=keepdims)


@pytest.mark.parametrize("keepdims", [1, 0])
@pytest.mark.parametrize("axes", REDUCE_AXES, ids=str)
@pytest.mark.parametrize("form", REDUCE_FORMS, ids=REDUCE_IDS)
def test_reduce_vjp(form, axes, keepdims) -> None:
    op, opset, axes_input = form
    shape = (2, 3, 4, 5)
    rng = _rng("reduce", form, axes, keepdims)
    x = _rand(rng, *shape)  # continuous values: no ties, so torch.amax's gradient is the argmax's
    model = _reduce_model(op, opset, axes_input, shape, axes, keepdims=keepdims)
    fn = _torch_reduce(op, axes, bool(keepdims), len(shape))
    cot = _rand(rng, *_torch_fwd(fn, [x]).shape)
    y_ref, (g_ref,) = _torch_vjp(fn, [x], cot)
    _, y, (gx,) = _model_vjp(model, {"x": x}, cot)
    assert_close(y, y_ref.astype(np.float32))
    assert_close(gx, g_ref.astype(np.float32))


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax"])
def test_reduce_vjp_runtime_axes(op) -> None:
    opset = 13 if op == "ReduceSum" else 18
    rng = _rng("reduce-rt", op)
    x = _rand(rng, 2, 3, 4)
    axes = np.array([2, 0], np.int64)
    model = _reduce_model(op, opset, True, x.shape, [2, 0], runtime_axes=True, keepdims=1)
    fn = _torch_reduce(op, [2, 0], True, 3)
    cot = _rand(rng, 1, 3, 1)
    _, (g_ref,) = _torch_vjp(fn, [x], cot)
    m = ox.load(model, strip_softmax=False)
    gx, gaxes = m.vjp({"x": x, "axes": axes}, cot)
    assert_close(gx, g_ref.astype(np.float32))
    assert gaxes.shape == (2,) and not gaxes.any()  # integer input: no gradient


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax"])
def test_reduce_vjp_noop_empty_axes(op) -> None:
    opset = 13 if op == "ReduceSum" else 18
    rng = _rng("reduce-noop", op)
    x = _rand(rng, 2, 3)
    node = helper.make_node(op, ["x", "axes"], ["y"], noop_with_empty_axes=1)
    model = make_model([node], [("x", [2, 3])], ["y"], {"axes": np.zeros((0,), np.int64)}, opset=opset)
    cot = _rand(rng, 2, 3)
    _, y, (gx,) = _model_vjp(model, {"x": x}, cot)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(gx, cot)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax"])
@pytest.mark.parametrize("axes", [[1], [0, 2]], ids=str)
def test_reduce_vjp_fd(op, axes) -> None:
    rng = _rng("reduce-fd", op, axes)
    x = _rand(rng, 2, 3, 2)
    fn = _torch_reduce(op, axes, False, 3)
    cot = _rand(rng, *_torch_fwd(fn, [x]).shape)
    model = _reduce_model(op, 13 if op == "ReduceSum" else 17, op == "ReduceSum", x.shape, axes, keepdims=0)
    _, _, (gx,) = _model_vjp(model, {"x": x}, cot)
    assert_close(gx, _fd(fn, [x], cot, 0).astype(np.float32))


def _first_argmax_grad(x, axes, cot_keep):
    """dx for max over `axes`: each cotangent goes to the first non-NaN maximum in row-major order."""
    rank = x.ndim
    red = sorted(a % rank for a in axes)
    kept = [d for d in range(rank) if d not in red]
    xt = np.transpose(x, kept + red).reshape([x.shape[d] for d in kept] + [-1])
    keyed = np.where(np.isnan(xt), -np.inf, xt)
    idx = np.argmax(keyed, axis=-1)
    g = np.zeros_like(xt)
    ct = np.transpose(cot_keep, kept + red).reshape(idx.shape)
    for pos in np.ndindex(idx.shape):
        row = xt[pos]
        valid = ~np.isnan(row)
        if not valid.any():
            continue
        best = np.flatnonzero(valid & (row == keyed[pos][idx[pos]]))[0]
        g[pos + (best,)] = ct[pos]
    g = g.reshape([x.shape[d] for d in kept] + [x.shape[d] for d in red])
    return np.transpose(g, np.argsort(kept + red))


@pytest.mark.parametrize("axes", [[1], [2, 3], [0, 2], [1, 3], [0, 1, 2, 3]], ids=str)
def test_reduce_max_vjp_ties_and_nan(axes) -> None:
    rng = _rng("max-ties", axes)
    x = rng.integers(0, 3, size=(2, 3, 4, 3)).astype(np.float32)  # many ties
    x[0, 1, 2, 0] = np.nan
    x[1, :, 0, :] = np.nan
    x[1, 2, 3, :] = -np.inf
    model = _reduce_model("ReduceMax", 13, False, x.shape, axes, keepdims=1)
    m = ox.load(model, strip_softmax=False)
    y = m.predict(x)
    # The forward skips NaNs (onnxruntime does too, except for a NaN first in its reduction).
    np.testing.assert_array_equal(y, np.max(np.where(np.isnan(x), -np.inf, x), axis=tuple(axes), keepdims=True))
    cot = _rand(rng, *y.shape)
    (gx,) = m.vjp(x, cot)
    np.testing.assert_array_equal(gx, _first_argmax_grad(x, axes, cot).astype(np.float32))


def test_reduce_max_vjp_all_nan_gets_nothing() -> None:
    x = np.array([[np.nan, np.nan], [np.nan, -np.inf], [3.0, 3.0]], np.float32)
    model = _reduce_model("ReduceMax", 13, False, x.shape, [1], keepdims=0)
    (gx,) = ox.load(model, strip_softmax=False).vjp(x, np.array([1.0, 2.0, 3.0], np.float32))
    np.testing.assert_array_equal(gx, [[0, 0], [0, 2], [3, 0]])


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax"])
@pytest.mark.parametrize("axes", [[2, 3], [0], [1, 3]], ids=str)
def test_reduce_vjp_large_threads(op, axes) -> None:
    # Big enough for the parallel paths (expand / argmax routing split across threads).
    rng = _rng("reduce-large", op, axes)
    x = _rand(rng, 8, 32, 16, 16)
    model = _reduce_model(op, 13, op == "ReduceSum", x.shape, axes, keepdims=0)
    fn = _torch_reduce(op, axes, False, 4)
    cot = _rand(rng, *_torch_fwd(fn, [x]).shape)
    y_ref, (g_ref,) = _torch_vjp(fn, [x], cot)
    _, _, (gx,) = _model_vjp(model, {"x": x}, cot, threads=2)
    assert_close(gx, g_ref.astype(np.float32))


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    data=st.data(),
    op=st.sampled_from(["ReduceMean", "ReduceSum", "ReduceMax"]),
    keepdims=st.integers(0, 1),
)
def test_reduce_vjp_hypothesis(shape, data, op, keepdims) -> None:
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(-rank, rank - 1), unique_by=lambda a: a % rank, max_size=rank))
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    model = _reduce_model(op, 13, op == "ReduceSum", tuple(shape), axes or None, keepdims=keepdims)
    fn = _torch_reduce(op, axes, bool(keepdims), rank)
    cot = np.random.default_rng(7).standard_normal(_torch_fwd(fn, [x]).shape).astype(np.float32)
    _, (g_ref,) = _torch_vjp(fn, [x], cot)
    _, _, (gx,) = _model_vjp(model, {"x": x}, cot)
    assert_close(gx, g_ref.astype(np.float32))


# ------------------------------------------------------------------------------------- errors


def test_vjp_wrong_cotangent_shape_names_output() -> None:
    x = np.zeros((2, 3), np.float32)
    model = single_node("MatMul", {"x": x}, {"w": np.zeros((3, 4), np.float32)})
    m = ox.load(model, strip_softmax=False)
    with pytest.raises(ValueError, match=r"y0.*\(2, 4\)"):
        m.vjp(x, np.zeros((2, 5), np.float32))
