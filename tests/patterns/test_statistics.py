"""PatternNet statistics and patterns against the float64 numpy reference (tests/patterns/reference.py),
which takes each linear op's input and output from onnxruntime; merging, streaming, pickling.

The first tests check the reference itself (im2col against torch and onnxruntime, the interpreter's
forward and gradient), so that a failure further down points at onnxplain."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

import onnxplain as ox
from tests.patterns import reference as ref

torch = pytest.importorskip("torch")

N_FIT = 200  # rows (samples); the last batch of 64 is ragged


def _ops(name: str) -> list[ref.LinearOp]:
    return ref.linear_ops(ref.case(name).data)


def _close(got: np.ndarray, expected: np.ndarray, rtol: float, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    err = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    assert err <= rtol * scale + 1e-12, f"{what}: max error {err:.3e}, {err / (scale or 1):.2e} of scale {scale:.3g}"


# ------------------------------------------------------------------------------------ the reference itself


@pytest.mark.parametrize("name", ref.CASES)
def test_reference_linear_ops_are_onnxplains_linear_nodes(name: str) -> None:
    """The reference's fused / folded linear ops are the nodes onnxplain reports as linear, in order
    (MatMul keeps its name when fused with its Add; BatchNorm disappears into the conv / gemm)."""
    c = ref.case(name)
    model = ox.load(c.data)
    assert [n for n, _op, kind in model.nodes if kind == "linear"] == [op.name for op in _ops(name)]


@pytest.mark.parametrize("name", ref.CASES)
def test_reference_linear_forward_equals_onnxruntime(name: str) -> None:
    """im2col @ W^T + b (folded weights, fused bias) reproduces every linear op's output in onnxruntime."""
    c = ref.case(name)
    x = ref.data_for(c, 6, seed=1)
    ops = _ops(name)
    vals = ref.op_values(c.data, {c.input: x}, ops)
    for op in ops:
        _close(ref.linear_forward(op, vals[op.input]), vals[op.output].astype(np.float64), 1e-5, op.name)


@pytest.mark.parametrize(("stride", "padding", "dilation"), [(1, 0, 1), (2, 1, 1), (1, 2, 2), ((2, 1), (0, 2), (1, 3))])
def test_im2col_equals_torch_unfold(stride: Any, padding: Any, dilation: Any, rng: np.random.Generator) -> None:
    def pair(v: Any) -> tuple[int, int]:
        return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]

    x = rng.standard_normal((3, 4, 9, 8))
    w = np.zeros((5, 4, 3, 2))
    s, p, d = pair(stride), pair(padding), pair(dilation)
    op = ref.LinearOp("c", "conv", w, None, 0, "x", "y", ("c",), s, (p[0], p[1], p[0], p[1]), d, 1)
    cols = ref.im2col(op, x)[0]  # [N*L, D]
    unf = torch.nn.functional.unfold(torch.from_numpy(x), (3, 2), dilation=d, padding=p, stride=s).numpy()
    n, dd, length = unf.shape
    np.testing.assert_allclose(cols.reshape(n, length, dd).transpose(0, 2, 1), unf, rtol=0, atol=1e-12)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_im2col_conv_equals_torch_and_col2im_is_its_adjoint(nd: int, rng: np.random.Generator) -> None:
    """N-d grouped convolution with stride, asymmetric padding and dilation, against torch (which pads
    asymmetrically through F.pad); col2im is im2col's transpose."""
    ks = (3, 2, 2)[:nd]
    spatial = (11, 7, 6)[:nd]
    strides, dil = (2, 1, 2)[:nd], (1, 2, 1)[:nd]
    begin, end = (1, 0, 2)[:nd], (0, 1, 1)[:nd]
    w = rng.standard_normal((6, 2, *ks))
    x = rng.standard_normal((2, 4, *spatial))
    op = ref.LinearOp("c", "conv", w, None, 0, "x", "y", ("c",), strides, (*begin, *end), dil, 2)
    got = ref.linear_forward(op, x)
    torch_pad = [v for i in reversed(range(nd)) for v in (begin[i], end[i])]
    xt = torch.nn.functional.pad(torch.from_numpy(x), torch_pad)
    conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[nd - 1]
    want = conv(xt, torch.from_numpy(w), stride=strides, dilation=dil, groups=2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    cols = ref.im2col(op, x)
    c = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * ref.col2im(op, c, x.shape)), rtol=1e-10)


