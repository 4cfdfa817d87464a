"""The ONNX Model Zoo's Caffe/Caffe2-era classifiers (AlexNet, CaffeNet, GoogLeNet, ResNet-50 Caffe2,
SqueezeNet 1.0, ShuffleNet v1, DenseNet-121, VGG-19 Caffe2) at the opsets the zoo ships them with,
rebuilt with random weights by tests/models/zoo_caffe2.py: they load, predict equals onnxruntime, and
gradient, LRP (EpsilonPlusFlat, EpsilonGammaBox) and integrated gradients run on them with the sums
the methods promise.

onnxruntime has no kernel for BatchNormalization before opset 7 (and guarantees nothing below opset
7), so the opset-3 and opset-6 files are compared with onnxruntime on the opset-7 file, which holds
the same weights. Opset 8 changed nothing these graphs use (the files differ from opset 7 only in the
opset import); the three largest models (AlexNet, CaffeNet, VGG-19: 240-550 MB of weights) are
not tested at it nor at opset 6 (3 has every construct 6 has, and the Reshape attribute besides).
VGG-19 is built once, with zero biases (what its Caffe initialisation does).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
import pytest

import onnxplain as ox
from tests.helpers.onnx_builders import ort_run
from tests.models.zoo_caffe2 import BUILDERS, Caffe2Graph, Weights

# The multi-pass tests run single-threaded: on a shared 2-core CI machine two OpenMP threads wait
# on each other in every parallel region (DenseNet's forward went from 0.34 s to 6 s under load).
THREADS = 1
BIG = {"bvlc_alexnet", "bvlc_caffenet", "vgg19_caffe2"}
INPUT_NAME = {"resnet50_caffe2": "gpu_0/data_0"}
OUTPUT = {  # the zoo file's output and its shape (DenseNet ends with its classifier convolution)
    "bvlc_alexnet": ("softmaxout_1", (1, 1000)),
    "bvlc_caffenet": ("prob_1", (1, 1000)),
    "bvlc_googlenet": ("prob_1", (1, 1000)),
    "resnet50_caffe2": ("gpu_0/softmax_1", (1, 1000)),
    "squeezenet1.0": ("softmaxout_1", (1, 1000, 1, 1)),
    "shufflenet_v1": ("softmax_1", (1, 1000)),
    "densenet121": ("fc6_1", (1, 1000, 1, 1)),
    "vgg19_caffe2": ("prob_1", (1, 1000)),
}
# What the importer must meet in each file (after Identity/Dropout removal and BN folding).
EXPECTED_OPS = {
    "bvlc_alexnet": {"Conv": 5, "LRN": 2, "MaxPool": 3, "Gemm": 3, "Reshape": 1},
    "bvlc_caffenet": {"Conv": 5, "LRN": 2, "MaxPool": 3, "Gemm": 3, "Reshape": 1},
    "bvlc_googlenet": {"Conv": 57, "LRN": 2, "MaxPool": 13, "Concat": 9, "AveragePool": 1, "Gemm": 1},
    "resnet50_caffe2": {"Conv": 53, "Sum": 16, "AveragePool": 1, "Gemm": 1},
    "squeezenet1.0": {"Conv": 26, "Concat": 8, "MaxPool": 3, "GlobalAveragePool": 1},
    "shufflenet_v1": {"Conv": 49, "Sum": 13, "Concat": 3, "Transpose": 16, "AveragePool": 3},
    # 121 BatchNormalization nodes: the 59 after a convolution fold into it, the 62 after a Concat
    # or a pooling cannot (they stay, as the affine map they are).
    "densenet121": {"Conv": 121, "BatchNormalization": 62, "Mul": 121, "Add": 121, "Concat": 58},
    "vgg19_caffe2": {"Conv": 16, "MaxPool": 5, "Gemm": 3},
}
LRN_MODELS = {"bvlc_alexnet", "bvlc_caffenet", "bvlc_googlenet"}


ZERO_BIAS_ONLY = {"vgg19_caffe2"}


def opsets(name: str) -> tuple[int, ...]:
    return (3, 7, 9) if name in BIG else (3, 6, 7, 8, 9)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


class Zoo:
    """One model's files, weights and onnxruntime references, built on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.builder = BUILDERS[name]
        zero = Weights(0, True)
        self.weights = {False: zero if name in ZERO_BIAS_ONLY else Weights(0, False), True: zero}
        self.refs: dict[int, np.ndarray] = {}
        self.shape: tuple[int, ...] = (3, 224, 224)
        self.x = np.random.default_rng(1).standard_normal((1, *self.shape)).astype(np.float32)
        self.input = INPUT_NAME.get(name, "data_0")
        self._models: dict[Weights, ox.Model] = {}

    def data(self, opset: int, zero_bias: bool = False) -> bytes:
        # Not cached: serializing again costs one copy of the weights, keeping five opsets of
        # VGG-19 would cost 2.7 GB.
        data, self.shape = self.builder(opset, weights=self.weights[zero_bias])
        return data

    def reference(self, opset: int) -> np.ndarray:
        if opset not in self.refs:
            self.refs[opset] = ort_run(self.data(opset), {self.input: self.x})[0]
        return self.refs[opset]

    def model(self, zero_bias: bool) -> ox.Model:
        """The default load (softmax stripped) of the opset-9 file, for the explanations."""
        key = self.weights[zero_bias]
        if key not in self._models:
            self._models[key] = ox.load(self.data(9, zero_bias), threads=THREADS)
        return self._models[key]


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def zoo(request: pytest.FixtureRequest) -> Iterator[Zoo]:
    """Module scope and parametrized: pytest runs every test of one model before building the next,
    and the weights (up to 2 x 550 MB for VGG-19) go when the model's tests are done."""
    z = Zoo(request.param)
    yield z
    z.weights.clear()
    z._models.clear()


