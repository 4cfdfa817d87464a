"""Pictures of explanations: heatmaps, overlays on the input, PNG files, terminal output and (with
matplotlib) the figures of :func:`onnxplain.report`.

Relevance maps use a diverging map with white at 0, red for positive and blue for negative
relevance, scaled symmetrically around 0 (matplotlib's ``bwr``, as Zennit and iNNvestigate draw
them). The core install (numpy, onnx, onnxruntime) draws heatmaps and writes PNG files without
matplotlib: the default ``bwr`` map is computed here (it is three colours interpolated linearly,
identical to matplotlib's) and the PNG writer needs only zlib. matplotlib would add nothing to
either (its ``imsave`` goes through Pillow to write the same lossless file) while making the demo
and ``onnxplain explain --png`` depend on it. Other colour maps (``cmap="seismic"``, ...) and the
plots need matplotlib: ``pip install onnxplain[report]``.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_INSTALL_HINT = "pip install onnxplain[report]"

# The method colours of the figures (matplotlib's tab10), so that a method has one colour everywhere.
METHOD_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf"]


def require_matplotlib(what: str = "this") -> Any:
    """Imports matplotlib, or raises ``ImportError`` saying how to install it.

    Parameters
    ----------
    what : str
        What needs it, for the message.

    Returns
    -------
    module
        The ``matplotlib`` module.
    """
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(f"{what} needs matplotlib, which is not installed: {_INSTALL_HINT} "
                          "(or pip install matplotlib)") from e
    return matplotlib


def normalise(relevance: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """One explanation (H, W) or (C, H, W) (channels summed) as values in [-1, 1], float64 (H, W).

    Symmetric scaling: 0 stays 0, and ±1 is reached at the ``percentile`` of |R| (larger values
    are clipped), so a few extreme pixels do not wash out the rest.

    Parameters
    ----------
    relevance : numpy.ndarray
        (H, W) or (C, H, W).
    percentile : float
        Percentile of |R| that maps to ±1 (100: the maximum).
    """
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim == 3:
        r = r.sum(axis=0)
    if r.ndim != 2:
        raise ValueError(f"heatmap needs (H, W) or (C, H, W), got shape {r.shape}")
    finite = np.isfinite(r)
    r = np.where(finite, r, 0.0)
    scale = float(np.percentile(np.abs(r), percentile)) if r.size else 0.0
    if not scale > 0:
        scale = float(np.abs(r).max()) if r.size else 0.0  # sparse maps: the percentile can be 0
    return np.clip(r / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(r)


def _colours(v: np.ndarray, cmap: str) -> np.ndarray:
    """RGB in [0, 1] (…, 3) of values v in [-1, 1]."""
    if cmap == "bwr":
        pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
        return np.stack([1.0 - neg, 1.0 - pos - neg, 1.0 - pos], axis=-1).clip(0, 1)
    mpl = require_matplotlib(f"heatmap(cmap={cmap!r})")
    try:
        cm = mpl.colormaps[cmap]
    except KeyError as e:
        raise ValueError(f"unknown colour map {cmap!r}; 'bwr' (default), 'seismic', 'coolwarm', ... "
                         "(matplotlib's names)") from e
    return np.asarray(cm((v + 1.0) / 2.0))[..., :3]


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def heatmap(relevance: np.ndarray, percentile: float = 99.5, cmap: str = "bwr") -> np.ndarray:
    """Maps one explanation (H, W) or (C, H, W) (channels summed) to RGB uint8 (H, W, 3).

    Parameters
    ----------
    relevance : numpy.ndarray
        (H, W) or (C, H, W).
    percentile : float
        Symmetric scaling around 0: white = 0, saturated red/blue at this percentile of |R|.
    cmap : str
        ``"bwr"`` (default, no matplotlib needed) or any matplotlib colour map name, sampled with
        0 at its centre.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8.
    """
    return _to_uint8(_colours(normalise(relevance, percentile), cmap))


def grey(image: np.ndarray) -> np.ndarray:
    """An image (H, W) or (C, H, W) (channels averaged) scaled to [0, 255] grey RGB (H, W, 3)."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=0)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.repeat((a * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def rgb(image: np.ndarray) -> np.ndarray:
    """An input image as it looks: (3, H, W) in colour, (1, H, W) or (H, W) in grey; RGB uint8 (H, W, 3).

    Each image is scaled to its own [min, max] (inputs are often standardised, so there is no
    fixed range to map).
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[0] == 3:
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        return _to_uint8(np.moveaxis(a, 0, -1))
    if a.ndim == 3 and a.shape[0] != 1:
        raise ValueError(f"rgb needs (H, W), (1, H, W) or (3, H, W), got shape {a.shape}")
    return grey(a)


def overlay(relevance: np.ndarray, image: np.ndarray, alpha: float = 0.85, contrast: float = 0.55,
            percentile: float = 99.5, cmap: str = "bwr") -> np.ndarray:
    """A heatmap over the input in light grey: RGB uint8 (H, W, 3).

    The input is drawn in grey between ``1 - contrast`` (its minimum) and white (its maximum), so
    that both colours stay readable on it. Each pixel blends that grey with the colour at the end
    of the map on the side of its relevance (red for positive, blue for negative with ``bwr``),
    with opacity ``alpha * |v|``, where v in [-1, 1] is the relevance scaled as by
    :func:`heatmap`: where the relevance is 0 the input shows unchanged, and the strongest
    relevance covers it to ``alpha``.

    Parameters
    ----------
    relevance : numpy.ndarray
        (H, W) or (C, H, W) (channels summed).
    image : numpy.ndarray
        The input, (H, W) or (C, H, W) (channels averaged for the grey background).
    alpha : float
        Opacity of the colour at the strongest relevance, in [0, 1].
    contrast : float
        How dark the input's minimum is drawn, in [0, 1] (1: black, 0: the input is not drawn).
    percentile, cmap
        As for :func:`heatmap`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not 0.0 <= contrast <= 1.0:
        raise ValueError(f"contrast must be in [0, 1], got {contrast}")
    v = normalise(relevance, percentile)
    base = (1.0 - contrast) + contrast * grey(image).astype(np.float64) / 255.0
    if base.shape[:2] != v.shape:
        raise ValueError(f"overlay: relevance {v.shape} and image {base.shape[:2]} differ in size")
    colour = _colours(np.sign(v), cmap)
    a = (alpha * np.abs(v))[..., None]
    return _to_uint8((1.0 - a) * base + a * colour)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel of an (H, W, …) image repeated ``factor`` times along both axes (crisp pixels)."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    a = np.asarray(image)
    return a if factor == 1 else np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)