@pytest.mark.parametrize("name", ref.CASES)
def test_reference_interpreter_forward_and_gradient(name: str) -> None:
    """The reference interpreter's logits equal onnxruntime's, and its reverse sweep with the plain
    weights is the gradient (central differences in float64)."""
    c = ref.case(name)
    x = ref.data_for(c, 4, seed=2).astype(np.float64)
    net = ref.RefNet(c.data)
    logits = net.logits(x)
    ort = ref.ort_values(c.data, {c.input: x.astype(np.float32)}, [net.output])[net.output]
    _close(logits, ort.astype(np.float64), 1e-5, "logits")
    g = np.random.default_rng(3)
    cot = g.standard_normal(logits.shape)
    grad = net.backward(x, cot, net.gradient_weights())
    v = g.standard_normal(x.shape)
    h = 1e-6
    fd = (np.sum(net.logits(x + h * v) * cot) - np.sum(net.logits(x - h * v) * cot)) / (2 * h)
    assert abs(fd - np.sum(grad * v)) <= 1e-6 * max(1.0, abs(fd))


def test_reference_statistics_small_example() -> None:
    """The sums by hand on a 2-neuron dense layer (y without bias, mask from the output with bias)."""
    w = np.array([[1.0, 2.0], [-1.0, 0.5]])  # Gemm transB=1: [M, D]
    op = ref.LinearOp("g", "dense", w, np.array([0.5, -1.0]), 0, "x", "y", ("g",))
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    out = x @ w.T + op.bias  # [[1.5, -2], [2.5, -0.5], [-2.5, -0.5]]
    s = ref.statistics(op, x, out).sums
    np.testing.assert_array_equal(s["count_pos"], [2, 0])
    np.testing.assert_array_equal(s["sum_y"], [1 + 2 - 3, -1 + 0.5 + 0.5])
    np.testing.assert_array_equal(s["sum_y_pos"], [3, 0])
    np.testing.assert_array_equal(s["sum_yy_pos"], [5, 0])
    np.testing.assert_array_equal(s["sum_x"], [[0, 0]])
    np.testing.assert_array_equal(s["sum_x_pos"], [[1, 1], [0, 0]])
    np.testing.assert_array_equal(s["sum_xy"], [[1 + 3, 2 + 3], [-1 - 0.5, 0.5 - 0.5]])
    np.testing.assert_array_equal(s["sum_xy_pos"], [[1, 2], [0, 0]])


# ------------------------------------------------------------------------------------ onnxplain vs reference


_OX_CACHE: dict[tuple[str, str], ox.Explainer] = {}


def fitted(name: str, estimator: str = "relu") -> ox.Explainer:
    """onnxplain's explainer fitted on the reference's data (N_FIT rows, batches of 64)."""
    key = (name, estimator)
    if key not in _OX_CACHE:
        x, _st, _fl = ref.reference_fit(name, N_FIT)
        ex = ox.explainer(ox.load(ref.case(name).data), "pattern.net", estimator=estimator)
        _OX_CACHE[key] = ex.fit(x, batch_size=64)
    return _OX_CACHE[key]


def check_stats(got: Mapping[str, Any], want: ref.Stats, rtol: float, what: str) -> None:
    """Every sum within rtol of its array's largest magnitude, plus what the outputs within float32
    rounding of zero could move (the reference's slack)."""
    assert float(got["rows"]) == want.rows, f"{what}: rows {got['rows']} != {want.rows}"
    for key in ref.STAT_KEYS:
        g = np.asarray(got[key], dtype=np.float64)
        r = want.sums[key]
        assert g.shape == r.shape, f"{what} {key}: shape {g.shape} != {r.shape}"
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        tol = (0.0 if key == "count_pos" else rtol * scale + 1e-9) + want.slack.get(key, np.zeros_like(r))
        bad = np.abs(g - r) > tol
        if bad.any():
            i = np.unravel_index(int(np.argmax(np.abs(g - r) - tol)), r.shape)
            raise AssertionError(
                f"{what} {key}: {int(bad.sum())} of {r.size} entries off; worst at {i}: onnxplain {g[i]:.8g}, "
                f"reference {r[i]:.8g} (|diff| {abs(g[i] - r[i]):.3e}, array scale {scale:.3e})")