# ------------------------------------------------------------------------------------------------
# Loading and the forward pass
# ------------------------------------------------------------------------------------------------
def test_loads_with_initializers_as_constants(zoo: Zoo) -> None:
    """IR 3: every initializer is also listed as a graph input. They are constants, not inputs."""
    data = zoo.data(9)
    if zoo.name not in BIG:  # parsing 240-550 MB again to see what the builder wrote is not worth it
        proto = onnx.load_from_string(data)
        assert proto.ir_version == 3 and len(proto.graph.input) == len(proto.graph.initializer) + 1
    m = ox.load(data, strip_softmax=False, threads=THREADS)
    assert [(i.name, i.shape) for i in m.inputs] == [(zoo.input, (1, *zoo.shape))]
    name, shape = OUTPUT[zoo.name]
    assert m.outputs[0].name == name
    assert tuple(m.outputs[0].shape) == shape
    counts = m.op_counts
    for op, n in EXPECTED_OPS[zoo.name].items():
        assert counts.get(op, 0) == n, (op, counts)
    assert "Dropout" not in counts and "Unsqueeze" not in counts  # removed / folded at load
    assert "BatchNormalization" not in counts or zoo.name == "densenet121"
    assert counts.get("Softmax", 0) == (0 if zoo.name == "densenet121" else 1)
    assert "Softmax" not in zoo.model(False).op_counts


def test_predict_matches_onnxruntime(zoo: Zoo) -> None:
    for opset in opsets(zoo.name):
        expected = zoo.reference(max(opset, 7))
        got = ox.load(zoo.data(opset), strip_softmax=False, threads=THREADS).predict(zoo.x)
        assert got.shape == expected.shape
        assert rel_err(got, expected) <= 1e-4, (zoo.name, opset)


def test_fixed_batch_runs_in_passes_of_one(zoo: Zoo) -> None:
    """The zoo files fix the batch at 1 (in the input and in their Reshape shapes): a batch of k
    samples runs as k passes, each equal to the sample alone; another shape is refused."""
    m = zoo.model(False)
    x2 = np.concatenate([zoo.x, -zoo.x])
    both = m.predict(x2)
    np.testing.assert_array_equal(both[:1], m.predict(zoo.x))
    np.testing.assert_array_equal(both[1:], m.predict(-zoo.x))
    with pytest.raises(ValueError, match=r"expects shape \(1, 3, 224, 224\).*dimension 2 should be 224"):
        m.predict(np.zeros((1, 3, 200, 224), np.float32))