def colourbar(width: int = 256, height: int = 12, cmap: str = "bwr") -> np.ndarray:
    """A horizontal bar from -1 (left) through 0 to +1 (right) in the heatmap colours, RGB uint8."""
    v = np.linspace(-1.0, 1.0, width)
    return np.repeat(_to_uint8(_colours(v, cmap))[None], height, axis=0)


def grid(tiles: Sequence[Sequence[np.ndarray]], zoom: int = 8, gap: int = 2) -> np.ndarray:
    """Rows of equally sized RGB tiles into one image, each pixel repeated ``zoom`` times."""
    rows = []
    for row in tiles:
        big = [np.kron(t, np.ones((zoom, zoom, 1), dtype=np.uint8)) for t in row]
        h = big[0].shape[0]
        sep = np.full((h, gap, 3), 255, np.uint8)
        parts = []
        for i, b in enumerate(big):
            parts += [b] if i == 0 else [sep, b]
        rows.append(np.concatenate(parts, axis=1))
    width = max(r.shape[1] for r in rows)
    out = []
    for i, r in enumerate(rows):
        if r.shape[1] < width:
            r = np.concatenate([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)], axis=1)
        out += [r] if i == 0 else [np.full((gap, width, 3), 255, np.uint8), r]
    return np.concatenate(out, axis=0)


