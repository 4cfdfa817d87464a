"""Explanations on what other exporters write: tf2onnx (NHWC Transposes around Conv, Dense as
MatMul + Add) and skl2onnx (MLPClassifier with ZipMap). Oracles: central finite differences of
onnxruntime for the gradient, and the definitions of the presets as custom composites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxplain as ox

KERAS = Path(__file__).resolve().parents[1] / "data" / "keras"


def _keras(name: str) -> tuple[bytes, str, tuple[int, ...]]:
    data = (KERAS / f"{name}.onnx").read_bytes()
    inp = onnx.load_from_string(data).graph.input[0]
    return data, inp.name, tuple(d.dim_value for d in inp.type.tensor_type.shape.dim[1:])


def _logits_session(data: bytes) -> tuple[ort.InferenceSession, str]:
    """onnxruntime on the graph with the final softmax removed (what onnxplain explains)."""
    proto = onnx.load_from_string(data)
    last = proto.graph.node[-1]
    assert last.op_type == "Softmax"
    proto.graph.output[0].name = last.input[0]
    del proto.graph.node[-1]
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess, sess.get_inputs()[0].name


def _fd_gradient(sess: ort.InferenceSession, name: str, x: np.ndarray, target: int, idx: np.ndarray,
                 h: float = 1e-3) -> np.ndarray:
    flat = x.reshape(-1).astype(np.float64)
    out = []
    for i in idx:
        up, dn = flat.copy(), flat.copy()
        up[i] += h
        dn[i] -= h
        fu = sess.run(None, {name: up.reshape(x.shape).astype(np.float32)})[0][0, target]
        fd = sess.run(None, {name: dn.reshape(x.shape).astype(np.float32)})[0][0, target]
        out.append((float(fu) - float(fd)) / (2 * h))
    return np.array(out)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_keras_gradient_matches_finite_differences(name: str) -> None:
    data, input_name, shape = _keras(name)
    m = ox.load(data)
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    grad = ox.explainer(m, "gradient").explain(x, target=2)
    assert grad.shape == x.shape
    sess, iname = _logits_session(data)
    idx = np.random.default_rng(1).choice(x.size, size=min(24, x.size), replace=False)
    fd = _fd_gradient(sess, iname, x, 2, idx)
    scale = np.abs(grad).max()
    np.testing.assert_allclose(grad.reshape(-1)[idx], fd, atol=2e-2 * scale)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_keras_lrp_runs_and_reports_its_delta(name: str) -> None:
    data, _, shape = _keras(name)
    m = ox.load(data)
    x = np.random.default_rng(2).standard_normal((3, *shape)).astype(np.float32)
    for method in ("lrp.epsilon_plus_flat", "lrp.epsilon_gamma_box", "deep_taylor"):
        params = {"low": -4.0, "high": 4.0} if method == "lrp.epsilon_gamma_box" else {}
        rel, delta = ox.explainer(m, method, **params).explain(x, return_delta=True)
        assert rel.shape == x.shape and np.all(np.isfinite(rel)) and np.all(np.isfinite(delta))
        assert np.abs(rel).sum() > 0


def test_presets_are_their_definitions() -> None:
    """iNNvestigate's presets and Deep Taylor spelled as custom composites give the same maps."""
    data, _, shape = _keras("cnn")
    m = ox.load(data)
    x = np.random.default_rng(3).standard_normal((2, *shape)).astype(np.float32)
    pairs = [
        ("lrp.sequential_preset_a", {}, {"dense": ("epsilon", {"epsilon": 0.1}), "conv": "alpha_1_beta_0"}),
        ("lrp.sequential_preset_b", {}, {"dense": ("epsilon", {"epsilon": 0.1}), "conv": "alpha_2_beta_1"}),
        ("lrp.sequential_preset_b_flat", {}, {"first": "flat", "dense": ("epsilon", {"epsilon": 0.1}),
                                               "conv": "alpha_2_beta_1"}),
        ("deep_taylor", {}, {"first": "wsquare", "linear": "zplus"}),
        ("deep_taylor.bounded", {"low": -2.0, "high": 2.0},
         {"first": ("zbox", {"low": -2.0, "high": 2.0}), "linear": "zplus"}),
    ]
    for method, params, rules in pairs:
        a = ox.explainer(m, method, **params).explain(x, target=1)
        b = ox.explainer(m, "lrp", rules=rules).explain(x, target=1)
        np.testing.assert_array_equal(a, b, err_msg=method)


def test_skl2onnx_mlp_classifier() -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(24,), max_iter=40, random_state=0).fit(x[:500], digits.target[:500])
    m = ox.load(to_onnx(clf, x[:1]).SerializeToString())
    sample = x[600:604]
    # Gradient of the logits: the same as numpy's for this one-hidden-layer ReLU net.
    w1, w2 = clf.coefs_
    h = sample @ w1 + clf.intercepts_[0]
    t = m.predict(sample).argmax(1)
    expected = np.stack([(w1 * (h[i] > 0)) @ w2[:, t[i]] for i in range(len(sample))])
    got = ox.explainer(m, "gradient").explain(sample)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    rel, delta = ox.explainer(m, "lrp.epsilon").explain(sample, return_delta=True)
    assert rel.shape == sample.shape and np.all(np.isfinite(delta))