# ------------------------------------------------------------------------------------------------
# Explanations (default load: the softmax is stripped, the methods explain the logits)
# ------------------------------------------------------------------------------------------------
def check_relevance(rel: np.ndarray, zoo: Zoo) -> None:
    assert rel.shape == zoo.x.shape
    assert np.all(np.isfinite(rel))
    assert np.count_nonzero(rel) > rel.size // 2


def test_gradient(zoo: Zoo) -> None:
    """x . grad f_t(x) is the derivative of f_t along the ray t x at t = 1, which two forward passes
    give by central differences. On the copy with zero biases the network is positively homogeneous
    but for LRN's k = 1 (ReLU, max and average pooling, linear maps, BN with zero shift: f_t(t x) =
    t f_t(x), no unit changes sign along the ray), so the difference quotient is exact up to float
    rounding and, without LRN, equals f_t(x) itself (Euler's theorem): a check of every op's VJP."""
    m = zoo.model(True)
    y = m.predict(zoo.x).reshape(-1)
    t = int(y.argmax())
    grad = ox.explainer(m, "gradient").explain(zoo.x, threads=THREADS)
    check_relevance(grad, zoo)
    along = float(np.sum(grad.astype(np.float64) * zoo.x))
    if zoo.name not in LRN_MODELS:
        assert abs(along - y[t]) <= 1e-4 * abs(y[t])
        return
    h = 0.05
    up, down = (float(m.predict(((1 + s * h) * zoo.x).astype(np.float32)).reshape(-1)[t]) for s in (1, -1))
    assert abs(along - (up - down) / (2 * h)) <= 1e-4 * abs(y[t]), (along, (up - down) / (2 * h))


# z+ sends nothing back through a unit whose window has no positive contribution. With zero biases
# that never happens behind a ReLU where the unit is active, but ShuffleNet's 3x3 depthwise
# convolutions have filters with no positive weight at all (p = 2^-9 per channel: 4 of its 2160 here),
# and their units lose their relevance; Zennit's ZPlus does the same. gamma (EpsilonGammaBox) falls
# back to the plain z rule there and keeps it.
ZPLUS_LOSS = {"shufflenet_v1": 0.1}


@pytest.mark.parametrize("method", ["lrp.epsilon_plus_flat", "lrp.epsilon_gamma_box"])
def test_lrp_conserves_relevance(zoo: Zoo, method: str) -> None:
    """Conservation (sum R = f_t(x)) is what LRP promises on a network without biases: flat, z^B,
    z+ and gamma redistribute everything they receive, the epsilon rule on the dense layers keeps
    z / (z + eps) of it (eps = 1e-6), sums and average pooling split in proportion to their terms
    (their stabilizer leaks ~1e-6), max pooling gives it to the winner, and LRN, Dropout, the
    unfolded BatchNormalization (DenseNet: its shift is zero here) and the routing ops pass it on.
    So the biases are zeroed (the same graph, tests/models/zoo_caffe2.py: zero_bias) and the
    delta return_delta reports must be at the stabilizers' scale."""
    m = zoo.model(True)
    fx = float(m.predict(zoo.x).reshape(-1).max())
    params = {"low": float(zoo.x.min()), "high": float(zoo.x.max())} if method == "lrp.epsilon_gamma_box" else {}
    rel, delta = ox.explainer(m, method, **params).explain(zoo.x, return_delta=True, threads=THREADS)
    check_relevance(rel, zoo)
    total = float(rel.sum(dtype=np.float64))
    assert abs(total - delta[0] - fx) <= 1e-5 * abs(fx)  # the delta is measured from f_t(x)
    tol = ZPLUS_LOSS.get(zoo.name, 1e-3) if method == "lrp.epsilon_plus_flat" else 1e-3
    assert abs(delta[0]) <= tol * abs(fx), (zoo.name, method, delta, fx)


IG_STEPS = 4


