"""Perturbation methods driven from Python: they need data-dependent sampling (prediction
difference analysis) or an established solver and segmentation library (LIME). Every forward
pass runs on the C++ engine in large batches (:meth:`onnxplain.Model.predict`); this module only
builds the perturbed inputs and combines the outputs. Occlusion lives in the C++ core
(``methods/occlusion.cpp``) and is reachable from the C API as well.

A method here subclasses :class:`PythonMethod` and registers in :data:`PYTHON_METHODS`;
:class:`onnxplain.Explainer` dispatches to it.
"""

from __future__ import annotations

from collections.abc import Callable
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
    tabular = ". Tabular (rank-2) inputs are not supported yet" if x.ndim == 2 else ""
    raise ValueError(f"{method} explains image-like inputs shaped (N, C, H, W) or (N, C, L); got an input of shape "
                     f"{tuple(x.shape)} (rank {x.ndim}){tabular}")


def _softmax(y: np.ndarray) -> np.ndarray:
    z = y - y.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _outputs_are_probabilities(model: Model, y: np.ndarray) -> bool:
    """Whether the model's outputs ``y`` (rows = samples) are class probabilities already.

    A model loaded with the default ``strip_softmax=True`` lost its final Softmax (its notes say
    so): its outputs are logits. Otherwise the outputs count as probabilities when every row is a
    distribution (entries in [0, 1], sum within 1e-4 of 1), as for a model loaded with
    ``strip_softmax=False`` that ends in Softmax.
    """
    notes = getattr(model, "notes", [])
    if any(n.startswith("stripped") and "Softmax)" in n for n in notes):
        return False
    if y.size == 0 or not np.all(np.isfinite(y)):
        return False
    return bool(np.all(y >= 0) and np.all(y <= 1) and np.all(np.abs(y.sum(axis=1) - 1.0) <= 1e-4))


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


