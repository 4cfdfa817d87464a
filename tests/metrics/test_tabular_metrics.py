"""AOPC and faithfulness correlation on tabular data (N, F): a scikit-learn pipeline (StandardScaler +
RandomForestClassifier, converted by skl2onnx) that onnxplain's engine cannot run, so the metrics run
it through onnxruntime, against plain NumPy loops that take the probabilities from a separate
onnxruntime session one row at a time; and on an MLP the engine runs. The model-randomisation check
refuses a model run by onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import onnxplain as ox
from tests.helpers.sklearn_pipelines import forest, session_probabilities

pytest.importorskip("onnxruntime")


# ---- the independent references -----------------------------------------------------------------


def ref_aopc(probs, x: np.ndarray, rel: np.ndarray, targets: np.ndarray, order: str, replacement: np.ndarray,
             region: int = 1, steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Curves and per-sample AOPC of Samek et al. 2017 by a loop: the features cut into runs of
    ``region`` consecutive columns, ranked by their summed relevance (ties: the lower index first),
    perturbed cumulatively, one onnxruntime call per step."""
    n, f = x.shape
    groups = [list(range(s, min(s + region, f))) for s in range(0, f, region)]
    steps = len(groups) if steps is None else steps
    curves = np.zeros((n, steps + 1))
    for i in range(n):
        score = np.array([rel[i, g].sum() for g in groups])
        ranking = sorted(range(len(groups)), key=lambda t: (-score[t] if order == "morf" else score[t], t))
        row = x[i].copy()
        curves[i, 0] = probs(row[None])[0, targets[i]]
        for k in range(steps):
            for j in groups[ranking[k]]:
                row[j] = replacement[i, j]
            curves[i, k + 1] = probs(row[None])[0, targets[i]]
    return curves, (curves[:, :1] - curves).mean(axis=1)


def ref_faithfulness(probs, x: np.ndarray, rel: np.ndarray, targets: np.ndarray, subset: int, runs: int,
                     fill: np.ndarray, seed: int) -> np.ndarray:
    """Bhatt et al. 2020 by a loop, drawing the subsets as documented: per run, per sample, the
    ``subset`` features with the smallest keys of ``rng.random(F)``."""
    n, f = x.shape
    rng = np.random.default_rng(seed)
    keys = np.stack([rng.random((n, f)) for _ in range(runs)])  # (runs, N, F)
    out = np.empty(n)
    for i in range(n):
        f0 = probs(x[i][None])[0, targets[i]]
        sums, drops = [], []
        for r in range(runs):
            s = np.argsort(keys[r, i])[:subset]
            row = x[i].copy()
            row[s] = fill[s]
            sums.append(rel[i, s].sum())
            drops.append(f0 - probs(row[None])[0, targets[i]])
        out[i] = np.corrcoef(sums, drops)[0, 1]
    return out


# ---- data ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree() -> tuple[ox.Model, object, np.ndarray, np.ndarray, np.ndarray]:
    """The pipeline as onnxplain loads it, the reference probabilities, 8 samples whose prediction is
    not certain (so that perturbing features moves it), their occlusion relevance (fill: the
    training mean), and the training mean."""
    p = forest("breast_cancer")
    model = ox.load(p.onnx, threads=2)
    probs = session_probabilities(p.onnx)
    all_p = probs(p.x)
    unsure = np.flatnonzero(all_p.max(axis=1) < 0.97)[:8]
    x = p.x[unsure]
    mean = p.x.mean(axis=0)
    rel = ox.explainer(model, "occlusion", window=1, stride=1, fill=mean).explain(x, progress=False)
    return model, probs, x, rel.astype(np.float64), mean


def test_the_pipeline_runs_through_onnxruntime(tree: tuple) -> None:
    model, probs, x, rel, _ = tree
    assert model.backend == "onnxruntime" and x.shape == (8, 30) and rel.shape == x.shape
    np.testing.assert_allclose(model.predict(x), probs(x), atol=1e-6)


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("perturbation", ["constant", "mean", "uniform"])
def test_aopc_on_the_pipeline_equals_a_loop_over_onnxruntime(tree: tuple, order: str, perturbation: str) -> None:
    model, probs, x, rel, mean = tree
    targets = probs(x).argmax(axis=1)
    fill = mean if perturbation == "constant" else 0.0
    r = ox.metrics.aopc(model, x, rel, perturbation=perturbation, order=order, fill=fill, seed=3)
    if perturbation == "constant":
        replacement = np.broadcast_to(mean.astype(np.float32), x.shape)
    elif perturbation == "mean":
        replacement = np.broadcast_to(x.mean(axis=0, dtype=np.float64).astype(np.float32), x.shape)
    else:
        replacement = np.random.default_rng(3).uniform(x.min(axis=0), x.max(axis=0), size=x.shape).astype(np.float32)
    curves, per_sample = ref_aopc(probs, x, rel, targets, order, replacement)
    assert r.region == (1,) and r.n_regions == 30 and r.curves.shape == (8, 31)
    np.testing.assert_array_equal(r.targets, targets)
    np.testing.assert_allclose(r.curves, curves, atol=1e-6)
    np.testing.assert_allclose(r.aopc, per_sample, atol=1e-6)
    assert r.mean == pytest.approx(per_sample.mean(), abs=1e-6)


