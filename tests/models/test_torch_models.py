"""Whole PyTorch models, exported by both torch.onnx exporters: predict equals onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import onnxplain as ox  # noqa: E402
from tests.helpers.onnx_builders import ort_run  # noqa: E402
from tests.helpers.torch_models import ARCHITECTURES, build, export  # noqa: E402

_CACHE: dict[tuple[str, bool, bool], bytes] = {}


def exported(name: str, dynamo: bool, keep_bn: bool = True) -> tuple[bytes, tuple[int, ...]]:
    model, shape = build(name)
    key = (name, dynamo, keep_bn)
    if key not in _CACHE:
        _CACHE[key] = export(model, torch.randn(2, *shape), dynamo=dynamo, keep_batchnorm=keep_bn)
    return _CACHE[key], shape


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_predict_matches_onnxruntime(name: str, dynamo: bool) -> None:
    data, shape = exported(name, dynamo)
    rng = np.random.default_rng(1)
    for batch in (1, 3):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        expected = ort_run(data, {"x": x})[0]
        m = ox.load(data, strip_softmax=False)
        got = m.predict(x)
        assert got.shape == expected.shape
        assert rel_err(got, expected) <= 1e-4, (name, batch)


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_batchnorm_is_folded_and_outputs_unchanged(dynamo: bool) -> None:
    data, shape = exported("resnet", dynamo)
    folded = ox.load(data)
    kept = ox.load(data, fold_batch_norm=False)
    assert "BatchNormalization" not in folded.op_counts
    assert kept.op_counts.get("BatchNormalization", 0) > 0
    x = np.random.default_rng(2).standard_normal((2, *shape)).astype(np.float32)
    expected = ort_run(data, {"x": x})[0]
    assert rel_err(folded.predict(x), expected) <= 1e-4
    assert rel_err(kept.predict(x), expected) <= 1e-4


def test_softmax_stripped_by_default() -> None:
    data, shape = exported("cnn_bn", False)
    x = np.random.default_rng(3).standard_normal((4, *shape)).astype(np.float32)
    probs = ort_run(data, {"x": x})[0]
    logits = ox.load(data).predict(x)
    assert "Softmax" not in ox.load(data).op_counts
    # softmax(logits) must give onnxruntime's probabilities: the stripped output is the logits.
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), probs, rtol=1e-4, atol=1e-6)


def test_dynamic_batch_is_reported_and_empty_batch_works() -> None:
    data, shape = exported("mlp", False)
    m = ox.load(data)
    assert m.inputs[0].shape[0] is None
    assert m.inputs[0].shape[1:] == shape
    out = m.predict(np.zeros((0, *shape), np.float32))
    assert out.shape == (0, 5)