@register
class PredictionDifference(PythonMethod):
    """Prediction difference analysis (Zintgraf, Cohen, Adel & Welling 2017).

    The relevance of a window ``w`` of the input for class ``c`` is the weight of evidence

    ``WE = log2 odds(p(c|x)) - log2 odds(p(c|x\\w))``, ``odds(p) = p / (1 - p)``,

    where ``p(c|x\\w)`` is the mean of ``p(c|x')`` over ``samples`` inputs ``x'`` in which the
    window's values (all channels) are replaced by draws from the training data: the marginal
    distribution (values of a random training image at the same place) or the conditional
    distribution given the surrounding frame of ``padding`` pixels (a Gaussian). Windows of
    ``window x window`` pixels slide over the spatial axes with ``stride`` (1 = every position, the
    paper's overlapping windows); a pixel's relevance is the mean WE of the windows that contain it
    (0 for a pixel that no window covers), the same for every channel. Both probabilities pass
    through the Laplace correction ``p <- (p N + 1) / (N + K)`` of the authors' code, with ``N``
    the number of training samples fitted and ``K`` the number of classes.

    Probabilities: the model's outputs as they are where they are probabilities already (a model
    loaded with ``strip_softmax=False`` whose output rows on the explained batch are all
    distributions: entries in [0, 1], sums within 1e-4 of 1), otherwise the softmax of the outputs.
    ``ox.load`` strips a final Softmax by default (the model's notes say so, and such a model
    always gets the softmax): the softmax of its logits is the model's own softmax, so both ways of
    loading give the same explanation. The choice is made once per call on the unperturbed outputs
    and applies to every perturbed one.

    Sampling order (deterministic, reproducible): each sample ``n`` of the batch gets a fresh
    ``rng = numpy.random.default_rng(seed)`` (so a sample's explanation does not depend on the rest
    of the batch). Window positions ``(i, j)`` are top-left corners ``i = 0, stride, ... <= H - kh``
    in row-major order (``P`` of them).

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
        Window size ``k`` over (rows, columns); rank-3 inputs (N, C, L) use ``(1, k)``.
    samples : int
        Draws per window.
    sampling : {"marginal", "conditional"}
        The distribution the window's values are drawn from.
    seed : int
        Seed of the draws (and of the fit's reservoir and patch positions).
    padding : int
        Frame ``l`` around the window the conditional sampler conditions on (the paper's ``l``).
    stride : int or (int, int)
        Step between window positions.
    batch_size : int
        Perturbed inputs per forward pass (rounded to whole windows: ``max(1, batch_size // samples)``
        positions at a time).
    max_train : int
        Training images kept for marginal sampling: every one up to this count, then a seeded
        reservoir sample (Vitter's algorithm R) of everything fitted.

    Raises
    ------
    ValueError
        On explaining before :meth:`Explainer.fit`, for inputs that are not image-like (rank 3 or
        4), for a window larger than the input, for conditional patches (window + 2 padding) larger
        than the input, and for models with fewer than two outputs per sample.

    References
    ----------
    L. M. Zintgraf, T. S. Cohen, T. Adel, M. Welling. Visualizing Deep Neural Network Decisions:
    Prediction Difference Analysis. ICLR 2017. Builds on M. Robnik-Sikonja, I. Kononenko,
    Explaining Classifications for Individual Instances, IEEE TKDE 20(5), 2008.
    """

    name = "prediction_difference"
    description = ("prediction difference analysis: weight of evidence of sliding windows replaced by samples "
                   "from the training data (marginal or conditional); needs fit(train)")
    reference = "Zintgraf, Cohen, Adel & Welling 2017 (ICLR), Visualizing Deep Neural Network Decisions"
    params = {
        "window": ("8", "window size k (int or (rows, cols)); windows span all channels"),
        "samples": ("10", "draws per window"),
        "sampling": ("'marginal'", "'marginal' (values of random training images) or 'conditional' (Gaussian given "
                                   "the surrounding frame)"),
        "seed": ("0", "seed of the draws"),
        "padding": ("2", "frame l around the window that conditional sampling conditions on"),
        "stride": ("1", "step between window positions (1: every position, as the paper)"),
        "batch_size": ("128", "perturbed inputs per forward pass"),
        "max_train": ("1000", "training images kept for marginal sampling (seeded reservoir beyond this)"),
    }
    learns = True

    def __init__(self, model: Model, **params: Any) -> None:
        super().__init__(model, **params)
        self.window = _pair(params.get("window", 8), "window", 1)
        self.samples = _positive_int(params.get("samples", 10), "samples")
        self.sampling = params.get("sampling", "marginal")
        if self.sampling not in ("marginal", "conditional"):
            raise ValueError(f"sampling must be 'marginal' or 'conditional', got {self.sampling!r}")
        seed = params.get("seed", 0)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or int(seed) < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        padding = params.get("padding", 2)
        if not isinstance(padding, (int, np.integer)) or isinstance(padding, bool) or int(padding) < 0:
            raise ValueError(f"padding must be a non-negative int, got {padding!r}")
        self.padding = int(padding)
        self.stride = _pair(params.get("stride", 1), "stride", 1)
        self.batch_size = _positive_int(params.get("batch_size", 128), "batch_size")
        self.max_train = _positive_int(params.get("max_train", 1000), "max_train")
        # What fit() learned.
        self.n_seen = 0
        self.shape: tuple[int, ...] | None = None  # one sample's shape as fitted
        self.low: np.ndarray | None = None  # per-pixel minimum / maximum (C, H, W), conditional clipping
        self.high: np.ndarray | None = None
        self.train: np.ndarray | None = None  # marginal: (T, C, H, W) stored images
        self.patch_count = 0  # conditional: sums over the patch vectors
        self.patch_sum: np.ndarray | None = None
        self.patch_outer: np.ndarray | None = None
        self._fit_rng = np.random.default_rng(self.seed)
        self._cond_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._cond_cov: np.ndarray | None = None  # the covariance with the ridge

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
        Gaussian's sums; both count the samples and track each pixel's minimum and maximum."""
        x = _single_input(self.name, arrays)
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
        rank = x_in.ndim
        x = _as_images(self.name, x_in)
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
        chunk = max(1, self.batch_size // self.samples)
        counter = _Counter(progress, n * npos * self.samples)
        rel = np.zeros((n, h, w))
        counts = np.zeros((h, w))
        for dy in range(kh):
            for dx in range(kw):
                np.add.at(counts, (pi + dy, pj + dx), 1.0)
        for s in range(n):
            rng = np.random.default_rng(self.seed)
            pick = rng.integers(0, len(self.train), size=(npos, self.samples)) if self.sampling == "marginal" else None
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
                q[sl] = prob.reshape(-1, self.samples).mean(axis=1)
                counter.add(len(batch))
            we = _log2_odds(p0[s], self.n_seen, k) - _log2_odds(q, self.n_seen, k)
            for dy in range(kh):
                for dx in range(kw):
                    np.add.at(rel[s], (pi + dy, pj + dx), we)
        rel = np.divide(rel, counts, out=np.zeros_like(rel), where=counts > 0)
        out = np.broadcast_to(rel[:, None], (n, c, h, w)).astype(np.float32)
        return out.reshape(x_in.shape)

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
        z = rng.standard_normal((len(pi), self.samples, c * kh * kw))
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
        out = out.reshape(len(pi), self.samples, c, kh, kw)
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


def _log2_odds(p: Any, n: int, k: int) -> Any:
    """log2 of the odds of the Laplace-corrected probability ``(p n + 1) / (n + k)``."""
    lp = (np.asarray(p, dtype=np.float64) * n + 1.0) / (n + k)
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


@register
class Lime(PythonMethod):
    """LIME for images: a weighted linear surrogate over superpixels (Ribeiro, Singh & Guestrin 2016).

    For each sample: the spatial axes are split into segments (all channels together); ``samples``
    binary vectors ``z`` (one entry per segment, in the order of the sorted segment ids) switch
    segments on (the input's values) or off (``fill``); the model's output for the target on each
    perturbed input is regressed on ``z`` with LIME's kernel weights (:func:`lime_kernel`) by a
    weighted ridge regression with intercept (:func:`weighted_ridge`, LIME's ``Ridge(alpha=1)``).
    A pixel's relevance (every channel) is its segment's coefficient, Captum's ``Lime`` with
    ``return_input_shape=True``.

    The explained value is the model's output as :meth:`onnxplain.Model.predict` returns it (the
    logit for a model loaded with the default ``strip_softmax=True``; load with
    ``strip_softmax=False`` to explain the probabilities, as LIME's ``classifier_fn`` does).

    Draws (deterministic): every sample of the batch uses ``z = numpy.random.default_rng(seed)
    .integers(0, 2, size=(samples, M))`` with row 0 then set to ones (the unperturbed input), as
    LIME's ``data[0, :] = 1`` (see :meth:`draw_samples`).

    Parameters
    ----------
    samples : int
        Perturbed inputs per explained sample, the unperturbed one included.
    segments : None, int array or callable
        ``None``: SLIC superpixels from scikit-image (:func:`slic_segments`; LIME's own default is
        quickshift, which needs RGB); an int array shaped like the spatial axes ((H, W) or (L,)),
        the same for every sample, or with a leading batch axis (one map per sample); or a callable
        ``f(sample)`` taking one sample (C, H, W) and returning its (H, W) ids.
    kernel_width : float
        Width of the exponential kernel on the cosine distance.
    seed : int
        Seed of the binary draws.
    fill : float, "mean" or array
        Value of switched-off segments: a constant, ``"mean"`` (each segment's mean per channel,
        LIME's ``hide_color=None``), or an array shaped like one sample.
    alpha : float
        Ridge penalty (LIME's default 1.0); 0 = weighted least squares.
    batch_size : int
        Perturbed inputs per forward pass.

    References
    ----------
    M. T. Ribeiro, S. Singh, C. Guestrin. "Why Should I Trust You?": Explaining the Predictions of
    Any Classifier. KDD 2016. R. Achanta et al. SLIC Superpixels Compared to State-of-the-Art
    Superpixel Methods. IEEE TPAMI 34(11), 2012.
    """

    name = "lime"
    description = "LIME: weighted ridge surrogate on superpixels switched on/off, coefficient per pixel"
    reference = "Ribeiro, Singh & Guestrin 2016 (KDD), \"Why Should I Trust You?\""
    params = {
        "samples": ("1000", "perturbed inputs per sample (the unperturbed one included)"),
        "segments": ("None", "None (SLIC superpixels, needs scikit-image), int ids shaped like the spatial axes "
                             "(optionally with a batch axis), or a callable(sample) -> ids"),
        "kernel_width": ("0.25", "width of LIME's exponential kernel on the cosine distance"),
        "seed": ("0", "seed of the binary draws"),
        "fill": ("0.0", "value of switched-off segments: a number, 'mean' (segment mean per channel) or an array "
                        "shaped like one sample"),
        "alpha": ("1.0", "ridge penalty of the surrogate (0: weighted least squares)"),
        "batch_size": ("128", "perturbed inputs per forward pass"),
    }

    def __init__(self, model: Model, **params: Any) -> None:
        super().__init__(model, **params)
        self.samples = _positive_int(params.get("samples", 1000), "samples")
        self.kernel_width = float(params.get("kernel_width", 0.25))
        if not np.isfinite(self.kernel_width) or self.kernel_width <= 0:
            raise ValueError(f"kernel_width must be a positive number, got {params.get('kernel_width')!r}")
        seed = params.get("seed", 0)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or int(seed) < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.alpha = float(params.get("alpha", 1.0))
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a non-negative number, got {params.get('alpha')!r}")
        self.batch_size = _positive_int(params.get("batch_size", 128), "batch_size")
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
        if x.ndim < 3:
            raise ValueError(f"lime explains inputs with a channel axis and spatial axes, (N, C, H, W) or (N, C, L); "
                             f"got shape {tuple(x.shape)}. Tabular (rank-2) inputs are not supported yet")
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
            for start in range(0, self.samples, self.batch_size):
                on = z[start:start + self.batch_size][:, ids].astype(bool)  # rows, pixels
                batch = np.where(on[:, None, :], flat[None], base[None]).reshape((-1, *sample.shape))
                y = np.asarray(self.model.predict(batch, threads=threads)).reshape(len(batch), -1)
                f[start:start + len(batch)] = y[:, targets[i]]
                counter.add(len(batch))
            coef, _ = weighted_ridge(z, f, lime_kernel(z, self.kernel_width), self.alpha)
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