def test_integrated_gradients_completeness(zoo: Zoo) -> None:
    """The driver on a model that takes one sample per pass (the zoo's fixed batch): IG with
    IG_STEPS midpoint steps is (x - 0) times the mean of the gradients at the path's midpoints,
    which the gradient method gives one by one; its delta is sum R - (f_t(x) - f_t(0)) and,
    on the model with its biases (with zero biases the network is homogeneous and one step is
    exact), within 5% of |f_t(x)| + |f_t(0)| at IG_STEPS steps (seen: 0.5-3%)."""
    m = zoo.model(False)
    y0 = m.predict(np.zeros_like(zoo.x)).reshape(-1)
    y1 = m.predict(zoo.x).reshape(-1)
    t = int(y1.argmax())
    ex = ox.explainer(m, "integrated_gradients", steps=IG_STEPS, method="riemann_middle")
    rel, delta = ex.explain(zoo.x, target=t, return_delta=True, threads=THREADS)
    check_relevance(rel, zoo)
    grad = ox.explainer(m, "gradient")
    want = np.zeros(zoo.x.shape, np.float64)
    for k in range(IG_STEPS):
        mid = ((k + 0.5) / IG_STEPS * zoo.x).astype(np.float32)
        want += grad.explain(mid, target=t, threads=THREADS).astype(np.float64) / IG_STEPS
    want *= zoo.x
    np.testing.assert_allclose(rel, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    gap = float(y1[t] - y0[t])
    scale = abs(y1[t]) + abs(y0[t])
    assert abs(float(rel.sum(dtype=np.float64)) - gap - float(delta[0])) <= 1e-4 * scale
    assert abs(delta[0]) <= 0.05 * scale, (zoo.name, delta, gap)


# ------------------------------------------------------------------------------------------------
# The original opset-3 files (before the zoo regenerated them in April 2018) fed Gemm the 4-D output
# of the last pooling, which ONNX never allowed (onnx/onnx#405, #724); onnxruntime refuses them too.
# ------------------------------------------------------------------------------------------------
def test_legacy_4d_gemm_is_a_clear_model_format_error() -> None:
    g = Caffe2Graph(3, Weights(0))
    x = g.pool("MaxPool", "data_0", "pool5", 2, 2)
    y = g.softmax(g.fc(x, "fc6", 3 * 4 * 4, 10), "prob")
    data = g.model("alexnet_v0", "data_0", [1, 3, 8, 8], y, [1, 10])
    with pytest.raises(ox.ModelFormatError, match=r"\(Gemm\).*A must be 2-D, got shape \(1, 3, 4, 4\).*flatten A"):
        ox.load(data)


def test_legacy_attributes_are_read_by_opset() -> None:
    """What the opset-3/6 files rely on, on one small Caffe2-style graph against its opset-7 twin:
    BatchNormalization-1 (consumed_inputs, is_test, spatial), Dropout is_test, Gemm broadcast,
    Reshape's shape attribute (opset < 5), Mul/Add with broadcast=1, axis=1 (opset < 7)."""
    def build(opset: int, weights: Weights) -> bytes:
        g = Caffe2Graph(opset, weights)
        x = g.conv("data_0", "conv1", 3, 4, 3, pad=1, bias=False)
        x = g.batch_norm(x, "conv1_bn", 4, 1e-5, out="conv1")
        x = g.channel_op("Mul", x, lambda: np.asarray([1.5, -1.0, 0.5, 2.0], np.float32), "conv1/bn_w", "conv1")
        x = g.channel_op("Add", x, lambda: np.asarray([0.1, 0.2, -0.3, 0.0], np.float32), "conv1/bn_b", "conv1")
        x = g.dropout(g.relu(x, "conv1"), "conv1")
        x = g.reshape(x, [1, 4 * 5 * 5])
        y = g.softmax(g.fc(x, "fc", 100, 3), "prob")
        return g.model("legacy", "data_0", [1, 3, 5, 5], y, [1, 3])

    w = Weights(3)
    x = np.random.default_rng(4).standard_normal((1, 3, 5, 5)).astype(np.float32)
    expected = ort_run(build(7, w), {"data_0": x})[0]
    for opset in (1, 3, 5, 6):
        data = build(opset, w)
        nodes = onnx.load_from_string(data).graph.node
        attrs = {a.name for n in nodes for a in n.attribute}
        assert ("broadcast" in attrs) == (opset < 7) and ("consumed_inputs" in attrs) == (opset < 6)
        assert ("shape" in attrs) == (opset < 5) and ("is_test" in attrs) == (opset < 7)
        got = ox.load(data, strip_softmax=False).predict(x)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
