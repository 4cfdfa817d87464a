"""Hostile and broken files: every one must raise a typed onnxplain error with a useful message,
never crash, hang or allocate from an untrusted size."""

from __future__ import annotations

import contextlib
import resource
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox

TYPED_ERRORS = (ox.OnnxplainError, ox.ShapeError, ox.InvalidArgument)
# Loading only sees the model's own contents: whatever is wrong with it is an OnnxplainError
# (ModelFormatError for an inconsistent model), never the run-time ShapeError.
LOAD_ERRORS = (ox.OnnxplainError,)


# ---- protobuf wire helpers --------------------------------------------------------------------


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag(field, 2) + varint(len(payload)) + payload


def _model(nodes, inputs=(("x", [2, 3]),), outputs=("y",), initializers=(), ir_version=8):
    graph = helper.make_graph(
        list(nodes),
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=list(initializers),
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = ir_version
    return m.SerializeToString()


def _small_valid_model() -> bytes:
    w = numpy_helper.from_array(np.array([1.0, -2.0, 0.5], np.float32), "w")
    nodes = [helper.make_node("Add", ["x", "w"], ["a"], name="add"), helper.make_node("Relu", ["a"], ["y"])]
    return _model(nodes, initializers=[w])


def _relu_with_initializer(t: onnx.TensorProto) -> bytes:
    return _model([helper.make_node("Relu", ["x"], ["y"])], initializers=[t])


def _raises(data: bytes, exc=ox.ModelFormatError, *fragments: str) -> str:
    with pytest.raises(exc) as e:
        ox.load(data)
    msg = str(e.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in error message: {msg}"
    return msg


@contextlib.contextmanager
def _address_space_limit(extra: int = 1 << 30):
    """Caps this process's address space at its current size plus `extra`, so that an attempt to
    allocate many gigabytes fails (as MemoryError) instead of passing unnoticed: Linux overcommits
    and untouched pages would not show in the resident size."""
    if not sys.platform.startswith("linux"):
        yield
        return
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---- not a model at all ---------------------------------------------------------------------------


def test_empty_bytes():
    _raises(b"", ox.ModelFormatError, "empty")


def test_text_file():
    _raises(b"hello, this is not an ONNX model\n", ox.ModelFormatError, "not a valid ONNX model")


def test_png_header():
    _raises(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ox.ModelFormatError, "not a valid ONNX model")


def test_model_without_graph():
    _raises(tag(1, 0) + varint(8), ox.ModelFormatError, "no graph")


def test_model_without_ir_version():
    m = onnx.load_from_string(_small_valid_model())
    m.ClearField("ir_version")
    _raises(m.SerializeToString(), ox.ModelFormatError, "ir_version")


def test_graph_without_outputs():
    m = onnx.load_from_string(_small_valid_model())
    m.graph.ClearField("output")
    _raises(m.SerializeToString(), ox.ModelFormatError, "no outputs")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        ox.load(tmp_path / "nope.onnx")


# ---- wire-level corruption --------------------------------------------------------------------------


def test_varint_longer_than_ten_bytes():
    _raises(tag(1, 0) + b"\xff" * 11 + b"\x01", ox.ModelFormatError, "varint", "at byte 1")


def test_varint_overflowing_64_bits():
    _raises(tag(1, 0) + b"\xff" * 9 + b"\x02", ox.ModelFormatError, "varint overflows 64 bits")


def test_truncated_varint():
    _raises(tag(1, 0) + b"\xff\xff", ox.ModelFormatError, "truncated varint")


def test_length_prefix_2_pow_62():
    data = tag(7, 2) + varint(2**62) + _small_valid_model()
    _raises(data, ox.ModelFormatError, "length 4611686018427387904 exceeds", "truncated or corrupt")


def test_length_prefix_beyond_end_inside_nested_message():
    data = ld(7, tag(1, 2) + varint(1000) + b"xyz")  # graph { node: <1000 bytes> } with 3 bytes
    _raises(data, ox.ModelFormatError, "length 1000 exceeds the 3 bytes left")


@pytest.mark.parametrize("wire_type", [6, 7])
def test_invalid_wire_type(wire_type):
    _raises(_small_valid_model() + tag(99, wire_type), ox.ModelFormatError, f"invalid wire type {wire_type}")


def test_field_number_zero():
    _raises(b"\x00\x00" + _small_valid_model(), ox.ModelFormatError, "field number 0")


def test_known_field_with_wrong_wire_type():
    _raises(ld(1, b"\x08") + _small_valid_model(), ox.ModelFormatError, "ModelProto.ir_version", "wire type")


def test_unexpected_end_group():
    _raises(tag(99, 4) + _small_valid_model(), ox.ModelFormatError, "end-group")


def test_unterminated_group():
    _raises(_small_valid_model() + tag(99, 3) + tag(5, 0) + b"\x01", ox.ModelFormatError, "unterminated group")


def test_truncated_fixed32_and_fixed64():
    _raises(_small_valid_model() + tag(99, 5) + b"\x00\x00", ox.ModelFormatError, "truncated fixed32")
    _raises(_small_valid_model() + tag(99, 1) + b"\x00" * 7, ox.ModelFormatError, "truncated fixed64")


def test_deeply_nested_length_delimited_fields():
    # 10000 levels of graph { node { attribute { t { ... } } } } cannot exist in ONNX, but a hostile
    # file can nest unknown and known fields arbitrarily; the importer must neither recurse per
    # level on the C stack nor accept the file.
    payload = b""
    for i in range(10000):
        payload = ld(1 if i % 2 else 99, payload)
    t0 = time.perf_counter()
    _raises(ld(7, payload), ox.ModelFormatError)
    # Known messages nested beyond the limit: node -> attribute -> tensor -> ... are bounded by the
    # schema; a graph holding a node holding an attribute holding a tensor is still fine.
    assert time.perf_counter() - t0 < 2


def test_deepest_legal_chain_loads():
    # graph -> node -> attribute -> tensor is as deep as ONNX's known messages go; the nesting
    # limit itself is reached only by groups (below) and in tests/cpp/test_wire.cpp.
    t = numpy_helper.from_array(np.array([1.0], np.float32), "v")
    node = helper.make_node("Constant", [], ["c"], value=t, name="const")
    data = _model([node, helper.make_node("Relu", ["x"], ["y"])])
    ox.load(data)


def test_deeply_nested_groups():
    open_groups = tag(99, 3) * 100000
    _raises(_small_valid_model() + open_groups, ox.ModelFormatError, "groups nested deeper than")


def test_balanced_groups_are_skipped():
    groups = tag(99, 3) * 20 + tag(98, 0) + b"\x07" + tag(99, 4) * 20
    m = ox.load(groups + _small_valid_model())
    assert m.predict(np.zeros((2, 3), np.float32)).shape == (2, 3)


# ---- truncation and fuzzing ------------------------------------------------------------------------


def _try_load(data: bytes) -> None:
    """Loads; a model that loads is run once on a small input. Only typed errors are allowed."""
    try:
        m = ox.load(data)
    except LOAD_ERRORS as e:
        assert str(e)
        return
    feeds = {}
    for spec in m.inputs:
        if any(d is None for d in spec.shape) or int(np.prod(spec.shape)) > 10000:
            return
        feeds[spec.name] = np.zeros(spec.shape, np.float32 if spec.dtype == "float32" else np.int64)
    try:
        m.run(feeds)
    except TYPED_ERRORS as e:
        assert str(e)


def test_every_truncation_of_a_valid_model():
    data = _small_valid_model()
    assert len(data) < 400
    ox.load(data)
    for n in range(len(data)):
        try:
            ox.load(data[:n])
        except LOAD_ERRORS as e:
            assert str(e)
            continue
        # A cut at a field boundary may leave a loadable model (e.g. without opset_import); it
        # must still run.
        _try_load(data[:n])


def test_random_bytes():
    t0 = time.perf_counter()
    for seed in range(3000):
        rng = np.random.default_rng(seed)
        data = rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        _try_load(data)
        if time.perf_counter() - t0 > 3:
            break


def test_random_mutations_of_a_valid_model():
    base = np.frombuffer(_small_valid_model(), np.uint8)
    t0 = time.perf_counter()
    for seed in range(5000):
        rng = np.random.default_rng(seed)
        data = base.copy()
        k = int(rng.integers(1, 4))
        pos = rng.integers(0, len(data), size=k)
        data[pos] = rng.integers(0, 256, size=k, dtype=np.uint8)
        _try_load(data.tobytes())
        if time.perf_counter() - t0 > 4:
            break


# ---- tensors that do not match their declared shape ------------------------------------------------


def _tensor(dims, data_type=TensorProto.FLOAT, raw: bytes | None = None, **typed) -> onnx.TensorProto:
    t = onnx.TensorProto()
    t.name = "w"
    t.data_type = data_type
    t.dims.extend(dims)
    if raw is not None:
        t.raw_data = raw
    for field, values in typed.items():
        getattr(t, field).extend(values)
    return t


@pytest.mark.parametrize(
    "t,holds",
    [
        (_tensor([2, 3], raw=b"\x00" * 20), "holds 20 bytes of raw data"),
        (_tensor([4], TensorProto.INT64, raw=b"\x00" * 31), "holds 31 bytes of raw data"),
        (_tensor([2, 3], float_data=[1.0] * 5), "holds 5 values"),
        (_tensor([3], TensorProto.INT64, int64_data=[1, 2]), "holds 2 values"),
        (_tensor([3], TensorProto.INT32, int32_data=[1, 2, 3, 4]), "holds 4 values"),
        (_tensor([2], TensorProto.DOUBLE, double_data=[1.0]), "holds 1 values"),
        (_tensor([2, 2], TensorProto.FLOAT16, int32_data=[0]), "holds 1 values"),
        (_tensor([5]), "holds 0 values"),
    ],
    ids=["raw_float", "raw_int64", "float_data", "int64_data", "int32_data", "double_data", "float16", "empty"],
)
def test_tensor_data_does_not_match_dims(t, holds):
    msg = _raises(_relu_with_initializer(t), ox.ModelFormatError, "tensor 'w'", "declares shape", holds)
    assert "elements" in msg


@pytest.mark.parametrize(
    "dims",
    [[2**40, 2**40], [2**31, 2**31, 2**31], [2**62, 4], [2**63 - 1, 2], [2**35]],
    ids=["2^40x2^40", "2^31^3", "2^62x4", "int64max", "2^35"],
)
def test_absurd_dims_fail_fast_without_allocating(dims):
    data = _relu_with_initializer(_tensor(dims, raw=b"\x00" * 16))
    t0 = time.perf_counter()
    with _address_space_limit():
        _raises(data, ox.ModelFormatError, "tensor 'w'", "byte limit per tensor")
    assert time.perf_counter() - t0 < 1


@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
def test_large_but_legal_dims_with_no_data_do_not_allocate(typed):
    # 2^30 x 2 floats (8 GiB) is within the per-tensor limit; the file holds 16 bytes: the
    # mismatch must be found before the 8 GiB tensor is allocated.
    t = _tensor([2**30, 2], float_data=[1.0] * 4) if typed else _tensor([2**30, 2], raw=b"\x00" * 16)
    with _address_space_limit():
        _raises(_relu_with_initializer(t), ox.ModelFormatError, "tensor 'w'", "2147483648 elements")


def test_negative_dim():
    _raises(
        _relu_with_initializer(_tensor([2, -3], raw=b"")), ox.ModelFormatError, "tensor 'w'", "negative dimension -3"
    )


def test_negative_dim_with_other_dim_zero():
    _raises(_relu_with_initializer(_tensor([0, -1], raw=b"")), ox.ModelFormatError, "negative dimension")


def test_undefined_data_type():
    t = _tensor([1], data_type=0, raw=b"\x00" * 4)
    _raises(
        _model([helper.make_node("Relu", ["w"], ["y"], name="r")], initializers=[t]),
        ox.OnnxplainError,
        "'w'",
        "UNDEFINED",
    )


def test_initializer_without_name():
    t = numpy_helper.from_array(np.zeros(2, np.float32), "")
    _raises(_relu_with_initializer(t), ox.ModelFormatError, "initializer has no name")


def test_initializer_defined_twice():
    a = numpy_helper.from_array(np.zeros(2, np.float32), "w")
    data = _model([helper.make_node("Relu", ["x"], ["y"])], initializers=[a, a])
    _raises(data, ox.ModelFormatError, "initializer 'w' is defined twice")


def test_sparse_initializer_refused():
    m = onnx.load_from_string(_small_valid_model())
    sp = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([1.0], np.float32), "s"), numpy_helper.from_array(np.array([0], np.int64)), [3]
    )
    m.graph.sparse_initializer.append(sp)
    _raises(m.SerializeToString(), ox.ModelFormatError, "sparse initializer")


