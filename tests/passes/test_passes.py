"""Load-time rewrites: each one happens (visible in the op counts) and leaves the outputs equal to
onnxruntime on the unmodified graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run


def _conv_bn(rng: np.random.Generator, with_bias: bool = True) -> bytes:
    c_in, c_out = 3, 5
    inits = {
        "W": rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32),
        "scale": (rng.random(c_out) + 0.5).astype(np.float32),
        "B": rng.standard_normal(c_out).astype(np.float32),
        "mean": rng.standard_normal(c_out).astype(np.float32),
        "var": (rng.random(c_out) + 0.1).astype(np.float32),
    }
    conv_inputs = ["x", "W"]
    if with_bias:
        inits["cb"] = rng.standard_normal(c_out).astype(np.float32)
        conv_inputs.append("cb")
    nodes = [
        helper.make_node("Conv", conv_inputs, ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "B", "mean", "var"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["y"], name="relu"),
    ]
    return make_model(nodes, [("x", ["N", c_in, 6, 7])], ["y"], inits, opset=15)


@pytest.mark.parametrize("with_bias", [True, False])
def test_batchnorm_folds_into_conv(rng: np.random.Generator, with_bias: bool) -> None:
    data = _conv_bn(rng, with_bias)
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    ref = ort_run(data, {"x": x})[0]
    folded = ox.load(data)
    kept = ox.load(data, fold_batch_norm=False)
    assert "BatchNormalization" not in folded.op_counts
    assert kept.op_counts.get("BatchNormalization") == 1
    assert any(n.startswith("folded node 'bn' (BatchNormalization) into node 'conv'") for n in folded.notes)
    assert_close(folded.predict(x), ref)
    assert_close(kept.predict(x), ref)


def test_batchnorm_after_gemm_folds(rng: np.random.Generator) -> None:
    inits = {
        "W": rng.standard_normal((4, 6)).astype(np.float32),
        "b": rng.standard_normal(6).astype(np.float32),
        "scale": (rng.random(6) + 0.5).astype(np.float32),
        "B": rng.standard_normal(6).astype(np.float32),
        "mean": rng.standard_normal(6).astype(np.float32),
        "var": (rng.random(6) + 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["g"], name="fc"),
        helper.make_node("BatchNormalization", ["g", "scale", "B", "mean", "var"], ["y"], name="bn"),
    ]
    data = make_model(nodes, [("x", ["N", 4])], ["y"], inits, opset=15)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    m = ox.load(data)
    assert "BatchNormalization" not in m.op_counts
    assert_close(m.predict(x), ort_run(data, {"x": x})[0])


def test_batchnorm_with_two_readers_is_kept(rng: np.random.Generator) -> None:
    """The conv output is also read elsewhere: folding would change that reader, so BN stays."""
    inits = {
        "W": rng.standard_normal((2, 2, 1, 1)).astype(np.float32),
        "scale": np.array([2.0, 3.0], np.float32), "B": np.array([1.0, -1.0], np.float32),
        "mean": np.array([0.5, 0.1], np.float32), "var": np.array([1.0, 4.0], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "scale", "B", "mean", "var"], ["bn"], name="bn"),
        helper.make_node("Add", ["bn", "c"], ["y"], name="add"),
    ]
    data = make_model(nodes, [("x", [1, 2, 3, 3])], ["y"], inits, opset=15)
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    m = ox.load(data)
    assert m.op_counts.get("BatchNormalization") == 1
    assert_close(m.predict(x), ort_run(data, {"x": x})[0])


@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_add_becomes_one_linear_op(rng: np.random.Generator, bias_first: bool) -> None:
    inits = {"W": rng.standard_normal((5, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="dense/MatMul"),
        helper.make_node("Add", ["b", "h"] if bias_first else ["h", "b"], ["z"], name="dense/BiasAdd"),
        helper.make_node("Relu", ["z"], ["y"], name="relu"),
    ]
    data = make_model(nodes, [("x", ["N", 5])], ["y"], inits)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    m = ox.load(data)
    assert "Add" not in m.op_counts and m.op_counts["MatMul"] == 1
    kinds = {name: kind for name, _op, kind in m.nodes}
    assert kinds["dense/MatMul"] == "linear"
    assert_close(m.predict(x), ort_run(data, {"x": x})[0])


def test_matmul_add_with_full_shape_bias_is_not_fused(rng: np.random.Generator) -> None:
    """A (4, 3) 'bias' is not a per-output bias: the Add must stay."""
    inits = {"W": rng.standard_normal((5, 3)).astype(np.float32), "b": rng.standard_normal((4, 3)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    data = make_model(nodes, [("x", [4, 5])], ["y"], inits)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    m = ox.load(data)
    assert m.op_counts.get("Add") == 1
    assert_close(m.predict(x), ort_run(data, {"x": x})[0])


def test_identity_and_dropout_are_removed(rng: np.random.Generator) -> None:
    nodes = [
        helper.make_node("Identity", ["x"], ["a"], name="id"),
        helper.make_node("Dropout", ["a"], ["b"], name="drop"),
        helper.make_node("Relu", ["b"], ["c"], name="relu"),
        helper.make_node("Identity", ["c"], ["y"], name="id_out"),
    ]
    data = make_model(nodes, [("x", ["N", 3])], ["y"])
    m = ox.load(data)
    assert set(m.op_counts) == {"Relu"}
    assert [o.name for o in m.outputs] == ["y"]
    x = rng.standard_normal((2, 3)).astype(np.float32)
    assert_close(m.predict(x), ort_run(data, {"x": x})[0])


def _logits_softmax(rng: np.random.Generator, op: str = "Softmax") -> bytes:
    inits = {"W": rng.standard_normal((6, 4)).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W"], ["logits"], name="fc"),
             helper.make_node(op, ["logits"], ["p"], name="sm", axis=1)]
    return make_model(nodes, [("x", ["N", 6])], ["p"], inits, opset=13)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_stripped_by_default_and_kept_on_request(rng: np.random.Generator, op: str) -> None:
    data = _logits_softmax(rng, op)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    proto = onnx.load_from_string(data)
    proto.graph.output.append(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None))
    ref_p, ref_logits = ort_run(proto.SerializeToString(), {"x": x})
    assert_close(ox.load(data).predict(x), ref_logits)
    assert op not in ox.load(data).op_counts
    kept = ox.load(data, strip_softmax=False)
    assert kept.op_counts.get(op) == 1
    assert_close(kept.predict(x), ref_p)


def test_shape_arithmetic_is_constant_folded(rng: np.random.Generator) -> None:
    """x.view(x.size(0), -1) as the legacy PyTorch exporter writes it."""
    inits = {
        "zero": np.array(0, np.int64), "minus_one": np.array([-1], np.int64),
        "W": rng.standard_normal((12, 2)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
        helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["r", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W"], ["y"]),
    ]
    data = make_model(nodes, [("x", ["N", 3, 2, 2])], ["y"], inits, opset=11)
    m = ox.load(data)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, 2, 2)).astype(np.float32)
        assert_close(m.predict(x), ort_run(data, {"x": x})[0])
    # With a fixed batch the whole chain folds away.
    fixed = make_model(nodes, [("x", [2, 3, 2, 2])], ["y"], inits, opset=11)
    mf = ox.load(fixed)
    assert not {"Shape", "Gather", "Unsqueeze", "Concat"} & set(mf.op_counts)
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    assert_close(mf.predict(x), ort_run(fixed, {"x": x})[0])


def test_skl2onnx_mlp_classifier_with_zipmap(rng: np.random.Generator) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=60, random_state=0).fit(x[:600], digits.target[:600])
    data = to_onnx(clf, x[:1]).SerializeToString()  # outputs: label (int64) and ZipMap probabilities
    sample = x[600:640]
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    label, probs = sess.run(None, {sess.get_inputs()[0].name: sample})
    ref = np.array([[row[k] for k in sorted(row)] for row in probs], np.float32)
    m = ox.load(data, strip_softmax=False)
    assert len(m.outputs) == 1
    got = m.predict(sample)
    assert_close(got, ref)
    np.testing.assert_array_equal(got.argmax(1), label)
    # Stripped: logits whose softmax is the probabilities.
    logits = ox.load(data).predict(sample)
    e = np.exp(logits - logits.max(1, keepdims=True))
    assert_close(e / e.sum(1, keepdims=True), ref)
    np.testing.assert_allclose(clf.predict_proba(sample), ref, rtol=1e-4, atol=1e-5)
