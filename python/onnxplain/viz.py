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
                region: int | None = None) -> Any:
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

    Returns
    -------
    matplotlib.figure.Figure
    """
    orders = [o for o in ("morf", "lerf") if any(o in c for c in curves.values())]
    fig = _figure(5.0 * max(len(orders), 1) + 1.5, 3.6)
    axes = fig.subplots(1, max(len(orders), 1), squeeze=False)[0]
    titles = {"morf": "MoRF: most relevant regions first (steep drop = faithful)",
              "lerf": "LeRF: least relevant regions first (flat = faithful)"}
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
        ax.set_xlabel("regions perturbed" + (f" ({region}×{region} pixels each)" if region else ""), fontsize=9)
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