# ---- broken graphs ------------------------------------------------------------------------------------


def test_cycle():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="entry"),
        helper.make_node("Add", ["a", "c"], ["b"], name="loop_add"),
        helper.make_node("Relu", ["b"], ["c"], name="loop_relu"),
        helper.make_node("Relu", ["c"], ["y"], name="exit"),
    ]
    msg = _raises(_model(nodes), ox.ModelFormatError, "cycle", "loop_add", "loop_relu")
    assert "entry" not in msg


def test_self_loop():
    _raises(_model([helper.make_node("Add", ["x", "y"], ["y"], name="me")]), ox.ModelFormatError, "cycle", "'me'")


def test_dangling_input():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Add", ["a", "ghost"], ["y"], name="adder")]
    _raises(_model(nodes), ox.ModelFormatError, "node 'adder' (Add)", "'ghost'", "neither a graph input")


def test_two_nodes_produce_the_same_value():
    nodes = [
        helper.make_node("Relu", ["x"], ["y"], name="first"),
        helper.make_node("Relu", ["x"], ["y"], name="second"),
    ]
    _raises(_model(nodes), ox.ModelFormatError, "value 'y' is produced by two nodes", "'first'", "'second'")


def test_node_output_overwrites_graph_input():
    nodes = [helper.make_node("Relu", ["x"], ["x2"]), helper.make_node("Relu", ["x2"], ["x"], name="shadow")]
    _raises(_model(nodes, outputs=("x2",)), ox.ModelFormatError, "node 'shadow' (Relu) writes 'x'", "graph input")


