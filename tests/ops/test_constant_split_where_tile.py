"""ConstantOfShape, Split, Where and Tile: forward against onnxruntime (each opset where the
semantics changed: Split's sizes as attribute (< 13), input (13) or num_outputs (18)), VJPs
against torch autograd (float64) and finite differences, kinds, and errors naming the node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run

torch.set_num_threads(1)


def _load(model: bytes) -> ox.Model:
    return ox.load(model, strip_softmax=False)


def _graph(nodes, inputs, outputs, inits=None, opset=13, out_types=None) -> bytes:
    """inputs: (name, elem type, shape); outputs: names (float unless out_types says otherwise)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, (out_types or {}).get(n, TensorProto.FLOAT), None) for n in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


F32 = TensorProto.FLOAT

# ---- ConstantOfShape ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [[2, 3], [], [0, 4], [1, 1, 5]], ids=str)
@pytest.mark.parametrize("value", [None, np.array([2.5], np.float32), np.array([7], np.int64)],
                         ids=["default", "f", "i"])
def test_constant_of_shape_vs_ort(shape, value) -> None:
    attrs = {} if value is None else {"value": numpy_helper.from_array(value)}
    nodes = [
        helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos", **attrs),
        helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Add", ["x", "cf"], ["y"], name="add"),
    ]
    model = _graph(nodes, [("x", F32, [1])], ["y"], {"s": np.array(shape, np.int64)}, opset=20)
    x = np.array([0.5], np.float32)
    got, want = _load(model).predict(x), ort_run(model, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_constant_of_shape_from_a_dynamic_shape(rng: np.random.Generator) -> None:
    """Shape -> ConstantOfShape stays in the graph with a dynamic batch; no gradient flows into it."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("ConstantOfShape", ["s"], ["c"], name="cos",
                         value=numpy_helper.from_array(np.array([1.5], np.float32))),
        helper.make_node("Mul", ["x", "c"], ["y"], name="mul"),
    ]
    model = _graph(nodes, [("x", F32, ["N", 3])], ["y"], opset=9)
    m = _load(model)
    assert ("cos", "ConstantOfShape", "constant") in m.nodes
    for n in (1, 4):
        x = rng.standard_normal((n, 3)).astype(np.float32)
        np.testing.assert_array_equal(m.predict(x), ort_run(model, {"x": x})[0])
    cot = rng.standard_normal((4, 3)).astype(np.float32)
    (g,) = m.vjp(x, cot)
    assert_close(g, 1.5 * cot)


def test_constant_of_shape_errors() -> None:
    model = _graph([helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos")], [("x", F32, [1])], ["y"],
                   {"s": np.array([2, -1], np.int64)})
    with pytest.raises(ValueError, match=r"node 'cos' \(ConstantOfShape\).*negative dimension"):
        _load(model)
    two = numpy_helper.from_array(np.array([1.0, 2.0], np.float32))
    model = _graph([helper.make_node("ConstantOfShape", ["s"], ["y"], name="cos", value=two)], [("x", F32, [1])], ["y"],
                   {"s": np.array([2], np.int64)})
    with pytest.raises(ox.ModelFormatError, match=r"node 'cos' \(ConstantOfShape\).*exactly one element"):
        _load(model)


# ---- Split -------------------------------------------------------------------------------------


def _split(shape, outputs: int, opset: int, sizes=None, as_input=False, dtype=F32, **attrs) -> bytes:
    names = [f"y{i}" for i in range(outputs)]
    inits = {}
    ins = ["x"]
    if sizes is not None and as_input:
        inits["split"] = np.array(sizes, np.int64)
        ins.append("split")
    elif sizes is not None:
        attrs["split"] = sizes
    node = helper.make_node("Split", ins, names, name="split_node", **attrs)
    return _graph([node], [("x", dtype, shape)], names, inits, opset, out_types={n: dtype for n in names})


SPLITS = [
    # (shape, outputs, sizes, attrs)
    ((2, 6, 3), 3, None, {"axis": 1}),
    ((2, 6, 3), 2, [1, 5], {"axis": 1}),
    ((6, 4), 3, [2, 0, 4], {}),
    ((2, 3, 8), 4, None, {"axis": -1}),
    ((5, 2), 1, None, {}),
]


@pytest.mark.parametrize("case", SPLITS, ids=str)
@pytest.mark.parametrize("opset", [11, 13])
def test_split_sizes_as_attribute_or_input(case, opset: int, rng: np.random.Generator) -> None:
    shape, outputs, sizes, attrs = case
    model = _split(shape, outputs, opset, sizes, as_input=opset >= 13, **attrs)
    x = rng.standard_normal(shape).astype(np.float32)
    m = _load(model)
    assert m.nodes[0][2] == "routing"
    got, want = m.run(x), ort_run(model, {"x": x})
    assert len(got) == len(want) == outputs
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("shape", "n", "axis"), [((2, 7), 3, 1), ((9, 2), 3, 0), ((2, 5), 3, -1), ((4,), 4, 0)])
def test_split_num_outputs_opset_18(shape, n: int, axis: int, rng: np.random.Generator) -> None:
    """From opset 18: parts of ceil(len / n), the last smaller."""
    model = _split(shape, n, 18, axis=axis, num_outputs=n)
    x = rng.standard_normal(shape).astype(np.float32)
    got, want = _load(model).run(x), ort_run(model, {"x": x})
    assert len(got) == len(want) == n
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_split_int64() -> None:
    model = _split((2, 4), 2, 13, axis=1, dtype=TensorProto.INT64)
    x = np.arange(8, dtype=np.int64).reshape(2, 4) * 3 - 7
    got, want = _load(model).run({"x": x}), ort_run(model, {"x": x})
    assert len(got) == len(want) == 2
    for a, b in zip(got, want):
        assert a.dtype == np.int64
        np.testing.assert_array_equal(a, b)


def test_split_large_multithreaded(rng: np.random.Generator) -> None:
    model = _split((4, 64, 32, 32), 3, 13, [16, 32, 16], as_input=True, axis=1)
    x = rng.standard_normal((4, 64, 32, 32)).astype(np.float32)
    want = ort_run(model, {"x": x})
    m = _load(model)
    for threads in (1, 2):
        got = m.run(x, threads=threads)
        assert len(got) == 3
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("opset", "kwargs", "match"), [
    (18, {}, "either the split input or the attribute num_outputs is required"),
    (18, {"num_outputs": 2}, "num_outputs is 2 but the node has 3 outputs"),
    (13, {}, "does not split evenly into 3 outputs"),
    (13, {"sizes": [1, 1, 1], "as_input": True}, r"add up to 3, not to the length 5"),
    (11, {"sizes": [1, 4]}, r"split has 2 sizes \[1, 4\] for 3 outputs"),
])
def test_split_errors(opset: int, kwargs: dict, match: str) -> None:
    attrs = {k: v for k, v in kwargs.items() if k == "num_outputs"}
    model = _split((2, 5), 3, opset, kwargs.get("sizes"), kwargs.get("as_input", False), axis=1, **attrs)
    with pytest.raises((ValueError, ox.ModelFormatError), match=rf"node 'split_node' \(Split\).*{match}"):
        _load(model)


def test_split_num_outputs_too_many_for_the_axis() -> None:
    model = _split((2, 5), 4, 18, axis=1, num_outputs=4)
    with pytest.raises(ValueError, match=r"node 'split_node' \(Split\).*num_outputs 4 is too many"):
        _load(model)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_split_vjp(axis: int, rng: np.random.Generator) -> None:
    shape = (4, 6, 5)
    sizes = {0: [1, 3], 1: [2, 4], 2: [3, 2]}[axis]
    model = _split(shape, 2, 13, sizes, as_input=True, axis=axis)
    x = rng.standard_normal(shape).astype(np.float32)
    parts = np.split(x, np.cumsum(sizes)[:-1], axis=axis)
    cots = [rng.standard_normal(p.shape).astype(np.float32) for p in parts]
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    outs = torch.split(t, sizes, dim=axis)
    (want,) = torch.autograd.grad(outs, [t], grad_outputs=[torch.tensor(c.astype(np.float64)) for c in cots])
    m = _load(model)
    (got,) = m.vjp(x, cots)
    assert_close(got, want.numpy().astype(np.float32))
    (got1,) = m.vjp(x, [None, cots[1]])  # an output that receives nothing gives zeros
    assert_close(got1, np.concatenate([np.zeros_like(cots[0]), cots[1]], axis=axis))


# ---- Where -------------------------------------------------------------------------------------

WHERE_SHAPES = [((2, 3, 4), (2, 3, 4), (2, 3, 4)), ((3, 1), (1, 4), (4,)), ((1,), (2, 3), (2, 1)),
                ((2, 1, 4), (3, 1), ()), ((0, 3), (3,), (1, 3))]


def _where(sc, sx, sy, opset: int = 16) -> tuple[bytes, np.ndarray]:
    cond = np.random.default_rng(1).random(sc) > 0.5
    node = helper.make_node("Where", ["c", "x", "y"], ["z"], name="where_node")
    return _graph([node], [("x", F32, sx), ("y", F32, sy)], ["z"], {"c": cond}, opset), cond


@pytest.mark.parametrize("shapes", WHERE_SHAPES, ids=str)
@pytest.mark.parametrize("opset", [9, 16])
def test_where_vs_ort(shapes, opset: int, rng: np.random.Generator) -> None:
    model, _ = _where(*shapes, opset=opset)
    feeds = {"x": rng.standard_normal(shapes[1]).astype(np.float32),
             "y": rng.standard_normal(shapes[2]).astype(np.float32)}
    m = _load(model)
    assert m.nodes[0][2] == "routing"
    np.testing.assert_array_equal(m.predict(feeds), ort_run(model, feeds)[0])


def test_where_large_multithreaded(rng: np.random.Generator) -> None:
    model, _ = _where((1, 32, 1, 40), (2, 32, 40, 40), (32, 1, 1))
    feeds = {"x": rng.standard_normal((2, 32, 40, 40)).astype(np.float32),
             "y": rng.standard_normal((32, 1, 1)).astype(np.float32)}
    want = ort_run(model, feeds)[0]
    m = _load(model)
    for threads in (1, 2):
        np.testing.assert_array_equal(m.predict(feeds, threads=threads), want)


def test_where_int64_values() -> None:
    node = helper.make_node("Where", ["c", "a", "b"], ["z"], name="w")
    cast = helper.make_node("Cast", ["z"], ["y"], to=TensorProto.FLOAT, name="cast")
    inits = {"c": np.array([True, False, True]), "a": np.array([1, 2, 3], np.int64),
             "b": np.array([[-5], [9]], np.int64)}
    model = _graph([node, cast], [("x", F32, [1])], ["y"], inits)
    x = np.zeros(1, np.float32)
    np.testing.assert_array_equal(_load(model).predict(x), ort_run(model, {"x": x})[0])


@pytest.mark.parametrize("shapes", [s for s in WHERE_SHAPES if 0 not in s[0]], ids=str)
def test_where_vjp(shapes, rng: np.random.Generator) -> None:
    model, cond = _where(*shapes)
    x = np.asarray(rng.standard_normal(shapes[1]), np.float32)
    y = np.asarray(rng.standard_normal(shapes[2]), np.float32)
    out = np.broadcast_shapes(*shapes)
    cot = rng.standard_normal(out).astype(np.float32)
    got = _load(model).vjp({"x": x, "y": y}, cot)
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ty = torch.tensor(y.astype(np.float64), requires_grad=True)
    want = torch.autograd.grad(torch.where(torch.tensor(cond), tx, ty), [tx, ty],
                               grad_outputs=torch.tensor(cot.astype(np.float64)))
    for a, w in zip(got, want):
        assert_close(a, w.numpy().astype(np.float32))


def test_where_errors() -> None:
    node = helper.make_node("Where", ["c", "x", "y"], ["z"], name="where_node")
    model = _graph([node], [("x", F32, [3]), ("y", F32, [3])], ["z"], {"c": np.ones(3, np.float32)})
    with pytest.raises(ox.ModelFormatError, match=r"node 'where_node' \(Where\).*condition must be bool"):
        _load(model)
    model = _graph([node], [("x", F32, [2, 3]), ("y", F32, [4])], ["z"], {"c": np.ones(3, bool)})
    with pytest.raises(ValueError, match=r"node 'where_node' \(Where\).*cannot broadcast"):
        _load(model)


# ---- Tile --------------------------------------------------------------------------------------

TILES = [((2, 3), [2, 3]), ((2, 3, 4), [1, 0, 2]), ((5,), [3]), ((1, 2, 1), [4, 1, 3]), ((2, 2), [1, 1])]


def _tile(shape, reps, opset: int = 13, dtype=F32) -> bytes:
    node = helper.make_node("Tile", ["x", "r"], ["y"], name="tile_node")
    return _graph([node], [("x", dtype, shape)], ["y"], {"r": np.array(reps, np.int64)}, opset)


@pytest.mark.parametrize("case", TILES, ids=str)
@pytest.mark.parametrize("opset", [6, 13])
def test_tile_vs_ort(case, opset: int, rng: np.random.Generator) -> None:
    shape, reps = case
    model = _tile(shape, reps, opset)
    x = rng.standard_normal(shape).astype(np.float32)
    m = _load(model)
    assert m.nodes[0][2] == "routing"
    np.testing.assert_array_equal(m.predict(x), ort_run(model, {"x": x})[0])


def test_tile_large_multithreaded(rng: np.random.Generator) -> None:
    model = _tile((2, 16, 20, 20), [1, 2, 3, 1])
    x = rng.standard_normal((2, 16, 20, 20)).astype(np.float32)
    want = ort_run(model, {"x": x})[0]
    m = _load(model)
    for threads in (1, 2):
        np.testing.assert_array_equal(m.predict(x, threads=threads), want)
    cot = rng.standard_normal(want.shape).astype(np.float32)
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    (w,) = torch.autograd.grad(t.repeat(1, 2, 3, 1), [t], grad_outputs=torch.tensor(cot.astype(np.float64)))
    for threads in (1, 2):
        assert_close(m.vjp(x, cot, threads=threads)[0], w.numpy().astype(np.float32))


@pytest.mark.parametrize("case", TILES, ids=str)
def test_tile_vjp(case, rng: np.random.Generator) -> None:
    shape, reps = case
    x = rng.standard_normal(shape).astype(np.float32)
    cot = rng.standard_normal(np.tile(x, reps).shape).astype(np.float32)
    (got,) = _load(_tile(shape, reps)).vjp(x, cot)
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    (w,) = torch.autograd.grad(t.repeat(*reps), [t], grad_outputs=torch.tensor(cot.astype(np.float64)))
    assert_close(got, w.numpy().astype(np.float32))
    # central differences (Tile is linear, so they are exact up to rounding)
    fd = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[i] = 1.0
        fd[i] = (np.tile(x + 1e-3 * e, reps) * cot).sum() - (np.tile(x - 1e-3 * e, reps) * cot).sum()
    assert_close(got, (fd / 2e-3).astype(np.float32), rtol=1e-3)


def test_tile_int64() -> None:
    node = helper.make_node("Tile", ["a", "r"], ["z"], name="t")
    cast = helper.make_node("Cast", ["z"], ["y"], to=TensorProto.FLOAT, name="cast")
    inits = {"a": np.array([[1, -2]], np.int64), "r": np.array([3, 2], np.int64)}
    model = _graph([node, cast], [("x", F32, [1])], ["y"], inits)
    x = np.zeros(1, np.float32)
    np.testing.assert_array_equal(_load(model).predict(x), ort_run(model, {"x": x})[0])


@pytest.mark.parametrize(("reps", "match"), [([2], "one entry per input axis"), ([2, -1], "must not be negative")])
def test_tile_errors(reps, match: str) -> None:
    with pytest.raises(ValueError, match=rf"node 'tile_node' \(Tile\).*{match}"):
        _load(_tile((2, 3), reps))


def test_tile_in_a_model_with_lrp(rng: np.random.Generator) -> None:
    """Routing: LRP hands relevance back through the copies (summed), conserving it."""
    w = rng.standard_normal((12, 3)).astype(np.float32)
    nodes = [helper.make_node("Tile", ["x", "r"], ["t"], name="tile"),
             helper.make_node("MatMul", ["t", "w"], ["y"], name="mm")]
    model = make_model(nodes, [("x", ["N", 4])], ["y"], {"r": np.array([1, 3], np.int64), "w": w})
    x = rng.standard_normal((5, 4)).astype(np.float32)
    R, delta = ox.explainer(_load(model), "lrp.epsilon", epsilon=1e-9).explain(x, target=1, return_delta=True)
    assert R.shape == x.shape
    assert np.all(np.abs(delta) < 1e-4 * (1 + np.abs(R).sum(axis=1)))
