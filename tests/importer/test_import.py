"""The ONNX importer on valid models: tensor encodings and dtype conversion, old IR versions,
node naming, file order, dynamic dims, opsets, non-UTF-8 names and the unsupported-op report."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run


def _model(nodes, inputs, outputs, initializers=(), ir_version=8, opset=17, extra_opsets=()):
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=list(initializers),
    )
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = ir_version
    return m


def _add_const(t: onnx.TensorProto, cast: bool = False, n: int = 3) -> onnx.ModelProto:
    """y = x + W (through Cast to float when W is not float) for x of shape (2, n)."""
    nodes = []
    w = t.name
    if cast:
        nodes.append(helper.make_node("Cast", [t.name], ["wf"], to=TensorProto.FLOAT, name="cast"))
        w = "wf"
    nodes.append(helper.make_node("Add", ["x", w], ["y"], name="add"))
    return _model(nodes, [("x", [2, n])], ["y"], [t])


# ---- initializer encodings ----------------------------------------------------------------------

FLOAT_CASES = [
    (np.float32, TensorProto.FLOAT),
    (np.float64, TensorProto.DOUBLE),
    (np.float16, TensorProto.FLOAT16),
]


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed_field"])
@pytest.mark.parametrize("np_type,onnx_type", FLOAT_CASES, ids=["float", "double", "float16"])
def test_float_initializers_converted_to_float32(raw, np_type, onnx_type):
    w = np.array([1.5, -2.25, 3.0e-3], dtype=np_type)
    if raw:
        t = numpy_helper.from_array(w, name="w")
        assert t.HasField("raw_data")
    else:
        t = helper.make_tensor("w", onnx_type, [3], w.tolist() if np_type != np.float16 else w, raw=False)
        assert not t.HasField("raw_data")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    m = ox.load(_add_const(t, cast=np_type != np.float32).SerializeToString())
    np.testing.assert_array_equal(m.predict(x), x + w.astype(np.float32))


def test_float16_specials_and_subnormals():
    w = np.array([0.0, -0.0, 6.0e-8, 6.1e-5, 65504.0, -np.inf, np.inf], dtype=np.float16)
    for raw in (True, False):
        t = numpy_helper.from_array(w, "w") if raw else helper.make_tensor("w", TensorProto.FLOAT16, [7], w)
        m = ox.load(_add_const(t, cast=True, n=7).SerializeToString())
        got = m.predict(np.zeros((2, 7), np.float32))
        np.testing.assert_array_equal(got[0], w.astype(np.float32))


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed_field"])
def test_bfloat16_initializer(raw):
    bits = (np.array([1.0, -2.5, 3.140625, 1e30], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    vals = (bits.astype(np.uint32) << 16).view(np.float32)  # bfloat16 = the top half of a float32
    t = onnx.TensorProto()
    t.name = "w"
    t.data_type = TensorProto.BFLOAT16
    t.dims.append(4)
    if raw:
        t.raw_data = bits.tobytes()
    else:
        t.int32_data.extend(int(b) for b in bits)
    m = ox.load(_add_const(t, cast=True, n=4).SerializeToString())
    np.testing.assert_array_equal(m.predict(np.zeros((2, 4), np.float32))[1], vals)


INT_CASES = [
    (np.int8, [-128, -3, 0, 127]),
    (np.uint8, [0, 1, 200, 255]),
    (np.int16, [-32768, -1, 7, 32767]),
    (np.int32, [-(2**31), -5, 16, 2**24]),
    (np.int64, [-(2**24), -1, 0, 2**24]),
    (np.bool_, [True, False, True, True]),
]


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed_field"])
@pytest.mark.parametrize("np_type,values", INT_CASES, ids=[c[0].__name__ for c in INT_CASES])
def test_integer_initializers_converted_to_int64(raw, np_type, values):
    w = np.array(values, dtype=np_type)
    if raw:
        t = numpy_helper.from_array(w, name="w")
    else:
        t = helper.make_tensor("w", helper.np_dtype_to_tensor_dtype(w.dtype), [4], w.tolist(), raw=False)
        assert not t.HasField("raw_data")
    model = _add_const(t, cast=True, n=4)
    m = ox.load(model.SerializeToString())
    x = np.zeros((2, 4), np.float32)
    expected = w.astype(np.int64).astype(np.float32)
    np.testing.assert_array_equal(m.predict(x)[0], expected)
    if np_type != np.int16:  # onnxruntime has no Cast kernel from int16 in some builds; others agree
        assert_close(m.predict(x), ort_run(model.SerializeToString(), {"x": x})[0])


def test_int64_initializer_drives_reshape():
    shape = numpy_helper.from_array(np.array([3, -1], np.int64), "shape")
    model = _model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [("x", [2, 3])], ["y"], [shape])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(ox.load(model.SerializeToString()).predict(x), x.reshape(3, 2))


def test_old_ir_lists_initializers_as_inputs():
    """IR < 4: every initializer is also a graph input; it must stay a constant, not an input."""
    w = numpy_helper.from_array(np.array([1.0, -2.0, 3.0], np.float32), "w")
    model = _model(
        [helper.make_node("Add", ["x", "w"], ["y"])], [("x", [2, 3]), ("w", [3])], ["y"], [w], ir_version=3, opset=8
    )
    m = ox.load(model.SerializeToString())
    assert [s.name for s in m.inputs] == ["x"]
    x = np.ones((2, 3), np.float32)
    assert_close(m.predict(x), ort_run(model.SerializeToString(), {"x": x})[0])


def test_unnamed_nodes_get_op_and_index():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"], name="last")]
    m = ox.load(_model(nodes, [("x", [1, 4])], ["y"]).SerializeToString())
    assert [n[0] for n in m.nodes] == ["Relu_0", "last"]


def test_unnamed_node_name_used_in_errors():
    # A Reshape whose constant shape cannot fit the input: the error must name "Reshape_1".
    shape = numpy_helper.from_array(np.array([7], np.int64), "s")
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Reshape", ["a", "s"], ["y"])]
    with pytest.raises(ValueError, match="Reshape_1"):
        ox.load(_model(nodes, [("x", [2, 3])], ["y"], [shape]).SerializeToString())


def test_nodes_out_of_topological_order_run():
    w = numpy_helper.from_array(np.array([0.5, -1.0, 2.0], np.float32), "w")
    nodes = [
        helper.make_node("Relu", ["b"], ["y"], name="n3"),
        helper.make_node("Add", ["a", "w"], ["b"], name="n2"),
        helper.make_node("Relu", ["x"], ["a"], name="n1"),
    ]
    model = _model(nodes, [("x", [2, 3])], ["y"], [w])
    model_bytes = model.SerializeToString()
    m = ox.load(model_bytes)
    assert [n[0] for n in m.nodes] == ["n1", "n2", "n3"]
    x = np.array([[-1, 0.2, 3], [4, -5, 0.1]], np.float32)
    # onnxruntime requires sorted graphs; give it the sorted version.
    model.graph.ClearField("node")
    model.graph.node.extend(reversed(nodes))
    assert_close(m.predict(x), ort_run(model.SerializeToString(), {"x": x})[0])


def test_dim_param_and_missing_dims_are_dynamic():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m = ox.load(model.SerializeToString())
    assert m.inputs[0].shape == (None, 3, None)
    for shape in [(1, 3, 1), (5, 3, 7)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(m.predict(x), np.maximum(x, 0))
    assert m.outputs[0].shape == (None, 3, None)


@pytest.mark.parametrize("opset", [7, 11, 13, 17, 21])
def test_opset_import_is_read(opset):
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [("x", [1])],
        ["y"],
        opset=opset,
        extra_opsets=[("com.example", 3), ("ai.onnx.ml", 2)],
    )
    m = ox.load(model.SerializeToString())
    assert m._m.opset == opset
    assert f"opset: {opset}" in m.summary()


def test_producer_name_is_read():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1])], ["y"])
    model.producer_name = "pytorch"
    assert "producer: pytorch" in ox.load(model.SerializeToString()).summary()


def test_unknown_fields_are_skipped():
    """Fields from future ONNX versions (any wire type, groups included) must not break loading."""
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", [2])], ["y"])
    base = model.SerializeToString()
    # field 1000: varint, fixed64, length-delimited, a group holding a varint, fixed32
    extra = (
        b"\xc0\x3e\x05"
        + b"\xc1\x3e"
        + b"\x00" * 8
        + b"\xc2\x3e\x03abc"
        + b"\xc3\x3e\x08\x01\xc4\x3e"
        + b"\xc5\x3e"
        + b"\x00" * 4
    )
    m = ox.load(extra + base + extra)
    np.testing.assert_array_equal(m.predict(np.array([-1, 1], np.float32)), [0, 1])


# ---- non-UTF-8 names ------------------------------------------------------------------------------


def test_non_utf8_names_are_escaped():
    # Placeholders of the same byte length are patched into invalid UTF-8 after serialization.
    nodes = [
        helper.make_node("Relu", ["in_QQQQ"], ["mid"], name="node_WWWW"),
        helper.make_node("Relu", ["mid"], ["out_ZZZZ"]),
    ]
    data = _model(nodes, [("in_QQQQ", [1, 2])], ["out_ZZZZ"]).SerializeToString()
    data = data.replace(b"QQQQ", b"\xff\xfeab").replace(b"ZZZZ", b"\xc3(\x80\x00")
    data = data.replace(b"WWWW", b"\xed\xa0\x80x")  # an encoded surrogate is not valid UTF-8 either
    m = ox.load(data)
    assert m.inputs[0].name == "in_\\xff\\xfeab"
    assert m.outputs[0].name == "out_\\xc3(\\x80\\x00"
    assert m.nodes[0][0] == "node_\\xed\\xa0\\x80x"
    assert "in_\\xff\\xfeab" in repr(m)
    out = m.predict({"in_\\xff\\xfeab": np.array([[-1, 2]], np.float32)})
    np.testing.assert_array_equal(out, [[0, 2]])


def test_non_utf8_names_escaped_in_error_messages():
    nodes = [helper.make_node("Relu", ["nope_QQQQ"], ["y"], name="bad_WWWW")]
    data = _model(nodes, [("x", [1])], ["y"]).SerializeToString()
    data = data.replace(b"QQQQ", b"\xff\xff\xff\xff").replace(b"WWWW", b"\x80abc")
    with pytest.raises(ox.ModelFormatError) as e:
        ox.load(data)
    msg = str(e.value)
    assert "nope_\\xff\\xff\\xff\\xff" in msg and "bad_\\x80abc" in msg
    assert "neither a graph input" in msg


def test_valid_utf8_names_are_kept():
    nodes = [helper.make_node("Relu", ["Eingabe_ä€😀"], ["y"], name="knoten_ü")]
    m = ox.load(_model(nodes, [("Eingabe_ä€😀", [1])], ["y"]).SerializeToString())
    assert m.inputs[0].name == "Eingabe_ä€😀"
    assert m.nodes[0][0] == "knoten_ü"


# ---- unsupported ops --------------------------------------------------------------------------------


def test_unsupported_ops_all_listed():
    nodes = [
        helper.make_node("Shrink", ["x"], ["a"], name="shrink_a"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Shrink", ["b"], ["c"], name="shrink_b"),
        helper.make_node("FancyOp", ["c"], ["y"], name="fancy", domain="com.example"),
    ]
    model = _model(nodes, [("x", [1, 3])], ["y"], extra_opsets=[("com.example", 1)])
    with pytest.raises(ox.UnsupportedModelError) as e:
        ox.load(model.SerializeToString())
    err = e.value
    assert isinstance(err, ox.OnnxplainError)
    ops = {(op, dom): list(names) for op, dom, names in err.ops}
    assert ops == {("Shrink", ""): ["shrink_a", "shrink_b"], ("FancyOp", "com.example"): ["fancy"]}
    msg = str(err)
    assert "Shrink (2 nodes: 'shrink_a', 'shrink_b')" in msg
    assert "com.example.FancyOp" in msg and "'fancy'" in msg
    assert "Relu" not in msg.split("\n")[1:3]


def test_ai_onnx_domain_is_default_domain():
    node = helper.make_node("Relu", ["x"], ["y"], domain="ai.onnx")
    m = ox.load(_model([node], [("x", [2])], ["y"]).SerializeToString())
    np.testing.assert_array_equal(m.predict(np.array([-1, 1], np.float32)), [0, 1])


def test_unused_string_initializer_is_tolerated_but_used_one_is_not():
    labels = helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"])
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", [2])], ["y"], [labels])
    ox.load(model.SerializeToString())
    model = _model([helper.make_node("Relu", ["labels"], ["y"], name="reads_labels")], [("x", [2])], ["y"], [labels])
    with pytest.raises(ox.OnnxplainError, match="reads_labels.*labels.*STRING"):
        ox.load(model.SerializeToString())