@pytest.mark.parametrize("name", ref.CASES)
def test_statistics_equal_reference(name: str) -> None:
    x, st, _fl = ref.reference_fit(name, N_FIT)
    ex = fitted(name)
    s = ex.statistics
    assert isinstance(s, ox.PatternStatistics)
    ops = _ops(name)
    assert list(s.nodes) == [op.name for op in ops]
    for op in ops:
        layer = s.layer(op.name)
        assert int(layer["weight_axis"]) == op.weight_axis, op.name
        assert tuple(layer["weight_shape"]) == op.weight.shape, op.name
        assert int(layer["groups"]) == op.group, op.name
        check_stats(layer, st[op.name], 1e-4, op.name)


@pytest.mark.parametrize("name", ["mlp", "convs", "keras_cnn"])
def test_fit_report_counts(name: str) -> None:
    _x, st, _fl = ref.reference_fit(name, N_FIT)
    report = fitted(name).fit_report
    for op in _ops(name):
        r = report[op.name]
        cnt = st[op.name].sums["count_pos"]
        slack = st[op.name].slack["count_pos"]
        assert int(r["neurons"]) == op.m and float(r["rows"]) == st[op.name].rows, op.name
        if not slack.any():
            assert int(r["never_fired"]) == int(np.sum(cnt == 0)), op.name
            assert int(r["never_inactive"]) == int(np.sum(cnt == st[op.name].rows)), op.name


def check_patterns(op: ref.LinearOp, got: np.ndarray, want: np.ndarray, alt: np.ndarray, what: str) -> None:
    """Patterns [weight shape] vs the reference [M, D]: within 1e-3 of the array's largest magnitude, plus
    per neuron float32 statistics amplified by the cancellation in w . cov (kappa) and the effect of the
    ambiguous signs (``alt``: the reference with those flipped)."""
    assert got.shape == op.weight.shape, f"{what}: shape {got.shape} != weight {op.weight.shape}"
    g2 = np.moveaxis(np.asarray(got, dtype=np.float64), op.weight_axis, 0).reshape(op.m, op.d)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    row = np.max(np.abs(want), axis=1, keepdims=True)
    tol = 1e-3 * scale + 1e-5 * ref.kappa(op, want)[:, None] * row + np.abs(want - alt) + 1e-12
    err = np.abs(g2 - want)
    if (err > tol).any():
        j, k = np.unravel_index(int(np.argmax(err - tol)), err.shape)
        raise AssertionError(f"{what}: neuron {j} entry {k}: onnxplain {g2[j, k]:.8g}, reference {want[j, k]:.8g} "
                             f"(array scale {scale:.3e}, kappa {ref.kappa(op, want)[j]:.1f})")


@pytest.mark.parametrize("estimator", ["relu", "linear"])
@pytest.mark.parametrize("name", ref.CASES)
def test_patterns_equal_reference(name: str, estimator: str) -> None:
    _x, st, fl = ref.reference_fit(name, N_FIT)
    ex = fitted(name, estimator)
    pats = ex.patterns
    stats = ex.statistics
    assert set(pats) == {op.name for op in _ops(name)}
    for op in _ops(name):
        want = ref.patterns(op, st[op.name], estimator)
        alt = ref.patterns(op, fl[op.name], estimator)
        # the formulas applied to onnxplain's own sums: only the final rounding may differ
        layer = stats.layer(op.name)
        own = ref.patterns(op, ref.Stats(float(layer["rows"]), {k: np.asarray(layer[k], np.float64)
                                                                  for k in ref.STAT_KEYS}), estimator)
        for key, w, a, o in zip(("a_pos", "a_neg"), want, alt, own):
            got = pats[op.name][key]
            if w is None:
                assert got is None, f"{op.name} {key}: expected None for estimator {estimator}"
                continue
            assert got is not None and o is not None and a is not None
            g2 = np.moveaxis(np.asarray(got, dtype=np.float64), op.weight_axis, 0).reshape(op.m, op.d)
            row = np.max(np.abs(o), axis=1, keepdims=True)
            assert np.all(np.abs(g2 - o) <= 1e-5 * row + 1e-12), (
                f"{op.name} {key}: patterns differ from the formula on onnxplain's own statistics by "
                f"{np.max(np.abs(g2 - o)):.3e}")
            check_patterns(op, got, w, a, f"{op.name} {key}")


