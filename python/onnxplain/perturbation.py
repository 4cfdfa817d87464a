"""Perturbation methods driven from Python: they need data-dependent sampling (prediction
difference analysis) or an established solver and segmentation library (LIME). Every forward
pass runs in large batches on the model's backend (:meth:`onnxplain.Model.predict`: the C++
engine, or onnxruntime for models it cannot run); this module only builds the perturbed inputs
and combines the outputs. Occlusion lives in the C++ core (``methods/occlusion.cpp``) and is
reachable from the C API as well.

Both methods take image-like inputs ((N, C, H, W) or (N, C, L)) and tabular data (N, F), one
column per feature: prediction difference in the original form of Robnik-Sikonja & Kononenko
(2008) and LIME as ``lime.lime_tabular.LimeTabularExplainer`` defines it.

A method here subclasses :class:`PythonMethod` and registers in :data:`PYTHON_METHODS`;
:class:`onnxplain.Explainer` dispatches to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .model import Model

Progress = Callable[[int, int], Any]


class PythonMethod:
    """A method computed in Python on top of batched forward passes.

    Subclasses set the class attributes that ``ox.methods()`` shows and implement
    :meth:`explain` (and :meth:`fit_batch` when ``learns``).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "perturbation"
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    params: ClassVar[dict[str, tuple[str, str]]] = {}  # name -> (default as Python spells it, doc)
    learns: ClassVar[bool] = False

    def __init__(self, model: Model, **params: Any) -> None:
        self.model = model
        self.params = params

    def fit_batch(self, arrays: list[np.ndarray]) -> None:
        """Adds one batch of training data (only for methods with ``learns = True``)."""
        raise ValueError(f"{self.name} learns nothing from data")

    def explain(self, arrays: list[np.ndarray], targets: np.ndarray, threads: int,
                progress: Progress | None) -> np.ndarray:
        """Relevance shaped like ``arrays[0]`` for the output index ``targets[i]`` of sample i."""
        raise NotImplementedError


#: Method name -> class; filled in below by each method's definition.
PYTHON_METHODS: dict[str, type[PythonMethod]] = {}


def register(cls: type[PythonMethod]) -> type[PythonMethod]:
    PYTHON_METHODS[cls.name] = cls
    return cls


# ---- shared helpers ----------------------------------------------------------------------------------------------


def _pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints (rows, columns), each at least ``minimum``."""
    vals = value if isinstance(value, (tuple, list)) else (value, value)
    if len(vals) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    out = (int(vals[0]), int(vals[1]))
    if min(out) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _single_input(method: str, arrays: list[np.ndarray]) -> np.ndarray:
    if len(arrays) != 1:
        raise ValueError(f"{method} explains models with one input; this model has {len(arrays)}")
    return arrays[0]


def _as_images(method: str, x: np.ndarray) -> np.ndarray:
    """``x`` as (N, C, H, W): rank-4 inputs as they are, rank-3 (N, C, L) as (N, C, 1, L)."""
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x[:, :, None, :]
    raise ValueError(f"{method} explains tabular data (N, F) and image-like inputs shaped (N, C, H, W) or (N, C, L); "
                     f"got an input of shape {tuple(x.shape)} (rank {x.ndim})")


def _check_targets(targets: np.ndarray, k: int) -> None:
    """Refuses targets outside the model's ``k`` outputs per sample (for outputs of unknown width)."""
    bad = targets[(targets < 0) | (targets >= k)]
    if len(bad):
        raise ValueError(f"target {int(bad[0])} is out of range: the model gives {k} values per sample (0..{k - 1})")


def _softmax(y: np.ndarray) -> np.ndarray:
    z = y - y.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _outputs_are_probabilities(model: Model, y: np.ndarray) -> bool:
    """Whether the model's outputs ``y`` (rows = samples) are class probabilities already.

    A model loaded with the default ``strip_softmax=True`` lost its final Softmax (its notes say
    so): its outputs are logits. Otherwise the outputs count as probabilities when every row is a
    distribution (entries in [0, 1] and summing to 1, both within 1e-4: onnxruntime's tree
    ensembles give probabilities a rounding step outside [0, 1]), as for a model loaded with
    ``strip_softmax=False`` that ends in Softmax.
    """
    notes = getattr(model, "notes", [])
    if any(n.startswith("stripped") and "Softmax)" in n for n in notes):
        return False
    if y.size == 0 or not np.all(np.isfinite(y)):
        return False
    tol = 1e-4
    return bool(np.all(y >= -tol) and np.all(y <= 1 + tol) and np.all(np.abs(y.sum(axis=1) - 1.0) <= tol))


class _Counter:
    """Cumulative progress ``progress(done, total)`` in forward rows."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def add(self, rows: int) -> None:
        self.done += rows
        if self.progress is not None:
            self.progress(self.done, self.total)


# ---- prediction difference analysis ------------------------------------------------------------------------------

#: Conditional sampling: at most this many patch positions per training image (drawn at random,
#: without replacement, from the fit's generator) enter the Gaussian's statistics; all positions
#: when there are no more than this.
PATCHES_PER_IMAGE = 64
#: Conditional sampling: ridge added to the diagonal of the patch covariance, relative to its mean
#: diagonal (plus 1e-12 for constant data), so that the frame block is invertible and the
#: conditional covariance positive definite.
COND_RIDGE = 1e-4
#: The measures of prediction difference (Robnik-Sikonja & Kononenko 2008, eqs. 17, 19, 20).
MEASURES = ("weight_of_evidence", "information_difference", "probability_difference")
#: Draws per window for image-like inputs when ``samples=None`` (the default).
IMAGE_SAMPLES = 10
#: Perturbed inputs per forward pass when ``batch_size=None``: images, and rows of tabular data.
IMAGE_BATCH = 128
TABULAR_BATCH = 16384
#: Tabular fit: a feature's exact table of distinct values grows to at most this many times
#: ``max_values`` entries; beyond, it is compressed to ``max_values`` (:func:`compress_values`)
#: after the batch that crossed the limit (bounded memory on streams).
FIT_BUFFER = 64


def _measure(p: np.ndarray, q: np.ndarray, measure: str, n: int, k: int) -> np.ndarray:
    """The prediction difference between ``p = p(y|x)`` and ``q = p(y|x\\A)`` (Robnik-Sikonja &
    Kononenko 2008): eq. 19 (weight of evidence), eq. 17 (information difference) on the
    Laplace-corrected probabilities ``(p n + 1) / (n + k)``, eq. 20 (difference of probabilities)
    on the probabilities as they are."""
    if measure == "probability_difference":
        return np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)
    if measure == "weight_of_evidence":
        return _log2_odds(p, n, k) - _log2_odds(q, n, k)
    return np.log2(_laplace(p, n, k)) - np.log2(_laplace(q, n, k))


def _merge_counts(v1: np.ndarray, c1: np.ndarray, v2: np.ndarray, c2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two tables of distinct values with counts merged into one (values sorted)."""
    u, inv = np.unique(np.concatenate([v1, v2]), return_inverse=True)
    counts = np.bincount(inv.ravel(), weights=np.concatenate([c1, c2]).astype(np.float64), minlength=len(u))
    return u, np.rint(counts).astype(np.int64)