def test_node_output_overwrites_initializer():
    w = numpy_helper.from_array(np.zeros(3, np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["w"], name="clobber"), helper.make_node("Relu", ["w"], ["y"])]
    _raises(_model(nodes, initializers=[w]), ox.ModelFormatError, "node 'clobber' (Relu) writes 'w'", "initializer")


def _one_node(op: str, n_inputs: int, n_outputs: int) -> bytes:
    outs = ["y", *(f"extra{i}" for i in range(1, n_outputs))]
    return _model([helper.make_node(op, ["x"] * n_inputs, outs, name="odd")])


@pytest.mark.parametrize("op", ox.supported_ops())
def test_wrong_number_of_inputs_or_outputs(op):
    """Every supported op refuses node arities it cannot take with a typed error (never an
    IndexError from an unchecked .at(), never a crash)."""
    for n_in, n_out in [(0, 1), (9, 1), (1, 9)]:
        try:
            m = ox.load(_one_node(op, n_in, n_out))
            m.predict(np.ones((2, 3), np.float32))
        except TYPED_ERRORS as e:
            assert "odd" in str(e), str(e)


def test_graph_output_nothing_produces():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    _raises(_model(nodes, outputs=("y", "nowhere")), ox.ModelFormatError, "graph output 'nowhere'", "not produced")


def test_graph_input_listed_twice():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    _raises(_model(nodes, inputs=(("x", [1]), ("x", [1]))), ox.ModelFormatError, "graph input 'x' is listed twice")


def test_node_without_op_type():
    _raises(_model([helper.make_node("", ["x"], ["y"])]), ox.ModelFormatError, "no op_type")


def test_attribute_without_name():
    m = onnx.load_from_string(_model([helper.make_node("LeakyRelu", ["x"], ["y"], name="lr", alpha=0.2)]))
    m.graph.node[0].attribute[0].name = ""
    _raises(m.SerializeToString(), ox.ModelFormatError, "node 'lr' (LeakyRelu)", "attribute without a name")


def test_string_graph_input_refused():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    _raises(data, ox.UnsupportedModelError, "graph input 'x'", "STRING")


def test_sequence_graph_input_refused():
    seq = helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [seq],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    _raises(data, ox.UnsupportedModelError, "graph input 'x'", "not a tensor")


def test_two_graphs_refused():
    data = _small_valid_model()
    g = onnx.load_from_string(data).graph.SerializeToString()
    _raises(data + ld(7, g), ox.ModelFormatError, "two graphs")
