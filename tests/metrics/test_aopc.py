"""ox.metrics.aopc against Quantus's RegionPerturbation and PixelFlipping on the same PyTorch models
and explanation arrays, and against an independent loop re-derivation (explicit tile slices, the
torch module as the forward) for every perturbation and order; where Quantus differs from the
paper (curve convention, its "mean" baseline, border tiles, ties) the tests convert or show it."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import onnxplain as ox
from tests.metrics.common import Crop, case, cnn, export, inputs, load, quantus, torch, torch_forward


def tile_slices(spatial: tuple[int, ...], region: int) -> list[tuple[slice, ...]]:
    """Row-major tiles anchored at the origin, partial at the end."""
    ranges = [range(0, s, region) for s in spatial]
    return [tuple(slice(o, min(o + region, s)) for o, s in zip(origin, spatial))
            for origin in itertools.product(*ranges)]


def tile_scores(rel: np.ndarray, tiles: list[tuple[slice, ...]]) -> np.ndarray:
    """rel: (N, *spatial) channel-summed."""
    return np.array([[float(r[sl].sum()) for sl in tiles] for r in rel])


def reference(net: Any, x: np.ndarray, rel: np.ndarray, targets: np.ndarray, region: int, steps: int | None,
              order: str, replacement: np.ndarray, permutations: np.ndarray | None = None) -> np.ndarray:
    """Curves (N, steps + 1) by loops over explicit tiles; f from the torch module."""
    spatial = x.shape[2:]
    tiles = tile_slices(spatial, region)
    scores = tile_scores(rel.sum(axis=1) if rel.ndim == x.ndim else rel, tiles)
    steps = len(tiles) if steps is None else steps
    curves = []
    for i in range(x.shape[0]):
        if order == "morf":
            seq = sorted(range(len(tiles)), key=lambda j: (-scores[i, j], j))
        elif order == "lerf":
            seq = sorted(range(len(tiles)), key=lambda j: (scores[i, j], j))
        else:
            assert permutations is not None
            seq = list(permutations[i])
        xi = x[i].copy()
        stack = [xi.copy()]
        for j in seq[:steps]:
            sl = (slice(None), *tiles[j])
            xi[sl] = replacement[i][sl]
            stack.append(xi.copy())
        curves.append(torch_forward(net, np.stack(stack))[:, targets[i]])
    return np.array(curves)


def assert_curves(got: np.ndarray, expected: np.ndarray, tol: float = 1e-4) -> None:
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol * scale)


def setup(channels: int, size: int, n: int = 3, seed: int = 0) -> tuple[Any, ox.Model, np.ndarray, np.ndarray,
                                                                          np.ndarray]:
    net, data = case("cnn", channels, size, seed)
    m = load(data)
    x = inputs((channels, size, size), n, seed + 1)
    rel = ox.explainer(m, "input_t_gradient").explain(x)
    targets = np.argmax(torch_forward(net, x), axis=1)
    return net, m, x, rel, targets


def quantus_region(net: Any, x: np.ndarray, targets: np.ndarray, rel: np.ndarray, region: int, order: str,
                   regions: int, baseline: Any) -> np.ndarray:
    q = quantus().RegionPerturbation(patch_size=region, order=order, regions_evaluation=regions, normalise=False,
                                     abs=False, perturb_baseline=baseline, disable_warnings=True)
    return np.asarray(q(net, x, targets, a_batch=rel, softmax=False, channel_first=True), dtype=np.float64)


# ---- Quantus -------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize(("channels", "size", "region", "steps"), [(1, 16, 4, None), (3, 12, 3, None), (3, 12, 2, 10)])
@pytest.mark.parametrize("fill", [0.0, 0.5])
def test_region_perturbation_equals_quantus(order: str, channels: int, size: int, region: int, steps: int | None,
                                            fill: float) -> None:
    net, m, x, rel, targets = setup(channels, size)
    ours = ox.metrics.aopc(m, x, rel, region=region, steps=steps, order=order, fill=fill)
    n_steps = ours.curves.shape[1] - 1
    assert n_steps == (steps or (size // region) ** 2)
    # Distinct tile sums: Quantus's unstable argsort and our stable one agree only without ties.
    sums = tile_scores(rel.sum(axis=1), tile_slices((size, size), region))
    assert all(len(np.unique(s)) == s.size for s in sums)
    got = quantus_region(net, x, targets, rel, region, order, n_steps, fill)
    # Quantus stores f(x) - f(x^(k)) for k = 1..steps; our curves hold f(x^(k)) for k = 0..steps.
    assert_curves(ours.curves[:, :1] - ours.curves[:, 1:], got)
    # Quantus computes no AOPC; the paper's (1/(L+1)) sum_{k=0..L} of those differences:
    np.testing.assert_allclose(ours.aopc, got.sum(axis=1) / (n_steps + 1), atol=1e-5 * max(1, np.abs(got).max()))
    assert ours.mean == pytest.approx(float(np.mean(ours.aopc)))
    np.testing.assert_array_equal(ours.targets, targets)


@pytest.mark.parametrize(("channels", "size"), [(1, 16), (3, 12)])
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_pixel_flipping_equals_quantus(channels: int, size: int, order: str) -> None:
    net, m, x, _, targets = setup(channels, size)
    rel = ox.explainer(m, "gradient").explain(x).sum(axis=1, keepdims=True)  # one value per pixel
    ours = ox.metrics.aopc(m, x, rel, region=1, order=order, fill=0.0)
    # A Quantus step perturbs `features_in_step` values of the flattened input in the order of
    # argsort(-a): with the relevance broadcast over the channels, C values are one pixel. Quantus's
    # PixelFlipping is MoRF only; LeRF is MoRF of the negated relevance.
    q = quantus().PixelFlipping(features_in_step=channels, normalise=False, abs=False, perturb_baseline=0.0,
                                disable_warnings=True)
    a = rel if order == "morf" else -rel
    got = np.asarray(q(net, x, targets, a_batch=a, softmax=False, channel_first=True), dtype=np.float64)
    # PixelFlipping stores f(x^(k)) for k = 1..H*W: our curves without k = 0.
    assert_curves(ours.curves[:, 1:], got)


def test_mean_perturbation_equals_quantus_given_the_same_baseline() -> None:
    """Our "mean" is each sample's per-channel mean of the unperturbed input; Quantus accepts a
    baseline array of one value per perturbed index (N, C*r*r), which we fill with those means."""
    net, m, x, rel, targets = setup(3, 12)
    region = 3
    ours = ox.metrics.aopc(m, x, rel, region=region, perturbation="mean")
    means = x.mean(axis=(2, 3))  # (N, C)
    baseline = np.repeat(means, region * region, axis=1)  # Quantus's patch indices are channel-major
    got = quantus_region(net, x, targets, rel, region, "morf", ours.n_regions, baseline)
    assert_curves(ours.curves[:, :1] - ours.curves[:, 1:], got)


def test_quantus_mean_baseline_is_recomputed_from_the_perturbed_image() -> None:
    """The difference: Quantus's perturb_baseline="mean" is the mean over all channels and positions
    of the *current, already perturbed* image at each step, so it drifts; ours is fixed. At step 1
    (one channel) they agree; Quantus's whole curve is reproduced by that drifting rule."""
    net, m, x, rel, targets = setup(1, 16)
    region = 4
    ours = ox.metrics.aopc(m, x, rel, region=region, perturbation="mean")
    got = quantus_region(net, x, targets, rel, region, "morf", ours.n_regions, "mean")
    diff = ours.curves[:, :1] - ours.curves[:, 1:]
    np.testing.assert_allclose(diff[:, 0], got[:, 0], atol=1e-5)
    assert not np.allclose(diff[:, 2:], got[:, 2:], atol=1e-3)
    tiles = tile_slices((16, 16), region)
    drift = np.empty_like(got)
    for i in range(x.shape[0]):
        xi = x[i].copy()
        stack = []
        for j in ours.ranking[i]:
            xi[(slice(None), *tiles[j])] = xi.mean()
            stack.append(xi.copy())
        f = torch_forward(net, np.stack(stack))[:, targets[i]]
        drift[i] = torch_forward(net, x[i:i + 1])[0, targets[i]] - f
    assert_curves(got, drift)