def compress_values(values: np.ndarray, counts: np.ndarray, max_values: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A feature's table of distinct ``values`` (sorted) with their ``counts``, cut down to at most
    ``max_values`` entries by quantile bins weighted by the counts; the table as it is when it has
    no more entries than that (or ``max_values`` is None).

    With ``n = sum(counts)``, ``B = max_values`` and ``r_i = cumsum(counts)_i - counts_i / 2`` (the
    mid-rank of value ``i``), value ``i`` goes to bin ``min(floor(B r_i / n), B - 1)`` (float64), so
    that each bin holds about ``n / B`` training rows (a value is never split; a value more frequent
    than ``n / B`` fills its bin alone and leaves bins empty). Each non-empty bin becomes one entry:
    its weighted lower median (the first value whose cumulative count within the bin reaches half
    the bin's count: a value seen in training) with the bin's total count.
    """
    if max_values is None or len(values) <= max_values:
        return values, counts
    c = counts.astype(np.float64)
    cum = np.cumsum(counts)
    mid = cum.astype(np.float64) - c / 2
    b = np.minimum(np.floor(mid * max_values / c.sum()), max_values - 1).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    weights = np.add.reduceat(counts, starts)
    before = cum[starts] - counts[starts]
    median = np.searchsorted(cum, before + weights / 2, side="left")
    return values[median], weights.astype(np.int64)


@register
class PredictionDifference(PythonMethod):
    """Prediction difference analysis: Robnik-Sikonja & Kononenko 2008 for tabular data, Zintgraf,
    Cohen, Adel & Welling 2017 for images.

    The relevance of a part ``A`` of the input (a feature; a window of an image) for class ``y`` is
    a difference between ``p(y|x)`` and ``p(y|x\\A)``, the class probability when ``A`` is
    unknown, i.e. marginalised over the values it takes in the training data (``fit(train)``). The
    ``measure`` is one of Robnik-Sikonja & Kononenko's (survey section 6.4):

    - ``"weight_of_evidence"`` (eq. 19, the default; Zintgraf et al. use it):
      ``log2 odds(p(y|x)) - log2 odds(p(y|x\\A))``, ``odds(p) = p / (1 - p)``;
    - ``"information_difference"`` (eq. 17): ``log2 p(y|x) - log2 p(y|x\\A)``;
    - ``"probability_difference"`` (eq. 20): ``p(y|x) - p(y|x\\A)``.

    Pseudo-count: for the two log measures both probabilities pass through the Laplace correction
    ``p <- (p N + 1) / (N + K)`` (Robnik-Sikonja & Kononenko; the code of Zintgraf et al.), ``N`` the
    number of training rows (samples) fitted, ``K`` the number of classes, so the logs stay finite
    for probabilities of 0 or 1. The difference of probabilities uses them as they are.

    Probabilities: the model's outputs as they are where they are probabilities already (a
    scikit-learn classifier converted by skl2onnx and run by onnxruntime, whose first float output
    is ``predict_proba``; a model loaded with ``strip_softmax=False`` whose output rows on the
    explained batch are all distributions: entries in [0, 1], sums within 1e-4 of 1), otherwise
    the softmax of the outputs. ``ox.load`` strips a final Softmax by default (the model's notes
    say so, and such a model always gets the softmax): the softmax of its logits is the model's own
    softmax, so both ways of loading give the same explanation. The choice is made once per call
    on the unperturbed outputs and applies to every perturbed one.

    **Tabular data** (rank-2 input (N, F); Robnik-Sikonja & Kononenko 2008, eqs. 17-22). Each
    feature ``j`` in turn is marginalised, the others kept:
    ``p(y|x\\A_j) = sum_s p(A_j = a_s) p(y | x <- A_j = a_s)`` (eq. 22) over the distinct values
    ``a_s`` of feature ``j`` seen in ``fit(train)``, ``p(A_j = a_s)`` their relative frequency.
    ``fit`` keeps, per feature, the table of distinct values with their counts (``np.unique``,
    merged across fit batches; the data as the model gets it, float32); a feature with more than
    ``max_values`` distinct values is explained with the table cut to ``max_values`` quantile bins
    weighted by their counts (:func:`compress_values`). The tables are exact up to
    ``FIT_BUFFER * max_values`` distinct values per feature; beyond, the fit compresses them after
    each batch, which makes the bins depend on how the data was batched.

    - ``samples=None`` (the default): every entry of the table, weighted by its frequency (eq. 22
      exactly).
    - ``samples=k``: ``k`` draws from the table per feature, ``p(y|x\\A_j)`` their mean. Draws: each
      explained row gets a fresh ``rng = numpy.random.default_rng(seed)`` (so all rows get the same
      draws and a row's explanation does not depend on the rest of the batch);
      ``u = rng.random((F, k))`` (one call), and draw ``s`` of feature ``j`` takes the value
      ``values_j[min(searchsorted(cumsum(counts_j) / sum(counts_j), u[j, s], side="right"),
      len(values_j) - 1)]``.

    The perturbed rows of all (row, feature, value) triples of a call, in that order, are forwarded
    in batches of ``batch_size`` rows (default 4096). ``window``, ``stride`` and ``padding`` do not
    apply (one feature at a time; ``window``/``stride`` other than 1 and ``sampling="conditional"``
    are refused), nor ``max_train``.

    **Images** (Zintgraf et al. 2017). ``p(c|x\\w)`` of a window ``w`` is the mean of ``p(c|x')``
    over ``samples`` (default 10) inputs ``x'`` in which the window's values (all channels) are
    replaced by draws from the training data: the marginal distribution (values of a random
    training image at the same place) or the conditional distribution given the surrounding frame
    of ``padding`` pixels (a Gaussian). Windows of ``window x window`` pixels slide over the
    spatial axes with ``stride`` (1 = every position, the paper's overlapping windows); a pixel's
    relevance is the mean measure of the windows that contain it (0 for a pixel that no window
    covers), the same for every channel.

    Sampling order for images (deterministic, reproducible): each sample ``n`` of the batch gets a
    fresh ``rng = numpy.random.default_rng(seed)`` (so a sample's explanation does not depend on
    the rest of the batch). Window positions ``(i, j)`` are top-left corners
    ``i = 0, stride, ... <= H - kh`` in row-major order (``P`` of them).

    - marginal: ``t = rng.integers(0, T, size=(P, samples))`` (one call), where ``T`` is the number
      of stored training images (in fit order, see ``max_train``); sample ``s`` of position ``p``
      takes ``train[t[p, s], :, i:i+kh, j:j+kw]``.
    - conditional: one Gaussian (mean ``mu``, covariance ``S`` with ``ddof=1``) over the vectors
      ``patch.ravel()`` of all ``(C, kh + 2l, kw + 2l)`` patches of the training images (stationary,
      as the authors' sampler; at most :data:`PATCHES_PER_IMAGE` random positions per image), plus
      a ridge ``COND_RIDGE * mean(diag S) + 1e-12`` on the diagonal. For the window at ``(i, j)``
      the patch's top-left corner is ``(clip(i - l, 0, H - kh - 2l), clip(j - l, 0, W - kw - 2l))``
      (moved inwards at the borders, as in the authors' code), ``w`` the window's entries of the
      patch vector in ``(C, kh, kw)`` order and ``f`` the others, taken from ``x``. Draws:
      ``z = rng.standard_normal((P, samples, C * kh * kw))`` in that order (drawn in consecutive
      chunks of positions, which is the same stream); sample ``v = mu_w + A (x_f - mu_f) + L z[p, s]``
      with ``A = S_wf S_ff^-1`` and ``L`` the lower Cholesky factor of ``S_ww - A S_fw``; ``v`` is
      clipped to each pixel's minimum and maximum over the fitted data, as the authors' sampler.
      Rank-3 inputs (N, C, L) are handled as (N, C, 1, L) with window ``(1, k)`` and frame ``(0, l)``.

    Parameters
    ----------
    window : int or (int, int)
        Images: window size ``k`` over (rows, columns); rank-3 inputs (N, C, L) use ``(1, k)``.
        Tabular data: 1 (one feature at a time).
    samples : int or None
        Draws per window (images; None = 10) or per feature (tabular; None = every distinct
        training value weighted by its frequency, eq. 22).
    sampling : {"marginal", "conditional"}
        The distribution the window's values are drawn from (tabular data: marginal only).
    seed : int
        Seed of the draws (and of the fit's reservoir and patch positions).
    padding : int
        Frame ``l`` around the window the conditional sampler conditions on (the paper's ``l``).
    stride : int or (int, int)
        Step between window positions (tabular data: 1).
    batch_size : int or None
        Perturbed inputs per forward pass; None = 128 for images (rounded to whole windows:
        ``max(1, batch_size // samples)`` positions at a time), 4096 rows for tabular data.
    max_train : int
        Images: training images kept for marginal sampling: every one up to this count, then a
        seeded reservoir sample (Vitter's algorithm R) of everything fitted.
    measure : {"weight_of_evidence", "information_difference", "probability_difference"}
        The prediction difference (eqs. 19, 17, 20 of Robnik-Sikonja & Kononenko 2008).
    max_values : int or None
        Tabular data: the most distinct values per feature that ``p(y|x\\A_j)`` runs over; beyond,
        quantile bins weighted by their counts (:func:`compress_values`). None = no limit.

    Raises
    ------
    ValueError
        On explaining before :meth:`Explainer.fit`, for inputs other than tabular (rank 2) or
        image-like (rank 3 or 4), for a window larger than the input, for conditional patches
        (window + 2 padding) larger than the input, for models with fewer than two outputs per
        sample, for an unknown ``measure``, for ``samples`` or ``max_values`` below 1, and for
        non-finite tabular training data (naming the feature by its column index).

    References
    ----------
    M. Robnik-Sikonja, I. Kononenko. Explaining Classifications for Individual Instances. IEEE
    TKDE 20(5), 2008. L. M. Zintgraf, T. S. Cohen, T. Adel, M. Welling. Visualizing Deep Neural
    Network Decisions: Prediction Difference Analysis. ICLR 2017.
    """

    name = "prediction_difference"
    description = ("prediction difference analysis: each feature (tabular, Robnik-Sikonja & Kononenko 2008) or "
                   "sliding window (images, Zintgraf et al. 2017) marginalised over the training data; weight of "
                   "evidence, information difference or difference of probabilities; needs fit(train)")
    reference = ("Robnik-Sikonja & Kononenko 2008 (IEEE TKDE), Explaining Classifications for Individual Instances; "
                 "Zintgraf, Cohen, Adel & Welling 2017 (ICLR), Visualizing Deep Neural Network Decisions")
    params = {
        "window": ("8", "window size k (int or (rows, cols)); windows span all channels; tabular: 1"),
        "samples": ("None", "draws per window (images; None = 10) or per feature (tabular; None = every training "
                            "value weighted by its frequency, eq. 22)"),
        "sampling": ("'marginal'", "'marginal' (values of random training images) or 'conditional' (Gaussian given "
                                   "the surrounding frame; images only)"),
        "seed": ("0", "seed of the draws"),
        "padding": ("2", "frame l around the window that conditional sampling conditions on"),
        "stride": ("1", "step between window positions (1: every position, as the paper)"),
        "batch_size": ("None", "perturbed inputs per forward pass (None: 128 images, 4096 tabular rows)"),
        "max_train": ("1000", "training images kept for marginal sampling (seeded reservoir beyond this)"),
        "measure": ("'weight_of_evidence'", "'weight_of_evidence' (eq. 19), 'information_difference' (eq. 17) or "
                                            "'probability_difference' (eq. 20)"),
        "max_values": ("256", "tabular: distinct training values per feature marginalised over (quantile bins "
                              "weighted by their counts beyond; None: no limit)"),
    }
    learns = True

    def __init__(self, model: Model, **params: Any) -> None:
        super().__init__(model, **params)
        self.window = _pair(params.get("window", 8), "window", 1)
        samples = params.get("samples")
        self.samples: int | None = None if samples is None else _positive_int(samples, "samples")
        self.sampling = params.get("sampling", "marginal")
        if self.sampling not in ("marginal", "conditional"):
            raise ValueError(f"sampling must be 'marginal' or 'conditional', got {self.sampling!r}")
        self.measure = params.get("measure", "weight_of_evidence")
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(repr(m) for m in MEASURES)}, got {self.measure!r}")
        seed = params.get("seed", 0)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or int(seed) < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        padding = params.get("padding", 2)
        if not isinstance(padding, (int, np.integer)) or isinstance(padding, bool) or int(padding) < 0:
            raise ValueError(f"padding must be a non-negative int, got {padding!r}")
        self.padding = int(padding)
        self.stride = _pair(params.get("stride", 1), "stride", 1)
        batch_size = params.get("batch_size")
        self.batch_size: int | None = None if batch_size is None else _positive_int(batch_size, "batch_size")
        self.max_train = _positive_int(params.get("max_train", 1000), "max_train")
        max_values = params.get("max_values", 256)
        self.max_values: int | None = None if max_values is None else _positive_int(max_values, "max_values")
        # What fit() learned.
        self.n_seen = 0
        self.shape: tuple[int, ...] | None = None  # one sample's shape as fitted
        self.low: np.ndarray | None = None  # per-pixel minimum / maximum (C, H, W), conditional clipping
        self.high: np.ndarray | None = None
        self.train: np.ndarray | None = None  # marginal: (T, C, H, W) stored images
        self.patch_count = 0  # conditional: sums over the patch vectors
        self.patch_sum: np.ndarray | None = None
        self.patch_outer: np.ndarray | None = None
        self.values: list[np.ndarray] | None = None  # tabular: per feature, its distinct values (sorted, float32)
        self.counts: list[np.ndarray] | None = None  # ... and how often each was seen (int64)
        self._fit_rng = np.random.default_rng(self.seed)
        self._cond_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._cond_cov: np.ndarray | None = None  # the covariance with the ridge

    @property
    def _image_samples(self) -> int:
        return IMAGE_SAMPLES if self.samples is None else self.samples

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cond_cache"], state["_cond_cov"] = {}, None  # recomputed on demand
        return state

    # -- geometry --------------------------------------------------------------------------------------------------

    def _geometry(self, rank: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """Window, stride and frame (rows, cols) in the (N, C, H, W) view."""
        if rank == 3:
            return (1, self.window[1]), (1, self.stride[1]), (0, self.padding)
        return self.window, self.stride, (self.padding, self.padding)

    def _patch_shape(self, rank: int, hw: tuple[int, int]) -> tuple[int, int]:
        (kh, kw), _, (lh, lw) = self._geometry(rank)
        ph, pw = kh + 2 * lh, kw + 2 * lw
        if ph > hw[0] or pw > hw[1]:
            raise ValueError(f"conditional sampling models (window + 2 * padding) patches of {ph}x{pw} pixels, larger "
                             f"than the input's {hw[0]}x{hw[1]}; use a smaller window or padding")
        return ph, pw

    # -- fitting ---------------------------------------------------------------------------------------------------

    def fit_batch(self, arrays: list[np.ndarray]) -> None:
        """Adds one batch of training data: marginal sampling keeps the images (up to
        ``max_train``, then a reservoir sample), conditional sampling adds the patches to the
        Gaussian's sums; both count the samples and track each pixel's minimum and maximum.
        Tabular data (N, F): adds the batch to each feature's table of distinct values with counts."""
        x = _single_input(self.name, arrays)
        if x.ndim == 2:
            self._fit_tabular(x)
            return
        rank = x.ndim
        imgs = _as_images(self.name, x).astype(np.float32, copy=False)
        if self.shape is not None and tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"fit: samples shaped {tuple(x.shape[1:])} after samples shaped {self.shape}")
        if self.sampling == "conditional":
            self._patch_shape(rank, imgs.shape[2:])  # refuses patches larger than the input before any change
        n = imgs.shape[0]
        if n == 0:
            return
        self.shape = tuple(x.shape[1:])
        lo, hi = imgs.min(axis=0), imgs.max(axis=0)
        self.low = lo if self.low is None else np.minimum(self.low, lo)
        self.high = hi if self.high is None else np.maximum(self.high, hi)
        if self.sampling == "marginal":
            self._reservoir(imgs)
        else:
            self._add_patches(imgs, rank)
        self.n_seen += n
        self._cond_cache, self._cond_cov = {}, None

    def _tabular_checks(self) -> None:
        """Refuses the image-only settings for tabular data (explicitly given)."""
        if self.sampling == "conditional":
            raise ValueError("prediction_difference on tabular data (N, F) marginalises each feature over its "
                             "training values; sampling='conditional' is for images (leave sampling out)")
        for key in ("window", "stride"):
            if key in self.params and getattr(self, key) != (1, 1):
                raise ValueError(f"prediction_difference on tabular data (N, F) takes one feature at a time; {key} "
                                 f"must be 1 or left out, got {self.params[key]!r}")

    def _fit_tabular(self, x: np.ndarray) -> None:
        self._tabular_checks()
        if self.shape is not None and tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"fit: samples shaped {tuple(x.shape[1:])} after samples shaped {self.shape}")
        if x.shape[0] == 0:
            return
        finite = np.isfinite(x).all(axis=0)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(f"fit: the training data has non-finite values (NaN or inf) in feature(s) "
                             f"{', '.join(str(int(j)) for j in bad[:10])}{' ...' if len(bad) > 10 else ''} (column "
                             "index); impute or drop them first")
        x = x.astype(np.float32, copy=False)
        buffer = None if self.max_values is None else FIT_BUFFER * self.max_values
        if self.values is None or self.counts is None:
            self.values, self.counts = [], []
            for j in range(x.shape[1]):
                v, c = np.unique(x[:, j], return_counts=True)
                self.values.append(v)
                self.counts.append(c.astype(np.int64))
        else:
            for j in range(x.shape[1]):
                v, c = np.unique(x[:, j], return_counts=True)
                self.values[j], self.counts[j] = _merge_counts(self.values[j], self.counts[j], v, c)
        if buffer is not None:
            for j in range(x.shape[1]):
                if len(self.values[j]) > buffer:
                    self.values[j], self.counts[j] = compress_values(self.values[j], self.counts[j], self.max_values)
        self.shape = tuple(x.shape[1:])
        self.n_seen += int(x.shape[0])

    def feature_values(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Tabular data: per feature, the values ``p(y|x\\A_j)`` runs over (float32) and their
        weights ``p(A_j = a_s)`` (float64, summing to 1): the fitted table of distinct values cut to
        ``max_values`` entries by :func:`compress_values`."""
        return [(v, c / c.sum()) for v, c in self._tables()]

    def _tables(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per feature: values and counts, cut to ``max_values`` entries."""
        if self.values is None or self.counts is None:
            raise ValueError("prediction_difference on tabular data marginalises each feature over its training "
                             "values: call fit(train) first (ex.fit(x_train))")
        return [compress_values(v, c, self.max_values) for v, c in zip(self.values, self.counts)]

    def _reservoir(self, imgs: np.ndarray) -> None:
        stored = 0 if self.train is None else len(self.train)
        take = min(self.max_train - stored, len(imgs))
        if take > 0:
            new = imgs[:take].copy()
            self.train = new if self.train is None else np.concatenate([self.train, new])
        assert self.train is not None
        for k in range(take, len(imgs)):  # algorithm R: image number t replaces slot j < max_train
            t = self.n_seen + k
            j = int(self._fit_rng.integers(0, t + 1))
            if j < self.max_train:
                self.train[j] = imgs[k]

    def _add_patches(self, imgs: np.ndarray, rank: int) -> None:
        ph, pw = self._patch_shape(rank, imgs.shape[2:])
        views = np.lib.stride_tricks.sliding_window_view(imgs, (ph, pw), axis=(2, 3))  # N, C, nh, nw, ph, pw
        nh, nw = views.shape[2], views.shape[3]
        positions = nh * nw
        if positions <= PATCHES_PER_IMAGE:
            idx = np.broadcast_to(np.arange(positions), (len(imgs), positions))
        else:
            idx = np.stack([self._fit_rng.choice(positions, PATCHES_PER_IMAGE, replace=False)
                            for _ in range(len(imgs))])
        rows, cols = np.divmod(idx, nw)  # (N, m)
        patches = views[np.arange(len(imgs))[:, None], :, rows, cols]  # N, m, C, ph, pw
        vec = patches.reshape(-1, imgs.shape[1] * ph * pw).astype(np.float64)
        if self.patch_sum is None:
            self.patch_sum = np.zeros(vec.shape[1])
            self.patch_outer = np.zeros((vec.shape[1], vec.shape[1]))
        assert self.patch_outer is not None
        self.patch_sum += vec.sum(axis=0)
        self.patch_outer += vec.T @ vec
        self.patch_count += len(vec)

    def gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance (``ddof=1``, without the ridge) of the fitted patch vectors
        (conditional sampling)."""
        if self.patch_sum is None or self.patch_outer is None or self.patch_count < 2:
            raise ValueError("prediction_difference with sampling='conditional' needs at least two training patches: "
                             "call fit(train) first")
        m = self.patch_count
        mean = self.patch_sum / m
        cov = (self.patch_outer - m * np.outer(mean, mean)) / (m - 1)
        return mean, (cov + cov.T) / 2

    def _conditional(self, offset: tuple[int, int], c: int, rank: int, patch: tuple[int, int]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(window indices, frame indices, A, L) for a window at ``offset`` inside the patch."""
        hit = self._cond_cache.get(offset)
        if hit is not None:
            return hit
        (kh, kw), _, _ = self._geometry(rank)
        ph, pw = patch
        cov = self._cond_cov
        if cov is None:
            _, cov = self.gaussian()
            cov = cov + (COND_RIDGE * float(np.mean(np.diag(cov))) + 1e-12) * np.eye(len(cov))
            self._cond_cov = cov
        d = len(cov)
        ch, dy, dx = np.meshgrid(np.arange(c), np.arange(kh), np.arange(kw), indexing="ij")
        win = (ch * ph * pw + (offset[0] + dy) * pw + (offset[1] + dx)).ravel()
        frame = np.setdiff1d(np.arange(d), win)
        s_ww = cov[np.ix_(win, win)]
        if len(frame):
            s_fw = cov[np.ix_(frame, win)]
            a = np.linalg.solve(cov[np.ix_(frame, frame)], s_fw).T  # S_wf S_ff^-1 (S_ff symmetric)
            cond = s_ww - a @ s_fw
        else:
            a = np.zeros((len(win), 0))
            cond = s_ww
        try:
            chol = np.linalg.cholesky((cond + cond.T) / 2)
        except np.linalg.LinAlgError:
            raise ValueError("prediction_difference: the conditional covariance of a window is not positive definite; "
                             "fit on more (or more varied) training data") from None
        out = (win, frame, a, chol)
        self._cond_cache[offset] = out
        return out

    # -- explaining ------------------------------------------------------------------------------------------------

    def explain(self, arrays: list[np.ndarray], targets: np.ndarray, threads: int,
                progress: Progress | None) -> np.ndarray:
        """Relevance shaped like ``arrays[0]``: per pixel, the mean weight of evidence (bits) of
        the windows containing it, for class ``targets[i]`` of sample ``i``."""
        x_in = _single_input(self.name, arrays)
        if x_in.ndim == 2:
            return self._explain_tabular(x_in, targets, threads, progress)
        rank = x_in.ndim
        x = _as_images(self.name, x_in)
        if self.values is not None:
            raise ValueError(f"prediction_difference was fitted on tabular data shaped {self.shape}, got "
                             f"{tuple(x_in.shape[1:])}")
        if self.n_seen == 0:
            raise ValueError("prediction_difference samples replacement values from training data: call "
                             "fit(train) first (ex.fit(x_train))")
        if tuple(x_in.shape[1:]) != self.shape:
            raise ValueError(f"prediction_difference was fitted on samples shaped {self.shape}, got "
                             f"{tuple(x_in.shape[1:])}")
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (lh, lw) = self._geometry(rank)
        if kh > h or kw > w:
            raise ValueError(f"window {self.window} is larger than the input's spatial shape {tuple(x_in.shape[2:])}")
        pi, pj = np.meshgrid(np.arange(0, h - kh + 1, sh), np.arange(0, w - kw + 1, sw), indexing="ij")
        pi, pj = pi.ravel(), pj.ravel()
        npos = len(pi)
        patch = self._patch_shape(rank, (h, w)) if self.sampling == "conditional" else (kh, kw)
        y0 = np.asarray(self.model.predict(x_in, threads=threads), dtype=np.float64).reshape(n, -1)
        k = y0.shape[1]
        if k < 2:
            raise ValueError("prediction_difference needs class scores (two or more outputs per sample); this model "
                             "has one")
        as_is = _outputs_are_probabilities(self.model, y0)
        p0 = (y0 if as_is else _softmax(y0))[np.arange(n), targets]
        if self.sampling == "conditional":  # every window's Gaussian before the first forward pass
            top = np.clip(pi - lh, 0, h - patch[0])
            left = np.clip(pj - lw, 0, w - patch[1])
            for off in np.unique(np.stack([pi - top, pj - left], axis=1), axis=0):
                self._conditional((int(off[0]), int(off[1])), c, rank, patch)
        samples = self._image_samples
        chunk = max(1, (self.batch_size or IMAGE_BATCH) // samples)
        counter = _Counter(progress, n * npos * samples)
        rel = np.zeros((n, h, w))
        counts = np.zeros((h, w))
        for dy in range(kh):
            for dx in range(kw):
                np.add.at(counts, (pi + dy, pj + dx), 1.0)
        for s in range(n):
            rng = np.random.default_rng(self.seed)
            pick = rng.integers(0, len(self.train), size=(npos, samples)) if self.sampling == "marginal" else None
            q = np.empty(npos)
            for start in range(0, npos, chunk):
                sl = slice(start, min(start + chunk, npos))
                if pick is not None:
                    values = self._marginal_values(pick[sl], pi[sl], pj[sl], (kh, kw))
                else:
                    values = self._conditional_values(x[s], rng, pi[sl], pj[sl], rank, patch, (lh, lw))
                batch = self._perturbed(x[s], values, pi[sl], pj[sl])
                y = np.asarray(self.model.predict(batch.reshape((-1, *x_in.shape[1:])), threads=threads),
                               dtype=np.float64).reshape(len(batch), -1)
                prob = (y if as_is else _softmax(y))[:, targets[s]]
                q[sl] = prob.reshape(-1, samples).mean(axis=1)
                counter.add(len(batch))
            we = _measure(p0[s], q, self.measure, self.n_seen, k)
            for dy in range(kh):
                for dx in range(kw):
                    np.add.at(rel[s], (pi + dy, pj + dx), we)
        rel = np.divide(rel, counts, out=np.zeros_like(rel), where=counts > 0)
        out = np.broadcast_to(rel[:, None], (n, c, h, w)).astype(np.float32)
        return out.reshape(x_in.shape)

    def tabular_draws(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tabular data: the (feature, value, weight) triples that every explained row is perturbed
        with, in forward order: ``samples=None``: every entry of :meth:`feature_values` with its
        frequency; ``samples=k``: ``k`` draws per feature (see the class docstring), weight ``1/k``.
        Returns feature indices (int64), values (float32) and weights (float64)."""
        table = self._tables()
        feats, vals, wts = [], [], []
        if self.samples is None:
            for j, (v, c) in enumerate(table):
                feats.append(np.full(len(v), j, dtype=np.int64))
                vals.append(v)
                wts.append(c / c.sum())
        else:
            u = np.random.default_rng(self.seed).random((len(table), self.samples))
            for j, (v, c) in enumerate(table):
                cdf = np.cumsum(c) / c.sum()
                idx = np.minimum(np.searchsorted(cdf, u[j], side="right"), len(v) - 1)
                feats.append(np.full(self.samples, j, dtype=np.int64))
                vals.append(v[idx])
                wts.append(np.full(self.samples, 1.0 / self.samples))
        return np.concatenate(feats), np.concatenate(vals).astype(np.float32), np.concatenate(wts)

    def _explain_tabular(self, x: np.ndarray, targets: np.ndarray, threads: int,
                         progress: Progress | None) -> np.ndarray:
        """(N, F) relevance: the measure between ``p(y|x)`` and ``p(y|x\\A_j)`` for every feature."""
        self._tabular_checks()
        if self.values is None:
            raise ValueError("prediction_difference on tabular data marginalises each feature over its training "
                             "values: call fit(train) first (ex.fit(x_train))")
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"prediction_difference was fitted on samples shaped {self.shape}, got "
                             f"{tuple(x.shape[1:])}")
        n, f = x.shape
        x = x.astype(np.float32, copy=False)
        y0 = np.asarray(self.model.predict(x, threads=threads), dtype=np.float64).reshape(n, -1)
        k = y0.shape[1]
        if k < 2:
            raise ValueError("prediction_difference needs class scores (two or more outputs per sample); this model "
                             "has one")
        _check_targets(targets, k)
        as_is = _outputs_are_probabilities(self.model, y0)
        p0 = (y0 if as_is else _softmax(y0))[np.arange(n), targets]
        feats, vals, wts = self.tabular_draws()
        t_len = len(feats)
        total = n * t_len
        batch = self.batch_size or TABULAR_BATCH
        q = np.zeros(n * f)
        counter = _Counter(progress, total)
        for g0 in range(0, total, batch):
            g = np.arange(g0, min(g0 + batch, total))
            row, t = np.divmod(g, t_len)
            rows = x[row]  # a copy
            rows[np.arange(len(g)), feats[t]] = vals[t]
            y = np.asarray(self.model.predict(rows, threads=threads), dtype=np.float64).reshape(len(g), -1)
            prob = (y if as_is else _softmax(y))[np.arange(len(g)), targets[row]]
            r0, r1 = int(row[0]), int(row[-1]) + 1  # the chunk's rows: accumulate on their slice of q
            q[r0 * f:r1 * f] += np.bincount((row - r0) * f + feats[t], weights=wts[t] * prob, minlength=(r1 - r0) * f)
            counter.add(len(g))
        rel = _measure(p0[:, None], q.reshape(n, f), self.measure, self.n_seen, k)
        return rel.astype(np.float32)

    def _marginal_values(self, pick: np.ndarray, pi: np.ndarray, pj: np.ndarray, k: tuple[int, int]) -> np.ndarray:
        """(positions, samples, C, kh, kw) window values of the picked training images."""
        assert self.train is not None
        rows = pi[:, None, None, None, None] + np.arange(k[0])[:, None]
        cols = pj[:, None, None, None, None] + np.arange(k[1])
        ch = np.arange(self.train.shape[1])[:, None, None]
        return self.train[pick[:, :, None, None, None], ch, rows, cols]

    def _conditional_values(self, img: np.ndarray, rng: np.random.Generator, pi: np.ndarray, pj: np.ndarray,
                            rank: int, patch: tuple[int, int], frame: tuple[int, int]) -> np.ndarray:
        """(positions, samples, C, kh, kw) draws from the Gaussian of the window given its frame."""
        (kh, kw), _, _ = self._geometry(rank)
        c, h, w = img.shape
        ph, pw = patch
        mean = self.patch_sum / self.patch_count
        assert self.low is not None and self.high is not None
        z = rng.standard_normal((len(pi), self._image_samples, c * kh * kw))
        top = np.clip(pi - frame[0], 0, h - ph)
        left = np.clip(pj - frame[1], 0, w - pw)
        views = np.lib.stride_tricks.sliding_window_view(img.astype(np.float64), (ph, pw), axis=(1, 2))
        patches = views[:, top, left].transpose(1, 0, 2, 3).reshape(len(pi), -1)  # positions, C*ph*pw
        out = np.empty_like(z)
        offsets = np.stack([pi - top, pj - left], axis=1)
        for off in np.unique(offsets, axis=0):
            sel = np.flatnonzero((offsets == off).all(axis=1))
            win, fr, a, chol = self._conditional((int(off[0]), int(off[1])), c, rank, patch)
            cond_mean = mean[win] + (patches[sel][:, fr] - mean[fr]) @ a.T  # positions, Dw
            out[sel] = cond_mean[:, None, :] + z[sel] @ chol.T
        out = out.reshape(len(pi), self._image_samples, c, kh, kw)
        rows = pi[:, None, None, None, None] + np.arange(kh)[:, None]
        cols = pj[:, None, None, None, None] + np.arange(kw)
        ch = np.arange(c)[:, None, None]
        lo = self.low[ch, rows, cols]
        hi = self.high[ch, rows, cols]
        return np.clip(out, lo, hi)

    @staticmethod
    def _perturbed(img: np.ndarray, values: np.ndarray, pi: np.ndarray, pj: np.ndarray) -> np.ndarray:
        """(positions * samples, C, H, W) copies of ``img`` with each window replaced by its values."""
        npos, ns, c, kh, kw = values.shape
        batch = np.repeat(img[None].astype(np.float32), npos * ns, axis=0).reshape(npos, ns, *img.shape)
        rows = pi[:, None, None, None, None] + np.arange(kh)[:, None]
        cols = pj[:, None, None, None, None] + np.arange(kw)
        batch[np.arange(npos)[:, None, None, None, None], np.arange(ns)[:, None, None, None],
              np.arange(c)[:, None, None], rows, cols] = values
        return batch.reshape(npos * ns, *img.shape)


def _laplace(p: Any, n: int, k: int) -> Any:
    """The Laplace-corrected probability ``(p n + 1) / (n + k)``."""
    return (np.asarray(p, dtype=np.float64) * n + 1.0) / (n + k)


def _log2_odds(p: Any, n: int, k: int) -> Any:
    """log2 of the odds of the Laplace-corrected probability ``(p n + 1) / (n + k)``."""
    lp = _laplace(p, n, k)
    return np.log2(lp / (1.0 - lp))


# ---- LIME --------------------------------------------------------------------------------------------------------

#: Parameters of the default segmentation (``segments=None``): ``skimage.segmentation.slic`` on
#: the image moved to channels-last and scaled to [0, 1] by its own minimum and maximum (all
#: channels together), without Lab conversion, labels from 0. SLIC is deterministic.
SLIC_PARAMS: dict[str, Any] = {"n_segments": 50, "compactness": 0.1, "sigma": 1.0, "convert2lab": False,
                               "enforce_connectivity": True, "start_label": 0}


def slic_segments(image: np.ndarray) -> np.ndarray:
    """The default LIME segmentation of one image (C, H, W): SLIC superpixels (Achanta et al.
    2012) with :data:`SLIC_PARAMS`; an (H, W) int array of segment ids.

    Raises
    ------
    ImportError
        scikit-image is not installed.
    """
    try:
        from skimage.segmentation import slic
    except ImportError:
        raise ImportError("lime's default segmentation (SLIC superpixels) needs scikit-image: pip install "
                          "scikit-image, or pass segments= (an int array of segment ids or a callable)") from None
    img = np.moveaxis(np.asarray(image, dtype=np.float64), 0, -1)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return np.asarray(slic(img, channel_axis=-1, **SLIC_PARAMS), dtype=np.int64)


def lime_kernel(z: np.ndarray, kernel_width: float) -> np.ndarray:
    """LIME's sample weights for binary rows ``z`` (samples, M): ``sqrt(exp(-d**2 / width**2))``
    with ``d`` the cosine distance between a row and the all-ones row (1 for a row of zeros, as
    scikit-learn's cosine distance), i.e. ``exp(-d**2 / (2 width**2))``, Captum's exponential kernel."""
    z = np.asarray(z, dtype=np.float64)
    d = 1.0 - np.sqrt(z.sum(axis=1) / z.shape[1])
    return np.sqrt(np.exp(-(d**2) / kernel_width**2))


def weighted_ridge(x: np.ndarray, y: np.ndarray, weights: np.ndarray, alpha: float,
                   use_sklearn: bool | None = None) -> tuple[np.ndarray, float]:
    """Coefficients and intercept minimising ``sum_i w_i (y_i - x_i b - b0)**2 + alpha |b|**2``.

    scikit-learn's ``Ridge(alpha)`` (``LinearRegression`` for ``alpha=0``) with ``sample_weight``
    when it is installed (``use_sklearn=None``), as LIME and Captum's ``SkLearnRidge``; otherwise
    (or with ``use_sklearn=False``) ``numpy.linalg.lstsq`` on the same problem: the data centred
    on the weighted means, rows scaled by ``sqrt(w_i)``, ``sqrt(alpha) I`` appended (the
    minimum-norm solution where ``alpha=0`` leaves it undetermined, as scikit-learn's).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if use_sklearn is not False:
        try:
            from sklearn.linear_model import LinearRegression, Ridge
        except ImportError:
            if use_sklearn:
                raise
        else:
            reg = Ridge(alpha=alpha) if alpha > 0 else LinearRegression()
            reg.fit(x, y, sample_weight=w)
            return np.asarray(reg.coef_, dtype=np.float64), float(reg.intercept_)
    x_mean = w @ x / w.sum()
    y_mean = float(w @ y / w.sum())
    sw = np.sqrt(w)
    xs = (x - x_mean) * sw[:, None]
    ys = (y - y_mean) * sw
    if alpha > 0:
        xs = np.concatenate([xs, np.sqrt(alpha) * np.eye(x.shape[1])])
        ys = np.concatenate([ys, np.zeros(x.shape[1])])
    coef = np.linalg.lstsq(xs, ys, rcond=None)[0]
    return coef, y_mean - float(x_mean @ coef)


#: LIME on tabular data: training rows kept for the quartile discretisation when ``max_train`` is
#: not given (every row up to this count, then a seeded reservoir sample).
LIME_MAX_TRAIN = 100_000


@dataclass
class QuartileBins:
    """One feature's quartile discretisation, as ``lime.discretize.QuartileDiscretizer`` learns it
    from the training column: the distinct quartiles ``edges`` (bin of ``v`` =
    ``searchsorted(edges, v)``), per bin the minimum, maximum, mean and standard deviation
    (``+ 1e-11``) of the training values in it, and the bins seen with their relative frequency."""

    edges: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    means: np.ndarray
    stds: np.ndarray
    values: np.ndarray
    freqs: np.ndarray


def quartile_bins(column: np.ndarray) -> QuartileBins:
    """LIME's quartile discretisation of one training column (``QuartileDiscretizer`` and the
    feature statistics of ``LimeTabularExplainer``), with numpy's operations in LIME's order on the
    column's own dtype, so that the numbers are the same as LIME's."""
    qts = np.unique(np.array(np.percentile(column, [25, 50, 75])))
    binned = np.searchsorted(qts, column)
    means: list[Any] = []
    stds: list[Any] = []
    for b in range(qts.shape[0] + 1):
        selection = column[binned == b]
        means.append(0 if len(selection) == 0 else np.mean(selection))
        std = 0 if len(selection) == 0 else np.std(selection)
        std += 0.00000000001
        stds.append(std)
    mins = np.array([np.min(column)] + qts.tolist())
    maxs = np.array(qts.tolist() + [np.max(column)])
    stored = column.copy()
    stored[:] = binned.astype(int)  # LIME keeps the bin ids in the data's own dtype
    values, counts = np.unique(stored, return_counts=True)
    return QuartileBins(qts, mins, maxs, np.array(means), np.array(stds), values, counts / float(counts.sum()))


@register
class Lime(PythonMethod):
    """LIME (Ribeiro, Singh & Guestrin 2016): a weighted linear surrogate around the explained
    input, over superpixels (images) or quartile bins of the features (tabular data).

    **Images** (rank 3 or 4). For each sample: the spatial axes are split into segments (all
    channels together); ``samples`` binary vectors ``z`` (one entry per segment, in the order of
    the sorted segment ids) switch segments on (the input's values) or off (``fill``); the model's
    output for the target on each perturbed input is regressed on ``z`` with LIME's kernel weights
    (:func:`lime_kernel`, width ``kernel_width``, default 0.25) by a weighted ridge regression with
    intercept (:func:`weighted_ridge`, LIME's ``Ridge(alpha=1)``). A pixel's relevance (every
    channel) is its segment's coefficient, Captum's ``Lime`` with ``return_input_shape=True``.
    Draws (deterministic): every sample of the batch uses ``z = numpy.random.default_rng(seed)
    .integers(0, 2, size=(samples, M))`` with row 0 then set to ones (the unperturbed input), as
    LIME's ``data[0, :] = 1`` (see :meth:`draw_samples`). Images learn nothing from data.

    **Tabular data** (rank-2 input (N, F)): LIME's own tabular explainer,
    ``lime.lime_tabular.LimeTabularExplainer(train, discretize_continuous=True,
    discretizer="quartile", sample_around_instance=False, random_state=seed)`` with
    ``explain_instance(row, predict, labels=(target,), num_features=F, num_samples=samples)`` and
    ``feature_selection="none"`` (every feature gets its coefficient). ``fit(train)`` keeps the
    training rows (float32, as the model gets them; up to ``max_train``, then a seeded reservoir
    sample, Vitter's algorithm R) from which each feature's quartile bins are learnt
    (:func:`quartile_bins`). For an explained row: ``samples`` perturbations, the first the row
    itself; in the others every feature gets a bin drawn from the training distribution of its
    bins and a value from a normal with the bin's training mean and standard deviation truncated
    to the bin's range; the binary representation is 1 where a perturbation's bin is the row's
    bin; the kernel weight is ``sqrt(exp(-d**2 / kernel_width**2))`` on the euclidean distance
    ``d`` of the binary vector from the row's (all ones), which is LIME's distance of the scaled
    representation (the scaler of a discretised feature is the identity), ``kernel_width``
    ``None`` = LIME's ``sqrt(F) * 0.75``; the surrogate is the weighted ridge regression
    (``alpha``, LIME's ``Ridge(alpha=1)``) of the explained output on the binary vectors, and a
    feature's relevance is its coefficient (LIME's explanation weight for the explained class).

    Draws, tabular (LIME's order; reproducible): one ``rs = numpy.random.RandomState(seed)`` per
    call (the legacy generator LIME draws from); for each feature ``j`` in order,
    ``rs.choice(values_j, size=samples, replace=True, p=freqs_j)`` (the bins); then for each
    feature in order, ``scipy.stats.truncnorm.rvs(lo, hi, loc=mean, scale=std, random_state=rs)``
    for perturbations 1..samples-1 whose bin has ``min < max`` (standardised bounds, as
    ``lime.discretize.BaseDiscretizer.undiscretize``). These draws do not depend on the explained
    row, so every row of a call shares the perturbations (forwarded once) and equals a fresh
    ``LimeTabularExplainer(..., random_state=seed)`` per row. One deviation from the ``lime``
    package: a bin whose training values are all equal (min = max) gives that value, where LIME
    returns its standardised value ``(min - mean) / std`` (0 when the value is 0, else a huge
    number, a bug). Needs scipy (``pip install scikit-learn`` brings it).

    The explained value, for both, is the model's output as :meth:`onnxplain.Model.predict`
    returns it: the class probabilities of a scikit-learn classifier converted by skl2onnx (as
    LIME's ``predict_proba``), the logit for a model loaded with the default
    ``strip_softmax=True`` (load with ``strip_softmax=False`` to explain the probabilities).

    Parameters
    ----------
    samples : int
        Perturbed inputs per explained sample, the unperturbed one included (LIME's
        ``num_samples``).
    segments : None, int array or callable
        Images only. ``None``: SLIC superpixels from scikit-image (:func:`slic_segments`; LIME's
        own default is quickshift, which needs RGB); an int array shaped like the spatial axes ((H,
        W) or (L,)), the same for every sample, or with a leading batch axis (one map per sample);
        or a callable ``f(sample)`` taking one sample (C, H, W) and returning its (H, W) ids.
    kernel_width : float or None
        Width of the exponential kernel: on the cosine distance for images (None = 0.25), on the
        euclidean distance of the binary representation for tabular data (None = ``sqrt(F) *
        0.75``, LIME's default).
    seed : int
        Seed of the draws (and of the fit's reservoir).
    fill : float, "mean" or array
        Images only. Value of switched-off segments: a constant, ``"mean"`` (each segment's mean per
        channel, LIME's ``hide_color=None``), or an array shaped like one sample.
    alpha : float
        Ridge penalty (LIME's default 1.0); 0 = weighted least squares.
    batch_size : int or None
        Perturbed inputs per forward pass (None: 128 images, 4096 tabular rows).
    max_train : int or None
        Tabular data: training rows kept for the quartile discretisation (None =
        :data:`LIME_MAX_TRAIN`); the result equals LIME's on all the training data when no more
        rows than this were fitted.

    Raises
    ------
    ValueError
        For tabular data: on explaining before ``fit(train)``, for ``segments`` or ``fill`` (image
        parameters), for a feature count other than the fitted one, and for non-finite training
        data (naming the feature by its column index).

    References
    ----------
    M. T. Ribeiro, S. Singh, C. Guestrin. "Why Should I Trust You?": Explaining the Predictions of
    Any Classifier. KDD 2016 (and the ``lime`` package, ``lime_tabular.py``, ``discretize.py``).
    R. Achanta et al. SLIC Superpixels Compared to State-of-the-Art Superpixel Methods. IEEE
    TPAMI 34(11), 2012.
    """

    name = "lime"
    description = ("LIME: weighted ridge surrogate on superpixels switched on/off (images) or on quartile bins drawn "
                   "from the training data (tabular, LimeTabularExplainer; needs fit(train))")
    reference = "Ribeiro, Singh & Guestrin 2016 (KDD), \"Why Should I Trust You?\""
    params = {
        "samples": ("1000", "perturbed inputs per sample (the unperturbed one included)"),
        "segments": ("None", "images: None (SLIC superpixels, needs scikit-image), int ids shaped like the spatial "
                             "axes (optionally with a batch axis), or a callable(sample) -> ids"),
        "kernel_width": ("None", "width of LIME's exponential kernel (None: 0.25 on the cosine distance for images, "
                                 "sqrt(F) * 0.75 on the euclidean distance for tabular data)"),
        "seed": ("0", "seed of the draws"),
        "fill": ("0.0", "images: value of switched-off segments: a number, 'mean' (segment mean per channel) or an "
                        "array shaped like one sample"),
        "alpha": ("1.0", "ridge penalty of the surrogate (0: weighted least squares)"),
        "batch_size": ("None", "perturbed inputs per forward pass (None: 128 images, 4096 tabular rows)"),
        "max_train": ("None", f"tabular: training rows kept for the quartile bins (None: {LIME_MAX_TRAIN}; seeded "
                              "reservoir beyond)"),
    }

    def __init__(self, model: Model, **params: Any) -> None:
        super().__init__(model, **params)
        self.samples = _positive_int(params.get("samples", 1000), "samples")
        width = params.get("kernel_width")
        self.kernel_width: float | None = None if width is None else float(width)
        if self.kernel_width is not None and (not np.isfinite(self.kernel_width) or self.kernel_width <= 0):
            raise ValueError(f"kernel_width must be a positive number (or None), got {width!r}")
        seed = params.get("seed", 0)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or int(seed) < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.alpha = float(params.get("alpha", 1.0))
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a non-negative number, got {params.get('alpha')!r}")
        batch_size = params.get("batch_size")
        self.batch_size: int | None = None if batch_size is None else _positive_int(batch_size, "batch_size")
        max_train = params.get("max_train")
        self.max_train = LIME_MAX_TRAIN if max_train is None else _positive_int(max_train, "max_train")
        fill = params.get("fill", 0.0)
        if isinstance(fill, str):
            if fill != "mean":
                raise ValueError(f"fill must be a number, 'mean' or an array shaped like one sample, got {fill!r}")
            self.fill: Any = fill
        else:
            self.fill = np.asarray(fill, dtype=np.float32)
            if not np.all(np.isfinite(self.fill)):
                raise ValueError("fill must be finite")
        seg = params.get("segments")
        if seg is None or callable(seg):
            self.segments: Any = seg
        else:
            arr = np.asarray(seg)
            if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
                raise ValueError(f"segments must be an int array of segment ids (or None, or a callable), got dtype "
                                 f"{arr.dtype}")
            self.segments = arr.astype(np.int64)
        # Tabular models learn the quartile bins from fit(train); image models learn nothing. A
        # model whose input rank is unknown is taken as possibly tabular.
        inputs = model.inputs
        self.learns = len(inputs) == 1 and len(inputs[0].shape) in (0, 2)  # type: ignore[misc]
        # What fit() learned (tabular).
        self.n_seen = 0
        self.rows: np.ndarray | None = None  # (T, F) float32 training rows
        self._fit_rng = np.random.default_rng(self.seed)
        self._bins: list[QuartileBins] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_bins"] = None  # recomputed on demand
        return state

    # -- tabular ---------------------------------------------------------------------------------------------------

    def fit_batch(self, arrays: list[np.ndarray]) -> None:
        """Tabular data (N, F): keeps the training rows (up to ``max_train``, then a seeded
        reservoir sample). Image-like data: nothing to learn."""
        x = _single_input(self.name, arrays)
        if x.ndim != 2:
            return
        if self.rows is not None and x.shape[1] != self.rows.shape[1]:
            raise ValueError(f"fit: samples with {x.shape[1]} features after samples with {self.rows.shape[1]}")
        finite = np.isfinite(x).all(axis=0)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(f"fit: the training data has non-finite values (NaN or inf) in feature(s) "
                             f"{', '.join(str(int(j)) for j in bad[:10])}{' ...' if len(bad) > 10 else ''} (column "
                             "index); impute or drop them first")
        if x.shape[0] == 0:
            return
        x = x.astype(np.float32, copy=False)
        stored = 0 if self.rows is None else len(self.rows)
        take = min(self.max_train - stored, len(x))
        if take > 0:
            new = x[:take].copy()
            self.rows = new if self.rows is None else np.concatenate([self.rows, new])
        elif self.rows is None:
            self.rows = np.empty((0, x.shape[1]), np.float32)
        for k in range(max(take, 0), len(x)):  # algorithm R: row number t replaces slot j < max_train
            t = self.n_seen + k
            j = int(self._fit_rng.integers(0, t + 1))
            if j < self.max_train:
                self.rows[j] = x[k]
        self.n_seen += int(x.shape[0])
        self._bins = None

    def feature_bins(self) -> list[QuartileBins]:
        """Per feature, the quartile bins learnt from the fitted rows (:func:`quartile_bins`)."""
        if self.rows is None or len(self.rows) == 0:
            raise ValueError("lime on tabular data (N, F) draws its perturbations from the quartile bins of the "
                             "training data, as LIME's LimeTabularExplainer: call fit(train) first (ex.fit(x_train))")
        if self._bins is None:
            self._bins = [quartile_bins(self.rows[:, j]) for j in range(self.rows.shape[1])]
        return self._bins

    def tabular_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """The bins ``(samples, F)`` drawn (row 0's are drawn and then unused, as LIME's) and the
        perturbed rows 1..samples-1 ``(samples - 1, F)`` (float64), from ``RandomState(seed)`` in
        LIME's order (see the class docstring); the same for every explained row."""
        try:
            from scipy.stats import truncnorm
        except ImportError:
            raise ImportError("lime on tabular data draws from truncated normals as LIME does, which needs scipy: "
                              "pip install scipy (or scikit-learn)") from None
        bins = self.feature_bins()
        rs = np.random.RandomState(self.seed)
        drawn = np.empty((self.samples, len(bins)))
        for j, qb in enumerate(bins):
            drawn[:, j] = rs.choice(qb.values, size=self.samples, replace=True, p=qb.freqs)
        rows = np.empty((self.samples - 1, len(bins)))
        for j, qb in enumerate(bins):
            b = drawn[1:, j].astype(int)
            mins, maxs, means, stds = qb.mins[b], qb.maxs[b], qb.means[b], qb.stds[b]
            minz = (mins - means) / stds
            maxz = (maxs - means) / stds
            unequal = minz != maxz
            col = mins.astype(np.float64)  # LIME: minz; here the bin's value (see the class docstring)
            col[np.where(unequal)] = truncnorm.rvs(minz[unequal], maxz[unequal], loc=means[unequal],
                                                   scale=stds[unequal], random_state=rs)
            rows[:, j] = col
        return drawn, rows

    def _explain_tabular(self, x: np.ndarray, targets: np.ndarray, threads: int,
                         progress: Progress | None) -> np.ndarray:
        for key in ("segments", "fill"):
            if key in self.params:
                raise ValueError(f"lime on tabular data (N, F) perturbs features by their quartile bins; {key}= is "
                                 "for images (leave it out)")
        bins = self.feature_bins()
        n, f = x.shape
        if f != len(bins):
            raise ValueError(f"lime was fitted on rows of {len(bins)} features, got rows of {f}")
        drawn, perturbed = self.tabular_samples()
        batch = self.batch_size or TABULAR_BATCH
        inputs = np.concatenate([x.astype(np.float64), perturbed])
        outs = []
        counter = _Counter(progress, len(inputs))
        for start in range(0, len(inputs), batch):
            chunk = inputs[start:start + batch]
            outs.append(np.asarray(self.model.predict(chunk.astype(np.float32), threads=threads),
                                   dtype=np.float64).reshape(len(chunk), -1))
            counter.add(len(chunk))
        y = np.concatenate(outs)
        _check_targets(targets, y.shape[1])
        own = np.stack([np.searchsorted(qb.edges, x[:, j]) for j, qb in enumerate(bins)], axis=1)  # (N, F)
        width = float(np.sqrt(f) * 0.75) if self.kernel_width is None else self.kernel_width
        out = np.zeros((n, f), dtype=np.float32)
        for i in range(n):
            z = (drawn == own[i]).astype(np.float64)
            z[0] = 1.0
            d = np.sqrt((1.0 - z).sum(axis=1))  # euclidean distance from the all-ones row
            weights = np.sqrt(np.exp(-(d**2) / width**2))
            labels = np.concatenate([y[i:i + 1, targets[i]], y[n:, targets[i]]])
            coef, _ = weighted_ridge(z, labels, weights, self.alpha)
            out[i] = coef.astype(np.float32)
        return out

    # -- images ----------------------------------------------------------------------------------------------------

    def draw_samples(self, n_segments: int) -> np.ndarray:
        """The binary samples (samples, n_segments) used for every explained input: row 0 all
        ones, the others ``default_rng(seed).integers(0, 2, size=(samples, n_segments))``."""
        z = np.random.default_rng(self.seed).integers(0, 2, size=(self.samples, int(n_segments)))
        z[0] = 1
        return z

    def _segment_map(self, index: int, sample: np.ndarray, n: int) -> np.ndarray:
        spatial = sample.shape[1:]
        if self.segments is None:
            if len(spatial) != 2:
                raise ValueError(f"lime's default segmentation (SLIC) is for images (C, H, W); pass segments= for "
                                 f"samples shaped {sample.shape}")
            return slic_segments(sample)
        if callable(self.segments):
            seg = np.asarray(self.segments(sample))
            if seg.shape != spatial or not np.issubdtype(seg.dtype, np.integer):
                raise ValueError(f"segments(sample) must return int ids shaped {spatial}, got dtype {seg.dtype} and "
                                 f"shape {seg.shape}")
            return seg.astype(np.int64)
        seg = self.segments
        if seg.shape == spatial:
            return seg
        if seg.shape == (n, *spatial):
            return seg[index]
        raise ValueError(f"segments shaped {seg.shape} do not fit samples shaped {sample.shape}: expected {spatial} "
                         f"(one map for every sample) or {(n, *spatial)} (one per sample)")

    def _baseline(self, sample: np.ndarray, ids: np.ndarray, m: int) -> np.ndarray:
        if isinstance(self.fill, str):  # "mean": each segment's mean, per channel
            flat = sample.reshape(sample.shape[0], -1).astype(np.float64)
            sums = np.zeros((sample.shape[0], m))
            for ch in range(sample.shape[0]):
                sums[ch] = np.bincount(ids, weights=flat[ch], minlength=m)
            means = sums / np.bincount(ids, minlength=m)
            return means[:, ids].astype(np.float32).reshape(sample.shape)
        try:
            return np.broadcast_to(self.fill, sample.shape).astype(np.float32)
        except ValueError:
            raise ValueError(f"fill shaped {self.fill.shape} does not fit samples shaped {sample.shape}") from None

    def explain(self, arrays: list[np.ndarray], targets: np.ndarray, threads: int,
                progress: Progress | None) -> np.ndarray:
        """Relevance shaped like ``arrays[0]``: each pixel gets its segment's surrogate
        coefficient for the output ``targets[i]`` of sample ``i``."""
        x = _single_input(self.name, arrays)
        if x.ndim == 2:
            return self._explain_tabular(x, targets, threads, progress)
        if x.ndim < 3:
            raise ValueError(f"lime explains tabular data (N, F) and inputs with a channel axis and spatial axes, "
                             f"(N, C, H, W) or (N, C, L); got shape {tuple(x.shape)}")
        width = 0.25 if self.kernel_width is None else self.kernel_width
        batch_size = self.batch_size or IMAGE_BATCH
        n = x.shape[0]
        maps = [self._segment_map(i, x[i], n) for i in range(n)]  # validates every map before any forward pass
        out = np.zeros(x.shape, dtype=np.float32)
        counter = _Counter(progress, n * self.samples)
        for i in range(n):
            sample = x[i]
            uniq, ids = np.unique(maps[i].ravel(), return_inverse=True)
            ids = ids.ravel()
            m = len(uniq)
            z = self.draw_samples(m)
            base = self._baseline(sample, ids, m).reshape(sample.shape[0], -1)
            flat = sample.reshape(sample.shape[0], -1)
            f = np.empty(self.samples)
            for start in range(0, self.samples, batch_size):
                on = z[start:start + batch_size][:, ids].astype(bool)  # rows, pixels
                batch = np.where(on[:, None, :], flat[None], base[None]).reshape((-1, *sample.shape))
                y = np.asarray(self.model.predict(batch, threads=threads)).reshape(len(batch), -1)
                f[start:start + len(batch)] = y[:, targets[i]]
                counter.add(len(batch))
            coef, _ = weighted_ridge(z, f, lime_kernel(z, width), self.alpha)
            out[i] = coef[ids].reshape(sample.shape[1:]).astype(np.float32)[None]
        return out


class Occlusion(PythonMethod):
    """Occlusion (Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks",
    ECCV) for models run by onnxruntime (``ox.load(..., backend="onnxruntime")``): the same windows,
    fill and averaging as the engine's ``occlusion`` (Captum's ``Occlusion``), the occluded copies
    forwarded in batches. Models the engine runs use the engine's version, which also recomputes
    only each window's cone of influence."""

    name = "occlusion"
    description = "Occlusion: each window replaced by `fill`; mean drop of f_t over the windows covering a feature"
    reference = "Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks, ECCV"

    def __init__(self, model: Model, window: Any = 8, stride: Any = 8, fill: Any = 0.0, batch_size: int = 128,
                 **params: Any) -> None:
        super().__init__(model, window=window, stride=stride, fill=fill, **params)
        self.window, self.stride, self.fill = window, stride, fill
        self.batch_size = _positive_int(batch_size, "batch_size")

    def _per_axis(self, value: Any, name: str, sample: tuple[int, ...]) -> tuple[int, ...]:
        if np.ndim(value) == 0:
            v = float(value)
            if not (v >= 1 and v == int(v)):
                raise ValueError(f"occlusion: {name} must be an integer >= 1, got {value!r}")
            return tuple(sample[0] if len(sample) >= 2 and a == 0 else int(v) for a in range(len(sample)))
        vals = np.asarray(value, dtype=np.float64).ravel()
        if vals.size != len(sample):
            raise ValueError(f"occlusion: {name} has {vals.size} entries, but a sample has {len(sample)} axes "
                             f"{sample}; give an int or one entry per axis of a sample")
        if not all(v >= 1 and v == int(v) for v in vals):
            raise ValueError(f"occlusion: {name} entries must be integers >= 1, got {value!r}")
        return tuple(int(v) for v in vals)

    def explain(self, arrays: list[np.ndarray], targets: np.ndarray, threads: int,
                progress: Progress | None) -> np.ndarray:
        x = _single_input(self.name, arrays)
        if x.ndim < 2:
            raise ValueError(f"occlusion: the input needs a batch axis and a feature axis, got shape {x.shape}")
        sample = x.shape[1:]
        win = self._per_axis(self.window, "window", sample)
        stride = self._per_axis(self.stride, "stride", sample)
        for a, (d, w, s) in enumerate(zip(sample, win, stride)):
            if w > d:
                raise ValueError(f"occlusion: the window {win} is larger than a sample {sample} on axis {a + 1}")
            if s > w:
                raise ValueError(f"occlusion: the stride {stride} exceeds the window {win} on axis {a + 1}, which "
                                 "would leave features that no window covers")
        fill = np.asarray(self.fill, dtype=np.float32)
        if fill.ndim and fill.shape != sample:
            raise ValueError(f"occlusion: fill must be a number or an array shaped like one sample {sample}, "
                             f"got shape {fill.shape}")
        fill = np.broadcast_to(fill, sample)
        import itertools

        starts = [[k * s for k in range(-(-(d - w) // s) + 1)] for d, w, s in zip(sample, win, stride)]
        boxes = [tuple(slice(a, a + w) for a, w in zip(st, win)) for st in itertools.product(*starts)]
        cover = np.zeros(sample, np.float64)
        for bx in boxes:
            cover[bx] += 1
        n = x.shape[0]
        base = self.model.predict(x, threads=threads)
        base = base.reshape(n, -1)[np.arange(n), targets]
        acc = np.zeros(x.shape, np.float64)
        total, done = n * len(boxes), 0
        for b in range(n):
            for j0 in range(0, len(boxes), self.batch_size):
                chunk = boxes[j0:j0 + self.batch_size]
                copies = np.repeat(x[b:b + 1], len(chunk), axis=0)
                for c, bx in enumerate(chunk):
                    copies[(c, *bx)] = fill[bx]
                y = self.model.predict(copies, threads=threads).reshape(len(chunk), -1)[:, targets[b]]
                for c, bx in enumerate(chunk):
                    acc[(b, *bx)] += base[b] - y[c]
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        return (acc / cover).astype(np.float32)


#: Methods that need nothing but forward passes: what a model run by onnxruntime can be explained with.
BACKEND_METHODS: dict[str, type[PythonMethod]] = {"occlusion": Occlusion}