def png_bytes(image: np.ndarray) -> bytes:
    """An image encoded as PNG: uint8 (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA.

    8 bits per channel, no filter, zlib level 9; no dependency beyond the standard library.
    """
    a = np.ascontiguousarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"save_png needs (H, W, 3) uint8 (or (H, W) grey, (H, W, 4) RGBA), got {a.dtype} {a.shape}")
    h, w = a.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"a PNG needs at least one pixel, got shape {a.shape}")
    colour_type = {2: 0, 3: 2, 4: 6}[a.shape[2] if a.ndim == 3 else 2]
    rows = a.reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter byte 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
    return png + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Writes an RGB uint8 array (H, W, 3) (or (H, W) grey, (H, W, 4) RGBA) as a PNG file."""
    Path(path).write_bytes(png_bytes(rgb))


def terminal(relevance: np.ndarray) -> list[str]:
    """Lines rendering one (H, W) explanation with ANSI background colours (2 characters a pixel)."""
    rgb = heatmap(relevance)
    return ["".join(f"\x1b[48;2;{p[0]};{p[1]};{p[2]}m  " for p in row) + "\x1b[0m" for row in rgb]


# ---- figures (matplotlib) ------------------------------------------------------------------------


def figure_png(fig: Any, dpi: int = 150) -> bytes:
    """A matplotlib figure rendered to PNG bytes (Agg, without pyplot or its global state)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _figure(width: float, height: float) -> Any:
    require_matplotlib("drawing figures")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def aopc_figure(curves: Mapping[str, Mapping[str, np.ndarray]], colours: Mapping[str, str] | None = None,
                region: int | None = None, xlabel: str | None = None, unit: str = "regions") -> Any:
    """The pixel-flipping curves of several methods: one panel per order (MoRF, LeRF), one line per method.

    Parameters
    ----------
    curves : mapping
        ``{method: {"morf": curves, "lerf": curves}}``, each (N, steps + 1): the target output
        after k regions perturbed (``ox.metrics.aopc(...).curves``); the mean over samples is drawn,
        with a band of ± one standard error.
    colours : mapping, optional
        A colour per method.
    region : int, optional
        The region size, for the axis label.
    xlabel : str, optional
        The label of the step axis (default: regions perturbed, with their size); e.g. ``"features
        perturbed"`` for tabular data.
    unit : str
        What is perturbed, for the panel titles (``"features"`` for tabular data).

    Returns
    -------
    matplotlib.figure.Figure
    """
    orders = [o for o in ("morf", "lerf") if any(o in c for c in curves.values())]
    fig = _figure(5.0 * max(len(orders), 1) + 1.5, 3.6)
    axes = fig.subplots(1, max(len(orders), 1), squeeze=False)[0]
    titles = {"morf": f"MoRF: most relevant {unit} first (steep drop = faithful)",
              "lerf": f"LeRF: least relevant {unit} first (flat = faithful)"}
    for ax, order in zip(axes, orders):
        for i, (method, c) in enumerate(curves.items()):
            if order not in c:
                continue
            a = np.asarray(c[order], dtype=np.float64)
            if a.ndim != 2 or a.shape[1] == 0:
                continue
            mean = a.mean(axis=0)
            k = np.arange(a.shape[1])
            colour = (colours or {}).get(method, METHOD_COLOURS[i % len(METHOD_COLOURS)])
            ax.plot(k, mean, color=colour, label=method, linewidth=1.6)
            if a.shape[0] > 1:
                se = a.std(axis=0) / np.sqrt(a.shape[0])
                ax.fill_between(k, mean - se, mean + se, color=colour, alpha=0.15, linewidth=0)
        ax.set_title(titles[order], fontsize=9)
        ax.set_xlabel(xlabel or ("regions perturbed" + (f" ({region}×{region} pixels each)" if region else "")),
                      fontsize=9)
        ax.set_ylabel("target output f_t (mean over samples)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    _legend(fig, axes[-1])
    return fig


def _legend(fig: Any, ax: Any) -> None:
    """One legend right of the axes (outside them from matplotlib 3.7, inside before)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    try:
        fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    except ValueError:  # matplotlib < 3.7 has no "outside" locations
        ax.legend(fontsize=8)


def _short(layer: str, width: int = 24) -> str:
    """A layer name for an axis: the last two parts of a path-like name (``classifier.3/Gemm``), at most
    ``width`` characters."""
    parts = [p for p in layer.split("/") if p]
    short = "/".join(parts[-2:]) if parts else layer
    return short if len(short) <= width else "…" + short[-(width - 1):]


def randomisation_figure(results: Mapping[str, Sequence[tuple[str, np.ndarray]]],
                         colours: Mapping[str, str] | None = None, similarity: str = "spearman") -> Any:
    """The model-randomisation check: similarity to the original explanation against the number of
    layers randomised (top-down cascade), one line per method.

    Parameters
    ----------
    results : mapping
        ``{method: [(layer, similarity (N,)), ...]}`` as ``ox.metrics.model_randomisation`` returns;
        the mean over samples is drawn, with a band of ± one standard error (undefined similarities,
        such as those of constant maps, are left out).
    colours : mapping, optional
        A colour per method.
    similarity : str
        The similarity measure, for the axis label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    layers: list[str] = []
    for res in results.values():
        for layer, _ in res:
            if str(layer) not in layers:
                layers.append(str(layer))
    fig = _figure(max(8.0, 0.6 * len(layers) + 4.0), 4.2)
    ax = fig.subplots()
    pos = {layer: i for i, layer in enumerate(layers)}
    for i, (method, res) in enumerate(results.items()):
        if not res:
            continue
        xs = np.array([pos[str(layer)] for layer, _ in res])
        vals = [np.asarray(s, dtype=np.float64).ravel() for _, s in res]
        vals = [v[np.isfinite(v)] for v in vals]  # an undefined similarity (a constant map) is left out
        mean = np.array([v.mean() if v.size else np.nan for v in vals])
        se = np.array([v.std() / np.sqrt(v.size) if v.size else np.nan for v in vals])
        colour = (colours or {}).get(method, METHOD_COLOURS[i % len(METHOD_COLOURS)])
        ax.plot(xs, mean, color=colour, label=method, marker="o", markersize=3.5, linewidth=1.6)
        ax.fill_between(xs, mean - se, mean + se, color=colour, alpha=0.15, linewidth=0)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([_short(layer) for layer in layers], rotation=30, ha="right", rotation_mode="anchor",
                       fontsize=8)
    ax.set_xlabel("randomised down to layer (top-down cascade)", fontsize=9)
    ax.set_ylabel(f"similarity to the original ({similarity})", fontsize=9)
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(alpha=0.3)
    _legend(fig, ax)
    return fig


# ---- tabular data ----------------------------------------------------------------------------------------------

#: Colours of the tabular bar charts: an instance's contribution (red positive, blue negative, the ends
#: of the heatmaps' ``bwr`` softened a little for text on top) and the average beside it (pale tints).
BAR_POSITIVE, BAR_NEGATIVE = "#d62728", "#1f5fbf"
BAR_POSITIVE_AVERAGE, BAR_NEGATIVE_AVERAGE = "#f4b9b9", "#b5cdf0"


def feature_labels(count: int, names: Sequence[str] | None = None) -> list[str]:
    """The names of ``count`` features: ``names`` checked (one per feature, as strings), or the
    default ``"x0"`` .. ``"x{count-1}"``.

    Parameters
    ----------
    count : int
        The number of features F.
    names : sequence of str, optional
        The caller's names.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        When there is not exactly one name per feature.
    """
    if names is None:
        return [f"x{j}" for j in range(count)]
    if isinstance(names, str):
        raise ValueError("feature_names must be a sequence of names, one per feature (not one string); split it, "
                         "e.g. 'a,b,c'.split(',')")
    out = [str(n) for n in names]
    if len(out) != count:
        raise ValueError(f"feature_names has {len(out)} names for {count} features")
    return out


def value_averages(relevance: np.ndarray, x: np.ndarray, bins: int = 4, max_distinct: int = 10,
                   targets: np.ndarray | None = None) -> np.ndarray:
    """The average contribution of each instance's feature *value* over the data: explainVis's light
    bars (Robnik-Šikonja & Kononenko 2008; the survey's Figure 9).

    For instance i and feature j: the mean of ``relevance[:, j]`` over the instances whose value of
    feature j is like ``x[i, j]``: the same value for a feature with at most ``max_distinct``
    distinct values in ``x`` (nominal, binary or counted features), else the same interval of the
    ``bins`` quantile intervals of the feature's values in ``x`` (quartiles by default, as LIME
    discretises continuous features; Robnik-Šikonja and Kononenko average over discretised
    intervals of numeric attributes too). Instance i counts itself. With ``targets`` (the output
    each instance was explained for) only instances explained for the same output as instance i
    are averaged: explainVis's averages are those of one class.

    Parameters
    ----------
    relevance : numpy.ndarray
        (N, F): the explanations of the data set's instances.
    x : numpy.ndarray
        (N, F): the instances.
    bins : int
        Quantile intervals per continuous feature (at least 1; 1 averages over all instances).
    max_distinct : int
        Features with at most this many distinct values are grouped by value.
    targets : numpy.ndarray, optional
        (N,) ints: the explained output of each instance; instances are averaged only with those of
        the same target.

    Returns
    -------
    numpy.ndarray
        (N, F) float64.
    """
    r = np.asarray(relevance, dtype=np.float64)
    a = np.asarray(x, dtype=np.float64)
    if r.ndim != 2 or r.shape != a.shape:
        raise ValueError(f"value_averages needs relevance and x of the same shape (N, F); got {r.shape} and {a.shape}")
    if isinstance(bins, bool) or int(bins) < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    if targets is None:
        same = np.zeros(r.shape[0], dtype=np.int64)
    else:
        t = np.asarray(targets)
        if t.shape != (r.shape[0],):
            raise ValueError(f"targets must be one int per instance, ({r.shape[0]},); got shape {t.shape}")
        same = np.unique(t, return_inverse=True)[1].reshape(-1)
    classes = int(same.max()) + 1 if same.size else 1
    out = np.empty_like(r)
    for j in range(a.shape[1]):
        col = a[:, j]
        distinct = np.unique(col)
        if distinct.size <= max_distinct:
            group = np.searchsorted(distinct, col)
        else:
            edges = np.unique(np.quantile(col, np.linspace(0, 1, int(bins) + 1)[1:-1]))
            group = np.searchsorted(edges, col, side="left")  # interval (e_k-1, e_k]: a value on an edge goes left
        group = group * classes + same
        sums = np.bincount(group, weights=r[:, j])
        counts = np.bincount(group)
        out[:, j] = sums[group] / counts[group]
    return out


def _value_text(v: float) -> str:
    if not np.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.3g}"


