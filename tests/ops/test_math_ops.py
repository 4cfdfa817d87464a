"""Unary math (Exp, Log, Neg, Abs, Sqrt, Reciprocal, Erf), activations (Selu, HardSigmoid,
HardSwish, Gelu) and Pow: forward against onnxruntime (random and special values, a large
multithreaded tensor, every opset where the semantics changed, int64 where the spec allows it),
VJPs against torch autograd (float64) and central finite differences, torch's conventions at
the kinks, kinds, and errors that name the node."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run, single_node

torch.set_num_threads(1)

SPECIALS = np.array(
    [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 2.5, -2.5, 3.0, -3.0, 7.0, -7.0,
     20.0, -20.0, 88.0, 89.0, -90.0, 3e38, -3e38, 1e-40],
    np.float32,
)

TorchFn = Callable[[torch.Tensor], torch.Tensor]

# op -> (attribute variants, opsets where it exists (the first is its introduction), torch reference per variant)
UNARY: dict[str, tuple[list[dict], list[int]]] = {
    "Exp": ([{}], [6, 13]),
    "Log": ([{}], [6, 13]),
    "Neg": ([{}], [6, 13]),
    "Abs": ([{}], [6, 13]),
    "Sqrt": ([{}], [6, 13]),
    "Reciprocal": ([{}], [6, 13]),
    "Erf": ([{}], [9, 13]),
    "Selu": ([{}, {"alpha": 1.5, "gamma": 0.8}], [6, 22]),
    "HardSigmoid": ([{}, {"alpha": 0.5, "beta": 0.25}, {"alpha": -0.3, "beta": 0.6}], [6, 22]),
    "HardSwish": ([{}], [14, 22]),
    "Gelu": ([{}, {"approximate": "tanh"}, {"approximate": "none"}], [20]),
}
CASES = [(op, a) for op, (variants, _) in UNARY.items() for a in variants]


def _ids(case) -> str:
    op, attrs = case
    return op + "".join(f"-{k}{v}" for k, v in attrs.items())


def _opset(op: str) -> int:
    return UNARY[op][1][-1]


def _torch_fn(op: str, attrs: dict) -> TorchFn:
    if op == "Selu":
        if not attrs:
            return F.selu
        a, g = attrs["alpha"], attrs["gamma"]
        return lambda x: g * torch.where(x > 0, x, a * torch.expm1(x))
    if op == "HardSigmoid":
        a, b = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
        return lambda x: torch.clamp(a * x + b, 0, 1)
    if op == "Gelu":
        return lambda x: F.gelu(x, approximate=attrs.get("approximate", "none"))
    return {
        "Exp": torch.exp,
        "Log": torch.log,
        "Neg": torch.neg,
        "Abs": torch.abs,
        "Sqrt": torch.sqrt,
        "Reciprocal": torch.reciprocal,
        "Erf": torch.erf,
        "HardSwish": F.hardswish,
    }[op]


def _domain(op: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random inputs inside the op's domain, away from the kinks (for gradients)."""
    x = rng.standard_normal(shape) * 2
    if op in ("Log", "Sqrt"):
        x = np.abs(x) + 0.1
    if op == "Reciprocal":
        x = np.sign(x) * (np.abs(x) + 0.2)
    if op in ("Abs",):
        x = np.where(np.abs(x) < 1e-3, 0.5, x)
    return x.astype(np.float32)


def _same(actual: np.ndarray, expected: np.ndarray, rtol: float = 2e-6, atol: float = 1e-7) -> None:
    """Elementwise closeness that treats NaN == NaN and inf == inf (no scaling by max|expected|)."""
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def _load(model: bytes) -> ox.Model:
    return ox.load(model, strip_softmax=False)