def test_border_tiles_differ_from_quantus_and_agree_once_padded() -> None:
    """Where the size is not divisible by the region, Quantus pads the image evenly on both sides
    (floor on top/left, ceil on bottom/right: edge values for x, zeros for the relevance) and tiles
    the padded image, so its tiles are centred; ours start at the first row/column with partial
    tiles at the bottom/right. Running ours on the padded image through a model that crops the pad
    off reproduces Quantus exactly."""
    size, region, top, bottom = 13, 4, 1, 2  # Quantus: get_padding_size(13, 4) == (1, 2)
    net = cnn(1, size, seed=3)
    m = load(export(net, torch.randn(2, 1, size, size), dynamo=False))
    x = inputs((1, size, size), 3, seed=4)
    rel = ox.explainer(m, "input_t_gradient").explain(x)
    targets = np.argmax(torch_forward(net, x), axis=1)
    got = quantus_region(net, x, targets, rel, region, "morf", 16, 0.0)

    crop = Crop(net, top, top, size, size).eval()
    padded = size + top + bottom
    m_crop = load(export(crop, torch.randn(2, 1, padded, padded), dynamo=False))
    pad = ((0, 0), (0, 0), (top, bottom), (top, bottom))
    ours_padded = ox.metrics.aopc(m_crop, np.pad(x, pad, mode="edge"), np.pad(rel, pad), region=region)
    assert_curves(ours_padded.curves[:, :1] - ours_padded.curves[:, 1:], got)

    ours = ox.metrics.aopc(m, x, rel, region=region)
    assert ours.n_regions == 16  # 4 x 4 tiles, the last row and column of them 1 pixel wide
    assert not np.allclose(ours.curves[:, :1] - ours.curves[:, 1:], got, atol=1e-3)
    expected = reference(net, x, rel, targets, region, None, "morf", np.zeros_like(x))
    assert_curves(ours.curves, expected)


