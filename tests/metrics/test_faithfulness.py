"""ox.metrics.faithfulness_correlation against Quantus's FaithfulnessCorrelation replaying the same
random subsets, and against a re-derivation with scipy.stats.pearsonr and the torch forward."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import onnxplain as ox
from tests.metrics.common import case, export, inputs, load, quantus, torch, torch_forward


def subsets_like_ours(seed: int, runs: int, n: int, features: int, subset: int) -> np.ndarray:
    """The documented draw: per run, per sample, the `subset` smallest of rng.random(features)."""
    rng = np.random.default_rng(seed)
    out = np.empty((runs, n, subset), dtype=np.int64)
    for r in range(runs):
        keys = rng.random((n, features))
        out[r] = np.argsort(keys, axis=1)[:, :subset]
    return out


def reference(net: Any, x: np.ndarray, rel: np.ndarray, targets: np.ndarray, subsets: np.ndarray,
              fill: float) -> np.ndarray:
    from scipy.stats import pearsonr

    n = x.shape[0]
    rel = np.broadcast_to(rel if rel.ndim == x.ndim else rel[:, None], x.shape).reshape(n, -1)
    out = np.empty(n)
    for i in range(n):
        f0 = torch_forward(net, x[i:i + 1])[0, targets[i]]
        perturbed, sums = [], []
        for idx in subsets[:, i]:
            xi = x[i].reshape(-1).copy()
            xi[idx] = fill
            perturbed.append(xi.reshape(x.shape[1:]))
            sums.append(rel[i, idx].sum())
        drops = f0 - torch_forward(net, np.stack(perturbed))[:, targets[i]]
        out[i] = pearsonr(np.array(sums), drops)[0]
    return out


@pytest.mark.parametrize(("channels", "size", "subset", "channelless"), [(1, 16, 40, False), (3, 12, 60, True)])
def test_equals_quantus_with_the_same_subsets(channels: int, size: int, subset: int, channelless: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    q = quantus()
    net, data = case("cnn", channels, size)
    m = load(data)
    x = inputs((channels, size, size), 4, seed=2)
    rel = ox.explainer(m, "input_t_gradient").explain(x)
    if channelless:  # one value per pixel; Quantus and we broadcast it over the channels
        rel = rel.sum(axis=1, keepdims=True)
    targets = np.argmax(torch_forward(net, x), axis=1)
    runs, features = 30, channels * size * size
    subsets = subsets_like_ours(5, runs, 4, features, subset)
    ours = ox.metrics.faithfulness_correlation(m, x, rel, subsets=subsets)
    # Quantus draws np.random.choice(features, subset, replace=False) per run, per sample: replay ours.
    replay = iter(subsets.reshape(-1, subset))
    monkeypatch.setattr(np.random, "choice", lambda *a, **k: next(replay))
    metric = q.FaithfulnessCorrelation(nr_runs=runs, subset_size=subset, perturb_baseline=0.0, normalise=False,
                                       abs=False, return_aggregate=False, disable_warnings=True)
    got = np.asarray(metric(net, x, targets, a_batch=rel, softmax=False, channel_first=True))
    monkeypatch.undo()
    np.testing.assert_allclose(ours, got, atol=1e-4)
    # and the seeded draw is the documented one
    seeded = ox.metrics.faithfulness_correlation(m, x, rel, subset=subset, runs=runs, seed=5)
    np.testing.assert_allclose(seeded, ours, atol=1e-9)


def test_equals_scipy_reference_and_defaults() -> None:
    net, data = case("cnn", 1, 16)
    m = load(data)
    x = inputs((1, 16, 16), 3, seed=7)
    rel = ox.explainer(m, "gradient").explain(x)
    targets = np.argmax(torch_forward(net, x), axis=1)
    # default subset: 224 features, or half of them for inputs with fewer than 448 (here 128 of 256)
    got = ox.metrics.faithfulness_correlation(m, x, rel, runs=25, fill=0.3, seed=1, batch_size=7)
    subsets = subsets_like_ours(1, 25, 3, 256, 128)
    np.testing.assert_allclose(got, reference(net, x, rel, targets, subsets, 0.3), atol=1e-4)
    assert got.shape == (3,) and np.all(np.abs(got) <= 1)
    again = ox.metrics.faithfulness_correlation(m, x, rel, runs=25, fill=0.3, seed=1)
    np.testing.assert_allclose(again, got, atol=1e-5)  # another batch_size: float32 sums in another order
    other = ox.metrics.faithfulness_correlation(m, x, rel, runs=25, fill=0.3, seed=2)
    assert not np.allclose(other, got)
    # the same subsets for every sample, as a (runs, subset) array
    shared = subsets[:, 0]
    np.testing.assert_allclose(ox.metrics.faithfulness_correlation(m, x, rel, subsets=shared),
                               reference(net, x, rel, targets, np.repeat(shared[:, None], 3, axis=1), 0.0), atol=1e-4)


def test_tabular_inputs_and_linear_model_property() -> None:
    """Rank-2 inputs; and on a linear model with exact contributions w * x as relevance and fill 0,
    the output drop *is* the subset's relevance sum: correlation 1."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(20, 3).eval()
    m = load(export(lin, torch.randn(2, 20), dynamo=False))
    x = inputs((20,), 5, seed=3)
    rel = ox.explainer(m, "input_t_gradient").explain(x)
    got = ox.metrics.faithfulness_correlation(m, x, rel, subset=5, runs=20)
    np.testing.assert_allclose(got, 1.0, atol=1e-5)
    anti = ox.metrics.faithfulness_correlation(m, x, -rel, subset=5, runs=20)
    np.testing.assert_allclose(anti, -1.0, atol=1e-5)


def test_constant_relevance_gives_nan() -> None:
    _, data = case("cnn", 1, 16)
    m = load(data)
    x = inputs((1, 16, 16), 2)
    got = ox.metrics.faithfulness_correlation(m, x, np.ones_like(x), subset=10, runs=5)
    assert np.all(np.isnan(got))


def test_errors() -> None:
    _, data = case("cnn", 1, 16)
    m = load(data)
    x = inputs((1, 16, 16), 2)
    rel = np.ones_like(x)
    fc = ox.metrics.faithfulness_correlation
    with pytest.raises(ValueError, match="subset must be"):
        fc(m, x, rel, subset=257)
    with pytest.raises(ValueError, match="subset must be"):
        fc(m, x, rel, subset=0)
    with pytest.raises(ValueError, match="runs"):
        fc(m, x, rel, runs=1)
    with pytest.raises(ValueError, match="relevance has shape"):
        fc(m, x, rel[:, :, :8])
    with pytest.raises(ValueError, match="subsets must be shaped"):
        fc(m, x, rel, subsets=np.zeros((4, 3, 2), np.int64))
    with pytest.raises(ValueError, match="outside"):
        fc(m, x, rel, subsets=np.full((3, 2, 4), 300))
    with pytest.raises(ValueError, match="repeat"):
        fc(m, x, rel, subsets=np.zeros((3, 2, 4), np.int64))
    with pytest.raises(ValueError, match="integer"):
        fc(m, x, rel, subsets=np.zeros((3, 2, 4)))
    with pytest.raises(ValueError, match="broadcast"):
        fc(m, x, rel, subset=4, fill=np.zeros(3))
    with pytest.raises(ValueError, match="target"):
        fc(m, x, rel, subset=4, target=[0])
