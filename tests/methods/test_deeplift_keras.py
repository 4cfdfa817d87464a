"""DeepLIFT on the tf2onnx Keras models (NHWC inputs with Transposes around Conv, Dense as MatMul +
Add): summation-to-delta against f_t(x) - f_t(reference) of the logits (the forward that
tests/models/test_keras_models.py checks against onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxplain as ox

DATA = Path(__file__).resolve().parents[1] / "data" / "keras"


@pytest.mark.parametrize("method", ["deeplift.rescale", "deeplift.reveal_cancel"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_summation_to_delta_on_keras_models(name: str, method: str) -> None:
    data = (DATA / f"{name}.onnx").read_bytes()
    inp = onnx.load_from_string(data).graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, *dims)).astype(np.float32)
    ref = rng.standard_normal(dims).astype(np.float32)
    m = ox.load(data, strip_softmax=True)
    ex = ox.explainer(m, method, reference=ref)
    R = ex.explain(x, target=1)
    f = m.predict(np.concatenate([x, ref[None]]))[:, 1]
    want = f[:3] - f[3]
    got = R.reshape(3, -1).sum(axis=1, dtype=np.float64)
    scale = max(float(np.max(np.abs(want))), 1e-6)
    assert np.max(np.abs(got - want)) <= 1e-4 * scale, (got, want)
    assert R.shape == x.shape and np.any(R != 0)
