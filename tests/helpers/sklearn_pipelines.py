"""Small scikit-learn pipelines converted by skl2onnx, for the tests of models that onnxplain's engine
cannot run (``ai.onnx.ml`` trees) and that therefore run through onnxruntime."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest


@dataclass(frozen=True)
class Pipeline:
    """A fitted pipeline as ONNX bytes, with its data."""

    onnx: bytes
    x: np.ndarray  # (N, F) float32, the whole data set
    y: np.ndarray  # (N,) labels
    feature_names: tuple[str, ...]
    probabilities: str  # the name of the probability output


@functools.cache
def forest(dataset: str = "breast_cancer", n_estimators: int = 20, max_depth: int | None = 6,
           zipmap: bool = False) -> Pipeline:
    """StandardScaler + RandomForestClassifier on one of scikit-learn's bundled data sets
    (``"breast_cancer"``: 569 x 30, 2 classes; ``"wine"``: 178 x 13, 3 classes), seeded, converted with
    skl2onnx (with or without ZipMap). Skips the test without scikit-learn or skl2onnx."""
    datasets = pytest.importorskip("sklearn.datasets")
    ensemble = pytest.importorskip("sklearn.ensemble")
    pipeline = pytest.importorskip("sklearn.pipeline")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    skl2onnx = pytest.importorskip("skl2onnx")
    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[dataset]
    bunch = loader()
    x = np.ascontiguousarray(bunch.data, dtype=np.float32)
    model = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                   ensemble.RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                                                   random_state=0))
    model.fit(x, bunch.target)
    onx = skl2onnx.to_onnx(model, x[:1], options={"zipmap": zipmap}, target_opset={"": 17, "ai.onnx.ml": 3})
    return Pipeline(onx.SerializeToString(), x, np.asarray(bunch.target), tuple(str(n) for n in bunch.feature_names),
                    "probabilities")


def session_probabilities(data: bytes) -> Callable[[np.ndarray], np.ndarray]:
    """A function rows (n, F) -> class probabilities (n, K) float64 from a plain onnxruntime session
    (independent of onnxplain), reading the probability output (a ZipMap's list of dicts is
    turned into columns in class order)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = [o.name for o in sess.get_outputs() if o.name != "label" and "label" not in o.name][0]

    def probs(rows: np.ndarray) -> np.ndarray:
        p = sess.run([out], {name: np.ascontiguousarray(rows, dtype=np.float32)})[0]
        if isinstance(p, list):
            keys = sorted(p[0])
            p = [[row[k] for k in keys] for row in p]
        return np.asarray(p, dtype=np.float64)

    return probs
