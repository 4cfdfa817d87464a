"""The ONNX Model Zoo's newer image classifiers (MobileNet v2 at opsets 7 and 12, EfficientNet-Lite4,
ResNet-50 v2, ShuffleNet v2), rebuilt with random weights at the zoo's opsets (tests/models/zoo_modern.py):
they load, predict as onnxruntime does, and the gradient, two LRP composites and integrated
gradients run on them, with the sums each method promises."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import pytest

import onnxplain as ox
from tests.helpers.onnx_builders import ort_run
from tests.models.zoo_modern import BUILDERS, with_symbolic_batch

NAMES = sorted(BUILDERS)
FIXED_BATCH = [n for n in NAMES if n != "shufflenet-v2-10"]  # shufflenet's input has a symbolic batch

# What the load-time rewrites must leave (fold_batch_norm folds every BN that follows a conv;
# MatMul + Add become one linear op; the default load strips the final Softmax).
EXPECTED_OPS = {
    "mobilenetv2-7": {"Conv": 54, "Clip": 36, "Add": 10, "GlobalAveragePool": 1, "Flatten": 1},
    "mobilenetv2-12": {"Conv": 54, "Clip": 36, "Add": 10, "GlobalAveragePool": 1, "Flatten": 1},
    "efficientnet-lite4-11": {"Transpose": 1, "Conv": 91, "Clip": 61, "Add": 23, "ReduceMean": 1, "Squeeze": 1,
                              "MatMul": 1},
    # BN on the input, one per block (after an Add) and the final one: 1 + 16 + 1 cannot be folded
    "resnet50-v2-7": {"BatchNormalization": 18, "Conv": 53, "Relu": 50, "Add": 16, "MaxPool": 1,
                      "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1},
    "shufflenet-v2-10": {"Conv": 56, "Relu": 37, "Split": 13, "Concat": 16 + 32, "Reshape": 32, "Transpose": 16,
                         "Shape": 64, "MaxPool": 1, "ReduceMean": 1, "Gemm": 1},
}
BN_NODES = {"mobilenetv2-7": 53, "mobilenetv2-12": 53, "resnet50-v2-7": 51}
BOX = {"resnet50-v2-7": 2.0}  # z^B's bounds at the first conv: its input is the input BN's output, within +-1.7


@functools.cache
def _zoo(name: str) -> tuple[bytes, tuple[int, ...]]:
    return BUILDERS[name]()


@functools.cache
def _model(name: str) -> ox.Model:
    return ox.load(_zoo(name)[0])


@pytest.fixture(scope="module", autouse=True)
def _free_models() -> Iterator[None]:
    """The models (up to 100 MB each, and their loaded copies) live for this module only."""
    yield
    _model.cache_clear()
    _zoo.cache_clear()


def _input(name: str, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, _zoo(name)[1]).astype(np.float32)


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def _check_relevance(rel: np.ndarray, x: np.ndarray) -> None:
    assert rel.shape == x.shape and rel.dtype == np.float32
    assert np.isfinite(rel).all() and np.abs(rel).max() > 0


@pytest.mark.parametrize("name", NAMES)
def test_loads_and_predicts_as_onnxruntime(name: str) -> None:
    data, shape = _zoo(name)
    m = ox.load(data, strip_softmax=False)
    expected_ops = dict(EXPECTED_OPS[name], **({"Softmax": 1} if name.startswith("efficientnet") else {}))
    assert {k: m.op_counts.get(k, 0) for k in expected_ops} == expected_ops
    assert m.opset == int(name.rsplit("-", 1)[1])
    assert "Softmax" not in _model(name).op_counts  # the default load explains the logits
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    expected = ort_run(data, {m.inputs[0].name: x})[0]
    assert expected.shape == (1, 1000)
    assert _rel_err(m.predict(x), expected) <= 1e-4
    if name in BN_NODES:
        # every BN kept as a node (at opset 7 with its `spatial` attribute)
        kept = ox.load(data, strip_softmax=False, fold_batch_norm=False)
        assert kept.op_counts["BatchNormalization"] == BN_NODES[name]
        assert _rel_err(kept.predict(x), expected) <= 1e-4
    if name not in FIXED_BATCH:
        x3 = np.random.default_rng(2).standard_normal((3, *shape[1:])).astype(np.float32)
        assert _rel_err(m.predict(x3), ort_run(data, {m.inputs[0].name: x3})[0]) <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_gradient(name: str) -> None:
    m, x = _model(name), _input(name)
    g = ox.explainer(m, "gradient").explain(x)
    _check_relevance(g, x)
    # The derivative along the gradient itself, |g|, against a central difference of the forward
    # pass (which equals onnxruntime's): a step of 0.01 in input units moves each pixel by ~3e-5,
    # too little to cross many ReLU / ReLU6 kinks (seen: 1e-4 to 2e-3 relative).
    t = int(m.predict(x)[0].argmax())
    norm = float(np.linalg.norm(g.astype(np.float64)))
    h = 0.01
    fd = (float(m.predict(x + h * g / norm)[0, t]) - float(m.predict(x - h * g / norm)[0, t])) / (2 * h)
    assert abs(fd - norm) <= 1e-2 * abs(fd)


@pytest.mark.parametrize("method", ["lrp.epsilon_plus_flat", "lrp.epsilon_gamma_box"])
@pytest.mark.parametrize("name", NAMES)
def test_lrp_composites(name: str, method: str) -> None:
    """On the model as built (biases, folded BN shifts) the composites promise no sum: relevance
    the biases take is gone. What they promise is to start from f_t(x), the model's own logit,
    and the delta returned must say how far the sum is from it."""
    m, x = _model(name), _input(name)
    params = {"low": -BOX.get(name, 1.0), "high": BOX.get(name, 1.0)} if method.endswith("box") else {}
    rel, delta = ox.explainer(m, method, **params).explain(x, return_delta=True)
    _check_relevance(rel, x)
    y = m.predict(x)[0]
    start = rel.sum(dtype=np.float64) - delta[0]
    np.testing.assert_allclose(start, y.max(), rtol=1e-5, atol=1e-6 * np.abs(y).max())


def _bias_free(name: str) -> ox.Model:
    """The same model with every linear op's bias (after BN folding: the BN shifts too) set to 0.
    The BNs that stay (ResNet-50 v2's) keep their shifts: LRP passes relevance through them
    unchanged (R_in = R_out, as Zennit's composites do), so they take none."""
    m = _model(name)
    return m.with_weights({n: {"bias": np.zeros_like(d["bias"])} for n, d in m.layers() if "bias" in d})


@pytest.mark.parametrize("method", ["lrp.epsilon_plus_flat", "lrp.epsilon_gamma_box"])
@pytest.mark.parametrize("name", NAMES)
def test_lrp_composites_conserve_without_biases(name: str, method: str) -> None:
    """Without biases every rule of both composites conserves relevance (flat and z^B at the
    first conv, z+ or gamma at the other convs, epsilon at the dense layer, Norm at the residual
    Adds and the average pools, routing ops and Clip/ReLU passing it on), up to the stabilizers
    and to units where z+ has nothing to divide by: a unit that receives relevance but has no
    positive contribution x_i w_ij (Zennit's ZPlus drops it too). On MobileNet v2 and
    EfficientNet the 1x1 projections are not rectified, which costs up to 5e-4 of f_t; in
    ShuffleNet v2 the depthwise convs' outputs are not rectified either and have only 9 weights
    per unit, so z+ drops 17% there: see the next test."""
    m, x = _bias_free(name), _input(name)
    params = {"low": -BOX.get(name, 1.0), "high": BOX.get(name, 1.0)} if method.endswith("box") else {}
    rel, delta = ox.explainer(m, method, **params).explain(x, return_delta=True)
    _check_relevance(rel, x)
    f = float(m.predict(x)[0].max())
    if name == "shufflenet-v2-10" and method == "lrp.epsilon_plus_flat":
        assert -0.3 * f < delta[0] < -0.05 * f
        return
    tol = 2e-3 if method == "lrp.epsilon_plus_flat" else 1e-3
    assert abs(rel.sum(dtype=np.float64) - f) <= tol * abs(f)
    assert abs(delta[0]) <= tol * abs(f)


def test_shufflenet_epsilon_plus_flat_loses_relevance_only_at_the_depthwise_convs() -> None:
    """ShuffleNet v2's depthwise convs feed a 1x1 conv without a nonlinearity between, so a
    depthwise unit below zero still gets relevance, and z+ (positive contributions only) has
    nothing to divide it by when its few nonzero inputs all meet negative weights. The same
    composite spelled out rule by rule gives the same relevance; with epsilon at the depthwise
    convs instead, the sum is f_t(x) again."""
    m, x = _bias_free("shufflenet-v2-10"), _input("shufflenet-v2-10")
    t = int(m.predict(x)[0].argmax())
    depthwise = [n for n, d in m.layers() if d["weight"].ndim == 4 and d["weight"].shape[1] == 1]
    assert len(depthwise) == 16 + 3
    rules = {"first": "flat", "conv": "zplus", "dense": "epsilon"}
    named = ox.explainer(m, "lrp", rules=rules).explain(x, target=t)
    composite = ox.explainer(m, "lrp.epsilon_plus_flat").explain(x, target=t)
    np.testing.assert_allclose(named, composite, rtol=1e-5, atol=1e-6 * np.abs(composite).max())
    rel, delta = ox.explainer(m, "lrp", rules={**rules, **{n: "epsilon" for n in depthwise}}).explain(
        x, target=t, return_delta=True)
    f = float(m.predict(x)[0, t])
    assert abs(delta[0]) <= 1e-3 * abs(f)


@pytest.mark.parametrize("name", NAMES)
def test_integrated_gradients_complete(name: str) -> None:
    """Completeness: sum IG = f_t(x) - f_t(0) up to the quadrature's error (8 Gauss-Legendre
    points). Its natural scale is the attributions' total mass sum |IG|, over which positive and
    negative parts cancel: f_t(x) - f_t(0) alone can be small next to it (0.03 against 3.5 on
    MobileNet v2 here, the logit being mostly bias). Seen: |delta| from 7e-5 (MobileNet v2) to
    1.8e-3 (ShuffleNet v2) of sum |IG|. The returned delta must also be that sum minus the
    difference of the model's own outputs. The multi-pass driver runs several path points in one
    batch, so the models declaring batch 1 get a symbolic batch first (see the next test)."""
    data = _zoo(name)[0]
    m, x = ox.load(with_symbolic_batch(data) if name in FIXED_BATCH else data), _input(name)
    ig, delta = ox.explainer(m, "integrated_gradients", steps=8, method="gausslegendre").explain(
        x, return_delta=True)
    _check_relevance(ig, x)
    y, y0 = m.predict(x)[0], m.predict(np.zeros_like(x))[0]
    t = int(y.argmax())
    diff = float(y[t]) - float(y0[t])
    total = ig.sum(dtype=np.float64)
    mass = np.abs(ig).sum(dtype=np.float64)
    np.testing.assert_allclose(total - diff, delta[0], rtol=0, atol=1e-5 * mass)
    assert abs(delta[0]) <= 1e-2 * mass


def test_a_model_with_batch_one_runs_every_driver_as_its_free_batch_twin() -> None:
    """The zoo's files fix the batch at 1. The multi-pass drivers batch copies of a sample
    (integrated gradients and SmoothGrad up to 8 per pass, occlusion 16 and more, LIME and the
    metrics 64-256 through predict): on such a model the runtime passes them one fixed batch at a
    time. The oracle is the same graph with a free batch, where the copies go in batches."""
    name = "mobilenetv2-7"
    fixed = _model(name)
    free = ox.load(with_symbolic_batch(_zoo(name)[0]))
    x = _input(name)
    xs = np.concatenate([x, _input(name, seed=1), _input(name, seed=2)])
    np.testing.assert_allclose(fixed.predict(xs), free.predict(xs), rtol=1e-5, atol=1e-6)
    # Tolerances relative to the largest relevance. Integrated gradients: a path point where a
    # ReLU6 sits at its kink may gate differently after the ~1e-7 differences of batch-8 and batch-1
    # convolutions (the plain gradient agrees to 7e-7, the 8-point sum to ~1.5e-3); SmoothGrad alike
    # (~1e-4), on one sample (its noise is drawn sample by sample within each pass, so a batch of
    # two draws in another order). Occlusion: the free twin runs the local forward, the fixed model whole passes.
    for method, params, n, tol in [("integrated_gradients", {"steps": 8, "method": "gausslegendre"}, 2, 5e-3),
                                   ("smoothgrad", {"samples": 4, "seed": 3}, 1, 5e-4),
                                   ("occlusion", {"window": 56, "stride": 56}, 2, 1e-4),
                                   ("lrp.epsilon_plus_flat", {}, 2, 1e-5)]:
        target = np.array([3, 7][:n])
        ours = ox.explainer(fixed, method, **params).explain(xs[:n], target=target)
        twin = ox.explainer(free, method, **params).explain(xs[:n], target=target)
        _check_relevance(ours, xs[:n])
        err = float(np.abs(ours - twin).max() / np.abs(twin).max())
        assert err <= tol, (method, err)
    with pytest.raises(ValueError, match="expects shape"):
        fixed.predict(x[:, :, :100])  # the fixed batch frees no other axis