@pytest.mark.parametrize("name", ["mlp", "convs", "cnn_bn", "resnet", "keras_cnn", "keras_resnet"])
def test_relu_patterns_of_one_sided_neurons_are_zero(name: str) -> None:
    """A neuron that never fired has a_+ = 0 and one that was never inactive a_- = 0 (the spec: count 0 ->
    divide by 1, so a = 0; the sums over no rows are 0), not the quotient of two rounding residues."""
    _x, st, _fl = ref.reference_fit(name, N_FIT)
    pats = fitted(name, "relu").patterns
    checked = 0
    for op in _ops(name):
        s = st[op.name]
        sure = s.slack["count_pos"] == 0
        for key, one_sided, how in (("a_pos", s.sums["count_pos"] == 0, "never fired"),
                                    ("a_neg", s.sums["count_pos"] == s.rows, "never inactive")):
            a2 = np.moveaxis(np.asarray(pats[op.name][key], np.float64), op.weight_axis, 0).reshape(op.m, op.d)
            for j in np.flatnonzero(one_sided & sure):
                checked += 1
                assert np.all(a2[j] == 0), (
                    f"{op.name} {key} neuron {j} ({how}): max |a| {np.max(np.abs(a2[j])):.4g}, expected 0")
    assert checked > 0  # the fit data leaves some neurons one-sided in these models


@pytest.mark.parametrize("name", ["mlp", "convs", "conv_onnx", "keras_resnet"])
def test_filter_patterns_need_no_fit(name: str) -> None:
    ex = ox.explainer(ox.load(ref.case(name).data), "pattern.net", estimator="filter")
    pats = ex.patterns
    for op in _ops(name):
        want, _ = ref.patterns(op, ref.Stats(0.0, {}), "filter")
        _close(np.asarray(pats[op.name]["a_pos"], np.float64), op.to_weight_shape(want), 1e-6, op.name)
        assert pats[op.name]["a_neg"] is None


# ------------------------------------------------------------------------------------ merging and streaming


def _stats_equal(a: ox.PatternStatistics, b: ox.PatternStatistics, rtol: float) -> None:
    assert list(a.nodes) == list(b.nodes)
    for name in a.nodes:
        la, lb = a.layer(name), b.layer(name)
        assert float(la["rows"]) == float(lb["rows"]), name
        for key in ref.STAT_KEYS:
            _close(np.asarray(la[key], np.float64), np.asarray(lb[key], np.float64), rtol, f"{name} {key}")


def _fit(name: str, x: np.ndarray, estimator: str = "relu", **kw: Any) -> ox.Explainer:
    return ox.explainer(ox.load(ref.case(name).data), "pattern.net", estimator=estimator).fit(x, **kw)


@pytest.mark.parametrize("name", ["mlp", "convs", "keras_resnet"])
def test_merged_halves_equal_whole_fit(name: str) -> None:
    c = ref.case(name)
    x = ref.data_for(c, 256, seed=5)
    whole = _fit(name, x, batch_size=64)
    e1, e2 = _fit(name, x[:128], batch_size=64), _fit(name, x[128:], batch_size=64)
    merged = e1.statistics.merge(e2.statistics)
    _stats_equal(merged, whole.statistics, 1e-10)
    _stats_equal(e1.statistics + e2.statistics, whole.statistics, 1e-10)
    # merge returns a new object: the halves are unchanged
    assert float(e1.statistics.layer(merged.nodes[0])["rows"]) * 2 == float(merged.layer(merged.nodes[0])["rows"])
    # an explainer given the merged statistics explains as the whole fit does
    e3 = ox.explainer(ox.load(c.data), "pattern.net", estimator="relu")
    e3.statistics = merged
    xe = ref.data_for(c, 4, seed=6)
    np.testing.assert_allclose(e3.explain(xe, target=0), whole.explain(xe, target=0), rtol=1e-5, atol=1e-6 * float(
        np.max(np.abs(whole.explain(xe, target=0)))))


