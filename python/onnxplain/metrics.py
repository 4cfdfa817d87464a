"""Metrics for explanations: how faithful they are to the model, whether they depend on it at all,
and how reliable the metrics themselves are.

- :func:`aopc`: region perturbation (pixel-flipping with ``region=1``) and the area over the
  perturbation curve, Samek et al. 2017.
- :func:`faithfulness_correlation`: Bhatt et al. 2020.

Both take images (N, C, H, W), 1-D signals (N, C, L) and tabular data (N, F) (one column per
feature; regions and subsets are then sets of features).
- :func:`model_randomisation` and :func:`randomised_models`: the cascading model parameter
  randomisation test of Adebayo et al. 2018.
- :func:`reliability`: inter-rater reliability, inter-method reliability and internal consistency
  of saliency metrics, Tomsett et al. 2020.

Every metric runs the model through ``model.predict`` on its outputs as they are: a model loaded
with ``ox.load(..., strip_softmax=True)`` (the default) is measured on its logits. Perturbed
inputs of many samples and steps are stacked into batches of ``batch_size`` rows for the forward
passes. Every metric but the model-randomisation check needs nothing but ``predict``, so it measures
models run by onnxruntime (``ox.load(..., backend="onnxruntime")``, the fallback for models the
engine cannot run, such as scikit-learn pipelines) exactly as those the engine runs. Optional
dependencies are imported when needed: SciPy (Gaussian blur; a NumPy fallback exists),
scikit-image (SSIM) and ``krippendorff`` (Krippendorff's alpha).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

__all__ = [
    "AOPCResult",
    "ReliabilityResult",
    "aopc",
    "faithfulness_correlation",
    "model_randomisation",
    "randomised_models",
    "reliability",
]

TargetLike = Union[None, int, Sequence[int], np.ndarray]

_ORDERS = ("morf", "lerf", "random")
_PERTURBATIONS = ("constant", "mean", "uniform", "dirichlet", "blur")
_SIMILARITIES = ("spearman", "pearson", "ssim")
_DEFAULT_BATCH = 128


# ---- shared helpers --------------------------------------------------------------------------------


def _batch(x: Any, name: str = "x") -> np.ndarray:
    """One float32 input batch (the metrics work on single-input models)."""
    if isinstance(x, Mapping):
        raise ValueError(f"{name} must be one array (the metrics work on single-input models)")
    try:
        arr = np.asarray(x)
    except ValueError:
        raise ValueError(f"{name} must be one array (the metrics work on single-input models)") from None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a numeric array; got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch (samples on the first axis); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    return int(batch_size)


def _predict(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model.predict`` in chunks of ``batch_size`` rows, as float64 of shape (n, outputs)."""
    outs = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start:start + batch_size]
        out = np.asarray(model.predict(chunk), dtype=np.float64)
        if out.ndim == 0 or out.shape[0] != chunk.shape[0]:
            raise ValueError(f"model.predict returned shape {out.shape} for a batch of {chunk.shape[0]}; the "
                             "metrics need one row of outputs per sample")
        outs.append(out.reshape(chunk.shape[0], -1))
    return np.concatenate(outs, axis=0)


