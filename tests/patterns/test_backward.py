"""PatternNet / PatternAttribution explanations against the float64 numpy reference backward
(tests/patterns/reference.py: its own statistics from onnxruntime, its own patterns, its own reverse
sweep), and saving / loading / pickling fitted explainers."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxplain as ox
from tests.patterns import reference as ref

pytest.importorskip("torch")

N_FIT = 200
N_EXPLAIN = 6
BACKWARD_CASES = ("mlp", "convs", "resnet", "cnn_bn", "conv1d", "conv_onnx", "dense_onnx", "keras_mlp", "keras_cnn",
                  "keras_resnet")


def _targets(logits: np.ndarray) -> list[int]:
    """The argmax for the first two samples, then every class in turn (so negative f_t occur too)."""
    k = logits.shape[1]
    return [int(np.argmax(logits[i])) if i < 2 else i % k for i in range(len(logits))]


def reference_explanation(name: str, method: str, estimator: str, x: np.ndarray,
                          target: list[int] | None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(R, R with the patterns from the flipped-ambiguous statistics, targets) from the reference."""
    c = ref.case(name)
    _data, st, fl = ref.reference_fit(name, N_FIT)
    net = ref.RefNet(c.data)
    x64 = x.astype(np.float64)
    values = net.forward(x64)
    logits = values[net.output]
    tgt = [int(t) for t in np.argmax(logits, axis=1)] if target is None else target
    start = ref.start_value(logits, tgt)
    out = []
    for stats in (st, fl):
        pats = {op.name: ref.patterns(op, stats[op.name], estimator) for op in net.ops}
        weights = ref.pattern_weights(net.ops, pats, attribution=method == "pattern.attribution")
        out.append(net.backward(x64, start, weights, values))
    return out[0], out[1], tgt


def check_explanation(got: np.ndarray, want: np.ndarray, alt: np.ndarray, what: str) -> None:
    """Per sample: cosine >= 0.999 and every entry within 2e-3 of the sample's largest |R| (plus what the
    ambiguous signs of the fit could change: |want - alt|)."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == np.float32
    for i in range(len(want)):
        g, w = got[i].astype(np.float64).ravel(), want[i].ravel()
        scale = float(np.max(np.abs(w)))
        if scale == 0.0:
            assert np.max(np.abs(g)) <= 1e-6, f"{what} sample {i}: reference is 0, onnxplain is not"
            continue
        cos = float(g @ w / (np.linalg.norm(g) * np.linalg.norm(w) + 1e-300))
        assert cos >= 0.999, f"{what} sample {i}: cosine {cos:.6f}"
        err = np.abs(g - w)
        tol = 2e-3 * scale + np.abs(w - alt[i].ravel())
        assert np.all(err <= tol), (
            f"{what} sample {i}: max error {np.max(err):.3e} ({np.max(err) / scale:.2e} of the scale {scale:.3g})")


_FITTED: dict[tuple[str, str, str], ox.Explainer] = {}


def fitted(name: str, method: str, estimator: str) -> ox.Explainer:
    key = (name, method, estimator)
    if key not in _FITTED:
        x, _st, _fl = ref.reference_fit(name, N_FIT)
        ex = ox.explainer(ox.load(ref.case(name).data), method, estimator=estimator)
        _FITTED[key] = ex if estimator == "filter" else ex.fit(x, batch_size=64)
    return _FITTED[key]


@pytest.mark.parametrize("estimator", ["relu", "linear", "filter"])
@pytest.mark.parametrize("method", ["pattern.net", "pattern.attribution"])
@pytest.mark.parametrize("name", BACKWARD_CASES)
def test_explanation_equals_reference_backward(name: str, method: str, estimator: str) -> None:
    c = ref.case(name)
    x = ref.data_for(c, N_EXPLAIN, seed=11)
    logits = ref.RefNet(c.data).logits(x.astype(np.float64))
    target = _targets(logits)
    want, alt, _ = reference_explanation(name, method, estimator, x, target)
    got = fitted(name, method, estimator).explain(x, target=target)
    check_explanation(got, want, alt, f"{name} {method} {estimator}")


@pytest.mark.parametrize("name", ["convs", "keras_resnet"])
def test_default_target_is_the_argmax(name: str) -> None:
    c = ref.case(name)
    x = ref.data_for(c, N_EXPLAIN, seed=12)
    want, alt, tgt = reference_explanation(name, "pattern.attribution", "relu", x, None)
    ex = fitted(name, "pattern.attribution", "relu")
    got = ex.explain(x)
    check_explanation(got, want, alt, f"{name} default target")
    np.testing.assert_array_equal(got, ex.explain(x, target=tgt))


def test_relu_estimator_uses_a_neg_where_the_output_is_not_positive() -> None:
    """On the MLP the middle layer feeds a Tanh, so its inactive outputs carry relevance: the relu
    estimator's explanation differs from one that would use a_+ everywhere (reference with a_- := a_+)."""
    name = "mlp"
    c = ref.case(name)
    x = ref.data_for(c, N_EXPLAIN, seed=13)
    _data, st, _fl = ref.reference_fit(name, N_FIT)
    net = ref.RefNet(c.data)
    values = net.forward(x.astype(np.float64))
    start = ref.start_value(values[net.output], [0] * N_EXPLAIN)
    pats = {op.name: ref.patterns(op, st[op.name], "relu") for op in net.ops}
    only_pos = {k: (p, p) for k, (p, _n) in pats.items()}
    r_only_pos = net.backward(x, start, ref.pattern_weights(net.ops, only_pos, False), values)
    got = fitted(name, "pattern.net", "relu").explain(x, target=0).astype(np.float64)
    want = net.backward(x, start, ref.pattern_weights(net.ops, pats, False), values)
    scale = np.max(np.abs(want))
    assert np.max(np.abs(r_only_pos - want)) > 0.05 * scale  # the test can tell the two apart
    assert np.max(np.abs(got - want)) <= 2e-3 * scale