@pytest.mark.parametrize("name", ["mlp", "convs", "keras_cnn"])
def test_partial_fit_and_iterables_equal_fit(name: str) -> None:
    c = ref.case(name)
    x = ref.data_for(c, 160, seed=7)
    whole = _fit(name, x, batch_size=64)
    ex = ox.explainer(ox.load(c.data), "pattern.net", estimator="relu")
    assert ex.statistics is None
    for i in range(0, len(x), 64):
        assert ex.partial_fit(x[i:i + 64]) is ex
    _stats_equal(ex.statistics, whole.statistics, 1e-10)

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, len(x), 64):
            yield x[i:i + 64], np.zeros(len(x[i:i + 64]))  # (x, labels) as a data loader yields them

    _stats_equal(_fit(name, batches()).statistics, whole.statistics, 1e-10)
    _stats_equal(_fit(name, iter([x[:100], x[100:]])).statistics, whole.statistics, 1e-6)
    _stats_equal(_fit(name, x, batch_size=7).statistics, whole.statistics, 1e-6)


def test_merge_refuses_statistics_of_another_model() -> None:
    a = _fit("mlp", ref.data_for(ref.case("mlp"), 32, seed=8)).statistics
    b = _fit("keras_mlp", ref.data_for(ref.case("keras_mlp"), 32, seed=8)).statistics
    with pytest.raises(ValueError):
        a.merge(b)
    with pytest.raises(ValueError):
        _ = a + b


def test_refit_restarts_and_partial_fit_accumulates() -> None:
    c = ref.case("mlp")
    x = ref.data_for(c, 64, seed=9)
    ex = _fit("mlp", x)
    rows = float(ex.statistics.layer(ex.statistics.nodes[0])["rows"])
    assert rows == 64.0
    ex.partial_fit(x[:10])
    assert float(ex.statistics.layer(ex.statistics.nodes[0])["rows"]) == 74.0


@pytest.mark.parametrize("name", ["mlp", "conv_onnx"])
def test_statistics_pickle_and_bytes_round_trip(name: str) -> None:
    s = fitted(name).statistics
    for back in (pickle.loads(pickle.dumps(s)), ox.PatternStatistics.from_bytes(s.to_bytes())):
        assert isinstance(back, ox.PatternStatistics)
        assert list(back.nodes) == list(s.nodes)
        for node in s.nodes:
            la, lb = s.layer(node), back.layer(node)
            assert set(la) == set(lb)
            for key, value in la.items():
                if isinstance(value, np.ndarray):
                    assert np.array_equal(value, lb[key]), (node, key)
                else:
                    assert value == lb[key], (node, key)
        _stats_equal(back.merge(s), s.merge(s), 0.0)


def test_statistics_from_garbage_bytes_raise() -> None:
    b = fitted("mlp").statistics.to_bytes()
    for bad in (b[: len(b) // 2], b"\x00" * 64, np.random.default_rng(0).bytes(len(b))):
        with pytest.raises((ox.ModelFormatError, ValueError)):
            ox.PatternStatistics.from_bytes(bad)


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("method", ["pattern.net", "pattern.attribution"])
@pytest.mark.parametrize("estimator", ["relu", "linear"])
def test_explain_before_fit_raises(method: str, estimator: str) -> None:
    c = ref.case("convs")
    ex = ox.explainer(ox.load(c.data), method, estimator=estimator)
    with pytest.raises(ValueError):
        ex.explain(ref.data_for(c, 2, seed=0))


def test_data_of_the_wrong_shape_raises() -> None:
    c = ref.case("convs")
    ex = ox.explainer(ox.load(c.data), "pattern.attribution")
    g = np.random.default_rng(0)
    for bad in (g.standard_normal((8, 4, 12, 12)), g.standard_normal((8, 3, 12)), g.standard_normal((3, 12, 12))):
        with pytest.raises(ValueError):
            ex.fit(bad.astype(np.float32))
        with pytest.raises(ValueError):
            ex.partial_fit(bad.astype(np.float32))
    assert ex.statistics is None


def test_pattern_net_refuses_the_identity_estimator() -> None:
    c = ref.case("mlp")
    with pytest.raises(ValueError):
        ox.explainer(ox.load(c.data), "pattern.net", estimator="identity").fit(ref.data_for(c, 8, seed=0))
    with pytest.raises(ValueError):
        ox.explainer(ox.load(c.data), "pattern.net", estimator="no_such_estimator")