def test_ties_go_to_the_lower_tile_first_unlike_quantus() -> None:
    """Tiles with equal relevance: ours are perturbed lower index first (a stable sort); Quantus's
    np.argsort(-sums) is not stable for more than 16 tiles. Quantus's curve is ours for the
    relevance that breaks the ties in Quantus's order."""
    net, m, x, _, targets = setup(1, 16, n=2)
    region = 2
    pattern = np.array([1.0, 0, 0, 1, 0, 1, 1, 0] * 8, dtype=np.float32).reshape(8, 8)
    rel = np.broadcast_to(np.kron(pattern, np.ones((region, region), np.float32)), (2, 1, 16, 16)).copy()
    ours = ox.metrics.aopc(m, x, rel, region=region)
    flat = pattern.reshape(-1)
    stable = np.concatenate([np.flatnonzero(flat == 1), np.flatnonzero(flat == 0)])
    np.testing.assert_array_equal(ours.ranking, np.stack([stable, stable]))
    lerf = ox.metrics.aopc(m, x, rel, region=region, order="lerf")
    np.testing.assert_array_equal(lerf.ranking[0],
                                  np.concatenate([np.flatnonzero(flat == 0), np.flatnonzero(flat == 1)]))

    got = quantus_region(net, x, targets, rel, region, "morf", 64, 0.0)
    sums = (flat * region * region).astype(np.float32)
    quantus_order = np.argsort(-sums)  # what Quantus does with its (float32) patch sums
    assert not np.array_equal(quantus_order, stable)
    assert not np.allclose(ours.curves[:, :1] - ours.curves[:, 1:], got, atol=1e-4)
    tie_broken = np.empty(64, np.float32)
    tie_broken[quantus_order] = np.arange(64, 0, -1)
    rel_q = np.broadcast_to(np.kron(tie_broken.reshape(8, 8), np.ones((region, region), np.float32)),
                            (2, 1, 16, 16))
    ours_q = ox.metrics.aopc(m, x, rel_q, region=region)
    assert_curves(ours_q.curves[:, :1] - ours_q.curves[:, 1:], got)


# ---- independent re-derivation ---------------------------------------------------------------------


