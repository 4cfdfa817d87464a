"""Pictures of explanations without extra dependencies: heatmaps (red = positive relevance, blue =
negative, as Zennit's and iNNvestigate's ``bwr`` maps), a PNG writer (zlib only) and a terminal
rendering."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def heatmap(relevance: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Maps one explanation (H, W) or (C, H, W) (channels summed) to RGB uint8 (H, W, 3).

    Symmetric scaling around 0: white = 0, saturated red/blue at the ``percentile`` of |R|.
    """
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim == 3:
        r = r.sum(axis=0)
    if r.ndim != 2:
        raise ValueError(f"heatmap needs (H, W) or (C, H, W), got shape {r.shape}")
    scale = np.percentile(np.abs(r), percentile) if r.size else 0.0
    v = np.clip(r / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(r)
    rgb = np.empty((*r.shape, 3))
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    rgb[..., 0] = 1.0 - neg
    rgb[..., 1] = 1.0 - pos - neg
    rgb[..., 2] = 1.0 - pos
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def grey(image: np.ndarray) -> np.ndarray:
    """An image (H, W) or (C, H, W) scaled to [0, 255] grey RGB (H, W, 3)."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=0)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.repeat((a * 255).round().astype(np.uint8)[..., None], 3, axis=2)


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


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Writes an RGB uint8 array (H, W, 3) as a PNG file."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"save_png needs (H, W, 3) uint8, got {a.shape}")
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def terminal(relevance: np.ndarray) -> list[str]:
    """Lines rendering one (H, W) explanation with ANSI background colours (2 characters a pixel)."""
    rgb = heatmap(relevance)
    return ["".join(f"\x1b[48;2;{p[0]};{p[1]};{p[2]}m  " for p in row) + "\x1b[0m" for row in rgb]