def _targets(target: TargetLike, n: int, outputs: np.ndarray) -> np.ndarray:
    """One output index per sample: None = the argmax of ``outputs`` (the model's outputs on x)."""
    k = outputs.shape[1]
    if target is None:
        return np.argmax(outputs, axis=1).astype(np.int64)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        t = np.full(n, int(target), dtype=np.int64)
    else:
        arr = np.asarray(target)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"target must be None, an int, or one int per sample; got {target!r}")
        if arr.shape[0] != n:
            raise ValueError(f"target has {arr.shape[0]} entries for a batch of {n}")
        t = arr.astype(np.int64)
    bad = t[(t < 0) | (t >= k)]
    if bad.size:
        raise ValueError(f"target {int(bad[0])} is out of range: the model has {k} outputs per sample (0..{k - 1})")
    return t


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r between the rows of a and b (float64); NaN where a row is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1))
    num = np.sum(a * b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def _rank_rows(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, ties given their average rank (as scipy.stats.rankdata)."""
    a = np.asarray(a, dtype=np.float64)
    flat = a.reshape(-1, a.shape[-1])
    out = np.empty_like(flat)
    n = flat.shape[1]
    for i, row in enumerate(flat):
        order = np.argsort(row, kind="mergesort")
        s = row[order]
        # Boundaries of runs of equal values; every member of a run gets the run's mean rank.
        starts = np.concatenate(([True], s[1:] != s[:-1]))
        run = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        last = np.concatenate((first[1:], [n])) - 1
        mean_rank = (first + last) / 2.0 + 1.0
        out[i, order] = mean_rank[run]
    return out.reshape(a.shape)


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho between the rows of a and b: Pearson's r of the average ranks."""
    return _pearson_rows(_rank_rows(a), _rank_rows(b))


# ---- AOPC ----------------------------------------------------------------------------------------


@dataclass
class AOPCResult:
    """What :func:`aopc` returns.

    Attributes
    ----------
    curves : numpy.ndarray
        (N, steps + 1): f_t(x^(k)), the target output after k regions are perturbed, k = 0..steps
        (``curves[:, 0]`` is f_t(x)).
    aopc : numpy.ndarray
        (N,): the mean over k = 0..steps of f_t(x) - f_t(x^(k)) (Samek et al. 2017, eq. 12, for one
        sample; the k = 0 term is 0).
    mean : float
        ``aopc`` averaged over the samples (the paper's AOPC, the mean over the data set).
    targets : numpy.ndarray
        (N,): the output index measured for each sample.
    ranking : numpy.ndarray
        (N, steps): the indices of the regions in the order they were perturbed (regions are numbered
        row-major over the tile grid).
    n_regions : int
        The number of tiles of one sample.
    """

    curves: np.ndarray
    aopc: np.ndarray
    mean: float
    targets: np.ndarray
    ranking: np.ndarray
    n_regions: int
    order: str
    perturbation: str
    region: tuple[int, ...]


def _region_sides(region: Any, spatial: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(region, (int, np.integer)) and not isinstance(region, bool):
        sides = (int(region),) * len(spatial)
    elif isinstance(region, (tuple, list)) and all(isinstance(r, (int, np.integer)) and not isinstance(r, bool)
                                                   for r in region):
        sides = tuple(int(r) for r in region)
        if len(sides) != len(spatial):
            raise ValueError(f"region {tuple(region)} has {len(sides)} sides for {len(spatial)} spatial axes "
                             f"{spatial}")
    else:
        raise ValueError(f"region must be a positive int or a tuple of one int per spatial axis; got {region!r}")
    if any(r < 1 for r in sides):
        raise ValueError(f"region must be positive; got {region!r}")
    for r, s in zip(sides, spatial):
        if r > s:
            raise ValueError(f"region {r} is larger than the spatial size {spatial} of the input; choose a region "
                             f"of at most {min(spatial)}")
    return sides


def _tile_ids(spatial: tuple[int, ...], sides: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """The tile index of every spatial position (row-major over the tile grid) and the tile count."""
    grid = tuple(-(-s // r) for s, r in zip(spatial, sides))
    coords = np.indices(spatial)
    ids = np.zeros(spatial, dtype=np.int64)
    for axis, (r, g) in enumerate(zip(sides, grid)):
        ids = ids * g + coords[axis] // r
    return ids, int(np.prod(grid))


def _spatial_relevance(relevance: Any, x: np.ndarray) -> np.ndarray:
    """The relevance summed over channels, (N, *spatial) float64, from an array shaped like x, like x
    with a channel axis of 1, or like x without the channel axis."""
    r = np.asarray(relevance)
    if not (np.issubdtype(r.dtype, np.floating) or np.issubdtype(r.dtype, np.integer)):
        raise ValueError(f"relevance must be a numeric array; got dtype {r.dtype}")
    r = r.astype(np.float64)
    n, spatial = x.shape[0], x.shape[2:]
    if r.shape == x.shape or r.shape == (n, 1, *spatial):
        r = r.sum(axis=1)
    elif r.shape != (n, *spatial):
        raise ValueError(f"relevance has shape {r.shape}; for x of shape {x.shape} it must be {x.shape}, "
                         f"{(n, 1, *spatial)} or {(n, *spatial)}")
    if not np.all(np.isfinite(r)):
        raise ValueError("relevance contains NaN or infinite values")
    return r


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    radius = int(truncate * float(sigma) + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _gaussian_blur(x: np.ndarray, sigma: float, axes: Sequence[int], use_scipy: bool | None = None) -> np.ndarray:
    """Gaussian blur along ``axes`` as ``scipy.ndimage.gaussian_filter(mode="reflect", truncate=4)``
    (through SciPy when it is installed, else a separable NumPy convolution with the same kernel
    and the same boundary: the edge sample is repeated in the mirror, ``np.pad(mode="symmetric")``)."""
    x = np.asarray(x, dtype=np.float64)
    if use_scipy is None or use_scipy:
        try:
            from scipy import ndimage
        except ImportError:
            if use_scipy:
                raise
        else:
            sig = [0.0] * x.ndim
            for a in axes:
                sig[a] = float(sigma)
            return ndimage.gaussian_filter(x, sigma=sig, mode="reflect", truncate=4.0)
    k = _gaussian_kernel(sigma)
    radius = (k.size - 1) // 2
    out = x
    for a in axes:
        pad = [(0, 0)] * x.ndim
        pad[a] = (radius, radius)
        p = np.pad(out, pad, mode="symmetric")
        n = out.shape[a]
        acc = np.zeros_like(out)
        for j, w in enumerate(k):
            acc += w * np.take(p, np.arange(j, j + n), axis=a)
        out = acc
    return out


def _replacement(x: np.ndarray, perturbation: str, fill: Any, rng: np.random.Generator,
                 sigma: float) -> np.ndarray:
    """The values a perturbed position takes, per sample: (N, C, *spatial) float32."""
    n, c = x.shape[:2]
    spatial_axes = tuple(range(2, x.ndim))
    if perturbation == "constant":
        f = np.asarray(fill, dtype=np.float64)
        if not np.all(np.isfinite(f)):
            raise ValueError("fill must be finite")
        try:
            f = np.broadcast_to(f, x.shape[1:])
        except ValueError:
            raise ValueError(f"fill of shape {f.shape} does not broadcast to one sample of shape {x.shape[1:]}; "
                             "use a scalar or e.g. a per-channel array shaped (C, 1, 1)") from None
        return np.broadcast_to(f.astype(np.float32), x.shape)
    if perturbation == "mean":
        m = x.astype(np.float64).mean(axis=spatial_axes, keepdims=True)
        return np.broadcast_to(m.astype(np.float32), x.shape)
    if perturbation == "uniform":
        axes = tuple(range(1, x.ndim))
        lo = x.min(axis=axes, keepdims=True).astype(np.float64)
        hi = x.max(axis=axes, keepdims=True).astype(np.float64)
        return rng.uniform(lo, hi, size=x.shape).astype(np.float32)
    if perturbation == "dirichlet":
        if c < 2:
            raise ValueError("perturbation 'dirichlet' replaces the channel vector of a position by a draw on the "
                             f"simplex and needs at least 2 channels; x has {c}")
        d = rng.dirichlet(np.ones(c), size=(n, *x.shape[2:]))
        return np.ascontiguousarray(np.moveaxis(d, -1, 1)).astype(np.float32)
    # blur
    return _gaussian_blur(x, sigma, spatial_axes).astype(np.float32)


def _tabular_replacement(x: np.ndarray, perturbation: str, fill: Any, rng: np.random.Generator) -> np.ndarray:
    """The values a perturbed feature of tabular data (N, F) takes, per sample: (N, F) float32."""
    n, f = x.shape
    if perturbation == "constant":
        v = np.asarray(fill, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise ValueError("fill must be finite")
        if v.ndim > 1 or (v.ndim == 1 and v.shape[0] not in (1, f)):
            raise ValueError(f"fill of shape {v.shape} is neither a number nor one value per feature ({f},); for "
                             "tabular data pass e.g. the training mean, train.mean(axis=0)")
        return np.broadcast_to(np.broadcast_to(v, (f,)).astype(np.float32), x.shape)
    if perturbation == "mean":
        return np.broadcast_to(x.astype(np.float64).mean(axis=0).astype(np.float32), x.shape)
    if perturbation == "uniform":
        lo = x.min(axis=0).astype(np.float64)
        hi = x.max(axis=0).astype(np.float64)
        return rng.uniform(lo, hi, size=x.shape).astype(np.float32)
    raise ValueError(f"perturbation {perturbation!r} needs image-like inputs with channels and positions; for tabular "
                     "data (N, F) use 'constant' (fill: a number or one value per feature, such as the training "
                     "mean), 'mean' or 'uniform'")


def aopc(model: Any, x: Any, relevance: Any, target: TargetLike = None, region: int | Sequence[int] | None = None,
         steps: int | None = None, order: str = "morf", perturbation: str = "constant", fill: Any = 0.0,
         seed: int = 0, batch_size: int = _DEFAULT_BATCH, sigma: float | None = None) -> AOPCResult:
    """Region perturbation and the area over the perturbation curve (AOPC).

    Samek, Binder, Montavon, Lapuschkin and Müller, "Evaluating the visualization of what a deep
    neural network has learned", IEEE TNNLS 28(11), 2017 (eq. 12); the per-sample form of Samek et
    al., "Explaining deep neural networks and beyond: a review of methods and applications", Proc.
    IEEE 109(3), 2021. With ``region=1`` it is the pixel-flipping of Bach et al. 2015.

    The spatial axes of each sample are cut into non-overlapping ``region`` x ``region`` tiles
    (all channels at once), starting at the first row and column; where a side is not divisible,
    the last tile along that axis is partial (it holds the remaining rows/columns). Tiles are
    numbered row-major over the tile grid and ranked by the sum of the relevance inside them (over
    channels and positions); ties go to the lower tile index first (a stable sort). Step k
    perturbs the first k tiles of that ranking cumulatively, giving x^(k), and

        AOPC = 1/(L+1) sum_{k=0..L} ( f_t(x) - f_t(x^(k)) ),   L = steps,

    for each sample (``r.aopc``) and its mean over the samples (``r.mean``).

    **Tabular data** (x of shape (N, F), one column per feature) has no channels and no
    neighbourhood: a region is ``region`` consecutive features (columns ``[k*region,
    (k+1)*region)``, the last one partial), so the default ``region=1`` ranks and perturbs single
    features, the survey's "disabling input variables" one at a time. The relevance is (N, F).
    The perturbations are defined per feature, since features have their own scales:
    ``"constant"`` takes one number or one value per feature (the training mean,
    ``fill=train.mean(axis=0)``: the survey's "average value of all samples for the current
    input-variable"), ``"mean"`` the per-feature mean of the batch x, ``"uniform"`` a draw in
    [min, max] of each feature over the batch x; ``"dirichlet"`` and ``"blur"`` need channels or
    positions and are refused.

    Parameters
    ----------
    model : onnxplain.Model
        Anything with ``predict(batch) -> (N, outputs)``; its outputs are used as they are (logits
        when the final softmax was stripped at load, the default; class probabilities for a
        scikit-learn classifier run by onnxruntime). Models run by onnxruntime work as they are.
    x : numpy.ndarray
        Image-like inputs (N, C, H, W), 1-D signals (N, C, L) or tabular data (N, F).
    relevance : numpy.ndarray
        Shaped like x, like x with a channel axis of 1, or like x without the channel axis
        ((N, H, W) / (N, L)); summed over the channel axis before the tiles are ranked. (N, F) for
        tabular data.
    target : None, int or sequence of int
        The output f_t: None = the argmax of ``model.predict(x)`` per sample, an int for all, or
        one per sample.
    region : int or tuple of int, optional
        The tile side (one per spatial axis as a tuple); at most the spatial size. For tabular data
        the number of consecutive features per region. Default (None): 9 for images and signals,
        1 (single features) for tabular data.
    steps : int, optional
        How many tiles to perturb, 1..number of tiles; None = all of them.
    order : {"morf", "lerf", "random"}
        Most relevant first, least relevant first, or a random permutation of the tiles per sample
        (``np.random.default_rng(seed).permutation`` for each sample in turn).
    perturbation : {"constant", "mean", "uniform", "dirichlet", "blur"}
        What a perturbed tile is replaced with:

        - ``"constant"``: ``fill`` (a scalar, or an array broadcastable to one sample such as a data
          set's per-channel mean shaped (C, 1, 1) -- the "data mean" of the literature; for tabular
          data a number or one value per feature, (F,)).
        - ``"mean"``: the sample's own mean per channel over all its positions, computed once from the
          unperturbed sample (so the curve does not depend on earlier steps); for tabular data the
          per-feature mean of the batch x.
        - ``"uniform"``: uniform noise in [min, max] of the sample (over all its values), drawn once
          for the whole sample (``rng.uniform(lo, hi, size=x.shape)`` after any random order
          draws, ``rng = np.random.default_rng(seed)``): each position takes its noise value when
          its tile is perturbed; for tabular data in [min, max] of each feature over the batch.
        - ``"dirichlet"``: the channel vector of each position is replaced by a draw from the flat
          Dirichlet distribution on the simplex (``rng.dirichlet(ones(C))``), the perturbation for
          one-hot or probability-vector inputs such as DNA sequences (N, 4, L); needs C >= 2 (not for
          tabular data).
        - ``"blur"``: the Gaussian blur of the sample (standard deviation ``sigma`` on the spatial
          axes, reflecting boundary, as ``scipy.ndimage.gaussian_filter``); not for tabular data.
    fill : float or array_like
        The value for ``perturbation="constant"``.
    seed : int
        Seed for the random order and the random perturbations.
    batch_size : int
        Rows per forward pass (perturbed inputs of many samples and steps are stacked).
    sigma : float, optional
        Blur standard deviation in positions; default half the largest tile side, at least 1.

    Returns
    -------
    AOPCResult
        ``curves`` (N, steps + 1), ``aopc`` (N,), ``mean`` and the ranking used.

    Raises
    ------
    ValueError
        For inputs that are not (N, C, H, W), (N, C, L) or (N, F), relevance of another shape, a
        region larger than the input, an unknown order or perturbation (or one that tabular data
        has no meaning for), or steps out of range.
    """
    x = _batch(x)
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"aopc needs image-like inputs (N, C, H, W), 1-D signals (N, C, L) or tabular data (N, F); "
                         f"got shape {x.shape}")
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {_ORDERS}; got {order!r}")
    if perturbation not in _PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {_PERTURBATIONS}; got {perturbation!r}")
    batch_size = _check_batch_size(batch_size)
    tabular = x.ndim == 2
    if region is None:
        region = 1 if tabular else 9
    rng = np.random.default_rng(seed)
    if tabular:
        # The features as positions along the one spatial axis of a single channel: (N, 1, F).
        r_tab = np.asarray(relevance)
        if r_tab.shape != x.shape:
            raise ValueError(f"relevance has shape {r_tab.shape}; for tabular x of shape {x.shape} it must be "
                             f"{x.shape} (one value per feature)")
        if perturbation in ("dirichlet", "blur"):
            _tabular_replacement(x, perturbation, fill, rng)  # raises, saying what to use instead
        x = x[:, None, :]
        relevance = r_tab[:, None, :]
    n, spatial = x.shape[0], tuple(x.shape[2:])
    sides = _region_sides(region, spatial)
    rel = _spatial_relevance(relevance, x)
    tile_id, n_tiles = _tile_ids(spatial, sides)
    if steps is None:
        steps = n_tiles
    elif isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= n_tiles:
        raise ValueError(f"steps must be None or an int in 1..{n_tiles} (the number of {sides} tiles); got {steps!r}")
    steps = int(steps)
    if sigma is None:
        sigma = max(1.0, max(sides) / 2.0)
    elif not (isinstance(sigma, (int, float, np.floating, np.integer)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number; got {sigma!r}")

    # Relevance per tile, (N, T).
    flat_ids = tile_id.reshape(-1)
    offsets = (np.arange(n)[:, None] * n_tiles + flat_ids[None, :]).reshape(-1)
    scores = np.bincount(offsets, weights=rel.reshape(-1), minlength=n * n_tiles).reshape(n, n_tiles)
    if order == "morf":
        ranking = np.argsort(-scores, axis=1, kind="stable")
    elif order == "lerf":
        ranking = np.argsort(scores, axis=1, kind="stable")
    else:
        ranking = np.stack([rng.permutation(n_tiles) for _ in range(n)])
    rank = np.empty_like(ranking)
    np.put_along_axis(rank, ranking, np.arange(n_tiles)[None, :].repeat(n, axis=0), axis=1)

    if tabular:
        replacement = _tabular_replacement(x[:, 0], perturbation, fill, rng)[:, None, :]
    else:
        replacement = _replacement(x, perturbation, fill, rng, float(sigma))
    sample_shape = x.shape[2:] if tabular else x.shape[1:]  # what the model takes per row
    base = _predict(model, x.reshape(n, *sample_shape), batch_size)
    targets = _targets(target, n, base)
    curves = np.empty((n, steps + 1), dtype=np.float64)
    curves[:, 0] = base[np.arange(n), targets]

    total = n * steps
    for start in range(0, total, batch_size):
        idx = np.arange(start, min(start + batch_size, total))
        i, k = idx // steps, idx % steps + 1
        mask = rank[i][:, tile_id] < k.reshape(-1, *([1] * len(spatial)))  # (B, *spatial)
        rows = np.where(mask[:, None], replacement[i], x[i]).reshape(len(idx), *sample_shape)
        out = _predict(model, np.ascontiguousarray(rows, dtype=np.float32), len(idx))
        curves[i, k] = out[np.arange(len(idx)), targets[i]]

    drops = curves[:, :1] - curves
    per_sample = drops.mean(axis=1)
    return AOPCResult(curves=curves, aopc=per_sample, mean=float(per_sample.mean()), targets=targets,
                      ranking=ranking[:, :steps].copy(), n_regions=n_tiles, order=order, perturbation=perturbation,
                      region=sides)


# ---- faithfulness correlation --------------------------------------------------------------------


def _element_relevance(relevance: Any, x: np.ndarray) -> np.ndarray:
    """The relevance of every element of x, (N, F) float64: an array shaped like x, or (for inputs
    with a channel axis) like x with a channel axis of 1 or without it, broadcast over the channels."""
    r = np.asarray(relevance)
    if not (np.issubdtype(r.dtype, np.floating) or np.issubdtype(r.dtype, np.integer)):
        raise ValueError(f"relevance must be a numeric array; got dtype {r.dtype}")
    r = r.astype(np.float64)
    n = x.shape[0]
    if r.shape != x.shape:
        spatial = x.shape[2:]
        if x.ndim >= 3 and r.shape == (n, 1, *spatial):
            r = np.broadcast_to(r, x.shape)
        elif x.ndim >= 3 and r.shape == (n, *spatial):
            r = np.broadcast_to(r[:, None], x.shape)
        else:
            allowed = [x.shape] + ([(n, 1, *spatial), (n, *spatial)] if x.ndim >= 3 else [])
            raise ValueError(f"relevance has shape {r.shape}; for x of shape {x.shape} it must be one of "
                             f"{', '.join(str(a) for a in allowed)}")
    if not np.all(np.isfinite(r)):
        raise ValueError("relevance contains NaN or infinite values")
    return np.ascontiguousarray(r).reshape(n, -1)


def faithfulness_correlation(model: Any, x: Any, relevance: Any, target: TargetLike = None, subset: int | None = None,
                             runs: int = 100, fill: Any = 0.0, seed: int = 0, subsets: Any = None,
                             batch_size: int = _DEFAULT_BATCH) -> np.ndarray:
    """Faithfulness correlation of Bhatt, Weller and Moura, "Evaluating and aggregating feature-based
    model explanations", IJCAI 2020 (eq. 2 with Pearson's correlation).

    For each of ``runs`` runs a random subset S of ``subset`` features is drawn, those features of
    x are set to ``fill`` (giving x_S), and per sample

        corr over runs ( sum_{j in S} R_j ,  f_t(x) - f_t(x_S) )

    is returned (Pearson's r). A feature is one element of x: one value of one channel at one
    position (as Quantus's ``FaithfulnessCorrelation``, whose defaults this follows: 100 runs,
    subsets of 224, Pearson). Relevance without channels is broadcast over the channels, so each
    element carries its position's relevance. For tabular data (N, F) a feature is a column, and
    ``fill`` a number or one value per feature, such as the training mean
    (``fill=train.mean(axis=0)``); the default subset is then half the features.

    Parameters
    ----------
    model : onnxplain.Model
        Anything with ``predict``; outputs used as they are.
    x : numpy.ndarray
        A batch (N, ...) of any rank >= 2: images (N, C, H, W), signals (N, C, L), tabular data
        (N, F).
    relevance : numpy.ndarray
        Shaped like x; for x with a channel axis (rank >= 3) also (N, 1, ...) or (N, ...) without it.
    target : None, int or sequence of int
        None = the argmax of ``model.predict(x)`` per sample.
    subset : int, optional
        Features per subset, 1..number of features; default 224 (Quantus's default), or half the
        features for inputs with fewer than 448.
    runs : int
        Number of random subsets (at least 2).
    fill : float or array_like
        The value perturbed features take: a scalar or an array broadcastable to one sample.
    seed : int
        The subsets are ``np.random.default_rng(seed)``: for each run, for each sample, the indices of
        the ``subset`` smallest of ``rng.random(F)`` (a uniform draw without replacement).
    subsets : array_like of int, optional
        Explicit flat feature indices (into ``x[i].ravel()``), shaped (runs, N, subset) or
        (runs, subset) for the same subsets in every sample; overrides ``subset``, ``runs`` and
        ``seed`` (for replaying another implementation's draws).
    batch_size : int
        Rows per forward pass.

    Returns
    -------
    numpy.ndarray
        (N,) Pearson correlations; NaN for a sample where either series is constant.
    """
    x = _batch(x)
    if x.ndim < 2:
        raise ValueError(f"x must be a batch (N, features...) of rank >= 2; got shape {x.shape}")
    batch_size = _check_batch_size(batch_size)
    n = x.shape[0]
    n_features = int(np.prod(x.shape[1:]))
    rel = _element_relevance(relevance, x)
    f = np.asarray(fill, dtype=np.float64)
    if not np.all(np.isfinite(f)):
        raise ValueError("fill must be finite")
    try:
        fill_flat = np.broadcast_to(f, x.shape[1:]).astype(np.float32).reshape(-1)
    except ValueError:
        raise ValueError(f"fill of shape {f.shape} does not broadcast to one sample of shape {x.shape[1:]}") from None

    if subsets is not None:
        idx = np.asarray(subsets)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError("subsets must be integer feature indices")
        if idx.ndim == 2:
            idx = np.broadcast_to(idx[:, None, :], (idx.shape[0], n, idx.shape[1]))
        if idx.ndim != 3 or idx.shape[1] != n or idx.shape[0] < 2 or idx.shape[2] < 1:
            raise ValueError(f"subsets must be shaped (runs >= 2, N={n}, subset) or (runs >= 2, subset); got "
                             f"{np.shape(subsets)}")
        if idx.min() < 0 or idx.max() >= n_features:
            raise ValueError(f"subsets hold feature indices outside 0..{n_features - 1}")
        srt = np.sort(idx, axis=2)
        if np.any(srt[..., 1:] == srt[..., :-1]):
            raise ValueError("subsets must not repeat a feature within one subset")
        idx = idx.astype(np.int64)
    else:
        if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 2:
            raise ValueError(f"runs must be an int >= 2 (a correlation needs two points); got {runs!r}")
        if subset is None:
            subset = min(224, n_features // 2)
        if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or not 1 <= subset <= n_features:
            raise ValueError(f"subset must be an int in 1..{n_features} (the number of features of one sample); "
                             f"got {subset!r}")
        rng = np.random.default_rng(seed)
        idx = np.empty((int(runs), n, int(subset)), dtype=np.int64)
        for r in range(int(runs)):
            keys = rng.random((n, n_features))
            part = np.argpartition(keys, int(subset) - 1, axis=1)[:, :int(subset)] if subset < n_features else \
                np.argsort(keys, axis=1)
            idx[r] = part
    runs_, _, _ = idx.shape

    base = _predict(model, x, batch_size)
    targets = _targets(target, n, base)
    f0 = base[np.arange(n), targets]
    flat_x = x.reshape(n, -1)
    drops = np.empty((n, runs_), dtype=np.float64)
    sums = np.take_along_axis(rel[None], idx, axis=2).sum(axis=2).T  # (N, runs)
    total = runs_ * n
    for start in range(0, total, batch_size):
        pos = np.arange(start, min(start + batch_size, total))
        r, i = pos // n, pos % n
        rows = flat_x[i].copy()
        cols = idx[r, i]
        rows[np.arange(len(pos))[:, None], cols] = fill_flat[cols]
        out = _predict(model, rows.reshape(len(pos), *x.shape[1:]), len(pos))
        drops[i, r] = f0[i] - out[np.arange(len(pos)), targets[i]]
    return _pearson_rows(sums, drops)


# ---- model randomisation -------------------------------------------------------------------------


def _linear_layers(model: Any) -> list[tuple[str, dict[str, Any]]]:
    backend = getattr(model, "backend", "onnxplain")
    if backend != "onnxplain":
        what = ("the model-randomisation check (it re-draws the weights of the layers in onnxplain's IR, which a "
                f"model run by {backend} does not have; AOPC and faithfulness work on any model)")
        requires = getattr(model, "requires_engine", None)
        if requires is not None:
            raise requires(what)
        raise ValueError(f"{what} needs onnxplain's engine")
    if not (hasattr(model, "layers") and hasattr(model, "with_weights")):
        raise ValueError("model randomisation needs an onnxplain.Model loaded with the onnxplain engine (it re-draws "
                         "weights through Model.layers() and Model.with_weights())")
    return list(model.layers())


def _choose_layers(all_layers: list[tuple[str, dict[str, Any]]], layers: Sequence[str] | None) -> list[int]:
    """Positions (in execution order) of the layers to randomise."""
    names = [name for name, _ in all_layers]
    if not names:
        raise ValueError("the model has no linear op with constant weights to randomise")
    if layers is None:
        return list(range(len(names)))
    if isinstance(layers, str):
        layers = [layers]
    chosen = []
    for name in layers:
        if name not in names:
            raise ValueError(f"layer {name!r} is not a linear op with constant weights; the model's are {names}")
        chosen.append(names.index(name))
    if not chosen:
        raise ValueError("layers is empty")
    return sorted(set(chosen))


def randomised_models(model: Any, seed: int = 0, layers: Sequence[str] | None = None) -> Iterator[tuple[str, Any]]:
    """The cascade of Adebayo et al. 2018: copies of ``model`` with its linear layers re-drawn
    cumulatively from the output layer down.

    Each layer's weight and bias are re-drawn as PyTorch's default ``reset_parameters`` of
    ``Conv*d``/``Linear`` draws them (Kaiming-uniform with a = sqrt(5)): uniform in
    [-1/sqrt(fan_in), 1/sqrt(fan_in)], fan_in = the weight's size over its output-neuron axis (for
    a Conv weight (M, C/g, k...) C/g times the kernel size; for a dense weight its input size,
    whether stored (out, in) as Gemm with transB=1 or (in, out) as MatMul). The draws of the layer
    at execution position p come from ``np.random.default_rng([seed, p])``, weight first, then the
    bias, so a layer gets the same values whichever other layers are randomised. After load-time
    rewrites a layer is what the engine runs: a Conv with a folded BatchNorm is re-drawn as one op.

    Parameters
    ----------
    model : onnxplain.Model
        The trained model (unchanged).
    seed : int
        Seed of the draws.
    layers : sequence of str, optional
        Node names (from ``model.layers()``) to randomise; default all linear ops with constant
        weights. They are randomised top-down (reverse execution order) whatever order is given.

    Yields
    ------
    (str, onnxplain.Model)
        The node name just randomised, and the model with it and every layer above it (among
        ``layers``) re-drawn.
    """
    all_layers = _linear_layers(model)
    current = model
    for pos in reversed(_choose_layers(all_layers, layers)):
        name, params = all_layers[pos]
        weight = np.asarray(params["weight"])
        axis = int(params.get("neuron_axis", 0))
        fan_in = weight.size // max(1, weight.shape[axis])
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        rng = np.random.default_rng([int(seed), pos])
        entry = {"weight": rng.uniform(-bound, bound, size=weight.shape).astype(np.float32)}
        if "bias" in params:
            entry["bias"] = rng.uniform(-bound, bound, size=np.shape(params["bias"])).astype(np.float32)
        current = current.with_weights({name: entry})
        yield name, current


def _explain(model: Any, method: str, x: np.ndarray, targets: np.ndarray, fit_data: Any,
             params: Mapping[str, Any]) -> np.ndarray:
    from .explain import explainer

    ex = explainer(model, method, **params)
    if ex.learns:
        if fit_data is None:
            raise ValueError(f"method {method!r} learns from data: pass fit_data= so that each randomised model is "
                             "fitted again (its patterns depend on the weights)")
        ex.fit(fit_data, progress=False)
    r = ex.explain(x, target=targets, progress=False)
    if isinstance(r, (list, tuple)):
        raise ValueError("model_randomisation works on single-input models")
    return np.asarray(r, dtype=np.float64)


def _adebayo_map(r: np.ndarray, absolute: bool) -> np.ndarray:
    """The 2-D (spatial) map Adebayo et al. compare with SSIM: their ``VisualizeImageGrayscale``
    (sum of |R| over channels, scaled to [0, 1] between its minimum and its 99th percentile, clipped)
    or, without absolute values, ``VisualizeImageDiverging`` (sum over channels divided by the 99th
    percentile of its magnitude, clipped to [-1, 1])."""
    if absolute:
        m = np.abs(r).sum(axis=0)
        vmax, vmin = float(np.percentile(m, 99)), float(m.min())
        if vmax <= vmin:
            return np.zeros_like(m)
        return np.clip((m - vmin) / (vmax - vmin), 0.0, 1.0)
    m = r.sum(axis=0)
    span = float(np.percentile(np.abs(m), 99))
    if span <= 0:
        return np.zeros_like(m)
    return np.clip(m / span, -1.0, 1.0)


def _similarity(a: np.ndarray, b: np.ndarray, similarity: str, absolute: bool) -> np.ndarray:
    n = a.shape[0]
    if similarity in ("spearman", "pearson"):
        fa, fb = a.reshape(n, -1), b.reshape(n, -1)
        if absolute:
            fa, fb = np.abs(fa), np.abs(fb)
        return _spearman_rows(fa, fb) if similarity == "spearman" else _pearson_rows(fa, fb)
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        raise ImportError("similarity='ssim' needs scikit-image (pip install scikit-image)") from None
    out = np.empty(n)
    for i in range(n):
        ma, mb = _adebayo_map(a[i], absolute), _adebayo_map(b[i], absolute)
        win = min(7, *ma.shape)
        win = win if win % 2 else win - 1
        if win < 3:
            raise ValueError(f"similarity='ssim' needs maps of at least 3 positions per side; got {ma.shape}")
        out[i] = structural_similarity(ma, mb, win_size=win, data_range=1.0 if absolute else 2.0)
    return out


def model_randomisation(model: Any, method: str, x: Any, target: TargetLike = None, similarity: str = "spearman",
                        seed: int = 0, layers: Sequence[str] | None = None, absolute: bool = False,
                        fit_data: Any = None, params: Mapping[str, Any] | None = None,
                        **method_params: Any) -> list[tuple[str, np.ndarray]]:
    """The cascading model parameter randomisation test of Adebayo, Gilmer, Muelly, Goodfellow,
    Hardt and Kim, "Sanity checks for saliency maps", NeurIPS 2018.

    The linear layers are re-drawn from the output layer down, cumulatively (see
    :func:`randomised_models` for how), each copy is explained with the same method and
    parameters for the same targets as the trained model, and each sample's explanation is compared
    with the trained model's. A method that depends on the learned weights loses similarity as more
    layers are randomised. (The paper's second test, data randomisation, retrains the model on
    permuted labels, which an ONNX file does not allow; it is not offered.)

    Parameters
    ----------
    model : onnxplain.Model
        The trained model, run by onnxplain's engine (the copies are made by re-drawing weights in
        its IR; a model run by onnxruntime cannot be randomised).
    method : str
        A method name from ``ox.methods()``.
    x : numpy.ndarray
        The samples to explain.
    target : None, int or sequence of int
        None = the trained model's argmax per sample; the same targets are explained on every
        randomised copy.
    similarity : {"spearman", "pearson", "ssim"}
        ``"spearman"``: Spearman's rank correlation of the flattened maps (all channels), as
        ``scipy.stats.spearmanr`` and Quantus's ``MPRT``; ``"pearson"``: Pearson's r of the flattened
        maps; ``"ssim"``: ``skimage.metrics.structural_similarity`` of the 2-D maps that Adebayo et al.
        compare (channels summed and normalised by their 99th percentile, see ``absolute``;
        ``data_range`` 1, or 2 for signed maps; window 7, or the largest odd size that fits).
    seed : int
        Seed of the re-drawn weights.
    layers : sequence of str, optional
        The node names to randomise (default all linear ops with constant weights).
    absolute : bool
        Compare absolute values (the paper reports both; Quantus's ``MPRT`` default ``abs=True``). For
        SSIM: True uses the absolute grayscale map, False the signed (diverging) map.
    fit_data : array_like, optional
        For methods that learn from data (``pattern.*``): data to fit each model's explainer on.
    params : dict, optional
        Parameters of the method whose names this function takes itself (``smoothgrad``'s
        ``seed``: ``params={"seed": 3}``); merged with ``method_params``.
    **method_params
        Parameters of the method.

    Returns
    -------
    list of (str, numpy.ndarray)
        ``(node name, (N,) similarity)`` in the order the layers were randomised (top-down).

    Raises
    ------
    onnxplain.UnsupportedModelError
        For a model the engine cannot run (loaded through onnxruntime as a fallback), naming what
        the engine lacks; ``ValueError`` for one loaded with ``backend="onnxruntime"`` by choice.
    """
    if similarity not in _SIMILARITIES:
        raise ValueError(f"similarity must be one of {_SIMILARITIES}; got {similarity!r}")
    x = _batch(x)
    all_layers = _linear_layers(model)
    _choose_layers(all_layers, layers)  # validate before any work
    targets = _targets(target, x.shape[0], _predict(model, x, _DEFAULT_BATCH))
    method_params = {**dict(params or {}), **method_params}
    original = _explain(model, method, x, targets, fit_data, method_params)
    out = []
    for name, randomised in randomised_models(model, seed=seed, layers=layers):
        r = _explain(randomised, method, x, targets, fit_data, method_params)
        out.append((name, _similarity(original, r, similarity, absolute)))
    return out


# ---- reliability of metrics ----------------------------------------------------------------------


@dataclass
class ReliabilityResult:
    """What :func:`reliability` returns (Tomsett et al. 2020).

    Attributes
    ----------
    metrics : list of str
        The metric names.
    methods : list of str
        The saliency method names (``"0"``, ``"1"``, ... for arrays).
    inter_rater : dict
        Metric -> Krippendorff's alpha (ordinal) of the samples' rankings of the methods.
    inter_method : dict
        Metric -> mean over method pairs of Spearman's rho between their per-sample scores.
    inter_method_matrix : dict
        Metric -> (M, M) matrix of those rhos (1 on the diagonal).
    internal_consistency : dict
        (metric a, metric b) -> mean over the methods of Spearman's rho between the two metrics'
        per-sample scores.
    internal_consistency_per_method : dict
        (metric a, metric b) -> (M,) those rhos per method.
    """

    metrics: list[str]
    methods: list[str]
    inter_rater: dict[str, float]
    inter_method: dict[str, float]
    inter_method_matrix: dict[str, np.ndarray]
    internal_consistency: dict[tuple[str, str], float]
    internal_consistency_per_method: dict[tuple[str, str], np.ndarray]


def _score_table(scores: Mapping[str, Any]) -> tuple[list[str], list[str], np.ndarray]:
    """(metric names, method names, array (K, M, N))."""
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty dict: metric -> (n_methods, n_samples) array, or metric -> "
                         "{method: (n_samples,) array}")
    metrics = [str(k) for k in scores]
    methods: list[str] | None = None
    tables = []
    for name, value in scores.items():
        if isinstance(value, Mapping):
            by_name = {str(key): v for key, v in value.items()}
            if methods is None:
                methods = list(by_name)
            elif set(by_name) != set(methods) or len(by_name) != len(methods):
                raise ValueError(f"metric {name!r} scores methods {list(by_name)}, another metric {methods}; every "
                                 "metric must score the same methods")
            rows = [np.asarray(by_name[key], dtype=np.float64) for key in methods]
            if any(r.ndim != 1 for r in rows) or len({r.shape for r in rows}) != 1:
                raise ValueError(f"metric {name!r}: each method needs a 1-D array of per-sample scores, all the same "
                                 "length")
            arr = np.stack(rows)
        else:
            arr = np.asarray(value, dtype=np.float64)
            if arr.ndim != 2:
                raise ValueError(f"metric {name!r}: expected a (n_methods, n_samples) array; got shape {arr.shape}")
            if methods is None:
                methods = [str(i) for i in range(arr.shape[0])]
        tables.append(arr)
    assert methods is not None
    if len({t.shape for t in tables}) != 1:
        raise ValueError(f"every metric must score the same methods on the same samples; shapes "
                         f"{[t.shape for t in tables]}")
    table = np.stack(tables)
    if table.shape[1] != len(methods):
        raise ValueError(f"scores have {table.shape[1]} methods but {len(methods)} names")
    if table.shape[2] < 2:
        raise ValueError("reliability needs scores of at least 2 samples")
    return metrics, methods, table


def _spearman_masked(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return float("nan")
    return float(_spearman_rows(a[ok][None], b[ok][None])[0])


def _nanmean(a: np.ndarray) -> float:
    """The mean of the defined entries (a method whose scores are constant has no correlation; it
    should not hide the others'); NaN when none is."""
    a = np.asarray(a, dtype=np.float64)
    ok = np.isfinite(a)
    return float(a[ok].mean()) if ok.any() else float("nan")


def reliability(scores: Mapping[str, Any]) -> ReliabilityResult:
    """The reliability of saliency metrics, Tomsett, Harborne, Chakraborty, Gurram and Preece,
    "Sanity checks for saliency metrics", AAAI 2020 (section "Psychometric reliability").

    Given scores of M saliency methods on the same N samples under K metrics:

    - **Inter-rater reliability** (per metric): each sample is a rater that ranks the methods by
      their score (rank 1 = highest score, ties the average rank); Krippendorff's alpha of those
      rankings at the ordinal level (raters = samples, units = methods). 1 when every sample ranks
      the methods the same way, about 0 when the rankings agree no more than chance. Computed by the
      ``krippendorff`` package.
    - **Inter-method reliability** (per metric): Spearman's rho, over the samples, between the
      scores of each pair of methods (does a sample that one method scores highly score highly with
      the others?); the (M, M) matrix and the mean over the M(M-1)/2 pairs.
    - **Internal consistency** (per pair of metrics): Spearman's rho, over the samples, between the
      two metrics' scores of the same method (do the metrics measure the same thing?); per method
      and the mean over the methods.

    Non-finite scores are missing values: left out of the rankings (alpha handles missing ratings)
    and, pairwise, out of the correlations.

    Parameters
    ----------
    scores : dict
        Metric name -> (n_methods, n_samples) array, or metric name -> {method name: (n_samples,)
        array}; every metric scores the same methods on the same samples.

    Returns
    -------
    ReliabilityResult
    """
    metrics, methods, table = _score_table(scores)
    k, m, n = table.shape
    try:
        import krippendorff
    except ImportError:
        raise ImportError("reliability needs the krippendorff package for Krippendorff's alpha "
                          "(pip install krippendorff)") from None

    inter_rater: dict[str, float] = {}
    inter_method: dict[str, float] = {}
    matrices: dict[str, np.ndarray] = {}
    for mi, name in enumerate(metrics):
        s = table[mi]  # (M, N)
        ranks = np.full((n, m), np.nan)
        for j in range(n):
            ok = np.isfinite(s[:, j])
            if ok.any():
                ranks[j, ok] = _rank_rows(-s[ok, j][None])[0]
        finite = ranks[np.isfinite(ranks)]
        if m < 2 or finite.size == 0 or np.unique(finite).size < 2:
            inter_rater[name] = float("nan")
        else:
            inter_rater[name] = float(krippendorff.alpha(reliability_data=ranks, level_of_measurement="ordinal"))
        mat = np.eye(m)
        for a in range(m):
            for b in range(a + 1, m):
                mat[a, b] = mat[b, a] = _spearman_masked(s[a], s[b])
        matrices[name] = mat
        pairs = mat[np.triu_indices(m, 1)]
        inter_method[name] = _nanmean(pairs)

    internal: dict[tuple[str, str], float] = {}
    internal_per: dict[tuple[str, str], np.ndarray] = {}
    for a in range(k):
        for b in range(a + 1, k):
            per = np.array([_spearman_masked(table[a, j], table[b, j]) for j in range(m)])
            internal_per[(metrics[a], metrics[b])] = per
            internal[(metrics[a], metrics[b])] = _nanmean(per)
    return ReliabilityResult(metrics=metrics, methods=methods, inter_rater=inter_rater, inter_method=inter_method,
                             inter_method_matrix=matrices, internal_consistency=internal,
                             internal_consistency_per_method=internal_per)
