"""Variadic Sum, Mean, Max, Min: forward against onnxruntime (1..N inputs, equal shapes in opsets
6/7, multidirectional broadcasting from opset 8, int64 Max/Min from opset 12, NaN and signed-zero
ties, a large multithreaded case), VJPs against torch autograd (float64) and finite differences
(ties: the first maximal input wins), kinds, errors naming the node, and how the reverse methods
treat N inputs: LRP's proportional rule on Sum/Mean and winner-take-all on Max/Min against numpy,
LRP conservation and DeepLIFT's summation-to-delta through every op."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run

torch.set_num_threads(1)

OPS = ["Sum", "Mean", "Max", "Min"]
KIND = {"Sum": "sum", "Mean": "avgpool", "Max": "maxpool", "Min": "maxpool"}


def _model(op: str, shapes: list[tuple[int, ...]], opset: int = 13, dtype: int = TensorProto.FLOAT,
           consts: dict[str, np.ndarray] | None = None) -> bytes:
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node(op, [*names, *(consts or {})], ["y"], name=f"{op.lower()}_node")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, dtype, list(s)) for n, s in zip(names, shapes)],
        [helper.make_tensor_value_info("y", dtype, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in (consts or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _feeds(rng: np.random.Generator, shapes: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
    return {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}


def _load(model: bytes) -> ox.Model:
    return ox.load(model, strip_softmax=False)


def _same(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-6, atol: float = 1e-7) -> None:
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


SHAPE_SETS = [
    [(2, 3, 4)],
    [(2, 3, 4), (2, 3, 4)],
    [(2, 3, 4)] * 5,
    [(2, 3, 4), (4,), (3, 1)],
    [(1, 3, 1, 5), (2, 1, 4, 1), (5,), (1, 1, 1, 1)],
    [(3, 1), (1, 6)],
    [(0, 3), (3,), (1, 3)],
]


# ---- forward ---------------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shapes", SHAPE_SETS, ids=str)
@pytest.mark.parametrize("opset", [8, 13])
def test_forward_broadcast(op: str, shapes, opset: int, rng: np.random.Generator) -> None:
    model = _model(op, shapes, opset)
    feeds = _feeds(rng, shapes)
    m = _load(model)
    assert m.nodes == [(f"{op.lower()}_node", op, KIND[op])]
    _same(m.predict(feeds), ort_run(model, feeds)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("opset", [6, 7])
def test_forward_equal_shapes_old_opsets(op: str, opset: int, rng: np.random.Generator) -> None:
    shapes = [(2, 3, 4)] * 3
    model = _model(op, shapes, opset)
    feeds = _feeds(rng, shapes)
    _same(_load(model).predict(feeds), ort_run(model, feeds)[0], atol=1e-6)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("opset", [6, 7])
def test_broadcasting_before_opset_8_is_refused(op: str, opset: int) -> None:
    with pytest.raises(ValueError, match=rf"node '{op.lower()}_node' \({op}\).*differ in shape; opset {opset} "
                                         r"requires equal shapes \(broadcasting came with opset 8\)"):
        _load(_model(op, [(2, 3), (3,)], opset))


@pytest.mark.parametrize("op", OPS)
def test_shapes_that_do_not_broadcast_name_the_node(op: str) -> None:
    with pytest.raises(ValueError, match=rf"node '{op.lower()}_node' \({op}\).*cannot broadcast"):
        _load(_model(op, [(2, 3), (2, 3), (4,)]))


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_nan_and_signed_zero_ties(op: str) -> None:
    a = np.array([np.nan, 1, 2, np.nan, -np.inf, 0.0, -0.0, 3, -1], np.float32)
    b = np.array([1, np.nan, 2, np.nan, np.inf, -0.0, 0.0, 3, np.nan], np.float32)
    c = np.array([5, -5, np.nan, 0, 0, 0.0, 0.0, 3, 2], np.float32)
    model = _model(op, [a.shape] * 3)
    feeds = {"x0": a, "x1": b, "x2": c}
    # 0 == -0 here: which zero a tie of +0 and -0 gives is not specified, and onnxruntime's own
    # scalar and SIMD paths disagree on it.
    _same(_load(model).predict(feeds), ort_run(model, feeds)[0])


@pytest.mark.parametrize("op", ["Max", "Min"])
@pytest.mark.parametrize("opset", [12, 13])
def test_int64_from_opset_12(op: str, opset: int) -> None:
    model = _model(op, [(4,), (2, 1)], opset, dtype=TensorProto.INT64)
    feeds = {"x0": np.array([-3, 7, 0, 2**40], np.int64), "x1": np.array([[1], [-2**41]], np.int64)}
    np.testing.assert_array_equal(_load(model).predict(feeds), ort_run(model, feeds)[0])


def test_int64_before_opset_12_is_refused() -> None:
    with pytest.raises(ox.ModelFormatError, match=r"node 'max_node' \(Max\).*integer inputs need opset 12"):
        _load(_model("Max", [(3,), (3,)], 11, dtype=TensorProto.INT64))


@pytest.mark.parametrize("op", ["Sum", "Mean"])
def test_int64_sum_is_refused(op: str) -> None:
    with pytest.raises(ox.ModelFormatError, match=rf"node '{op.lower()}_node' \({op}\).*float32.*int64"):
        _load(_model(op, [(3,), (3,)], 13, dtype=TensorProto.INT64))


def test_mixed_dtypes_are_refused() -> None:
    model = _model("Sum", [(3,)], 13, consts={"c": np.ones(3, np.int64)})
    with pytest.raises(ox.ModelFormatError, match=r"node 'sum_node' \(Sum\).*different dtypes"):
        _load(model)


@pytest.mark.parametrize("op", OPS)
def test_large_multithreaded_with_constant(op: str, rng: np.random.Generator) -> None:
    shapes = [("N", 32, 33, 17), ("N", 32, 33, 17), ("N", 1, 33, 1)]
    consts = {"c": rng.standard_normal((32, 1, 1)).astype(np.float32)}
    model = _model(op, shapes, consts=consts)  # type: ignore[arg-type]
    feeds = _feeds(rng, [(3, 32, 33, 17), (3, 32, 33, 17), (3, 1, 33, 1)])
    m = _load(model)
    want = ort_run(model, feeds)[0]
    for threads in (1, 2):
        _same(m.predict(feeds, threads=threads), want, atol=1e-6)


# ---- VJP -------------------------------------------------------------------------------------


def _torch_op(op: str) -> Callable[..., torch.Tensor]:
    def f(*xs: torch.Tensor) -> torch.Tensor:
        b = torch.stack(torch.broadcast_tensors(*xs))
        if op == "Sum":
            return b.sum(0)
        if op == "Mean":
            return b.sum(0) / len(xs)
        # max(0) / min(0) route the gradient to the returned index, the first extreme.
        return b.max(0).values if op == "Max" else b.min(0).values

    return f


def _torch_grads(fn: Callable[..., torch.Tensor], feeds: dict[str, np.ndarray], cot: np.ndarray) -> list[np.ndarray]:
    ts = [torch.tensor(v.astype(np.float64), requires_grad=True) for v in feeds.values()]
    gs = torch.autograd.grad(fn(*ts), ts, grad_outputs=torch.tensor(cot.astype(np.float64)))
    return [g.numpy() for g in gs]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shapes", [s for s in SHAPE_SETS if all(0 not in x for x in s)], ids=str)
def test_vjp_torch(op: str, shapes, rng: np.random.Generator) -> None:
    feeds = _feeds(rng, shapes)
    cot = rng.standard_normal(np.broadcast_shapes(*shapes)).astype(np.float32)
    got = _load(_model(op, shapes)).vjp(feeds, cot)
    want = _torch_grads(_torch_op(op), feeds, cot)
    assert [g.shape for g in got] == list(shapes)
    for a, w in zip(got, want):
        assert a.dtype == np.float32
        assert_close(a, w.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_vjp_finite_differences(op: str, rng: np.random.Generator) -> None:
    shapes = [(2, 3), (3,), (2, 1)]
    feeds = _feeds(rng, shapes)
    cot = rng.standard_normal((2, 3)).astype(np.float32)
    got = _load(_model(op, shapes)).vjp(feeds, cot)
    fn = _torch_op(op)
    base = [v.astype(np.float64) for v in feeds.values()]
    eps = 1e-6
    for k, g in enumerate(got):
        fd = np.zeros_like(base[k])
        for i in np.ndindex(base[k].shape):
            p = [b.copy() for b in base]
            m = [b.copy() for b in base]
            p[k][i] += eps
            m[k][i] -= eps
            with torch.no_grad():
                diff = fn(*map(torch.tensor, p)) - fn(*map(torch.tensor, m))
            fd[i] = float((diff.numpy() * cot).sum()) / (2 * eps)
        assert_close(g, fd.astype(np.float32), rtol=1e-4)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_vjp_ties_go_to_the_first_winner(op: str) -> None:
    """Ties (also +0 vs -0) send the whole cotangent to the lowest-index input holding the extreme
    (torch.stack(xs).max(0)'s rule; torch.maximum would halve it); a NaN wins where it appears."""
    a = np.array([1, 2, 0.0, 5, np.nan, 1], np.float32)
    b = np.array([1, 3, -0.0, 5, 1, np.nan], np.float32)
    c = np.array([1, 3, 0.0, 4, np.nan, np.nan], np.float32)
    if op == "Min":
        a, b, c = -a, -b, -c
    cot = np.arange(1, 7, dtype=np.float32)
    got = _load(_model(op, [a.shape] * 3)).vjp({"x0": a, "x1": b, "x2": c}, cot)
    want_winner = np.array([0, 1, 0, 0, 0, 1])
    for k in range(3):
        np.testing.assert_array_equal(got[k], np.where(want_winner == k, cot, 0))


@pytest.mark.parametrize("op", OPS)
def test_vjp_multithreaded(op: str, rng: np.random.Generator) -> None:
    shapes = [(2, 32, 30, 40), (32, 1, 1), (2, 32, 30, 40), (1, 1, 30, 40)]
    feeds = _feeds(rng, shapes)
    cot = rng.standard_normal(shapes[0]).astype(np.float32)
    m = _load(_model(op, shapes))
    want = _torch_grads(_torch_op(op), feeds, cot)
    for threads in (1, 2):
        for a, w in zip(m.vjp(feeds, cot, threads=threads), want):
            assert_close(a, w.astype(np.float32), rtol=1e-5)


def test_vjp_same_input_twice(rng: np.random.Generator) -> None:
    x = rng.standard_normal((3, 4)).astype(np.float32)
    node = helper.make_node("Sum", ["x", "x", "x"], ["y"], name="s")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    cot = rng.standard_normal((3, 4)).astype(np.float32)
    (g,) = _load(model.SerializeToString()).vjp(x, cot)
    assert_close(g, 3 * cot)


# ---- the reverse methods on N inputs ---------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
def test_lrp_rule_on_three_inputs_against_numpy(op: str, rng: np.random.Generator) -> None:
    """The model is the op itself, so LRP starts with f_t at the target: Sum and Mean split it in
    proportion to the terms (R_i = x_i / N for Mean), Max and Min give it all to the winner."""
    shapes = [(4, 6)] * 3
    feeds = {k: np.abs(v) + 0.1 for k, v in _feeds(rng, shapes).items()}
    xs = np.stack(list(feeds.values()))
    target = 2
    R = ox.explainer(_load(_model(op, shapes)), "lrp.epsilon", epsilon=1e-9).explain(feeds, target=target)
    want = np.zeros_like(xs)
    if op in ("Sum", "Mean"):
        want[:, :, target] = xs[:, :, target] / (3 if op == "Mean" else 1)
    else:
        win = (xs[:, :, target].argmax(0) if op == "Max" else xs[:, :, target].argmin(0))
        for n in range(4):
            want[win[n], n, target] = xs[win[n], n, target]
    for k in range(3):
        assert_close(R[k], want[k].astype(np.float32), rtol=1e-5)


def _mlp(op: str, rng: np.random.Generator, branches: int = 3) -> bytes:
    """x [N, 6] -> `branches` bias-free MatMul+Relu branches -> op -> MatMul -> [N, 3]."""
    nodes, inits = [], {}
    for b in range(branches):
        inits[f"w{b}"] = rng.standard_normal((6, 5)).astype(np.float32)
        nodes += [helper.make_node("MatMul", ["x", f"w{b}"], [f"h{b}"], name=f"mm{b}"),
                  helper.make_node("Relu", [f"h{b}"], [f"r{b}"], name=f"relu{b}")]
    nodes.append(helper.make_node(op, [f"r{b}" for b in range(branches)], ["v"], name="merge"))
    inits["wo"] = rng.standard_normal((5, 3)).astype(np.float32)
    nodes.append(helper.make_node("MatMul", ["v", "wo"], ["y"], name="out"))
    return make_model(nodes, [("x", ["N", 6])], ["y"], inits, opset=13)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("method", ["lrp.epsilon", "lrp.z_plus"])
def test_lrp_conserves_through_n_inputs(op: str, method: str, rng: np.random.Generator) -> None:
    m = _load(_mlp(op, rng))
    x = rng.standard_normal((8, 6)).astype(np.float32)
    out = m.predict(x)
    target = np.argmax(out, axis=1)
    ft = out[np.arange(8), target]
    keep = ft > 0.1  # z+ conserves positive outputs
    R, delta = ox.explainer(m, method).explain(x, target=target, return_delta=True)
    assert R.shape == x.shape
    assert np.all(np.abs(delta[keep]) <= 1e-4 * np.abs(ft[keep]) + 1e-5), (delta, ft)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("method", ["deeplift.rescale", "deeplift.reveal_cancel"])
def test_deeplift_sums_to_delta_through_n_inputs(op: str, method: str, rng: np.random.Generator) -> None:
    """Max and Min use DeepSHAP's max rule over all three inputs (cross maximum / minimum), Sum
    and Mean the plain multipliers: contributions sum to f(x) - f(reference)."""
    m = _load(_mlp(op, rng))
    x = rng.standard_normal((8, 6)).astype(np.float32)
    ref = rng.standard_normal((1, 6)).astype(np.float32)
    R, delta = ox.explainer(m, method, reference=ref).explain(x, target=0, return_delta=True)
    diff = m.predict(x)[:, 0] - m.predict(ref)[0, 0]
    assert np.all(np.abs(delta) <= 1e-4 * (np.abs(diff) + 1)), (delta, diff)
    assert_close(R.sum(axis=1), diff.astype(np.float32), rtol=1e-4)


def test_deeplift_min_credits_the_input_that_fell() -> None:
    """y = Min(a, b) with a = x0, b = x1: from the reference (1, 2) to x = (1, 0) a stays at 1 and
    b falls to 0, so the minimum falls from 1 to 0 and all of it belongs to x1. Split at the cross
    minimum it goes through the input's winner b; at the cross maximum it would go through the
    reference's winner a, which did not move, and be lost."""
    nodes = [
        helper.make_node("MatMul", ["x", "ea"], ["a"], name="pick_a"),
        helper.make_node("MatMul", ["x", "eb"], ["b"], name="pick_b"),
        helper.make_node("Min", ["a", "b"], ["y"], name="min"),
    ]
    inits = {"ea": np.array([[1.0], [0.0]], np.float32), "eb": np.array([[0.0], [1.0]], np.float32)}
    m = _load(make_model(nodes, [("x", ["N", 2])], ["y"], inits))
    x = np.array([[1.0, 0.0]], np.float32)
    ref = np.array([[1.0, 2.0]], np.float32)
    R = ox.explainer(m, "deeplift.rescale", reference=ref).explain(x, target=0)
    np.testing.assert_allclose(R, [[0.0, -1.0]], atol=1e-6)


@pytest.mark.parametrize("op", OPS)
def test_occlusion_local_forward_through_n_inputs(op: str, rng: np.random.Generator) -> None:
    """The variadic ops (and Pow with a constant exponent) are pointwise with broadcasting, so
    occlusion recomputes only each window's cone through them; a per-channel constant operand
    keeps them local. The result equals occlusion through onnxruntime on whole images."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv_a"),
        helper.make_node("Conv", ["x", "w2"], ["b"], pads=[1, 1, 1, 1], name="conv_b"),
        helper.make_node("Relu", ["b"], ["rb"], name="relu_b"),
        helper.make_node(op, ["a", "rb", "c"], ["v"], name="merge"),
        helper.make_node("Pow", ["v", "two"], ["p"], name="square"),
        helper.make_node("Conv", ["p", "w3"], ["d"], strides=[2, 2], name="conv_d"),
        helper.make_node("GlobalAveragePool", ["d"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["y"], name="flat"),
    ]
    inits = {
        "w1": rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
        "w2": rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
        "c": rng.standard_normal((4, 1, 1)).astype(np.float32),
        "two": np.array(2.0, np.float32),
        "w3": rng.standard_normal((3, 4, 3, 3)).astype(np.float32),
    }
    data = make_model(nodes, [("x", ["N", 2, 14, 14])], ["y"], inits, opset=13)
    x = rng.standard_normal((2, 2, 14, 14)).astype(np.float32)
    got = ox.explainer(_load(data), "occlusion", window=3, stride=2).explain(x, target=[0, 2])
    want = ox.explainer(ox.load(data, backend="onnxruntime"), "occlusion", window=3, stride=2).explain(x, target=[0, 2])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * float(np.abs(want).max()))
