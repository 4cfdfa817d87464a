"""Vector-Jacobian products of the elementwise ops against torch autograd (float64) and central
finite differences: Add/Sub/Mul/Div with broadcasting (both operands runtime inputs, or one
constant; legacy opset-6 `axis`), Relu, LeakyRelu, PRelu (slope constant or a graph input), Elu,
Sigmoid, Tanh, Softplus, Clip (attributes, constant and runtime bounds, torch.clamp's convention
at the bounds), Softmax/LogSoftmax (opset < 13 2D coercion and opset 13 single axis). Large
shapes run multithreaded to reach every path of the reduce-to-shape kernel."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, single_node

torch.set_num_threads(1)

Arrays = dict[str, np.ndarray]


def _vjp(model: bytes, feeds: Arrays, cot: np.ndarray, threads: int = 1) -> list[np.ndarray]:
    m = ox.load(model, strip_softmax=False)
    return m.vjp(feeds, cot, threads=threads)


def _torch_grads(fn: Callable[..., torch.Tensor], feeds: Arrays, cot: np.ndarray) -> list[np.ndarray]:
    """Gradients of <cot, fn(*feeds.values())> for every feed, in float64."""
    ts = {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in feeds.items()}
    y = fn(*ts.values())
    grads = torch.autograd.grad(
        y, list(ts.values()), grad_outputs=torch.tensor(cot.astype(np.float64)), allow_unused=True
    )
    return [np.zeros(v.shape) if g is None else g.numpy() for g, v in zip(grads, feeds.values())]


def _fd_grads(fn: Callable[..., torch.Tensor], feeds: Arrays, cot: np.ndarray, eps: float = 1e-6) -> list[np.ndarray]:
    """Central finite differences of <cot, fn(*feeds.values())> in float64 (torch used only as a forward)."""
    base = {k: v.astype(np.float64) for k, v in feeds.items()}
    c = cot.astype(np.float64)

    def f(vals: dict[str, np.ndarray]) -> float:
        with torch.no_grad():
            return float((fn(*(torch.tensor(v) for v in vals.values())).numpy() * c).sum())

    out = []
    for k, v in base.items():
        g = np.zeros_like(v)
        for i in np.ndindex(v.shape):
            plus = {**base, k: v.copy()}
            minus = {**base, k: v.copy()}
            plus[k][i] += eps
            minus[k][i] -= eps
            g[i] = (f(plus) - f(minus)) / (2 * eps)
        out.append(g)
    return out


def _check(actual: list[np.ndarray], expected: list[np.ndarray], rtol: float = 1e-4) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == np.float32
        assert_close(a, e.astype(np.float32) if e.dtype != np.float32 else e, rtol=rtol, atol=1e-6)


# ---- Add / Sub / Mul / Div ----------------------------------------------------------------------

BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "Div": torch.div,
}

SHAPE_PAIRS = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),
    ((2, 3, 4, 5), (3, 1, 1)),  # per-channel
    ((2, 3, 4, 5), ()),  # 0-d
    ((2, 3, 4, 5), (1,)),
    ((5,), (2, 3, 4, 5)),  # the left operand broadcasts
    ((1, 3, 1, 5), (2, 1, 4, 1)),  # both broadcast
    ((5, 1, 7), (1, 6, 1)),
    ((4,), (3, 1)),
    ((2, 1, 3), (2, 4, 1)),
    ((3, 1), (1, 0)),  # empty output
    ((1, 1), (1,)),
]


def _operand(rng: np.random.Generator, shape: tuple[int, ...], divisor: bool) -> np.ndarray:
    v = rng.standard_normal(shape).astype(np.float32)
    if divisor:  # keep away from 0 so the quotient's gradient stays well scaled
        v = (np.sign(v) + (v == 0)) * (0.5 + np.abs(v))
    return np.asarray(v, dtype=np.float32)


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize(("sa", "sb"), SHAPE_PAIRS)
def test_binary_both_runtime(op: str, sa: tuple[int, ...], sb: tuple[int, ...], rng: np.random.Generator) -> None:
    a = _operand(rng, sa, False)
    b = _operand(rng, sb, op == "Div")
    out_shape = np.broadcast_shapes(sa, sb)
    cot = rng.standard_normal(out_shape).astype(np.float32)
    got = _vjp(single_node(op, inputs={"a": a, "b": b}), {"a": a, "b": b}, cot)
    assert [g.shape for g in got] == [sa, sb]
    _check(got, _torch_grads(BINARY[op], {"a": a, "b": b}, cot))


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("const_side", ["left", "right"])
@pytest.mark.parametrize(("sx", "sc"), [((2, 3, 4, 5), (3, 1, 1)), ((2, 3), (2, 3)), ((3,), (2, 4, 3)), ((2, 3), ())])
def test_binary_one_constant(
    op: str, const_side: str, sx: tuple[int, ...], sc: tuple[int, ...], rng: np.random.Generator
) -> None:
    x = _operand(rng, sx, op == "Div" and const_side == "left")
    c = _operand(rng, sc, op == "Div" and const_side == "right")
    node_inputs = ["c", "x"] if const_side == "left" else ["x", "c"]
    model = single_node(op, inputs={"x": x}, initializers={"c": c}, node_inputs=node_inputs)
    cot = rng.standard_normal(np.broadcast_shapes(sx, sc)).astype(np.float32)
    ct = torch.tensor(c.astype(np.float64))
    fn = BINARY[op]

    def f(x: torch.Tensor) -> torch.Tensor:
        return fn(ct, x) if const_side == "left" else fn(x, ct)

    (got,) = _vjp(model, {"x": x}, cot)
    _check([got], _torch_grads(f, {"x": x}, cot))


def test_mul_same_input_twice(rng: np.random.Generator) -> None:
    # x * x: both operands are the same graph input, so the two gradients accumulate to 2 x g.
    x = rng.standard_normal((3, 4)).astype(np.float32)
    cot = rng.standard_normal((3, 4)).astype(np.float32)
    model = single_node("Mul", inputs={"x": x}, node_inputs=["x", "x"])
    (got,) = _vjp(model, {"x": x}, cot)
    assert_close(got, 2 * x * cot)


@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((3, 50000), (1, 1)),  # one output: a sum split across threads
        ((2, 40000), (2, 1)),  # a few outputs, each a long contiguous run
        ((8, 3, 10000), (3, 1)),  # few outputs, many runs each
        ((40, 2000), (40, 1)),  # many outputs, one run each
        ((100, 1100), (1100,)),  # innermost dim kept: column blocks
        ((3, 200, 300), (1, 300)),
        ((2, 16, 33, 35), (16, 1, 1)),
    ],
)
@pytest.mark.parametrize("op", ["Add", "Mul"])
def test_binary_large_threaded(op: str, sa: tuple[int, ...], sb: tuple[int, ...], rng: np.random.Generator) -> None:
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    cot = rng.standard_normal(np.broadcast_shapes(sa, sb)).astype(np.float32)
    model = single_node(op, inputs={"a": a, "b": b})
    want = _torch_grads(BINARY[op], {"a": a, "b": b}, cot)
    _check(_vjp(model, {"a": a, "b": b}, cot, threads=4), want)
    _check(_vjp(model, {"a": a, "b": b}, cot, threads=1), want)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_legacy_axis(op: str, rng: np.random.Generator) -> None:
    # Opset 6 with broadcast=1, axis=1: b (3,) lines up with dim 1 of a (2, 3, 4, 5).
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = _operand(rng, (3,), op == "Div")
    model = single_node(op, inputs={"a": a, "b": b}, opset=6, broadcast=1, axis=1)
    cot = rng.standard_normal(a.shape).astype(np.float32)
    got = _vjp(model, {"a": a, "b": b}, cot)
    assert got[1].shape == (3,)
    _check(got, _torch_grads(lambda a, b: BINARY[op](a, b.reshape(3, 1, 1)), {"a": a, "b": b}, cot))


@pytest.mark.parametrize("op", list(BINARY))
def test_binary_finite_differences(op: str, rng: np.random.Generator) -> None:
    a = _operand(rng, (2, 3), False)
    b = _operand(rng, (3,), op == "Div")
    cot = rng.standard_normal((2, 3)).astype(np.float32)
    got = _vjp(single_node(op, inputs={"a": a, "b": b}), {"a": a, "b": b}, cot)
    _check(got, _fd_grads(BINARY[op], {"a": a, "b": b}, cot))


# ---- unary activations ----------------------------------------------------------------------

UNARY: list[tuple[str, dict, Callable[[torch.Tensor], torch.Tensor]]] = [
    ("Relu", {}, torch.relu),
    ("LeakyRelu", {}, lambda x: F.leaky_relu(x, 0.01)),
    ("LeakyRelu", {"alpha": 0.2}, lambda x: F.leaky_relu(x, 0.2)),
    ("LeakyRelu", {"alpha": -1.5}, lambda x: F.leaky_relu(x, -1.5)),
    ("Elu", {}, F.elu),
    ("Elu", {"alpha": 0.7}, lambda x: F.elu(x, 0.7)),
    ("Sigmoid", {}, torch.sigmoid),
    ("Tanh", {}, torch.tanh),
    ("Softplus", {}, F.softplus),
]
UNARY_IDS = [f"{op}-{attrs}" for op, attrs, _ in UNARY]


def _with_kinks(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 3.0) -> np.ndarray:
    """Random values with exact zeros and +-0 mixed in (the kinks' conventions are tested too)."""
    x = (scale * rng.standard_normal(shape)).astype(np.float32)
    flat = x.reshape(-1)
    flat[::5] = 0.0
    flat[1::7] = -0.0
    return x


@pytest.mark.parametrize(("op", "attrs", "fn"), UNARY, ids=UNARY_IDS)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7,), (), (1, 0, 3)])
def test_unary_vs_torch(op: str, attrs: dict, fn: Callable, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    x = _with_kinks(rng, shape)
    cot = rng.standard_normal(shape).astype(np.float32)
    (got,) = _vjp(single_node(op, inputs={"x": x}, **attrs), {"x": x}, cot)
    _check([got], _torch_grads(fn, {"x": x}, cot))


@pytest.mark.parametrize(("op", "attrs", "fn"), UNARY, ids=UNARY_IDS)
def test_unary_large_threaded(op: str, attrs: dict, fn: Callable, rng: np.random.Generator) -> None:
    x = _with_kinks(rng, (4, 64, 300))
    x.reshape(-1)[:4] = [30.0, -30.0, 90.0, -90.0]  # saturated sigmoid/tanh/softplus
    cot = rng.standard_normal(x.shape).astype(np.float32)
    (got,) = _vjp(single_node(op, inputs={"x": x}, **attrs), {"x": x}, cot, threads=4)
    _check([got], _torch_grads(fn, {"x": x}, cot))


@pytest.mark.parametrize(("op", "attrs", "fn"), UNARY, ids=UNARY_IDS)
def test_unary_finite_differences(op: str, attrs: dict, fn: Callable, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 4)).astype(np.float32)
    x = np.where(np.abs(x) < 0.1, 0.5, x).astype(np.float32)  # away from the kinks
    cot = rng.standard_normal(x.shape).astype(np.float32)
    (got,) = _vjp(single_node(op, inputs={"x": x}, **attrs), {"x": x}, cot)
    _check([got], _fd_grads(fn, {"x": x}, cot))