def test_samples_that_turn_off_a_neuron_never_inactive_in_the_fit() -> None:
    """Explaining inputs on which a neuron that was active on every fitted row is inactive: the relu
    estimator then uses that neuron's a_- (0 by the spec: no inactive rows), through the Tanh after it."""
    name = "mlp"
    c = ref.case(name)
    _data, st, _fl = ref.reference_fit(name, N_FIT)
    net = ref.RefNet(c.data)
    candidates = ref.data_for(c, 2000, seed=77)
    values = net.forward(candidates.astype(np.float64))
    off = np.zeros(len(candidates), dtype=bool)
    for op in net.ops[:-1]:
        never_inactive = st[op.name].sums["count_pos"] == st[op.name].rows
        off |= np.any(values[op.output][:, never_inactive] <= 0, axis=1)
    assert off.sum() >= 3  # the data has such samples
    x = candidates[np.flatnonzero(off)[:4]]
    target = [int(t) for t in np.argmax(values[net.output][np.flatnonzero(off)[:4]], axis=1)]
    want, alt, _ = reference_explanation(name, "pattern.net", "relu", x, target)
    check_explanation(fitted(name, "pattern.net", "relu").explain(x, target=target), want, alt, "mlp")


# ------------------------------------------------------------------------------------ save / load / pickle


def _changed_weights(data: bytes) -> bytes:
    model = onnx.load_from_string(data)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim >= 2:
            init.CopyFrom(numpy_helper.from_array((arr * 1.5).astype(np.float32), init.name))
            break
    return model.SerializeToString()


@pytest.mark.parametrize(("name", "method", "estimator"), [("convs", "pattern.attribution", "relu"),
                                                           ("keras_cnn", "pattern.net", "linear"),
                                                           ("resnet", "pattern.net", "filter")])
def test_save_and_load_explain_bit_identically(name: str, method: str, estimator: str, tmp_path: Path) -> None:
    c = ref.case(name)
    ex = fitted(name, method, estimator)
    x = ref.data_for(c, 4, seed=14)
    path = tmp_path / "m.oxp"
    ex.save(path)
    for loaded in (ox.load_explainer(path), ox.load_explainer(str(path), model=ox.load(c.data))):
        assert np.array_equal(loaded.explain(x), ex.explain(x))
        assert np.array_equal(loaded.explain(x, target=1), ex.explain(x, target=1))
    with pytest.raises(ValueError):
        ox.load_explainer(path, model=ox.load(_changed_weights(c.data)))


def test_loaded_statistics_equal_saved(tmp_path: Path) -> None:
    ex = fitted("mlp", "pattern.net", "relu")
    ex.save(tmp_path / "m.oxp")
    back = ox.load_explainer(tmp_path / "m.oxp").statistics
    assert back is not None and list(back.nodes) == list(ex.statistics.nodes)
    for node in back.nodes:
        for key in ref.STAT_KEYS:
            assert np.array_equal(back.layer(node)[key], ex.statistics.layer(node)[key]), (node, key)


def test_corrupt_explainer_files_raise(tmp_path: Path) -> None:
    ex = fitted("convs", "pattern.attribution", "relu")
    good = tmp_path / "good.oxp"
    ex.save(good)
    data = good.read_bytes()
    g = np.random.default_rng(15)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    for i, bad in enumerate((data[: len(data) // 2], data[:16], b"", g.bytes(len(data)), g.bytes(7))):
        path = tmp_path / f"bad{i}.oxp"
        path.write_bytes(bad)
        with pytest.raises((ox.ModelFormatError, ValueError)):
            ox.load_explainer(path)
    # a flipped byte: a typed error, or (where the byte is inside a number) a file that loads; never a crash
    path = tmp_path / "flipped.oxp"
    path.write_bytes(bytes(flipped))
    try:
        ox.load_explainer(path)
    except (ox.ModelFormatError, ValueError):
        pass
    missing = tmp_path / "missing.oxp"
    with pytest.raises((FileNotFoundError, OSError, ValueError)):
        ox.load_explainer(missing)


def test_pickled_explainer_and_model_explain_identically() -> None:
    c = ref.case("keras_mlp")
    ex = fitted("keras_mlp", "pattern.attribution", "relu")
    x = ref.data_for(c, 4, seed=16)
    back = pickle.loads(pickle.dumps(ex))
    assert np.array_equal(back.explain(x), ex.explain(x))
    model = pickle.loads(pickle.dumps(ox.load(c.data)))
    np.testing.assert_array_equal(model.predict(x), ox.load(c.data).predict(x))
