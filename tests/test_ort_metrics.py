"""The metrics on an image CNN with one op onnxplain's engine lacks (Celu, Mish): ``ox.load`` falls
back to onnxruntime, and AOPC and faithfulness through onnxruntime equal the same metrics on the
engine's model in which the op is written with ops the engine has (Celu with alpha = 1 is Elu,
Mish(x) = x * tanh(softplus(x))), and a loop over a plain onnxruntime session. Backward methods and
the model-randomisation check refuse such a model, naming the op.

Should the engine learn one of these ops, ``test_the_op_sends_the_model_to_onnxruntime`` fails:
replace it by an op the engine still lacks."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import make_model

pytest.importorskip("onnxruntime")

OPSET = 18  # Mish's first opset


def _activation(op: str, rewritten: bool) -> tuple[list, dict[str, np.ndarray]]:
    """Nodes from 'c' to 'a': the op itself, or the same function from ops the engine supports."""
    if not rewritten:
        return [helper.make_node(op, ["c"], ["a"], name=f"{op.lower()}_0")], {}
    if op == "Celu":  # alpha = 1: max(0, x) + min(0, exp(x) - 1)
        return [helper.make_node("Elu", ["c"], ["a"], alpha=1.0)], {}
    assert op == "Mish"
    return [helper.make_node("Softplus", ["c"], ["s"]), helper.make_node("Tanh", ["s"], ["t"]),
            helper.make_node("Mul", ["c", "t"], ["a"])], {}


@functools.cache
def cnn(op: str, rewritten: bool) -> bytes:
    """(N, 1, 12, 12) -> Conv 3x3 (4 channels) -> op -> MaxPool 2 -> Flatten -> Gemm (5 classes), seeded."""
    rng = np.random.default_rng(7)
    weights = {"W": (rng.standard_normal((4, 1, 3, 3)) * 0.6).astype(np.float32),
               "B": (rng.standard_normal(4) * 0.1).astype(np.float32),
               "D": (rng.standard_normal((5, 144)) * 0.2).astype(np.float32),
               "E": (rng.standard_normal(5) * 0.1).astype(np.float32)}
    act, consts = _activation(op, rewritten)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"), *act,
             helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "D", "E"], ["y"], transB=1, name="dense")]
    return make_model(nodes, [("x", ["N", 1, 12, 12])], ["y"], {**weights, **consts}, opset=OPSET)


def _images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 1, 12, 12)).astype(np.float32)


@pytest.fixture(scope="module", params=["Celu", "Mish"])
def pair(request: pytest.FixtureRequest) -> tuple[str, ox.Model, ox.Model, np.ndarray, np.ndarray]:
    op = request.param
    ort_model, engine = ox.load(cnn(op, False), threads=2), ox.load(cnn(op, True), threads=2)
    x = _images()
    # One relevance for both: occlusion on the engine's model (every metric then ranks the same way).
    rel = ox.explainer(engine, "occlusion", window=3, stride=3).explain(x, progress=False)
    return op, ort_model, engine, x, rel


def test_the_op_sends_the_model_to_onnxruntime(pair: tuple) -> None:
    op, ort_model, engine, x, _ = pair
    assert engine.backend == "onnxplain"
    assert ort_model.backend == "onnxruntime", f"the engine runs {op} now: pick an op it lacks for these tests"
    assert op in str(ort_model.unsupported)
    np.testing.assert_allclose(ort_model.predict(x), engine.predict(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [{"region": 3}, {"region": 2, "order": "lerf", "steps": 20},
                                {"region": 4, "perturbation": "uniform"}, {"region": 3, "perturbation": "blur"},
                                {"region": 4, "order": "random", "perturbation": "mean"}])
def test_aopc_through_onnxruntime_equals_the_engine(pair: tuple, kw: dict) -> None:
    _, ort_model, engine, x, rel = pair
    a, b = ox.metrics.aopc(ort_model, x, rel, **kw), ox.metrics.aopc(engine, x, rel, **kw)
    np.testing.assert_array_equal(a.targets, b.targets)
    np.testing.assert_array_equal(a.ranking, b.ranking)
    np.testing.assert_allclose(a.curves, b.curves, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.aopc, b.aopc, rtol=1e-5, atol=1e-5)


def test_faithfulness_through_onnxruntime_equals_the_engine(pair: tuple) -> None:
    _, ort_model, engine, x, rel = pair
    a = ox.metrics.faithfulness_correlation(ort_model, x, rel, runs=30, subset=20)
    b = ox.metrics.faithfulness_correlation(engine, x, rel, runs=30, subset=20)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.all(np.isfinite(a))


def test_aopc_through_onnxruntime_equals_a_loop_over_the_session() -> None:
    """The whole chain against a plain onnxruntime session, one call per step (no onnxplain forward)."""
    import onnxruntime as ort

    data = cnn("Mish", False)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = _images(3)
    rel = np.random.default_rng(2).standard_normal(x.shape)
    r = ox.metrics.aopc(ox.load(data), x, rel, region=4, fill=0.5)
    for i in range(len(x)):
        tiles = rel[i, 0].reshape(3, 4, 3, 4).sum(axis=(1, 3)).ravel()
        order = sorted(range(9), key=lambda t: (-tiles[t], t))
        img = x[i].copy()
        want = [sess.run(None, {"x": img[None]})[0][0, r.targets[i]]]
        for t in order:
            img[:, (t // 3) * 4:(t // 3) * 4 + 4, (t % 3) * 4:(t % 3) * 4 + 4] = 0.5
            want.append(sess.run(None, {"x": img[None]})[0][0, r.targets[i]])
        np.testing.assert_allclose(r.curves[i], want, rtol=1e-6, atol=1e-6)


def test_backward_methods_and_randomisation_name_the_missing_op(pair: tuple) -> None:
    op, ort_model, _, x, _ = pair
    with pytest.raises(ox.UnsupportedModelError, match=op):
        ox.explainer(ort_model, "gradient")
    with pytest.raises(ox.UnsupportedModelError, match=f"(?s)model-randomisation check.*{op}"):
        ox.metrics.model_randomisation(ort_model, "occlusion", x, window=3, stride=3)
    with pytest.raises(ox.UnsupportedModelError):
        list(ox.metrics.randomised_models(ort_model))
