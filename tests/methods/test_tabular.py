"""The tabular (N, F) forms of the perturbation methods against independent oracles.

- prediction_difference (Robnik-Sikonja & Kononenko 2008, eqs. 17-22): a plain numpy loop over the
  features and their distinct training values (``np.unique`` of the training column), probabilities
  from a separate ``onnxruntime.InferenceSession`` (ZipMap's list of dicts converted here), the same
  Laplace pseudo-count; ``samples=k`` replays the documented draws; ``max_values`` replays the
  documented quantile bins with a loop.
- lime: the ``lime`` package's ``LimeTabularExplainer`` with the same seed and settings, a fresh
  explainer per row. Matched *exactly* (draw for draw, up to float rounding): onnxplain draws from
  ``RandomState(seed)`` in LIME's order (bins by ``choice``, then ``scipy.stats.truncnorm``), so no
  statement in expectation is needed.
- occlusion per feature on both backends: ``f(x) - f(x with feature j <- mean_j)`` in numpy.

Models: scikit-learn pipelines converted by skl2onnx and run by onnxruntime (StandardScaler +
RandomForestClassifier on breast cancer without ZipMap; StandardScaler + GradientBoostingClassifier
on wine with skl2onnx's default ZipMap), and a torch MLP run by onnxplain's engine.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest

skl2onnx = pytest.importorskip("skl2onnx")
lime_tabular = pytest.importorskip("lime.lime_tabular")
torch = pytest.importorskip("torch")

from skl2onnx.common.data_types import FloatTensorType  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_wine  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import onnxplain as ox  # noqa: E402
from onnxplain.perturbation import MEASURES  # noqa: E402
from tests.helpers.torch_models import export  # noqa: E402

Proba = Callable[[np.ndarray], np.ndarray]


class Case:
    """A model, the function giving its explained output independently, the data."""

    def __init__(self, model: ox.Model, f: Proba, train: np.ndarray, x: np.ndarray) -> None:
        self.model, self.f, self.train, self.x = model, f, train, x


def _session(data: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _skl_probabilities(data: bytes) -> Proba:
    """skl2onnx classifier outputs: (label, probabilities); probabilities as an array, ZipMap's
    list of {class: probability} dicts converted in the order of the classes."""
    sess = _session(data)
    name = sess.get_inputs()[0].name
    out = sess.get_outputs()[1].name

    def f(x: np.ndarray) -> np.ndarray:
        p = sess.run([out], {name: np.asarray(x, np.float32)})[0]
        if isinstance(p, list):
            keys = sorted(p[0])
            p = np.array([[row[k] for k in keys] for row in p])
        return np.asarray(p, np.float64)

    return f


@pytest.fixture(scope="module")
def forest() -> Case:
    x_all, y = load_breast_cancer(return_X_y=True)
    x_all = x_all.astype(np.float32)
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0))
    pipe.fit(x_all, y)
    data = skl2onnx.convert_sklearn(pipe, initial_types=[("x", FloatTensorType([None, 30]))],
                                    options={id(pipe.steps[-1][1]): {"zipmap": False}}).SerializeToString()
    model = ox.load(data)
    f = _skl_probabilities(data)
    x = x_all[[0, 19, 200, 400]]
    np.testing.assert_allclose(f(x), pipe.predict_proba(x), atol=1e-5)  # float32 trees = sklearn's
    return Case(model, f, x_all, x)


@pytest.fixture(scope="module")
def boosting() -> Case:
    x_all, y = load_wine(return_X_y=True)
    x_all = x_all.astype(np.float32)
    pipe = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=15, max_depth=2, random_state=0))
    pipe.fit(x_all, y)
    data = skl2onnx.convert_sklearn(pipe, initial_types=[("x", FloatTensorType([None, 13]))]).SerializeToString()
    model = ox.load(data)
    f = _skl_probabilities(data)
    x = x_all[[3, 70, 150]]
    np.testing.assert_allclose(f(x), pipe.predict_proba(x), atol=1e-5)
    return Case(model, f, x_all, x)


@pytest.fixture(scope="module")
def mlp() -> Case:
    """A torch MLP (logits) on standardised wine features, run by onnxplain's engine."""
    x_all, _ = load_wine(return_X_y=True)
    x_all = ((x_all - x_all.mean(0)) / x_all.std(0)).astype(np.float32)
    x_all = np.round(x_all, 1)  # few distinct values per feature: a short eq. 22 sum
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(13, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    data = export(net, torch.zeros(1, 13), dynamo=False)
    sess = _session(data)
    name = sess.get_inputs()[0].name
    return Case(ox.load(data), lambda x: sess.run(None, {name: np.asarray(x, np.float32)})[0].astype(np.float64),
                x_all, x_all[[5, 60, 120]])


def _softmax(y: np.ndarray) -> np.ndarray:
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---- the reference for prediction difference (Robnik-Sikonja & Kononenko 2008) ---------------------------------


def reference_q(proba: Proba, x: np.ndarray, tables: list[tuple[np.ndarray, np.ndarray]],
                targets: np.ndarray) -> np.ndarray:
    """p(y|x\\A_j) = sum_s p(A_j = a_s) p(y | x <- A_j = a_s) (eq. 22), one feature at a time."""
    n, f = x.shape
    q = np.zeros((n, f))
    for i in range(n):
        for j in range(f):
            values, weights = tables[j]
            rows = np.repeat(x[i:i + 1], len(values), axis=0)
            rows[:, j] = values
            q[i, j] = float(np.sum(weights * proba(rows)[:, targets[i]]))
    return q


def reference_measure(p: np.ndarray, q: np.ndarray, measure: str, n_train: int, k: int) -> np.ndarray:
    """Eqs. 17, 19, 20; the log measures on Laplace-corrected probabilities (p N + 1) / (N + K)."""
    if measure == "probability_difference":
        return p - q
    lp, lq = (p * n_train + 1) / (n_train + k), (q * n_train + 1) / (n_train + k)
    if measure == "information_difference":
        return np.log2(lp) - np.log2(lq)
    return np.log2(lp / (1 - lp)) - np.log2(lq / (1 - lq))


def exact_tables(train: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for j in range(train.shape[1]):
        v, c = np.unique(train[:, j], return_counts=True)
        out.append((v, c / len(train)))
    return out


def binned_tables(train: np.ndarray, bins: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The documented compression, written as a loop: a value goes to the bin of its mid-rank;
    each bin is its weighted lower median with the bin's count."""
    out = []
    n = len(train)
    for j in range(train.shape[1]):
        v, c = np.unique(train[:, j], return_counts=True)
        if len(v) <= bins:
            out.append((v, c / n))
            continue
        groups: dict[int, list[tuple[float, int]]] = {}
        seen = 0
        for value, count in zip(v, c):
            b = min(int(np.floor((seen + count / 2) * bins / n)), bins - 1)
            groups.setdefault(b, []).append((value, int(count)))
            seen += int(count)
        vals, wts = [], []
        for b in sorted(groups):
            total = sum(cnt for _, cnt in groups[b])
            acc = 0
            for value, cnt in groups[b]:
                acc += cnt
                if acc >= total / 2:
                    vals.append(value)
                    break
            wts.append(total / n)
        out.append((np.array(vals, np.float32), np.array(wts)))
    return out


def _close(got: np.ndarray, want: np.ndarray, tol: float) -> None:
    assert got.shape == want.shape
    err = float(np.max(np.abs(got - want)))
    assert err <= tol, f"max abs error {err:.3e} (scale {float(np.max(np.abs(want))):.3e})"


@pytest.mark.parametrize("case_name", ["forest", "boosting"])
def test_prediction_difference_all_values_equals_eqs_17_to_22(case_name: str, request: pytest.FixtureRequest) -> None:
    case: Case = request.getfixturevalue(case_name)
    assert case.model.backend == "onnxruntime"
    p_all = case.f(case.x)
    k = p_all.shape[1]
    targets = p_all.argmax(axis=1)
    q = reference_q(case.f, case.x, exact_tables(case.train), targets)
    p = p_all[np.arange(len(targets)), targets][:, None]
    # forest: 30 features with up to 547 distinct values, no cap; boosting: <= 133 distinct values,
    # the default cap of 256 leaves the tables exact. Fitted in batches of 64: the tables merge.
    max_values = None if case_name == "forest" else 256
    for measure in MEASURES:
        ex = ox.explainer(case.model, "prediction_difference", measure=measure, max_values=max_values)
        rel = ex.fit(case.train, batch_size=64).explain(case.x)
        assert rel.shape == case.x.shape and rel.dtype == np.float32
        _close(rel, reference_measure(p, q, measure, len(case.train), k), 2e-5)
    other = (targets + 1) % k  # an explicit target
    q1 = reference_q(case.f, case.x, exact_tables(case.train), other)
    rel = ox.explainer(case.model, "prediction_difference", max_values=max_values).fit(case.train).explain(
        case.x, target=other)
    want = reference_measure(p_all[np.arange(len(other)), other][:, None], q1, "weight_of_evidence",
                             len(case.train), k)
    _close(rel, want, 2e-5)


def test_prediction_difference_draws_replay_the_documented_order(forest: Case) -> None:
    samples, seed = 7, 11
    ex = ox.explainer(forest.model, "prediction_difference", samples=samples, seed=seed, max_values=None,
                      batch_size=100)  # batches that cut rows and features
    rel = ex.fit(forest.train).explain(forest.x)
    u = np.random.default_rng(seed).random((forest.train.shape[1], samples))
    tables = []
    for j in range(forest.train.shape[1]):
        v, c = np.unique(forest.train[:, j], return_counts=True)
        idx = np.minimum(np.searchsorted(np.cumsum(c) / c.sum(), u[j], side="right"), len(v) - 1)
        tables.append((v[idx], np.full(samples, 1.0 / samples)))  # the mean over the draws
    p_all = forest.f(forest.x)
    targets = p_all.argmax(axis=1)
    q = reference_q(forest.f, forest.x, tables, targets)
    want = reference_measure(p_all[np.arange(len(targets)), targets][:, None], q, "weight_of_evidence",
                             len(forest.train), 2)
    _close(rel, want, 2e-5)


def test_prediction_difference_quantile_bins_beyond_max_values(forest: Case) -> None:
    ex = ox.explainer(forest.model, "prediction_difference", max_values=8, measure="probability_difference")
    ex.fit(forest.train, batch_size=len(forest.train))
    tables = ex._py.feature_values()
    want_tables = binned_tables(forest.train, 8)
    for (v, w), (rv, rw) in zip(tables, want_tables):
        assert len(v) <= 8 and abs(w.sum() - 1) < 1e-12
        np.testing.assert_array_equal(v, rv)
        np.testing.assert_allclose(w, rw, rtol=1e-12)
    p_all = forest.f(forest.x)
    targets = p_all.argmax(axis=1)
    q = reference_q(forest.f, forest.x, want_tables, targets)
    _close(ex.explain(forest.x), p_all[np.arange(len(targets)), targets][:, None] - q, 2e-6)


def test_prediction_difference_on_the_engine_softmax_of_logits(mlp: Case) -> None:
    assert mlp.model.backend == "onnxplain"
    proba = lambda z: _softmax(mlp.f(z))  # noqa: E731
    p_all = proba(mlp.x)
    targets = p_all.argmax(axis=1)
    q = reference_q(proba, mlp.x, exact_tables(mlp.train), targets)
    p = p_all[np.arange(len(targets)), targets][:, None]
    for measure in MEASURES:
        rel = ox.explainer(mlp.model, "prediction_difference", measure=measure).fit(mlp.train).explain(mlp.x)
        _close(rel, reference_measure(p, q, measure, len(mlp.train), 3), 1e-4)
    # samples=k on the engine too, and pickling keeps what fit learned
    ex = ox.explainer(mlp.model, "prediction_difference", samples=5, seed=2).fit(mlp.train)
    again = pickle.loads(pickle.dumps(ex))
    np.testing.assert_array_equal(again.explain(mlp.x), ex.explain(mlp.x))


# ---- LIME against the lime package ---------------------------------------------------------------------------------


def lime_reference(case: Case, predict: Proba, targets: np.ndarray, samples: int, seed: int,
                   kernel_width: float | None = None) -> np.ndarray:
    out = np.zeros(case.x.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # logits "do not sum to 1"
        for i, row in enumerate(case.x):
            explainer = lime_tabular.LimeTabularExplainer(
                case.train, discretize_continuous=True, discretizer="quartile", sample_around_instance=False,
                kernel_width=kernel_width, random_state=seed, feature_selection="none")
            exp = explainer.explain_instance(row, predict, labels=(int(targets[i]),), num_features=case.x.shape[1],
                                             num_samples=samples)
            for j, w in exp.local_exp[int(targets[i])]:
                out[i, j] = w
    return out


@pytest.mark.parametrize("case_name,samples,seed,width", [("forest", 600, 0, None), ("forest", 300, 5, 2.0),
                                                         ("boosting", 500, 3, None)])
def test_lime_equals_lime_tabular_explainer(case_name: str, samples: int, seed: int, width: float | None,
                                            request: pytest.FixtureRequest) -> None:
    case: Case = request.getfixturevalue(case_name)
    ex = ox.explainer(case.model, "lime", samples=samples, seed=seed, kernel_width=width, batch_size=256)
    assert ex.learns
    rel = ex.fit(case.train, batch_size=100).explain(case.x)
    targets = case.f(case.x).argmax(axis=1)
    want = lime_reference(case, case.f, targets, samples, seed, width)
    assert rel.shape == case.x.shape and rel.dtype == np.float32
    _close(rel, want, 1e-6 * max(1.0, float(np.abs(want).max())))
    assert np.abs(want).max() > 1e-3  # a real explanation, not zeros on both sides


def test_lime_on_the_engine(mlp: Case) -> None:
    ex = ox.explainer(mlp.model, "lime", samples=400, seed=1).fit(mlp.train)
    rel = ex.explain(mlp.x, target=2)
    want = lime_reference(mlp, mlp.f, np.full(len(mlp.x), 2), 400, 1)  # the logits, as predict returns them
    _close(rel, want, 1e-4 * float(np.abs(want).max()))


def test_lime_learns_only_for_tabular_inputs() -> None:
    net = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(3 * 6, 2)).eval()
    model = ox.load(export(net, torch.zeros(1, 2, 8), dynamo=False))
    ex = ox.explainer(model, "lime", samples=20, segments=np.repeat(np.arange(4), 2))
    assert not ex.learns
    x = np.random.default_rng(0).standard_normal((1, 2, 8)).astype(np.float32)
    assert ex.fit(x).explain(x).shape == x.shape  # fit is a no-op, the image form needs none


# ---- occlusion per feature on both backends ------------------------------------------------------------------------


@pytest.mark.parametrize("case_name", ["forest", "boosting", "mlp"])
def test_occlusion_per_feature_with_the_training_mean(case_name: str, request: pytest.FixtureRequest) -> None:
    case: Case = request.getfixturevalue(case_name)
    mean = case.train.mean(0)
    rel = ox.explainer(case.model, "occlusion", window=1, stride=1, fill=mean).explain(case.x)
    y = case.f(case.x)
    targets = y.argmax(axis=1)
    want = np.zeros(case.x.shape)
    for j in range(case.x.shape[1]):
        occluded = case.x.copy()
        occluded[:, j] = mean[j]
        want[:, j] = (y - case.f(occluded))[np.arange(len(targets)), targets]
    _close(rel, want, 1e-5 if case.model.backend == "onnxruntime" else 1e-4)


# ---- the image form takes the measure too --------------------------------------------------------------------------


def test_image_form_measures_are_consistent() -> None:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(2 * 4 * 4, 3)).eval()
    model = ox.load(export(net, torch.zeros(1, 1, 4, 4), dynamo=False))
    rng = np.random.default_rng(0)
    train = rng.standard_normal((12, 1, 4, 4)).astype(np.float32)
    x = train[:2]
    rel = {m: ox.explainer(model, "prediction_difference", window=1, measure=m).fit(train).explain(x, target=0)
           for m in MEASURES}  # window 1: a pixel's relevance is its own window's measure
    p = _softmax(model.predict(x).astype(np.float64))[:, 0][:, None, None, None]
    q = p - rel["probability_difference"].astype(np.float64)
    for m in ("weight_of_evidence", "information_difference"):
        _close(rel[m], reference_measure(p, q, m, len(train), 3), 1e-4)


# ---- errors --------------------------------------------------------------------------------------------------------


def test_tabular_errors(forest: Case, boosting: Case, mlp: Case) -> None:
    with pytest.raises(ValueError, match=r"call fit\(train\) first"):
        ox.explainer(forest.model, "prediction_difference").explain(forest.x)
    with pytest.raises(ValueError, match=r"call fit\(train\) first"):
        ox.explainer(forest.model, "lime").explain(forest.x)
    with pytest.raises(ValueError, match="measure must be one of"):
        ox.explainer(forest.model, "prediction_difference", measure="odds")
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="samples must be a positive int"):
            ox.explainer(forest.model, "prediction_difference", samples=bad)
        with pytest.raises(ValueError, match="samples must be a positive int"):
            ox.explainer(forest.model, "lime", samples=bad)
    with pytest.raises(ValueError, match="max_values must be a positive int"):
        ox.explainer(forest.model, "prediction_difference", max_values=0)
    with pytest.raises(ValueError, match="window must be 1"):
        ox.explainer(forest.model, "prediction_difference", window=3).fit(forest.train)
    with pytest.raises(ValueError, match="kernel_width"):
        ox.explainer(forest.model, "lime", kernel_width=-1.0)
    bad_train = forest.train[:20].copy()
    bad_train[3, 7] = np.nan
    for method in ("prediction_difference", "lime"):
        with pytest.raises(ValueError, match=r"feature\(s\) 7 \(column index\)"):
            ox.explainer(forest.model, method).fit(bad_train)
    for method in ("prediction_difference", "lime"):  # ZipMap's output has no static width: checked here
        with pytest.raises(ValueError, match="target 3 is out of range"):
            ox.explainer(boosting.model, method).fit(boosting.train).explain(boosting.x, target=3)
    with pytest.raises(ValueError, match="fill= is for images"):
        ox.explainer(mlp.model, "lime", fill=0.0).fit(mlp.train).explain(mlp.x)
