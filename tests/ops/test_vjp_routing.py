"""Vector-Jacobian products of the routing ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity,
Dropout, Transpose, Concat, Pad, Slice, Gather, Expand, Cast, CastLike) through Model.vjp, against
torch autograd in float64 and central finite differences. Each torch reference is first checked
against onnxruntime's forward, so it is the same op; then onnxplain's gradient must match the
reference's for a random cotangent. Ends with whole graphs: the legacy exporter's flatten chain
(Reshape with a shape computed at run time) feeding a Gemm, fan-out and zero cotangents."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


# ---------------------------------------------------------------- harness


def _model(
    nodes: list[Any],
    inputs: dict[str, np.ndarray],
    outputs: dict[str, int] | Sequence[str],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    dynamic: tuple[str, ...] = (),
) -> bytes:
    """Float graph inputs shaped like the arrays (dim 0 symbolic for names in `dynamic`); outputs
    name -> ONNX element type (a plain list means float)."""
    if not isinstance(outputs, dict):
        outputs = dict.fromkeys(outputs, TensorProto.FLOAT)
    ins = [
        helper.make_tensor_value_info(k, TensorProto.FLOAT, (["N", *v.shape[1:]] if k in dynamic else list(v.shape)))
        for k, v in inputs.items()
    ]
    outs = [helper.make_tensor_value_info(k, t, None) for k, t in outputs.items()]
    inits = [numpy_helper.from_array(v, name=k) for k, v in (initializers or {}).items()]
    graph = helper.make_graph(nodes, "test", ins, outs, initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m.SerializeToString()


def _one(op: str, inputs: dict[str, np.ndarray], initializers=None, opset=17, node_inputs=None, **attrs) -> bytes:
    """One node named `<op>_node` reading the graph inputs then the initializers; output y."""
    names = node_inputs if node_inputs is not None else [*inputs, *(initializers or {})]
    node = helper.make_node(op, names, ["y"], name=f"{op.lower()}_node", **attrs)
    return _model([node], inputs, ["y"], initializers, opset)


def _t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, np.float64), dtype=torch.float64, requires_grad=grad)


def _torch_vjp(fn: Callable[..., torch.Tensor], xs: Sequence[np.ndarray], cot: np.ndarray) -> list[np.ndarray]:
    ts = [_t(x, grad=True) for x in xs]
    y = fn(*ts)
    gs = torch.autograd.grad(y, ts, grad_outputs=_t(cot), allow_unused=True)
    return [np.zeros(x.shape) if g is None else g.numpy() for g, x in zip(gs, xs)]


def _fd_vjp(fn: Callable[..., torch.Tensor], xs: Sequence[np.ndarray], cot: np.ndarray, eps: float = 1e-3):
    """Central differences of <cot, fn(xs)> in float64, element by element (small inputs only)."""
    c = _t(cot)
    base = [np.asarray(x, np.float64) for x in xs]
    grads = []
    for i, x in enumerate(base):
        g = np.zeros(x.shape)
        for j in np.ndindex(*x.shape):
            vals = []
            for s in (eps, -eps):
                xp = [b.copy() for b in base]
                xp[i][j] += s
                with torch.no_grad():
                    vals.append(float((fn(*[_t(v) for v in xp]) * c).sum()))
            g[j] = (vals[0] - vals[1]) / (2 * eps)
        grads.append(g)
    return grads


def _check(
    model: bytes,
    feeds: dict[str, np.ndarray],
    fn: Callable[..., torch.Tensor],
    rng: np.random.Generator,
    fd: bool = False,
    threads: int = 1,
) -> list[np.ndarray]:
    """fn (torch, over the graph inputs in order) reproduces onnxruntime's forward; onnxplain's vjp
    for a random cotangent equals torch autograd's (and finite differences when `fd`)."""
    xs = list(feeds.values())
    ref = ort_run(model, feeds)[0]
    with torch.no_grad():
        y = fn(*[_t(x) for x in xs]).numpy()
    assert y.shape == ref.shape, f"reference forward shape {y.shape} != onnxruntime {ref.shape}"
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    cot = rng.standard_normal(y.shape).astype(np.float32)
    got = ox.load(model, strip_softmax=False).vjp(feeds, cot, threads=threads)
    assert len(got) == len(xs)
    expected = _torch_vjp(fn, xs, cot)
    for g, e in zip(got, expected):
        assert g.dtype == np.float32
        assert_close(g, e)
    if fd:
        for g, e in zip(got, _fd_vjp(fn, xs, cot)):
            assert_close(g, e, rtol=1e-4, atol=1e-4)
    return got


