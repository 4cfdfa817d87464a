"""Perturbation methods computed in Python (perturbation.py) against independent oracles.

- prediction_difference: a plain-loop numpy re-implementation of Zintgraf et al. 2017 (the weight
  of evidence with the Laplace correction, marginal and Gaussian-conditional sampling, each replaying
  the documented draws with its own generator), forwards by onnxruntime.
- lime: Captum's ``Lime`` on the torch model, given the same binary samples, kernel, surrogate
  (scikit-learn Ridge / LinearRegression through Captum's wrappers), feature mask and baselines.
"""

from __future__ import annotations

import math
import pickle
import sys
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import onnxplain as ox
from onnxplain.perturbation import SLIC_PARAMS, weighted_ridge
from tests.helpers.torch_models import export

CLASSES = 3


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, CLASSES)).eval()


@pytest.fixture(scope="module")
def cnn() -> tuple[nn.Module, bytes]:
    net = _cnn()
    return net, export(net, torch.zeros(1, 3, 10, 10), dynamo=False)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    smooth = np.cumsum(rng.standard_normal((34, 3, 10, 10)), axis=3) / 3  # correlated neighbours
    train, x = smooth[:30].astype(np.float32), smooth[30:32].astype(np.float32)
    return train, x


# ---- the reference for prediction difference analysis ------------------------------------------------------------