@pytest.mark.parametrize("perturbation", ["constant", "mean", "uniform", "blur"])
@pytest.mark.parametrize("order", ["morf", "lerf", "random"])
def test_equals_loop_reference(perturbation: str, order: str) -> None:
    net, m, x, rel, targets = setup(3, 12, n=2)
    region, seed, sigma = 5, 7, 1.5  # 12 = 5 + 5 + 2: partial tiles at the bottom and right
    ours = ox.metrics.aopc(m, x, rel, region=region, order=order, perturbation=perturbation, seed=seed,
                           fill=np.array([0.5, -1.0, 0.25], np.float32)[:, None, None], sigma=sigma, batch_size=5)
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(9) for _ in range(2)]) if order == "random" else None
    if perturbation == "constant":
        repl = np.broadcast_to(np.array([0.5, -1.0, 0.25], np.float32)[:, None, None], x.shape)
    elif perturbation == "mean":
        repl = np.broadcast_to(x.mean(axis=(2, 3), keepdims=True), x.shape)
    elif perturbation == "uniform":
        lo = np.array([xi.min() for xi in x], np.float64)[:, None, None, None]
        hi = np.array([xi.max() for xi in x], np.float64)[:, None, None, None]
        repl = rng.uniform(lo, hi, size=x.shape).astype(np.float32)
        assert np.all((repl >= lo) & (repl <= hi))
    else:
        from scipy.ndimage import gaussian_filter

        repl = np.stack([gaussian_filter(xi.astype(np.float64), sigma=(0, sigma, sigma)) for xi in x])
        repl = repl.astype(np.float32)
    expected = reference(net, x, rel, targets, region, None, order, np.asarray(repl), perms)
    assert_curves(ours.curves, expected)
    np.testing.assert_allclose(ours.aopc, (expected[:, :1] - expected).mean(axis=1), atol=1e-4)
    if perms is not None:
        np.testing.assert_array_equal(ours.ranking, perms)


@pytest.mark.parametrize("perturbation", ["dirichlet", "uniform", "constant"])
def test_one_dimensional_signals(perturbation: str) -> None:
    """(N, C, L) inputs such as one-hot DNA (C = 4): tiles of `region` positions; "dirichlet" puts a
    flat-Dirichlet draw on the simplex at each perturbed position."""
    net, data = case("cnn1d", 4, 30, 0)
    m = load(data)
    rng0 = np.random.default_rng(2)
    x = np.eye(4, dtype=np.float32)[rng0.integers(0, 4, size=(3, 30))].transpose(0, 2, 1).copy()
    rel = rng0.standard_normal((3, 30)).astype(np.float32)  # no channel axis
    ours = ox.metrics.aopc(m, x, rel, region=4, steps=6, perturbation=perturbation, seed=11)
    targets = np.argmax(torch_forward(net, x), axis=1)
    rng = np.random.default_rng(11)
    if perturbation == "dirichlet":
        repl = np.moveaxis(rng.dirichlet(np.ones(4), size=(3, 30)), -1, 1).astype(np.float32)
        np.testing.assert_allclose(repl.sum(axis=1), 1.0, rtol=1e-5)
    elif perturbation == "uniform":
        repl = rng.uniform(np.zeros((3, 1, 1)), np.ones((3, 1, 1)), size=x.shape).astype(np.float32)
    else:
        repl = np.zeros_like(x)
    expected = reference(net, x, rel, targets, 4, 6, "morf", repl)
    assert ours.n_regions == 8  # 7 tiles of 4 and one of 2
    assert_curves(ours.curves, expected)


def test_relevance_shapes_and_targets() -> None:
    net, m, x, rel, targets = setup(3, 12)
    full = ox.metrics.aopc(m, x, rel, region=4)
    summed = rel.sum(axis=1)
    for r in (summed, summed[:, None]):
        np.testing.assert_allclose(ox.metrics.aopc(m, x, r, region=4).curves, full.curves, atol=1e-6)
    by_int = ox.metrics.aopc(m, x, rel, region=4, target=2)
    expected = reference(net, x, rel, np.full(3, 2), 4, None, "morf", np.zeros_like(x))
    assert_curves(by_int.curves, expected)
    per = ox.metrics.aopc(m, x, rel, region=4, target=[1, 5, 9])
    assert_curves(per.curves, reference(net, x, rel, np.array([1, 5, 9]), 4, None, "morf", np.zeros_like(x)))
    part = ox.metrics.aopc(m, x, rel, region=4, steps=3)
    assert part.curves.shape == (3, 4) and part.ranking.shape == (3, 3)
    # (Other batch compositions: float32 sums in another order.)
    np.testing.assert_allclose(part.curves, full.curves[:, :4], atol=1e-6)
    np.testing.assert_allclose(part.aopc, (full.curves[:, :1] - full.curves[:, :4]).mean(axis=1), atol=1e-6)