def test_aopc_regions_of_several_features_and_fewer_steps(tree: tuple) -> None:
    model, probs, x, rel, mean = tree
    targets = np.zeros(len(x), dtype=np.int64)
    r = ox.metrics.aopc(model, x, rel, target=0, region=4, steps=5, fill=mean)
    curves, per_sample = ref_aopc(probs, x, rel, targets, "morf", np.broadcast_to(mean, x.shape), region=4, steps=5)
    assert r.n_regions == 8 and r.ranking.shape == (8, 5)  # 7 runs of 4 features and one of 2
    np.testing.assert_allclose(r.curves, curves, atol=1e-6)
    np.testing.assert_allclose(r.aopc, per_sample, atol=1e-6)


def test_occlusion_is_faithful_on_the_pipeline(tree: tuple) -> None:
    """Removing the features occlusion ranks first lowers the predicted class' probability more than
    removing those it ranks last (a sanity check of the whole chain on a real model)."""
    model, _, x, rel, mean = tree
    morf = ox.metrics.aopc(model, x, rel, fill=mean, order="morf")
    lerf = ox.metrics.aopc(model, x, rel, fill=mean, order="lerf")
    assert morf.mean > lerf.mean + 0.1


def test_faithfulness_on_the_pipeline_equals_a_loop_over_onnxruntime(tree: tuple) -> None:
    model, probs, x, rel, mean = tree
    targets = probs(x).argmax(axis=1)
    got = ox.metrics.faithfulness_correlation(model, x, rel, subset=6, runs=20, fill=mean, seed=1)
    want = ref_faithfulness(probs, x, rel, targets, 6, 20, mean.astype(np.float32), 1)
    np.testing.assert_allclose(got, want, atol=1e-9, equal_nan=True)
    assert np.nanmean(got) > 0.3  # occlusion's relevance predicts the drop
    # The default subset is half the features.
    default = ox.metrics.faithfulness_correlation(model, x, rel, runs=5, fill=mean, seed=2)
    np.testing.assert_allclose(default, ref_faithfulness(probs, x, rel, targets, 15, 5, mean.astype(np.float32), 2),
                               atol=1e-9, equal_nan=True)


def test_tabular_metrics_on_a_model_the_engine_runs() -> None:
    """A dense network on tabular data is measured the same way through the engine as through
    onnxruntime."""
    torch = pytest.importorskip("torch")
    from tests.helpers.torch_models import export

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(13, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    data = export(net, torch.randn(2, 13), dynamo=False)
    engine, ort_model = ox.load(data, threads=2), ox.load(data, threads=2, backend="onnxruntime")
    assert (engine.backend, ort_model.backend) == ("onnxplain", "onnxruntime")
    x = np.random.default_rng(0).standard_normal((6, 13)).astype(np.float32)
    rel = ox.explainer(engine, "input_t_gradient").explain(x, progress=False)
    for kw in ({"order": "morf"}, {"order": "lerf", "perturbation": "mean"}, {"order": "random", "region": 2}):
        a, b = ox.metrics.aopc(engine, x, rel, **kw), ox.metrics.aopc(ort_model, x, rel, **kw)
        np.testing.assert_allclose(a.curves, b.curves, rtol=1e-5, atol=1e-5)
    a = ox.metrics.faithfulness_correlation(engine, x, rel, runs=10)
    np.testing.assert_allclose(a, ox.metrics.faithfulness_correlation(ort_model, x, rel, runs=10), atol=1e-4)
    # Input x gradient of a linear-ish model is faithful: MoRF drops the output more than LeRF.
    assert ox.metrics.aopc(engine, x, rel).mean > ox.metrics.aopc(engine, x, rel, order="lerf").mean
    # The model-randomisation check works on the engine's model, not on onnxruntime's.
    res = ox.metrics.model_randomisation(engine, "gradient", x)
    assert [len(s) for _, s in res] == [6, 6]
    with pytest.raises(ValueError, match="model-randomisation check.*backend='onnxplain'"):
        ox.metrics.model_randomisation(ort_model, "occlusion", x, window=1, stride=1)


def test_model_randomisation_refuses_the_pipeline(tree: tuple) -> None:
    model, _, x, _, _ = tree
    with pytest.raises(ox.UnsupportedModelError, match="(?s)model-randomisation check.*TreeEnsembleClassifier"):
        ox.metrics.model_randomisation(model, "occlusion", x, window=1, stride=1)


def test_tabular_errors(tree: tuple) -> None:
    model, _, x, rel, mean = tree
    with pytest.raises(ValueError, match=r"must be \(8, 30\) \(one value per feature\)"):
        ox.metrics.aopc(model, x, rel[:, :10])
    with pytest.raises(ValueError, match="one value per feature"):
        ox.metrics.aopc(model, x, rel, fill=mean[:5])
    for p in ("blur", "dirichlet"):
        with pytest.raises(ValueError, match="for tabular data"):
            ox.metrics.aopc(model, x, rel, perturbation=p)
    with pytest.raises(ValueError, match="larger than the spatial size"):
        ox.metrics.aopc(model, x, rel, region=31)
    with pytest.raises(ValueError, match=r"steps must be None or an int in 1..30"):
        ox.metrics.aopc(model, x, rel, steps=31)
    with pytest.raises(ValueError, match="does not broadcast"):
        ox.metrics.faithfulness_correlation(model, x, rel, fill=mean[:5])
