"""The onnxruntime backend: models the engine cannot run load as OrtModel, the forward-only methods
run through onnxruntime and equal the engine's, the backward methods refuse with the engine's
reason; output selection on both backends; ZipMap."""

from __future__ import annotations

import pickle

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

import onnxplain as ox
from onnxplain.ort_backend import OrtModel
from tests.helpers.onnx_builders import make_model

rng = np.random.default_rng(11)


def _cnn(extra: list[str]) -> bytes:
    """Conv -> Relu -> [extra unary ops] -> GlobalAveragePool -> Flatten -> Gemm(4 classes)."""
    w = (rng.standard_normal((5, 2, 3, 3)) * 0.4).astype(np.float32)
    fc = rng.standard_normal((4, 5)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r0"], name="relu")]
    last = "r0"
    for k, op in enumerate(extra):
        attrs = {"lambd": 0.0} if op == "Shrink" else {}
        nodes.append(helper.make_node(op, [last], [f"e{k}"], name=f"extra_{k}", **attrs))
        last = f"e{k}"
    nodes += [helper.make_node("GlobalAveragePool", [last], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    return make_model(nodes, [("x", ["N", 2, 9, 9])], ["y"], {"w": w, "fc": fc})


def test_a_model_with_an_op_the_engine_lacks_runs_through_onnxruntime() -> None:
    data = _cnn(["Shrink"])  # Shrink (lambd 0) of a Relu output: the identity, as the engine's model without it
    m = ox.load(data, threads=2)
    assert m.backend == "onnxruntime" and isinstance(m.unsupported, ox.UnsupportedModelError)
    assert any("Shrink" in n for n in m.notes) and "backend: onnxruntime" in m.summary()
    x = rng.standard_normal((3, 2, 9, 9)).astype(np.float32)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(m.predict(x), ref, rtol=1e-6)
    # The backward methods name what the engine lacks.
    for method in ("gradient", "lrp.epsilon", "deeplift.rescale"):
        with pytest.raises(ox.UnsupportedModelError, match="Shrink"):
            ox.explainer(m, method)
    with pytest.raises(ox.UnsupportedModelError):
        ox.load(data, backend="onnxplain")
    with pytest.raises(ox.UnsupportedModelError, match="Shrink"):
        m.layers()


@pytest.mark.parametrize("params", [{"window": 3, "stride": 2}, {"window": (1, 4, 2), "stride": (1, 3, 2), "fill": 0.5},
                                    {"window": 5, "stride": 4, "fill": "per-feature"}])
def test_occlusion_through_onnxruntime_equals_the_engine(params: dict) -> None:
    # Same weights: _cnn draws from a shared generator, so build both from one state.
    state = rng.bit_generator.state
    with_shrink = _cnn(["Shrink"])
    rng.bit_generator.state = state
    without = _cnn([])
    m_ort, m_eng = ox.load(with_shrink), ox.load(without)
    assert (m_ort.backend, m_eng.backend) == ("onnxruntime", "onnxplain")
    x = rng.standard_normal((2, 2, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(m_ort.predict(x), m_eng.predict(x), rtol=1e-5, atol=1e-6)
    if params.get("fill") == "per-feature":
        params = {**params, "fill": rng.standard_normal((2, 9, 9)).astype(np.float32)}
    got = ox.explainer(m_ort, "occlusion", **params).explain(x, target=[1, 3])
    want = ox.explainer(m_eng, "occlusion", **params).explain(x, target=[1, 3])
    scale = float(np.abs(m_eng.predict(x)).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * scale)
    assert np.abs(want).max() > 1e-3  # not trivially zero


def test_backend_onnxruntime_on_request_and_pickling() -> None:
    data = _cnn([])
    m = ox.load(data, backend="onnxruntime", threads=1)
    assert m.backend == "onnxruntime" and m.unsupported is None
    with pytest.raises(ValueError, match="backend='onnxruntime'"):
        ox.explainer(m, "gradient")
    x = rng.standard_normal((2, 2, 9, 9)).astype(np.float32)
    ex = ox.explainer(m, "occlusion", window=3, stride=3)
    again = pickle.loads(pickle.dumps(ex))
    assert again.model.backend == "onnxruntime"
    np.testing.assert_array_equal(again.explain(x, target=0), ex.explain(x, target=0))
    with pytest.raises(ValueError, match="backend must be"):
        ox.load(data, backend="torch")


def _two_outputs() -> bytes:
    w1 = rng.standard_normal((3, 4)).astype(np.float32)
    w2 = rng.standard_normal((5, 4)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["a"], transB=1, name="head_a"),
             helper.make_node("Gemm", ["x", "w2"], ["b"], transB=1, name="head_b")]
    return make_model(nodes, [("x", ["N", 4])], ["a", "b"], {"w1": w1, "w2": w2})


@pytest.mark.parametrize("backend", ["onnxplain", "onnxruntime"])
def test_output_chooses_what_predict_returns_and_the_methods_explain(backend: str) -> None:
    data = _two_outputs()
    x = rng.standard_normal((3, 4)).astype(np.float32)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    a, b = sess.run(None, {"x": x})
    first = ox.load(data, backend=backend)
    np.testing.assert_allclose(first.predict(x), a, rtol=1e-5)
    for choice in (1, "b"):
        m = ox.load(data, backend=backend, output=choice)
        assert m.output == "b" and m.outputs[0].name == "b"
        np.testing.assert_allclose(m.predict(x), b, rtol=1e-5)
        occ = ox.explainer(m, "occlusion", window=1, stride=1).explain(x, target=4)
        zeroed = [np.where(np.arange(4) == j, 0, x).astype(np.float32) for j in range(4)]
        want = b[:, 4:5] - np.stack([sess.run(None, {"x": z})[1][:, 4] for z in zeroed], axis=1)
        np.testing.assert_allclose(occ, want, rtol=1e-5, atol=1e-6)
        if backend == "onnxplain":
            g = ox.explainer(m, "gradient").explain(x, target=2)
            np.testing.assert_allclose(g, np.broadcast_to(_gemm_weight(data, "w2")[2], x.shape), rtol=1e-6)
            m2 = pickle.loads(pickle.dumps(m))
            np.testing.assert_allclose(m2.predict(x), b, rtol=1e-5)
    with pytest.raises(ValueError, match="no output named"):
        ox.load(data, backend=backend, output="c")
    with pytest.raises(ValueError, match="out of range"):
        ox.load(data, backend=backend, output=2)


def _gemm_weight(data: bytes, name: str) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    g = onnx.load_from_string(data).graph
    return next(numpy_helper.to_array(t) for t in g.initializer if t.name == name)


def test_zipmap_classifier_predicts_probabilities_on_both_backends() -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(X, y)
    data = skl2onnx.convert_sklearn(clf, initial_types=[("x", FloatTensorType([None, 4]))]).SerializeToString()
    want = clf.predict_proba(X[:7])
    for backend in ("onnxplain", "onnxruntime"):
        m = ox.load(data, backend=backend, strip_softmax=False)
        np.testing.assert_allclose(m.predict(X[:7]), want, rtol=1e-4, atol=1e-5)
        assert m.outputs[0].dtype == "float32"


@pytest.mark.parametrize("unary", ["Relu", "Shrink"], ids=["engine", "onnxruntime"])
def test_fixed_batch_model_runs_a_multiple_of_its_batch_in_passes(unary: str) -> None:
    """The Model Zoo's files fix the batch at 1, in the input and in Reshape shapes; both backends
    run k samples as k passes (what LIME, prediction difference and the metrics rely on)."""
    w = rng.standard_normal((4, 3)).astype(np.float32)
    attrs = {"lambd": 0.0} if unary == "Shrink" else {}
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["r"], name="r1"),
             helper.make_node(unary, ["r"], ["u"], name="u", **attrs),
             helper.make_node("Reshape", ["u", "s2"], ["f"], name="r2"),
             helper.make_node("MatMul", ["f", "w"], ["y"], name="mm")]
    data = make_model(nodes, [("x", [1, 4])], ["y"], initializers={
        "s1": np.array([1, 2, 2], np.int64), "s2": np.array([1, 4], np.int64), "w": w}, opset=13)
    m = ox.load(data)
    assert isinstance(m, OrtModel) == (unary == "Shrink")
    x = rng.standard_normal((3, 4)).astype(np.float32)
    each = np.concatenate([m.predict(x[i:i + 1]) for i in range(3)])
    np.testing.assert_array_equal(m.predict(x), each)
    np.testing.assert_allclose(each, np.maximum(x, 0) @ w if unary == "Relu" else x @ w, rtol=1e-5, atol=1e-6)