def _ort_probabilities(model_bytes: bytes, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # many tiny runs; and numpy's LAPACK in between
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def probs(batch: np.ndarray) -> np.ndarray:
        y = sess.run(None, {name: batch.reshape((-1, *shape)).astype(np.float32)})[0].astype(np.float64)
        if np.all(y >= 0) and np.allclose(y.sum(axis=1), 1, atol=1e-4):
            return y  # the model's own softmax
        e = np.exp(y - y.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return probs


def reference_pda(probs: Callable[[np.ndarray], np.ndarray], x: np.ndarray, train: np.ndarray, n_seen: int,
                  targets: np.ndarray, window: tuple[int, int], samples: int, seed: int, sampling: str,
                  frame: tuple[int, int] = (0, 0), low: np.ndarray | None = None,
                  high: np.ndarray | None = None) -> np.ndarray:
    """Zintgraf et al. 2017, Algorithm 1 with stride 1, one window at a time; x, train: (N, C, H, W)."""
    n, c, h, w = x.shape
    kh, kw = window
    lh, lw = frame
    ph, pw = kh + 2 * lh, kw + 2 * lw
    if sampling == "conditional":
        patches = [t[:, a:a + ph, b:b + pw].ravel() for t in train for a in range(h - ph + 1)
                   for b in range(w - pw + 1)]
        mu = np.mean(patches, axis=0)
        cov = np.cov(np.array(patches), rowvar=False)
        cov = cov + (1e-4 * np.mean(np.diag(cov)) + 1e-12) * np.eye(len(mu))

    def laplace_log_odds(p: float) -> float:
        q = (p * n_seen + 1) / (n_seen + CLASSES)
        return math.log2(q / (1 - q))

    out = np.zeros(x.shape)
    for s in range(n):
        t = int(targets[s])
        p_x = probs(x[s:s + 1])[0, t]
        rng = np.random.default_rng(seed)
        positions = [(i, j) for i in range(h - kh + 1) for j in range(w - kw + 1)]
        if sampling == "marginal":
            pick = rng.integers(0, len(train), size=(len(positions), samples))
        else:
            z = rng.standard_normal((len(positions), samples, c * kh * kw))
        rel = np.zeros((h, w))
        count = np.zeros((h, w))
        for p, (i, j) in enumerate(positions):
            perturbed = np.repeat(x[s:s + 1], samples, axis=0)
            if sampling == "conditional":  # the Gaussian of the window given the rest of its patch
                top, left = min(max(i - lh, 0), h - ph), min(max(j - lw, 0), w - pw)
                win = [ch * ph * pw + (i - top + dy) * pw + (j - left + dx)
                       for ch in range(c) for dy in range(kh) for dx in range(kw)]
                rest = [d for d in range(len(mu)) if d not in win]
                known = x[s, :, top:top + ph, left:left + pw].ravel()[rest].astype(np.float64)
                gain = cov[np.ix_(win, rest)] @ np.linalg.inv(cov[np.ix_(rest, rest)])
                cond_mean = mu[win] + gain @ (known - mu[rest])
                cond_cov = cov[np.ix_(win, win)] - gain @ cov[np.ix_(rest, win)]
                chol = np.linalg.cholesky((cond_cov + cond_cov.T) / 2)
            for k in range(samples):
                if sampling == "marginal":
                    perturbed[k, :, i:i + kh, j:j + kw] = train[pick[p, k], :, i:i + kh, j:j + kw]
                else:
                    value = (cond_mean + chol @ z[p, k]).reshape(c, kh, kw)
                    assert low is not None and high is not None
                    value = np.clip(value, low[:, i:i + kh, j:j + kw], high[:, i:i + kh, j:j + kw])
                    perturbed[k, :, i:i + kh, j:j + kw] = value
            p_without = float(np.mean(probs(perturbed)[:, t]))
            rel[i:i + kh, j:j + kw] += laplace_log_odds(p_x) - laplace_log_odds(p_without)
            count[i:i + kh, j:j + kw] += 1
        out[s] = rel / count
    return out


# ---- prediction difference ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", ["marginal", "conditional"])
def test_prediction_difference_matches_reference(cnn: tuple[nn.Module, bytes], data: tuple[np.ndarray, np.ndarray],
                                                 sampling: str) -> None:
    _, model_bytes = cnn
    train, x = data
    targets = np.array([2, 0])
    ex = ox.explainer(ox.load(model_bytes), "prediction_difference", window=3, samples=6, sampling=sampling, seed=5,
                      padding=2, batch_size=40)  # 6 positions per forward: several chunks per sample
    ex.fit(train, batch_size=7)
    got = ex.explain(x, target=targets)
    probs = _ort_probabilities(model_bytes, (3, 10, 10))
    want = reference_pda(probs, x, train, 30, targets, (3, 3), 6, 5, sampling, frame=(2, 2),
                         low=train.min(axis=0), high=train.max(axis=0))
    assert got.shape == x.shape and got.dtype == np.float32
    scale = np.abs(want).max()
    assert scale > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
    # each sample's explanation is its own (a fresh generator per sample)
    np.testing.assert_allclose(ex.explain(x[1:], target=targets[1:])[0], got[1], rtol=1e-5, atol=1e-6 * scale)


def test_prediction_difference_rank3(data: tuple[np.ndarray, np.ndarray]) -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(40, CLASSES)).eval()
    model_bytes = export(net, torch.zeros(1, 3, 10), dynamo=False)
    train, x = data[0][:, :, 0, :], data[1][:, :, 0, :]
    probs = _ort_probabilities(model_bytes, (3, 10))
    for sampling in ("marginal", "conditional"):
        ex = ox.explainer(ox.load(model_bytes), "prediction_difference", window=4, samples=5, sampling=sampling,
                          padding=1).fit(train)
        got = ex.explain(x, target=1)
        want = reference_pda(probs, x[:, :, None], train[:, :, None], 30, np.array([1, 1]), (1, 4), 5, 0, sampling,
                             frame=(0, 1), low=train.min(axis=0)[:, None], high=train.max(axis=0)[:, None])[:, :, 0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_prediction_difference_uses_the_models_own_softmax(cnn: tuple[nn.Module, bytes],
                                                           data: tuple[np.ndarray, np.ndarray]) -> None:
    net, _ = cnn
    train, x = data
    with_softmax = export(nn.Sequential(net, nn.Softmax(dim=1)).eval(), torch.zeros(1, 3, 10, 10), dynamo=False)
    kept = ox.load(with_softmax, strip_softmax=False)
    assert np.allclose(kept.predict(x).sum(axis=1), 1, atol=1e-5)
    params = {"window": 4, "samples": 4, "seed": 1}
    a = ox.explainer(kept, "prediction_difference", **params).fit(train).explain(x)
    b = ox.explainer(ox.load(with_softmax), "prediction_difference", **params).fit(train).explain(x)  # logits
    want = reference_pda(_ort_probabilities(with_softmax, (3, 10, 10)), x, train, 30,
                         net(torch.from_numpy(x)).argmax(1).numpy(), (4, 4), 4, 1, "marginal")
    np.testing.assert_allclose(a, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(b, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("sampling", ["marginal", "conditional"])
def test_prediction_difference_ignored_pixels_get_zero(data: tuple[np.ndarray, np.ndarray], sampling: str) -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(300, CLASSES)).eval()
    with torch.no_grad():
        net[1].weight.view(CLASSES, 3, 10, 10)[..., :4] = 0  # the model ignores columns 0..3
    ex = ox.explainer(ox.load(export(net, torch.zeros(1, 3, 10, 10), dynamo=False)), "prediction_difference",
                      window=3, samples=8, sampling=sampling, padding=1).fit(data[0])
    rel = ex.explain(data[1])
    # Columns 0 and 1 lie only in windows inside columns 0..3: their predictions do not change.
    assert np.abs(rel[..., :2]).max() < 1e-6
    assert np.abs(rel[..., 4:]).max() > 1e-2


def test_prediction_difference_reservoir_and_pickle(cnn: tuple[nn.Module, bytes],
                                                    data: tuple[np.ndarray, np.ndarray]) -> None:
    _, model_bytes = cnn
    train, x = data
    ex = ox.explainer(ox.load(model_bytes), "prediction_difference", window=5, samples=3, max_train=8)
    ex.fit(train, batch_size=4)
    kept = ex._py.train
    assert kept.shape == (8, 3, 10, 10) and ex._py.n_seen == 30
    assert all(any(np.array_equal(k, t) for t in train) for k in kept)
    assert not np.array_equal(kept, train[:8])  # later images entered the reservoir
    targets = np.array([0, 1])
    got = ex.explain(x, target=targets)
    want = reference_pda(_ort_probabilities(model_bytes, (3, 10, 10)), x, kept, 30, targets, (5, 5), 3, 0,
                         "marginal")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    again = pickle.loads(pickle.dumps(ex))
    np.testing.assert_array_equal(again.explain(x, target=targets), got)
    cond = ox.explainer(ox.load(model_bytes), "prediction_difference", window=3, samples=3, sampling="conditional")
    cond.fit(train)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(cond)).explain(x), cond.explain(x))


def test_prediction_difference_progress_and_stride(cnn: tuple[nn.Module, bytes],
                                                   data: tuple[np.ndarray, np.ndarray]) -> None:
    _, model_bytes = cnn
    train, x = data
    calls: list[tuple[int, int]] = []
    ex = ox.explainer(ox.load(model_bytes), "prediction_difference", window=4, stride=3, samples=2,
                      batch_size=4).fit(train)
    rel = ex.explain(x, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (2 * 9 * 2, 2 * 9 * 2) and len(calls) == 2 * 5  # 3x3 positions, 2 per pass
    # positions 0, 3, 6 cover every pixel; the windows at 0 and 3 share column 3
    assert np.all(rel[:, :, :, 3] != 0)


def test_prediction_difference_errors(cnn: tuple[nn.Module, bytes], data: tuple[np.ndarray, np.ndarray]) -> None:
    _, model_bytes = cnn
    model = ox.load(model_bytes)
    train, x = data
    with pytest.raises(ValueError, match=r"call fit\(train\) first"):
        ox.explainer(model, "prediction_difference").explain(x)
    with pytest.raises(ValueError, match="sampling must be"):
        ox.explainer(model, "prediction_difference", sampling="uniform")
    with pytest.raises(ValueError, match="window must be"):
        ox.explainer(model, "prediction_difference", window=0)
    with pytest.raises(ValueError, match="larger than the input"):
        ox.explainer(model, "prediction_difference", window=11).fit(train).explain(x)
    with pytest.raises(ValueError, match="padding"):
        ox.explainer(model, "prediction_difference", window=8, padding=2, sampling="conditional").fit(train)
    mlp = nn.Sequential(nn.Linear(6, CLASSES)).eval()
    tab = ox.load(export(mlp, torch.zeros(1, 6), dynamo=False))
    # Tabular inputs have their own forms (tests/methods/test_tabular.py); the image settings are refused there.
    with pytest.raises(ValueError, match="sampling='conditional' is for images"):
        ox.explainer(tab, "prediction_difference", sampling="conditional").fit(np.zeros((4, 6), np.float32))
    with pytest.raises(ValueError, match="segments= is for images"):
        ox.explainer(tab, "lime", segments=np.zeros(6, np.int64)).fit(np.ones((4, 6), np.float32)).explain(
            np.zeros((1, 6), np.float32))


# ---- LIME --------------------------------------------------------------------------------------------------------


def _blocks(h: int, w: int, size: int) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(h) // size, np.arange(w) // size, indexing="ij")
    return rows * ((w + size - 1) // size) + cols


def _captum_lime(net: nn.Module, x: np.ndarray, target: int, seg: np.ndarray, samples: int, seed: int,
                 width: float, alpha: float, baselines: float | torch.Tensor) -> np.ndarray:
    from captum._utils.models.linear_model import SkLearnLinearRegression, SkLearnRidge
    from captum.attr import Lime

    m = int(seg.max()) + 1
    z = np.random.default_rng(seed).integers(0, 2, size=(samples, m))  # the documented draws, replayed
    z[0] = 1

    def perturb(original: torch.Tensor, **kwargs: object):  # noqa: ANN202 - a generator Captum consumes
        for row in z:
            yield torch.tensor(row[None], dtype=torch.long)

    def similarity(original: torch.Tensor, perturbed: torch.Tensor, interpretable: torch.Tensor,
                   **kwargs: object) -> float:
        on = float(interpretable.sum())
        d = 1.0 - on / (math.sqrt(on) * math.sqrt(m)) if on > 0 else 1.0  # cosine distance to all ones
        return math.sqrt(math.exp(-d * d / width**2))

    surrogate = SkLearnRidge(alpha=alpha) if alpha > 0 else SkLearnLinearRegression()
    lime = Lime(net, interpretable_model=surrogate, similarity_func=similarity, perturb_func=perturb)
    attr = lime.attribute(torch.from_numpy(x), target=target, n_samples=samples, baselines=baselines,
                          feature_mask=torch.from_numpy(seg)[None, None], perturbations_per_eval=37)
    return attr.detach().numpy()


@pytest.mark.parametrize(("alpha", "fill"), [(1.0, 0.0), (0.0, 0.25), (3.0, "mean")])
def test_lime_matches_captum(cnn: tuple[nn.Module, bytes], data: tuple[np.ndarray, np.ndarray], alpha: float,
                             fill: float | str) -> None:
    net, model_bytes = cnn
    x = data[1]
    seg = _blocks(10, 10, 3)  # 16 segments, ids 0..15
    samples, seed, width = 300, 11, 0.4
    ex = ox.explainer(ox.load(model_bytes), "lime", samples=samples, segments=seg, kernel_width=width, seed=seed,
                      fill=fill, alpha=alpha, batch_size=64)
    targets = [1, 2]
    got = ex.explain(x, target=targets)
    for i, t in enumerate(targets):
        if fill == "mean":  # LIME's hide_color=None: each segment's mean colour
            base = np.zeros_like(x[i])
            for s in range(seg.max() + 1):
                base[:, seg == s] = x[i][:, seg == s].mean(axis=1, keepdims=True)
            baselines: float | torch.Tensor = torch.from_numpy(base[None])
        else:
            baselines = float(fill)
        want = _captum_lime(net, x[i:i + 1], t, seg, samples, seed, width, alpha, baselines)[0]
        scale = np.abs(want).max()
        np.testing.assert_allclose(got[i], want, rtol=2e-4, atol=2e-5 * scale)


def test_lime_draws_and_segment_forms(cnn: tuple[nn.Module, bytes], data: tuple[np.ndarray, np.ndarray]) -> None:
    _, model_bytes = cnn
    model = ox.load(model_bytes)
    x = data[1]
    z = np.random.default_rng(4).integers(0, 2, size=(50, 9))
    z[0] = 1
    ex = ox.explainer(model, "lime", samples=50, seed=4, segments=_blocks(10, 10, 4))
    np.testing.assert_array_equal(ex._py.draw_samples(9), z)
    base = ex.explain(x, target=0)
    assert np.unique(base[0]).size <= 9
    # ids need not be contiguous (features in the order of the sorted ids), maps may come per sample
    # or from a callable
    spread = _blocks(10, 10, 4) * 7 + 3
    for seg in (spread, np.stack([_blocks(10, 10, 4)] * 2), lambda img: _blocks(img.shape[1], img.shape[2], 4)):
        np.testing.assert_allclose(ox.explainer(model, "lime", samples=50, seed=4, segments=seg).explain(x, target=0),
                                   base, rtol=1e-6, atol=1e-7)
    again = pickle.loads(pickle.dumps(ex))
    np.testing.assert_array_equal(again.explain(x, target=0), base)


def test_lime_default_segments_are_slic(cnn: tuple[nn.Module, bytes], data: tuple[np.ndarray, np.ndarray]) -> None:
    from skimage.segmentation import slic

    _, model_bytes = cnn
    x = np.cumsum(data[1], axis=2)  # smoother: a handful of superpixels
    maps = []
    for img in x:
        img = np.moveaxis(img.astype(np.float64), 0, -1)
        img = (img - img.min()) / (img.max() - img.min())
        maps.append(slic(img, channel_axis=-1, **SLIC_PARAMS))
    model = ox.load(model_bytes)
    got = ox.explainer(model, "lime", samples=64).explain(x, target=2)
    np.testing.assert_allclose(got, ox.explainer(model, "lime", samples=64, segments=np.stack(maps)).explain(
        x, target=2), rtol=1e-6, atol=1e-7)


def test_weighted_ridge_solvers_agree() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, size=(80, 12)).astype(np.float64)
    x[:, 5] = x[:, 4]  # rank-deficient for alpha = 0: both give the minimum-norm solution
    y = rng.standard_normal(80)
    w = rng.uniform(0.1, 1.0, 80)
    for alpha in (0.0, 0.5, 1.0):
        c1, b1 = weighted_ridge(x, y, w, alpha, use_sklearn=True)
        c2, b2 = weighted_ridge(x, y, w, alpha, use_sklearn=False)
        np.testing.assert_allclose(c2, c1, rtol=1e-8, atol=1e-10)
        assert b2 == pytest.approx(b1, rel=1e-8, abs=1e-10)


def test_lime_errors(cnn: tuple[nn.Module, bytes], data: tuple[np.ndarray, np.ndarray],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, model_bytes = cnn
    model = ox.load(model_bytes)
    x = data[1]
    with pytest.raises(ValueError, match="do not fit samples"):
        ox.explainer(model, "lime", segments=np.zeros((9, 10), np.int64)).explain(x)
    with pytest.raises(ValueError, match="int array"):
        ox.explainer(model, "lime", segments=np.zeros((10, 10)))
    with pytest.raises(ValueError, match=r"segments\(sample\) must return"):
        ox.explainer(model, "lime", segments=lambda img: np.zeros((3, 3), np.int64)).explain(x)
    with pytest.raises(ValueError, match="fill must be"):
        ox.explainer(model, "lime", fill="median")
    with pytest.raises(ValueError, match="kernel_width"):
        ox.explainer(model, "lime", kernel_width=0)
    with pytest.raises(ValueError, match="no parameter"):
        ox.explainer(model, "lime", n_segments=10)
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)
    with pytest.raises(ImportError, match="pip install scikit-image"):
        ox.explainer(model, "lime", samples=10).explain(x)