# ---- forward against onnxruntime --------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7,), (0, 3), (1,)])
def test_unary_random(case, shape, rng: np.random.Generator) -> None:
    op, attrs = case
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    if op in ("Log", "Sqrt"):
        x = np.abs(x)
    model = single_node(op, inputs={"x": x}, opset=_opset(op), **attrs)
    with np.errstate(all="ignore"):
        assert_close(_load(model).predict(x), ort_run(model, {"x": x})[0])


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_unary_specials(case) -> None:
    """NaN, +-inf, +-0, overflow and negative inputs to Log/Sqrt as onnxruntime gives them."""
    op, attrs = case
    model = single_node(op, inputs={"x": SPECIALS}, opset=_opset(op), **attrs)
    got = _load(model).predict(SPECIALS)
    want = ort_run(model, {"x": SPECIALS})[0]
    # onnxruntime's Erf and Gelu use a polynomial erf (MLAS): a few ulp from libm's.
    rtol = 1e-5 if op in ("Erf", "Gelu") else 2e-6
    _same(got, want, rtol=rtol)
    zeros = (want == 0) & (got == 0)
    assert np.array_equal(np.signbit(got[zeros]), np.signbit(want[zeros])), "signed zeros differ"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_unary_large_multithreaded(case, rng: np.random.Generator) -> None:
    op, attrs = case
    x = (rng.standard_normal((3, 64, 33, 17)) * 4).astype(np.float32)
    if op in ("Log", "Sqrt"):
        x = np.abs(x)
    model = single_node(op, inputs={"x": x}, dynamic_batch=True, opset=_opset(op), **attrs)
    m = _load(model)
    want = ort_run(model, {"x": x})[0]
    for threads in (1, 2):
        _same(m.predict(x, threads=threads), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op_opset", [(op, o) for op, (_, opsets) in UNARY.items() for o in opsets], ids=str)
def test_unary_opsets(op_opset) -> None:
    op, opset = op_opset
    x = np.linspace(-4, 4, 29, dtype=np.float32).reshape(1, 29)
    if op in ("Log", "Sqrt"):
        x = np.abs(x)
    model = single_node(op, inputs={"x": x}, opset=opset)
    with np.errstate(all="ignore"):
        _same(_load(model).predict(x), ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["HardSwish", "Gelu", "Erf"])
def test_op_before_its_opset_is_refused(op: str) -> None:
    first = UNARY[op][1][0]
    model = single_node(op, inputs={"x": np.zeros((2, 3), np.float32)}, opset=first - 1)
    with pytest.raises(ox.ModelFormatError, match=rf"node '{op.lower()}_node' \({op}\).*added in opset {first}"):
        _load(model)


def _int_model(op: str, opset: int = 13, dtype: int = TensorProto.INT64) -> bytes:
    node = helper.make_node(op, ["x"], ["y"], name="bad")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", dtype, [6])],
        [helper.make_tensor_value_info("y", dtype, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("op", ["Neg", "Abs"])
def test_neg_abs_int64(op: str) -> None:
    mb = _int_model(op)
    x = np.array([-7, 0, 5, np.iinfo(np.int64).max, -np.iinfo(np.int64).max, 1], np.int64)
    got = _load(mb).predict({"x": x})
    np.testing.assert_array_equal(got, ort_run(mb, {"x": x})[0])


@pytest.mark.parametrize("op", ["Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Selu", "HardSigmoid", "HardSwish"])
def test_int_input_is_rejected(op: str) -> None:
    with pytest.raises(ox.ModelFormatError, match=rf"node 'bad' \({op}\).*float32.*int64"):
        _load(_int_model(op, opset=_opset(op)))


def test_gelu_bad_approximate() -> None:
    model = single_node("Gelu", inputs={"x": np.zeros(3, np.float32)}, opset=20, approximate="erf")
    with pytest.raises(ox.ModelFormatError, match=r"node 'gelu_node' \(Gelu\).*approximate must be"):
        _load(model)


@pytest.mark.parametrize("op", list(UNARY))
def test_kind_is_activation(op: str) -> None:
    m = _load(single_node(op, inputs={"x": np.zeros((2, 3), np.float32)}, opset=_opset(op)))
    assert m.nodes == [(f"{op.lower()}_node", op, "activation")]


# ---- VJPs ----------------------------------------------------------------------------------------


def _torch_grad(fn: TorchFn, x: np.ndarray, cot: np.ndarray) -> np.ndarray:
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    (g,) = torch.autograd.grad(fn(t), [t], grad_outputs=torch.tensor(cot.astype(np.float64)))
    return g.numpy()


def _fd_grad(fn: TorchFn, x: np.ndarray, cot: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    base = x.astype(np.float64)
    g = np.zeros_like(base)
    with torch.no_grad():
        for i in np.ndindex(base.shape):
            p, m = base.copy(), base.copy()
            p[i] += eps
            m[i] -= eps
            g[i] = float(((fn(torch.tensor(p)) - fn(torch.tensor(m))).numpy() * cot).sum()) / (2 * eps)
    return g


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_unary_vjp_torch_and_fd(case, rng: np.random.Generator) -> None:
    op, attrs = case
    fn = _torch_fn(op, attrs)
    x = _domain(op, rng, (2, 3, 5))
    cot = rng.standard_normal(x.shape).astype(np.float32)
    m = _load(single_node(op, inputs={"x": x}, opset=_opset(op), **attrs))
    (got,) = m.vjp(x, cot)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert_close(got, _torch_grad(fn, x, cot).astype(np.float32), rtol=1e-5, atol=1e-6)
    # Finite differences on a small slice (one forward pair per element).
    xs, cs = x[0, :2], cot[0, :2]
    (got_s,) = _load(single_node(op, inputs={"x": xs}, opset=_opset(op), **attrs)).vjp(xs, cs)
    assert_close(got_s, _fd_grad(fn, xs, cs).astype(np.float32), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_unary_vjp_multithreaded(case, rng: np.random.Generator) -> None:
    op, attrs = case
    x = _domain(op, rng, (2, 64, 30, 20))
    cot = rng.standard_normal(x.shape).astype(np.float32)
    m = _load(single_node(op, inputs={"x": x}, opset=_opset(op), **attrs))
    want = _torch_grad(_torch_fn(op, attrs), x, cot).astype(np.float32)
    for threads in (1, 2):
        assert_close(m.vjp(x, cot, threads=threads)[0], want, rtol=1e-5, atol=1e-6)


# (op, attrs, x values at the kinks / special points, torch reference whose convention we follow)
KINKS: list[tuple[str, dict, list[float], TorchFn]] = [
    ("Abs", {}, [0.0, -0.0, 1.0, -1.0], torch.abs),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, [-3.0, 3.0, -2.0, 0.0, 4.0], F.hardsigmoid),
    ("HardSwish", {}, [-3.0, 3.0, -4.0, 0.0, 4.0], F.hardswish),
    ("Selu", {}, [0.0, -0.0, 1.0, -1.0], F.selu),
    ("Sqrt", {}, [0.0, 4.0], torch.sqrt),
    ("Log", {}, [0.0, 1.0], torch.log),
    ("Reciprocal", {}, [0.0, -0.0, 2.0], torch.reciprocal),
    ("Gelu", {}, [0.0, -30.0, 30.0], F.gelu),
]


@pytest.mark.parametrize("kink", KINKS, ids=lambda k: k[0])
def test_vjp_conventions_at_kinks(kink) -> None:
    op, attrs, vals, fn = kink
    x = np.array(vals, np.float32)
    cot = np.full(x.shape, 1.5, np.float32)
    (got,) = _load(single_node(op, inputs={"x": x}, opset=_opset(op), **attrs)).vjp(x, cot)
    _same(got, _torch_grad(fn, x, cot).astype(np.float32), rtol=1e-5, atol=1e-6)


def test_hardsigmoid_default_kinks_have_zero_gradient() -> None:
    """With the ONNX defaults (0.2, 0.5) the kinks are at -2.5 and 2.5: gradient 0 there (strict, as F.hardsigmoid)."""
    x = np.array([-2.5, 2.5, -2.4, 2.4], np.float32)
    (got,) = _load(single_node("HardSigmoid", inputs={"x": x})).vjp(x, np.ones(4, np.float32))
    np.testing.assert_allclose(got, [0.0, 0.0, 0.2, 0.2], rtol=1e-6)


# ---- Pow -----------------------------------------------------------------------------------------

POW_SHAPES = [
    ((2, 3, 4), (2, 3, 4)),
    ((2, 3, 4), ()),
    ((2, 3, 4), (4,)),
    ((3, 1), (1, 5)),
    ((1, 3, 1, 5), (2, 1, 4, 1)),
    ((5,), (2, 3, 5)),
    ((0, 3), (3,)),
]


def _pow_operands(rng: np.random.Generator, sx, sy) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(rng.uniform(0.1, 3.0, sx) * rng.choice([-1, 1], sx), dtype=np.float32)
    y = np.asarray(rng.integers(-3, 4, sy), dtype=np.float32)  # integral exponents: negative bases stay real
    return x, y


@pytest.mark.parametrize(("sx", "sy"), POW_SHAPES)
@pytest.mark.parametrize("opset", [7, 12, 13, 15])
def test_pow_broadcast_vs_ort(sx, sy, opset: int, rng: np.random.Generator) -> None:
    x, y = _pow_operands(rng, sx, sy)
    model = single_node("Pow", inputs={"x": x, "y": y}, opset=opset)
    feeds = {"x": x, "y": y}
    m = _load(model)
    assert m.nodes[0][2] == "product"
    assert_close(m.predict(feeds), ort_run(model, feeds)[0])
    # fractional exponents on positive bases
    xp = np.abs(x) + 0.05
    yf = np.asarray(rng.standard_normal(sy) * 2, dtype=np.float32)
    assert_close(m.predict({"x": xp, "y": yf}), ort_run(model, {"x": xp, "y": yf})[0])


def test_pow_specials_vs_ort() -> None:
    base = np.array([-2, -2, 0, 0, 0, -0.0, -0.0, 2, np.nan, 1, -1, np.inf, -np.inf, 0.5, 2, -8, 1e-30], np.float32)
    expo = np.array([0.5, 2, -1, 0, 0.5, -1, 3, np.nan, 0, np.nan, np.inf, -1, 3, np.inf, 200, 1 / 3, -2], np.float32)
    model = single_node("Pow", inputs={"x": base, "y": expo})
    with np.errstate(all="ignore"):
        _same(_load(model).predict({"x": base, "y": expo}), ort_run(model, {"x": base, "y": expo})[0])


@pytest.mark.parametrize("e", [2.0, 3.0, 0.5, -1.0, 1.7])
def test_pow_constant_exponent_is_activation(e: float, rng: np.random.Generator) -> None:
    x = (rng.standard_normal((2, 16, 40, 40)) * 2).astype(np.float32)
    if e not in (2.0, 3.0, -1.0):
        x = np.abs(x)
    model = single_node("Pow", inputs={"x": x}, initializers={"e": np.array(e, np.float32)}, dynamic_batch=True)
    m = _load(model)
    assert m.nodes == [("pow_node", "Pow", "activation")]
    want = ort_run(model, {"x": x})[0]
    for threads in (1, 2):
        _same(m.predict(x, threads=threads), want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("opset", [12, 13, 15])
def test_pow_int64_exponent(opset: int, rng: np.random.Generator) -> None:
    """From opset 12 the exponent may be int64 while the base is float32."""
    x = (rng.standard_normal((3, 4)) * 2).astype(np.float32)
    e = np.array([[0], [1], [-2]], np.int64)
    model = single_node("Pow", inputs={"x": x}, initializers={"e": e}, opset=opset)
    m = _load(model)
    assert m.nodes[0][2] == "activation"
    _same(m.predict(x), ort_run(model, {"x": x})[0])
    cot = rng.standard_normal((3, 4)).astype(np.float32)
    (g,) = m.vjp(x, cot)
    assert_close(g, _torch_grad(lambda t: torch.pow(t, torch.tensor(e.astype(np.float64))), x, cot).astype(np.float32))


def test_pow_int64_exponent_before_opset_12_is_refused() -> None:
    x = np.ones(3, np.float32)
    model = single_node("Pow", inputs={"x": x}, initializers={"e": np.array(2, np.int64)}, opset=11)
    with pytest.raises(ox.ModelFormatError, match=r"node 'pow_node' \(Pow\).*differ in dtype.*opset 12"):
        _load(model)


def test_pow_int64_base_and_exponent() -> None:
    node = helper.make_node("Pow", ["x", "e"], ["y"], name="ipow")
    graph = helper.make_graph(
        [node],
        "ipow",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [5])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
        initializer=[numpy_helper.from_array(np.array([2, 3, 0, 1, 5], np.int64), "e")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    mb = model.SerializeToString()
    x = np.array([3, -2, 7, -9, 4], np.int64)
    np.testing.assert_array_equal(_load(mb).predict({"x": x}), ort_run(mb, {"x": x})[0])


def test_pow_legacy_broadcast_axis(rng: np.random.Generator) -> None:
    """Opset 6: with broadcast=1 and axis=1 the exponent (3,) lines up with dim 1 of the base."""
    x = rng.uniform(0.5, 2, (2, 3, 4)).astype(np.float32)
    y = np.array([0.5, 2.0, -1.0], np.float32)
    model = single_node("Pow", inputs={"x": x, "y": y}, opset=6, broadcast=1, axis=1)
    got = _load(model).predict({"x": x, "y": y})
    assert_close(got, np.power(x, y.reshape(3, 1)), rtol=1e-6)


def test_pow_shape_mismatch_names_node() -> None:
    model = single_node("Pow", inputs={"x": np.ones((2, 3), np.float32), "y": np.ones((4,), np.float32)})
    with pytest.raises(ValueError, match=r"node 'pow_node' \(Pow\).*cannot broadcast"):
        _load(model)


@pytest.mark.parametrize(("sx", "sy"), [s for s in POW_SHAPES if 0 not in s[0]])
def test_pow_vjp_both_inputs(sx, sy, rng: np.random.Generator) -> None:
    x = rng.uniform(0.2, 2.5, sx).astype(np.float32)
    y = rng.uniform(-2, 2, sy).astype(np.float32)
    cot = rng.standard_normal(np.broadcast_shapes(sx, sy)).astype(np.float32)
    got = _load(single_node("Pow", inputs={"x": x, "y": y})).vjp({"x": x, "y": y}, cot)
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ty = torch.tensor(y.astype(np.float64), requires_grad=True)
    want = torch.autograd.grad(torch.pow(tx, ty), [tx, ty], grad_outputs=torch.tensor(cot.astype(np.float64)))
    assert [g.shape for g in got] == [sx, sy]
    for a, w in zip(got, want):
        assert_close(a, w.numpy().astype(np.float32), rtol=1e-5)


def test_pow_vjp_finite_differences(rng: np.random.Generator) -> None:
    x = rng.uniform(0.3, 2.0, (2, 3)).astype(np.float32)
    y = rng.uniform(-1.5, 2.5, (3,)).astype(np.float32)
    cot = rng.standard_normal((2, 3)).astype(np.float32)
    gx, gy = _load(single_node("Pow", inputs={"x": x, "y": y})).vjp({"x": x, "y": y}, cot)
    ty = torch.tensor(y.astype(np.float64))
    tx = torch.tensor(x.astype(np.float64))
    assert_close(gx, _fd_grad(lambda t: torch.pow(t, ty), x, cot).astype(np.float32), rtol=1e-4)
    assert_close(gy, _fd_grad(lambda t: torch.pow(tx, t), y, cot).astype(np.float32), rtol=1e-4)


def test_pow_vjp_torch_conventions_at_zero() -> None:
    """torch: d/dx is 0 wherever y == 0 (even at x = 0); d/dy is 0 at x == 0 for y >= 0,
    x^y ln x elsewhere (NaN for x < 0, -inf at 0 for y < 0)."""
    x = np.array([0, 0, 0, 0, 0, 0, 2, -2, -2, 3], np.float32)
    y = np.array([0, 1, 2, 3, 0.5, -1, 0, 2, 3, 0], np.float32)
    cot = np.full(x.shape, 2.0, np.float32)
    with np.errstate(all="ignore"):
        got = _load(single_node("Pow", inputs={"x": x, "y": y})).vjp({"x": x, "y": y}, cot)
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ty = torch.tensor(y.astype(np.float64), requires_grad=True)
    want = torch.autograd.grad(torch.pow(tx, ty), [tx, ty], grad_outputs=torch.tensor(cot.astype(np.float64)))
    for a, w in zip(got, want):
        _same(a, w.numpy().astype(np.float32), rtol=1e-6)


def test_pow_vjp_multithreaded(rng: np.random.Generator) -> None:
    x = rng.uniform(0.2, 2.0, (2, 32, 40, 30)).astype(np.float32)
    y = rng.uniform(-1, 2, (32, 1, 1)).astype(np.float32)
    cot = rng.standard_normal(x.shape).astype(np.float32)
    m = _load(single_node("Pow", inputs={"x": x, "y": y}))
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ty = torch.tensor(y.astype(np.float64), requires_grad=True)
    want = torch.autograd.grad(torch.pow(tx, ty), [tx, ty], grad_outputs=torch.tensor(cot.astype(np.float64)))
    for threads in (1, 2):
        got = m.vjp({"x": x, "y": y}, cot, threads=threads)
        for a, w in zip(got, want):
            assert_close(a, w.numpy().astype(np.float32), rtol=1e-5)