def _x(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    return rng.standard_normal(tuple(shape)).astype(np.float32)


# ---------------------------------------------------------------- views (alias the cotangent)

RESHAPE_CASES = [
    ((2, 3, 4), [4, -1], 0),
    ((2, 3, 4), [0, -1], 0),
    ((2, 3, 4), [-1], 0),
    ((2, 3, 4), [2, 3, 2, 2], 0),
    ((1, 5), [5], 0),
    ((0, 4), [2, 0, 4], 1),
    ((), [1, 1], 0),
]


@pytest.mark.parametrize("shape,req,allowzero", RESHAPE_CASES, ids=str)
def test_reshape(shape, req, allowzero, rng):
    x = _x(rng, shape)
    model = _one("Reshape", {"x": x}, {"s": np.array(req, np.int64)}, opset=14, allowzero=allowzero)
    out = ort_run(model, {"x": x})[0].shape
    _check(model, {"x": x}, lambda t: t.reshape(out), rng, fd=x.size <= 6)


def test_reshape_vjp_aliases_the_cotangent(rng):
    # A view's gradient is the cotangent viewed back: no copy.
    x = _x(rng, (2, 3, 4))
    m = ox.load(_one("Reshape", {"x": x}, {"s": np.array([4, 6], np.int64)}), strip_softmax=False)
    cot = _x(rng, (4, 6))
    (g,) = m.vjp(x, cot)
    np.testing.assert_array_equal(g, cot.reshape(2, 3, 4))
    assert np.shares_memory(g, cot)


def test_reshape_runtime_shape_input(rng):
    # The int64 shape input is a graph input too: it gets a zero gradient, x the reshaped one.
    x = _x(rng, (2, 6))
    s = np.array([3, -1], np.int64)
    node = helper.make_node("Reshape", ["x", "s"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    mp = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    mp.ir_version = 8
    cot = _x(rng, (3, 4))
    gx, gs = ox.load(mp.SerializeToString(), strip_softmax=False).vjp({"x": x, "s": s}, cot)
    np.testing.assert_array_equal(gx, cot.reshape(2, 6))
    assert gs.shape == (2,) and not gs.any()


@pytest.mark.parametrize("shape", [(2, 3, 4), (3,), (2, 1, 3)], ids=str)
def test_flatten(shape, rng):
    x = _x(rng, shape)
    for axis in range(-len(shape), len(shape) + 1):
        a = axis + len(shape) if axis < 0 else axis
        outer = int(np.prod(shape[:a]))
        _check(_one("Flatten", {"x": x}, opset=13, axis=axis), {"x": x}, lambda t, o=outer: t.reshape(o, -1), rng)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("shape,axes", [((2, 1, 3, 1), [1, -1]), ((1, 4, 1), None), ((1, 1), [0])], ids=str)
def test_squeeze(shape, axes, opset, rng):
    x = _x(rng, shape)
    if axes is None:
        model = _one("Squeeze", {"x": x}, opset=opset)
    elif opset < 13:
        model = _one("Squeeze", {"x": x}, opset=opset, axes=axes)
    else:
        model = _one("Squeeze", {"x": x}, {"a": np.array(axes, np.int64)}, opset=opset)
    out = ort_run(model, {"x": x})[0].shape
    _check(model, {"x": x}, lambda t: t.reshape(out), rng, fd=opset == 13)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("shape,axes", [((2, 3), [0, -1]), ((4,), [1]), ((), [0])], ids=str)
def test_unsqueeze(shape, axes, opset, rng):
    x = _x(rng, shape)
    if opset < 13:
        model = _one("Unsqueeze", {"x": x}, opset=opset, axes=axes)
    else:
        model = _one("Unsqueeze", {"x": x}, {"a": np.array(axes, np.int64)}, opset=opset)
    out = ort_run(model, {"x": x})[0].shape
    _check(model, {"x": x}, lambda t: t.reshape(out), rng)


def test_identity(rng):
    x = _x(rng, (2, 3))
    _check(_one("Identity", {"x": x}), {"x": x}, lambda t: t, rng, fd=True)


@pytest.mark.parametrize("opset", [7, 12, 13])
def test_dropout_with_mask_output(opset, rng):
    # The mask output (bool, int64 in the IR) carries nothing back; y's cotangent passes through.
    x = _x(rng, (2, 5))
    inits = {"ratio": np.array(0.3, np.float32)} if opset >= 12 else {}
    node = helper.make_node("Dropout", ["x", *inits], ["y", "mask"], name="drop")
    model = _model([node], {"x": x}, {"y": TensorProto.FLOAT, "mask": TensorProto.BOOL}, inits, opset=opset)
    m = ox.load(model, strip_softmax=False)
    cot = _x(rng, (2, 5))
    (g,) = m.vjp(x, [cot] + [None] * (len(m.outputs) - 1))
    np.testing.assert_array_equal(g, cot)


# ---------------------------------------------------------------- Transpose


@pytest.mark.parametrize("seed", range(8))
def test_transpose_random_perm(seed, rng):
    r = np.random.default_rng(seed)
    rank = int(r.integers(1, 6))
    shape = tuple(int(d) for d in r.integers(1, 5, rank))
    perm = [int(p) for p in r.permutation(rank)]
    x = _x(rng, shape)
    _check(_one("Transpose", {"x": x}, perm=perm), {"x": x}, lambda t: t.permute(perm), rng, fd=seed < 2)


def test_transpose_default_perm_and_identity(rng):
    x = _x(rng, (2, 3, 4))
    _check(_one("Transpose", {"x": x}), {"x": x}, lambda t: t.permute(2, 1, 0), rng)
    _check(_one("Transpose", {"x": x}, perm=[0, 1, 2]), {"x": x}, lambda t: t, rng)


@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [0, 3, 1, 2]])
def test_transpose_nhwc_large_threads(perm, rng):
    # Big enough for the tiled transpose and two threads.
    x = _x(rng, (2, 16, 40, 36))
    _check(_one("Transpose", {"x": x}, perm=perm), {"x": x}, lambda t: t.permute(perm), rng, threads=2)


# ---------------------------------------------------------------- Concat


@pytest.mark.parametrize("seed", range(8))
def test_concat_random(seed, rng):
    r = np.random.default_rng(100 + seed)
    rank = int(r.integers(1, 5))
    base = [int(d) for d in r.integers(1, 4, rank)]
    axis = int(r.integers(-rank, rank))
    a = axis % rank
    n = int(r.integers(1, 5))
    feeds = {}
    for i in range(n):
        s = list(base)
        s[a] = int(r.integers(0 if i else 1, 4))  # a later input may be empty along the axis
        feeds[f"x{i}"] = _x(rng, s)
    _check(_one("Concat", feeds, axis=axis), feeds, lambda *ts: torch.cat(ts, dim=axis), rng, fd=seed < 2)


def test_concat_with_constant_input(rng):
    # The constant gets no gradient (it is not a graph input); x gets its slab.
    x = _x(rng, (2, 3))
    c = _x(rng, (2, 2))
    model = _one("Concat", {"x": x}, {"c": c}, node_inputs=["c", "x"], axis=1)
    _check(model, {"x": x}, lambda t: torch.cat([_t(c), t], dim=1), rng)


def test_concat_same_input_twice(rng):
    x = _x(rng, (2, 3))
    model = _one("Concat", {"x": x}, node_inputs=["x", "x", "x"], axis=0)
    _check(model, {"x": x}, lambda t: torch.cat([t, t, t], dim=0), rng)


# ---------------------------------------------------------------- Pad


def _torch_pads(pads: Sequence[int], rank: int) -> list[int]:
    """ONNX [b_0..b_{r-1}, e_0..e_{r-1}] -> F.pad's (b_last, e_last, b_{last-1}, ...)."""
    out = []
    for k in reversed(range(rank)):
        out += [pads[k], pads[k + rank]]
    return out


@pytest.mark.parametrize("seed", range(10))
def test_pad_random_with_negative(seed, rng):
    r = np.random.default_rng(200 + seed)
    rank = int(r.integers(1, 5))
    shape = [int(d) for d in r.integers(2, 5, rank)]
    pads = [int(p) for p in r.integers(-1, 3, 2 * rank)]
    x = _x(rng, shape)
    value = float(r.standard_normal())
    model = _one(
        "Pad", {"x": x}, {"p": np.array(pads, np.int64), "v": np.array(value, np.float32)}, opset=13
    )
    tp = _torch_pads(pads, rank)
    _check(model, {"x": x}, lambda t: F.pad(t, tp, value=value), rng, fd=seed < 2)


def test_pad_opset18_axes(rng):
    x = _x(rng, (2, 3, 4))
    model = _one("Pad", {"x": x}, {"p": np.array([1, -1, 2, 0], np.int64), "a": np.array([-1, 1], np.int64)},
                 node_inputs=["x", "p", "", "a"], opset=18)
    # axes [-1, 1]: begins (1 on axis 2, -1 on axis 1), ends (2 on axis 2, 0 on axis 1).
    _check(model, {"x": x}, lambda t: F.pad(t, [1, 2, -1, 0]), rng)


def test_pad_opset2_attribute(rng):
    x = _x(rng, (3, 4))
    model = _one("Pad", {"x": x}, opset=2, pads=[0, -2, 1, 1], value=1.5)
    _check(model, {"x": x}, lambda t: F.pad(t, [-2, 1, 0, 1], value=1.5), rng)


def test_pad_crop_everything(rng):
    # Every element of x is cropped: its gradient is all zeros.
    x = _x(rng, (2, 3))
    model = _one("Pad", {"x": x}, {"p": np.array([0, -3, 0, 2], np.int64)}, opset=13)
    _check(model, {"x": x}, lambda t: F.pad(t, [-3, 2]), rng)


def test_pad_constant_value_from_input(rng):
    # A padding value that is a graph input collects the cotangent of the padding.
    x = _x(rng, (2, 3))
    v = np.array(0.7, np.float32)
    pads = [1, -1, 0, 2]
    model = _one("Pad", {"x": x, "v": v}, {"p": np.array(pads, np.int64)}, node_inputs=["x", "p", "v"], opset=13)
    tp = _torch_pads(pads, 2)

    def fn(t: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        mask = F.pad(torch.zeros(t.shape, dtype=torch.float64), tp, value=1.0)
        return F.pad(t, tp) + val * mask

    _check(model, {"x": x, "v": v}, fn, rng, fd=True)


# ---------------------------------------------------------------- Slice


def _onnx_indices(dim: int, start: int, end: int, step: int) -> list[int]:
    """The positions ONNX Slice takes on one axis (the spec's clamping, which differs from
    Python's for negative steps); checked against onnxruntime through the forward."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return list(range(start, end, step))


def _torch_slice(t: torch.Tensor, axes, starts, ends, steps) -> torch.Tensor:
    for a, b, e, s in zip(axes, starts, ends, steps):
        a = a % t.dim()
        idx = _onnx_indices(t.shape[a], b, e, s)
        if s < 0:  # flip, then a positive-step slice of the flipped axis
            n = t.shape[a]
            t = torch.flip(t, [a])
            idx = [n - 1 - i for i in idx]
        t = torch.index_select(t, a, torch.tensor(idx, dtype=torch.long))
    return t


@pytest.mark.parametrize("seed", range(14))
def test_slice_random_steps(seed, rng):
    r = np.random.default_rng(300 + seed)
    rank = int(r.integers(1, 4))
    shape = [int(d) for d in r.integers(1, 7, rank)]
    n_ax = int(r.integers(1, rank + 1))
    axes = [int(a) - (rank if r.random() < 0.3 else 0) for a in r.permutation(rank)[:n_ax]]
    starts, ends, steps = [], [], []
    for a in axes:
        d = shape[a % rank]
        step = int(r.choice([1, 2, 3, -1, -2]))
        pool = [-d - 2, -d, -1, 0, 1, d - 1, d, d + 3, INT64_MAX, INT64_MIN]
        # onnxruntime reads end=INT64_MAX with a negative step as "through index 0" where the
        # spec (and numpy, and onnxplain) clamp it to dim - 1, an empty slice: not compared here.
        end_pool = pool if step > 0 else pool[:-2] + [INT64_MIN]
        for _ in range(20):  # mostly non-empty slices; every 4th case keeps what it drew
            b, e = int(r.choice(pool)), int(r.choice(end_pool))
            if seed % 4 == 3 or _onnx_indices(d, b, e, step):
                break
        starts.append(b)
        ends.append(e)
        steps.append(step)
    x = _x(rng, shape)
    inits = {k: np.array(v, np.int64) for k, v in (("s", starts), ("e", ends), ("a", axes), ("st", steps))}
    model = _one("Slice", {"x": x}, inits, opset=13)
    _check(model, {"x": x}, lambda t: _torch_slice(t, axes, starts, ends, steps), rng, fd=seed < 3)


def test_slice_reverse_whole_axis_and_alias(rng):
    x = _x(rng, (3, 4))
    rev = _one("Slice", {"x": x}, {k: np.array(v, np.int64) for k, v in
                                   (("s", [-1]), ("e", [INT64_MIN]), ("a", [1]), ("st", [-1]))})
    _check(rev, {"x": x}, lambda t: torch.flip(t, [1]), rng)
    whole = _one("Slice", {"x": x}, {"s": np.array([0], np.int64), "e": np.array([INT64_MAX], np.int64)})
    _check(whole, {"x": x}, lambda t: t, rng)


def test_slice_opset1_attributes(rng):
    x = _x(rng, (4, 5))
    model = _one("Slice", {"x": x}, opset=9, starts=[1, -4], ends=[3, 100], axes=[0, 1])
    _check(model, {"x": x}, lambda t: t[1:3, 1:], rng)


# ---------------------------------------------------------------- Gather


@pytest.mark.parametrize("seed", range(10))
def test_gather_random_repeated_indices(seed, rng):
    r = np.random.default_rng(400 + seed)
    rank = int(r.integers(1, 4))
    shape = [int(d) for d in r.integers(1, 5, rank)]
    axis = int(r.integers(-rank, rank))
    dim = shape[axis % rank]
    ishape = [int(d) for d in r.integers(1, 4, int(r.integers(0, 3)))]
    idx = r.integers(-dim, dim, ishape).astype(np.int64)  # repeats and negatives
    x = _x(rng, shape)
    model = _one("Gather", {"x": x}, {"i": idx}, axis=axis)
    a = axis % rank
    flat = torch.tensor(np.where(idx < 0, idx + dim, idx).reshape(-1), dtype=torch.long)
    out = ort_run(model, {"x": x})[0].shape
    _check(model, {"x": x}, lambda t: torch.index_select(t, a, flat).reshape(out), rng, fd=seed < 2)


def test_gather_embedding_lookup_threads(rng):
    # Axis 0 of a table: one outer slice, so the scatter splits over columns; many repeats.
    table = _x(rng, (50, 2100))
    idx = rng.integers(0, 50, (4, 30)).astype(np.int64)
    model = _one("Gather", {"t": table}, {"i": idx}, axis=0)
    flat = torch.tensor(idx.reshape(-1))
    _check(model, {"t": table}, lambda t: t[flat].reshape(4, 30, 2100), rng, threads=2)


def test_gather_inner_axis_threads(rng):
    x = _x(rng, (512, 20, 40))
    idx = np.array([[3, 3], [0, -1]], np.int64)
    model = _one("Gather", {"x": x}, {"i": idx}, axis=1)
    flat = torch.tensor([3, 3, 0, 19])
    _check(model, {"x": x}, lambda t: t[:, flat].reshape(512, 2, 2, 40), rng, threads=2)


# ---------------------------------------------------------------- Expand

EXPAND_CASES = [
    ((3, 1), (2, 1, 4)),
    ((1,), (5,)),
    ((), (2, 3)),
    ((2, 3), (3,)),  # nothing to broadcast: identity
    ((1, 3, 1), (4, 1, 5)),
    ((4, 1, 5), (1, 3, 1)),  # "both ways": the target's 1s keep x's dims
    ((2, 1, 1, 3), (2, 2, 4, 1)),
]


@pytest.mark.parametrize("xshape,target", EXPAND_CASES, ids=str)
def test_expand(xshape, target, rng):
    x = _x(rng, xshape)
    model = _one("Expand", {"x": x}, {"s": np.array(target, np.int64)}, opset=13)
    yshape = np.broadcast_shapes(xshape, target)
    _check(model, {"x": x}, lambda t: torch.broadcast_to(t, yshape), rng, fd=x.size <= 6)


@pytest.mark.parametrize("xshape,target", [((64, 1, 40), (64, 30, 40)), ((1, 30, 1), (64, 30, 40))], ids=str)
def test_expand_large_threads(xshape, target, rng):
    x = _x(rng, xshape)
    model = _one("Expand", {"x": x}, {"s": np.array(target, np.int64)}, opset=13)
    _check(model, {"x": x}, lambda t: torch.broadcast_to(t, target), rng, threads=2)


# ---------------------------------------------------------------- Cast / CastLike


@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16])
def test_cast_float_to_float_is_identity(to, rng):
    x = _x(rng, (2, 3))
    model = _one("Cast", {"x": x}, to=to)
    cot = _x(rng, (2, 3))
    (g,) = ox.load(model, strip_softmax=False).vjp(x, cot)
    np.testing.assert_array_equal(g, cot)


def test_cast_through_int_has_zero_gradient(rng):
    x = _x(rng, (2, 3)) * 4
    nodes = [helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
             helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)]
    (g,) = ox.load(_model(nodes, {"x": x}, ["y"]), strip_softmax=False).vjp(x, _x(rng, (2, 3)))
    assert g.shape == (2, 3) and not g.any()


def test_castlike_float_target(rng):
    x = _x(rng, (3, 2))
    model = _one("CastLike", {"x": x}, {"like": np.zeros(1, np.float32)}, opset=15)
    _check(model, {"x": x}, lambda t: t, rng)


def test_castlike_target_from_input_gets_zero(rng):
    # The target is read only for its dtype: a graph-input target gets a zero gradient.
    x = _x(rng, (3, 2))
    like = _x(rng, (4,))
    model = _one("CastLike", {"x": x, "like": like}, opset=15)
    cot = _x(rng, (3, 2))
    gx, gl = ox.load(model, strip_softmax=False).vjp({"x": x, "like": like}, cot)
    np.testing.assert_array_equal(gx, cot)
    assert gl.shape == (4,) and not gl.any()


# ---------------------------------------------------------------- whole graphs


def _legacy_flatten_gemm(opset: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """x.view(x.size(0), -1) then a Linear layer, as torch's legacy exporter writes it, on x of
    shape (N, 4, 3, 2): the Reshape's shape is computed from the batch size at run time."""
    if opset >= 13:
        unsq = helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"])
        inits = {"ax0": np.array([0], np.int64)}
    else:
        unsq = helper.make_node("Unsqueeze", ["b"], ["b1"], axes=[0])
        inits = {}
    rng = np.random.default_rng(5)
    w = rng.standard_normal((5, 24)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    inits.update(w=w, bias=bias)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        unsq,
        helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["b1", "m1"], ["shp"], axis=0),
        helper.make_node("Reshape", ["x", "shp"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w", "bias"], ["y"], transB=1),
    ]
    x = np.zeros((2, 4, 3, 2), np.float32)
    return _model(nodes, {"x": x}, ["y"], inits, opset=opset, dynamic=("x",)), w, bias


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("n", [1, 3])
def test_legacy_flatten_chain_gemm_dynamic_batch(opset, n, rng):
    model, w, bias = _legacy_flatten_gemm(opset)
    x = _x(rng, (n, 4, 3, 2))

    def fn(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], -1) @ _t(w).T + _t(bias)

    _check(model, {"x": x}, fn, rng, fd=n == 1 and opset == 13)


def test_routing_chain(rng):
    # Transpose -> reversed Slice -> Pad -> Concat with a Gather of the input -> Expand, as one graph.
    x = _x(rng, (2, 3, 4))
    inits = {
        "s": np.array([-1], np.int64), "e": np.array([INT64_MIN], np.int64), "a": np.array([2], np.int64),
        "st": np.array([-2], np.int64), "p": np.array([0, 1, 0, 0, 0, 1], np.int64),
        "i": np.array([1, 1, 0], np.int64), "shape": np.array([2, 1, 1, 1], np.int64),
    }
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),      # (2, 4, 3)
        helper.make_node("Slice", ["t", "s", "e", "a", "st"], ["sl"]),   # (2, 4, 2)
        helper.make_node("Pad", ["sl", "p"], ["pd"]),                     # (2, 5, 3)
        helper.make_node("Gather", ["x", "i"], ["g"], axis=1),            # (2, 3, 4)
        helper.make_node("Transpose", ["g"], ["gt"], perm=[0, 2, 1]),     # (2, 4, 3)
        helper.make_node("Concat", ["pd", "gt"], ["c"], axis=1),          # (2, 9, 3)
        helper.make_node("Expand", ["c", "shape"], ["y"]),                # (2, 2, 9, 3)
    ]
    model = _model(nodes, {"x": x}, ["y"], inits, opset=13)
    idx = torch.tensor([1, 1, 0])

    def fn(t: torch.Tensor) -> torch.Tensor:
        tt = t.permute(0, 2, 1)
        sl = torch.flip(tt, [2])[:, :, ::2]
        pd = F.pad(sl, [0, 1, 1, 0])
        gt = t[:, idx].permute(0, 2, 1)
        return torch.broadcast_to(torch.cat([pd, gt], dim=1), (2, 2, 9, 3))

    _check(model, {"x": x}, fn, rng, fd=True)