def test_blur_numpy_fallback_equals_scipy() -> None:
    from scipy.ndimage import gaussian_filter

    from onnxplain.metrics import _gaussian_blur

    x = np.random.default_rng(0).standard_normal((2, 3, 7, 9))
    for sigma in (0.6, 1.5, 4.0):  # 4.0: the kernel is wider than the image (repeated reflection)
        want = gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="reflect", truncate=4.0)
        np.testing.assert_allclose(_gaussian_blur(x, sigma, (2, 3), use_scipy=False), want, atol=1e-12)
        np.testing.assert_allclose(_gaussian_blur(x, sigma, (2, 3)), want, atol=1e-12)
    signal = np.random.default_rng(1).standard_normal((2, 4, 11))
    np.testing.assert_allclose(_gaussian_blur(signal, 2.0, (2,), use_scipy=False),
                               gaussian_filter(signal, sigma=(0, 0, 2.0)), atol=1e-12)


def test_morf_of_a_faithful_explanation_beats_lerf() -> None:
    """A property the metric exists for: on a linear model, relevance w * x (exact contributions)
    gives a larger MoRF AOPC than LeRF, and random lies between."""
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()
    m = load(export(lin, torch.randn(2, 1, 8, 8), dynamo=False))
    x = inputs((1, 8, 8), 4, seed=5)
    rel = ox.explainer(m, "input_t_gradient").explain(x, target=0)
    res = {o: ox.metrics.aopc(m, x, rel, target=0, region=1, order=o).aopc for o in ("morf", "lerf", "random")}
    assert np.all(res["morf"] > res["random"]) and np.all(res["random"] > res["lerf"])


# ---- errors --------------------------------------------------------------------------------------


def test_errors() -> None:
    _, m, x, rel, _ = setup(3, 12, n=2)
    aopc = ox.metrics.aopc
    with pytest.raises(ValueError, match="image-like"):
        aopc(m, x.reshape(-1), rel.reshape(-1))
    with pytest.raises(ValueError, match="one value per feature"):  # rank 2 is tabular data (N, F)
        aopc(m, x.reshape(2, -1), rel.reshape(2, -1)[:, :5])
    with pytest.raises(ValueError, match="image-like"):
        aopc(m, x[..., None], rel[..., None])
    with pytest.raises(ValueError, match="relevance has shape"):
        aopc(m, x, rel[:, :2])
    with pytest.raises(ValueError, match="relevance has shape"):
        aopc(m, x, rel[:1])
    with pytest.raises(ValueError, match="order"):
        aopc(m, x, rel, order="most")
    with pytest.raises(ValueError, match="perturbation"):
        aopc(m, x, rel, perturbation="noise")
    with pytest.raises(ValueError, match="larger than the spatial size"):
        aopc(m, x, rel, region=13)
    with pytest.raises(ValueError, match="positive"):
        aopc(m, x, rel, region=0)
    with pytest.raises(ValueError, match="sides"):
        aopc(m, x, rel, region=(2, 2, 2))
    with pytest.raises(ValueError, match="region must be"):
        aopc(m, x, rel, region=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        aopc(m, x, rel, region=4, steps=10)
    with pytest.raises(ValueError, match="steps"):
        aopc(m, x, rel, region=4, steps=0)
    with pytest.raises(ValueError, match="at least 2 channels"):
        aopc(m, x[:, :1], rel[:, :1], perturbation="dirichlet")
    with pytest.raises(ValueError, match="broadcast"):
        aopc(m, x, rel, fill=np.zeros(5))
    with pytest.raises(ValueError, match="out of range"):
        aopc(m, x, rel, target=10)
    with pytest.raises(ValueError, match="entries"):
        aopc(m, x, rel, target=[1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        aopc(m, x, np.full_like(rel, np.nan))
    with pytest.raises(ValueError, match="batch_size"):
        aopc(m, x, rel, batch_size=0)
    with pytest.raises(ValueError, match="sigma"):
        aopc(m, x, rel, perturbation="blur", sigma=-1.0)