def test_relu_gradient_is_zero_at_zero() -> None:
    x = np.array([-1.0, -0.0, 0.0, 1e-30, 2.0], np.float32)
    cot = np.ones(5, np.float32)
    (got,) = _vjp(single_node("Relu", inputs={"x": x}), {"x": x}, cot)
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1])


# ---- PRelu ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sx", "ss"), [((2, 3, 4, 5), (3, 1, 1)), ((2, 3, 4, 5), (1,)), ((4, 6), (6,)), ((2, 3, 4, 5), (1, 1, 1))]
)
@pytest.mark.parametrize("slope_runtime", [False, True])
def test_prelu(sx: tuple[int, ...], ss: tuple[int, ...], slope_runtime: bool, rng: np.random.Generator) -> None:
    x = _with_kinks(rng, sx)
    s = rng.uniform(-0.5, 0.5, ss).astype(np.float32)
    cot = rng.standard_normal(sx).astype(np.float32)
    channels = s.size

    def f(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        # F.prelu applies a weight of C elements along dim 1 (or one to all), as these slopes do.
        return F.prelu(x, s.reshape(channels))

    want = _torch_grads(f, {"x": x, "s": s}, cot)
    if slope_runtime:
        got = _vjp(single_node("PRelu", inputs={"x": x, "s": s}), {"x": x, "s": s}, cot)
        assert got[1].shape == ss
        _check(got, want)
    else:
        (got_x,) = _vjp(single_node("PRelu", inputs={"x": x}, initializers={"s": s}), {"x": x}, cot)
        _check([got_x], want[:1])


def test_prelu_finite_differences(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)
    x = np.where(np.abs(x) < 0.1, -0.5, x).astype(np.float32)
    s = rng.uniform(-0.5, 0.5, (3, 1)).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    got = _vjp(single_node("PRelu", inputs={"x": x, "s": s}), {"x": x, "s": s}, cot)
    _check(got, _fd_grads(lambda x, s: torch.where(x > 0, x, s * x), {"x": x, "s": s}, cot))


# ---- Clip -------------------------------------------------------------------------------------


def _clip_input(rng: np.random.Generator) -> np.ndarray:
    x = rng.uniform(-3, 3, (3, 4, 5)).astype(np.float32)
    x.reshape(-1)[:6] = [-1.0, 2.0, np.nan, np.inf, -np.inf, 0.0]  # on the bounds, and specials
    return x


def _clip_torch(x: torch.Tensor, lo: float | None, hi: float | None) -> torch.Tensor:
    return x * 1.0 if lo is None and hi is None else torch.clamp(x, min=lo, max=hi)


@pytest.mark.parametrize(("lo", "hi"), [(-1.0, 2.0), (-1.0, None), (None, 2.0), (None, None), (0.0, 6.0), (2.0, -1.0)])
@pytest.mark.parametrize("opset", [6, 13])
def test_clip_constant_bounds(lo: float | None, hi: float | None, opset: int, rng: np.random.Generator) -> None:
    x = _clip_input(rng)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    if opset == 6:
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        model = single_node("Clip", inputs={"x": x}, opset=6, **attrs)
    else:
        inits = {}
        if lo is not None:
            inits["lo"] = np.array(lo, np.float32)
        if hi is not None:
            inits["hi"] = np.array(hi, np.float32)
        node_inputs = ["x", "lo" if lo is not None else "", "hi" if hi is not None else ""]
        model = single_node("Clip", inputs={"x": x}, initializers=inits, node_inputs=node_inputs, opset=13)
    (got,) = _vjp(model, {"x": x}, cot)
    (want,) = _torch_grads(lambda x: _clip_torch(x, lo, hi), {"x": x}, cot)
    _check([got], [want])


@pytest.mark.parametrize(("lo", "hi"), [(-1.0, 2.0), (2.0, -1.0), (0.5, 0.5)])
def test_clip_runtime_bounds(lo: float, hi: float, rng: np.random.Generator) -> None:
    x = _clip_input(rng)
    x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
    feeds = {"x": x, "lo": np.array(lo, np.float32), "hi": np.array(hi, np.float32)}
    cot = rng.standard_normal(x.shape).astype(np.float32)
    got = _vjp(single_node("Clip", inputs=feeds, opset=13), feeds, cot)
    assert [g.shape for g in got] == [x.shape, (), ()]
    want = _torch_grads(lambda x, lo, hi: torch.clamp(x, min=lo, max=hi), feeds, cot)
    _check(got, want)


@pytest.mark.parametrize("which", ["min", "max"])
def test_clip_one_runtime_bound(which: str, rng: np.random.Generator) -> None:
    x = _clip_input(rng)
    x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
    b = np.array(0.5, np.float32)
    feeds = {"x": x, "b": b}
    node_inputs = ["x", "b", ""] if which == "min" else ["x", "", "b"]
    cot = rng.standard_normal(x.shape).astype(np.float32)
    got = _vjp(single_node("Clip", inputs=feeds, opset=13, node_inputs=node_inputs), feeds, cot)
    want = _torch_grads(lambda x, b: torch.clamp(x, **{which: b}), feeds, cot)
    _check(got, want)


def test_clip_finite_differences(rng: np.random.Generator) -> None:
    x = np.array([[-2.0, -0.5, 0.3], [0.9, 1.7, 3.0]], np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    inits = {"lo": np.array(-1.0, np.float32), "hi": np.array(1.5, np.float32)}
    (got,) = _vjp(single_node("Clip", inputs={"x": x}, initializers=inits, opset=13), {"x": x}, cot)
    _check([got], _fd_grads(lambda x: torch.clamp(x, -1.0, 1.5), {"x": x}, cot))


# ---- Softmax / LogSoftmax ----------------------------------------------------------------------

SOFTMAX = {"Softmax": torch.softmax, "LogSoftmax": torch.log_softmax}


def _softmax_torch(op: str, x: torch.Tensor, axis: int, opset: int) -> torch.Tensor:
    if opset >= 13:
        return SOFTMAX[op](x, dim=axis)
    a = axis % x.dim()
    lead = int(np.prod(x.shape[:a]))
    return SOFTMAX[op](x.reshape(lead, -1), dim=1).reshape(x.shape)


@pytest.mark.parametrize("op", list(SOFTMAX))
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize(
    ("shape", "axis"), [((2, 3, 4, 5), 1), ((2, 3, 4, 5), -1), ((2, 3, 4, 5), 0), ((3, 10), 1), ((4, 6), -2), ((7,), 0)]
)
def test_softmax(op: str, opset: int, shape: tuple[int, ...], axis: int, rng: np.random.Generator) -> None:
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    cot = rng.standard_normal(shape).astype(np.float32)
    (got,) = _vjp(single_node(op, inputs={"x": x}, opset=opset, axis=axis), {"x": x}, cot)
    _check([got], _torch_grads(lambda x: _softmax_torch(op, x, axis, opset), {"x": x}, cot))


@pytest.mark.parametrize("op", list(SOFTMAX))
@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_default_axis(op: str, opset: int, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    (got,) = _vjp(single_node(op, inputs={"x": x}, opset=opset), {"x": x}, cot)
    axis = 1 if opset < 13 else -1
    _check([got], _torch_grads(lambda x: _softmax_torch(op, x, axis, opset), {"x": x}, cot))


@pytest.mark.parametrize("op", list(SOFTMAX))
@pytest.mark.parametrize(("shape", "axis"), [((1, 10, 300), 1), ((64, 1000), 1), ((2, 7, 33, 40), 1)])
def test_softmax_large_threaded(op: str, shape: tuple[int, ...], axis: int, rng: np.random.Generator) -> None:
    x = (5 * rng.standard_normal(shape)).astype(np.float32)
    cot = rng.standard_normal(shape).astype(np.float32)
    (got,) = _vjp(single_node(op, inputs={"x": x}, axis=axis, opset=13), {"x": x}, cot, threads=4)
    _check([got], _torch_grads(lambda x: SOFTMAX[op](x, dim=axis), {"x": x}, cot))


@pytest.mark.parametrize("op", list(SOFTMAX))
def test_softmax_finite_differences(op: str, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    (got,) = _vjp(single_node(op, inputs={"x": x}, axis=1, opset=13), {"x": x}, cot)
    _check([got], _fd_grads(lambda x: SOFTMAX[op](x, dim=1), {"x": x}, cot))


# ---- chains and errors ------------------------------------------------------------------------


def test_residual_chain(rng: np.random.Generator) -> None:
    # y = Sigmoid(x * s + b) + Relu(x): Mul/Add with constants, two paths back to x.
    from onnx import helper

    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    s = rng.standard_normal((3, 1, 1)).astype(np.float32)
    b = rng.standard_normal((3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "b"], ["a"], name="add"),
        helper.make_node("Sigmoid", ["a"], ["g"], name="sig"),
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Add", ["g", "r"], ["y"], name="res"),
    ]
    model = make_model(nodes, [("x", x.shape)], ["y"], {"s": s, "b": b})
    cot = rng.standard_normal(x.shape).astype(np.float32)
    st, bt = (torch.tensor(v.astype(np.float64)) for v in (s, b))
    (got,) = _vjp(model, {"x": x}, cot)
    _check([got], _torch_grads(lambda x: torch.sigmoid(x * st + bt) + torch.relu(x), {"x": x}, cot))


def test_wrong_cotangent_shape_is_rejected(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3)).astype(np.float32)
    m = ox.load(single_node("Tanh", inputs={"x": x}), strip_softmax=False)
    with pytest.raises(ValueError, match="shape"):
        m.vjp(x, np.zeros((3, 2), np.float32))


def test_zero_cotangent(rng: np.random.Generator) -> None:
    a = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal((3,)).astype(np.float32)
    got = _vjp(single_node("Mul", inputs={"a": a, "b": b}), {"a": a, "b": b}, None)
    assert [g.shape for g in got] == [(2, 3), (3,)]
    assert all(not g.any() for g in got)