def test_fan_out_and_zero_cotangents(rng):
    # x reaches two outputs through views that alias it; the cotangents add. A None cotangent
    # carries nothing; all None gives a zero gradient.
    x = _x(rng, (2, 6))
    nodes = [
        helper.make_node("Reshape", ["x", "s"], ["y0"]),
        helper.make_node("Transpose", ["x"], ["y1"]),
        helper.make_node("Flatten", ["x"], ["y2"], axis=0),
    ]
    model = _model(nodes, {"x": x}, ["y0", "y1", "y2"], {"s": np.array([3, 4], np.int64)})
    m = ox.load(model, strip_softmax=False)
    c0, c1, c2 = _x(rng, (3, 4)), _x(rng, (6, 2)), _x(rng, (1, 12))
    (g,) = m.vjp(x, [c0, c1, c2])
    assert_close(g, c0.reshape(2, 6) + c1.T + c2.reshape(2, 6))
    (g,) = m.vjp(x, [None, c1, None])
    np.testing.assert_array_equal(g, c1.T)
    (g,) = m.vjp(x, [None, None, None])
    assert g.shape == (2, 6) and not g.any()
    # The cotangents are not modified by the accumulation (views of them were added).
    (g2,) = m.vjp(x, [c0, c1, c2])
    np.testing.assert_array_equal(g, np.zeros((2, 6), np.float32))
    assert_close(g2, c0.reshape(2, 6) + c1.T + c2.reshape(2, 6))


def test_cotangent_shape_mismatch_is_refused(rng):
    x = _x(rng, (2, 6))
    m = ox.load(_one("Transpose", {"x": x}), strip_softmax=False)
    with pytest.raises(ValueError, match=r"shape \(2, 6\).*\(6, 2\)"):
        m.vjp(x, _x(rng, (2, 6)))