def _bottom_legend(fig: Any, ax: Any, handles: list[Any]) -> None:
    """One row of legend entries under the axes (inside them before matplotlib 3.7)."""
    try:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False,
                   handlelength=1.2)
    except ValueError:  # matplotlib < 3.7 has no "outside" locations
        ax.legend(handles=handles, fontsize=7, frameon=False, loc="best", handlelength=1.2)


def _bar_colours(v: np.ndarray, pos: str, neg: str) -> list[str]:
    return [pos if t > 0 else neg for t in v]


def _bar_layout(order: np.ndarray, names: Sequence[str], top: Any, width: float,
                title: Any) -> tuple[np.ndarray, int, Any, Any, np.ndarray]:
    """The features to draw (``order`` cut to ``top``) and a figure sized for their bars and names."""
    if top is not None:
        if isinstance(top, bool) or int(top) < 1:
            raise ValueError(f"top must be a positive int, got {top!r}")
        order = order[:int(top)]
    k = len(order)
    longest = max(len(names[j]) for j in order)
    fig = _figure(width + 0.055 * min(longest, 40), 1.0 + 0.24 * k + (0.25 if title else 0.0))
    return order, k, fig, fig.subplots(), np.arange(k)


def feature_bars(relevance_row: np.ndarray, feature_names: Sequence[str] | None = None,
                 average: np.ndarray | None = None, values: np.ndarray | None = None, top: int | None = None,
                 title: str | None = None, xlabel: str = "contribution", width: float = 5.2,
                 png: bool = False) -> Any:
    """The contributions of one instance's features as horizontal bars, beside the average
    contribution over the data: explainVis, the picture of Robnik-Šikonja & Kononenko 2008 (the
    survey's Figure 9).

    One row per feature, sorted by |contribution| (largest on top); the instance's contribution is
    a narrow bar, red when it speaks for the explained output and blue when against it, drawn over
    a wide pale bar of the average (``average``; e.g. :func:`value_averages`: the mean
    contribution of this feature's value over the data, "the overall trend for the feature"). The
    feature names are on the left, the instance's values (``values``) on the right.

    Parameters
    ----------
    relevance_row : numpy.ndarray
        (F,): one instance's contributions (the relevance of a tabular explanation).
    feature_names : sequence of str, optional
        One name per feature; default ``"x0"`` .. ``"x{F-1}"``.
    average : numpy.ndarray, optional
        (F,): the average contribution to draw beside each feature's bar.
    values : numpy.ndarray, optional
        (F,): the instance's feature values, written right of the chart.
    top : int, optional
        Draw only the ``top`` features with the largest |contribution| (default all).
    title : str, optional
        A title, e.g. the instance and its predicted probability.
    xlabel : str
        The label of the contribution axis (name the measure: ``"weight of evidence (bits)"``).
    width : float
        The figure's width in inches (the height follows from the number of rows).
    png : bool
        Return the PNG bytes (150 dpi) instead of the figure.

    Returns
    -------
    matplotlib.figure.Figure or bytes
        The figure, or its PNG when ``png`` is true.
    """
    r = np.asarray(relevance_row, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"feature_bars draws one instance: relevance_row must be (F,), got shape {r.shape}")
    f = r.size
    names = feature_labels(f, feature_names)
    avg = None if average is None else np.asarray(average, dtype=np.float64)
    if avg is not None and avg.shape != (f,):
        raise ValueError(f"average must be (F,) = ({f},), got shape {avg.shape}")
    vals = None if values is None else np.asarray(values, dtype=np.float64)
    if vals is not None and vals.shape != (f,):
        raise ValueError(f"values must be (F,) = ({f},), got shape {vals.shape}")
    order, k, fig, ax, y = _bar_layout(np.argsort(-np.abs(np.nan_to_num(r)), kind="stable"), names, top, width, title)
    rv = r[order]
    if avg is not None:
        av = avg[order]
        ax.barh(y, av, height=0.82, color=_bar_colours(av, BAR_POSITIVE_AVERAGE, BAR_NEGATIVE_AVERAGE),
                edgecolor="none", label="average over the data")
    ax.barh(y, rv, height=0.42 if avg is not None else 0.62, color=_bar_colours(rv, BAR_POSITIVE, BAR_NEGATIVE),
            edgecolor="none", label="this instance")
    ax.axvline(0.0, color="0.35", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([names[j] if len(names[j]) <= 40 else names[j][:39] + "…" for j in order], fontsize=8)
    ax.set_ylim(k - 0.5, -0.5)  # the largest |contribution| on top
    lim = float(np.nanmax(np.abs(np.concatenate([rv, [] if avg is None else avg[order]])))) if k else 0.0
    lim = lim * 1.08 if lim > 0 else 1.0
    ax.set_xlim(-lim, lim)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if vals is not None:
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        right.set_yticks(y)
        right.set_yticklabels([_value_text(v) for v in vals[order]], fontsize=7, color="0.3")
        right.tick_params(axis="y", length=0)
        for side in ("top", "right", "left", "bottom"):
            right.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    if avg is not None:
        from matplotlib.patches import Patch

        _bottom_legend(fig, ax, [Patch(color=BAR_POSITIVE, label="this instance: for"),
                                 Patch(color=BAR_NEGATIVE, label="against"),
                                 Patch(color=BAR_POSITIVE_AVERAGE, label="average for this value (pale)")])
    return figure_png(fig) if png else fig


def feature_summary(relevance: np.ndarray, feature_names: Sequence[str] | None = None, top: int | None = None,
                    title: str | None = None, xlabel: str = "contribution", width: float = 5.2,
                    png: bool = False) -> Any:
    """The average explanation over a data set (Robnik-Šikonja & Kononenko's "model explanation"):
    per feature its mean |contribution| (pale bar: how much the feature matters) and its mean
    contribution (narrow bar, red positive / blue negative: in which direction on average), sorted
    by the mean |contribution|.

    Parameters
    ----------
    relevance : numpy.ndarray
        (N, F): the explanations of N instances.
    feature_names : sequence of str, optional
        One name per feature; default ``"x0"`` .. ``"x{F-1}"``.
    top : int, optional
        Draw only the ``top`` features with the largest mean |contribution|.
    title, xlabel, width, png
        As for :func:`feature_bars`.

    Returns
    -------
    matplotlib.figure.Figure or bytes
    """
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] == 0 or r.shape[1] == 0:
        raise ValueError(f"feature_summary needs the explanations of a batch, (N, F); got shape {r.shape}")
    f = r.shape[1]
    names = feature_labels(f, feature_names)
    mag = np.abs(r).mean(axis=0)
    mean = r.mean(axis=0)
    order, k, fig, ax, y = _bar_layout(np.argsort(-mag, kind="stable"), names, top, width, title)
    ax.barh(y, mag[order], height=0.82, color="#d9d9d9", edgecolor="none")
    mv = mean[order]
    ax.barh(y, mv, height=0.42, color=_bar_colours(mv, BAR_POSITIVE, BAR_NEGATIVE), edgecolor="none")
    ax.axvline(0.0, color="0.35", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([names[j] if len(names[j]) <= 40 else names[j][:39] + "…" for j in order], fontsize=8)
    ax.set_ylim(k - 0.5, -0.5)
    lim = float(max(np.max(mag[order]), np.max(np.abs(mv)))) if k else 0.0
    lim = lim * 1.08 if lim > 0 else 1.0
    ax.set_xlim(-lim, lim)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    from matplotlib.patches import Patch

    _bottom_legend(fig, ax, [Patch(color="#d9d9d9", label="mean |contribution|"),
                             Patch(color=BAR_POSITIVE, label="mean contribution: for"),
                             Patch(color=BAR_NEGATIVE, label="against")])
    if title:
        ax.set_title(title, fontsize=9)
    return figure_png(fig) if png else fig
