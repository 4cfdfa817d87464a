"""Pictures: heatmap colours, the overlay, PNG files (decoded by an independent reader) and figures."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from onnxplain import demo, viz


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG, each CRC checked (the standard library's zlib CRC)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks.append((tag, body))
        pos += 12 + length
    return chunks


def test_heatmap_colours_white_at_zero_red_positive_blue_negative() -> None:
    r = np.array([[0.0, 2.0, -2.0, 1.0, -1.0]])
    got = viz.heatmap(r, percentile=100)
    assert got.dtype == np.uint8 and got.shape == (1, 5, 3)
    np.testing.assert_array_equal(got[0, 0], [255, 255, 255])  # 0 -> white
    np.testing.assert_array_equal(got[0, 1], [255, 0, 0])  # the largest positive -> saturated red
    np.testing.assert_array_equal(got[0, 2], [0, 0, 255])  # the largest negative -> saturated blue
    np.testing.assert_array_equal(got[0, 3], [255, 128, 128])  # half way: symmetric, linear
    np.testing.assert_array_equal(got[0, 4], [128, 128, 255])


def test_heatmap_scaling_is_symmetric_and_sums_channels() -> None:
    # Only positive relevance: 0 must still be white (no min-max stretch that moves 0).
    r = np.array([[0.0, 1.0], [3.0, 4.0]])
    got = viz.heatmap(r, percentile=100)
    np.testing.assert_array_equal(got[0, 0], [255, 255, 255])
    assert (got[..., 2] == got[..., 1]).all() and (got[..., 0] == 255).all()  # reds only
    # (C, H, W): channels are summed before colouring.
    rc = np.stack([r, -2 * r])  # sum = -r
    np.testing.assert_array_equal(viz.heatmap(rc, percentile=100), viz.heatmap(-r, percentile=100))
    # The percentile clips outliers: one huge value does not wash out the others.
    big = np.ones((10, 10))
    big[0, 0] = 1e6
    assert viz.heatmap(big, percentile=50)[5, 5].tolist() == [255, 0, 0]
    np.testing.assert_array_equal(viz.heatmap(np.zeros((3, 3))), np.full((3, 3, 3), 255))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(C, H, W\)"):
        viz.heatmap(np.zeros(5))


def test_default_map_is_matplotlibs_bwr() -> None:
    mpl = pytest.importorskip("matplotlib")
    v = np.linspace(-1, 1, 101)[None]
    expected = (np.asarray(mpl.colormaps["bwr"]((v + 1) / 2))[..., :3] * 255).round()
    # matplotlib looks its maps up in a 256-entry table (bwr changes by 2 levels of 255 per entry): its colours
    # sit up to one entry from the exact linear interpolation.
    np.testing.assert_allclose(viz.heatmap(v, percentile=100).astype(float), expected, atol=2)
    # Another map by name, through matplotlib: 0 is its centre colour.
    centre = (np.asarray(mpl.colormaps["seismic"](0.5))[:3] * 255).round()
    np.testing.assert_allclose(viz.heatmap(np.array([[0.0, 1.0]]), cmap="seismic")[0, 0], centre, atol=1)
    with pytest.raises(ValueError, match="unknown colour map"):
        viz.heatmap(np.ones((2, 2)), cmap="no-such-map")


def test_overlay_shows_the_input_where_relevance_is_zero_and_colours_elsewhere() -> None:
    image = np.array([[[0.0, 1.0, 0.5, 0.5, 1.0]]])  # (1, 1, 5): grey levels 0, 1, 0.5
    rel = np.array([[[0.0, 0.0, 0.0, 2.0, -2.0]]])
    got = viz.overlay(rel, image, alpha=1.0, contrast=0.5, percentile=100)
    assert got.shape == (1, 5, 3) and got.dtype == np.uint8
    # Zero relevance: the input in grey between 1 - contrast and white.
    np.testing.assert_array_equal(got[0, 0], [128, 128, 128])
    np.testing.assert_array_equal(got[0, 1], [255, 255, 255])
    np.testing.assert_array_equal(got[0, 2], [192, 192, 192])  # 0.5 + 0.5 * 128/255
    # Strongest relevance at alpha 1: the saturated colour of its sign.
    np.testing.assert_array_equal(got[0, 3], [255, 0, 0])
    np.testing.assert_array_equal(got[0, 4], [0, 0, 255])
    # Partial opacity: a blend, red channel up and blue down for positive relevance.
    half = viz.overlay(rel, image, alpha=0.5, contrast=0.5, percentile=100)[0, 3].astype(int)
    assert half[0] > 191 and half[2] < 191 and half[1] == half[2]
    # alpha 0 is the grey input itself.
    np.testing.assert_array_equal(viz.overlay(rel, image, alpha=0.0, contrast=1.0), viz.grey(image))
    with pytest.raises(ValueError, match="differ in size"):
        viz.overlay(np.zeros((4, 4)), np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(rel, image, alpha=1.5)


def test_rgb_keeps_colour_images_and_greys_single_channel() -> None:
    img = np.zeros((3, 2, 2))
    img[0, 0, 0] = 1.0  # one red pixel
    got = viz.rgb(img)
    assert got.shape == (2, 2, 3)
    np.testing.assert_array_equal(got[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(got[1, 1], [0, 0, 0])
    np.testing.assert_array_equal(viz.rgb(img[:1]), viz.grey(img[:1]))
    with pytest.raises(ValueError, match="rgb needs"):
        viz.rgb(np.zeros((2, 4, 4)))


@pytest.mark.parametrize("shape", [(7, 5, 3), (4, 9), (3, 3, 4), (1, 1, 3)])
def test_save_png_roundtrip(tmp_path: Path, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    viz.save_png(path, img)
    data = path.read_bytes()
    chunks = _png_chunks(data)
    assert [t for t, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    w, h, depth, colour_type = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (h, w, depth) == (shape[0], shape[1], 8)
    assert colour_type == {2: 0, 3: 2, 4: 6}[shape[2] if len(shape) == 3 else 2]
    # Decoded by Pillow (through matplotlib), an independent reader.
    mpl_image = pytest.importorskip("matplotlib.image")
    decoded = mpl_image.imread(io.BytesIO(data), format="png")
    decoded = (np.asarray(decoded) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(decoded, img)


def test_save_png_rejects_what_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        viz.save_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        viz.save_png(tmp_path / "a.png", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="at least one pixel"):
        viz.png_bytes(np.zeros((0, 4, 3), np.uint8))


def test_grid_and_upscale() -> None:
    a = np.full((2, 2, 3), 10, np.uint8)
    b = np.full((2, 2, 3), 20, np.uint8)
    g = viz.grid([[a, b], [a]], zoom=3, gap=1)
    assert g.shape == (2 * 6 + 1, 2 * 6 + 1, 3)
    assert (g[:6, :6] == 10).all() and (g[:6, 7:] == 20).all() and (g[6] == 255).all() and (g[7:, 7:] == 255).all()
    np.testing.assert_array_equal(viz.upscale(np.arange(4).reshape(2, 2), 2),
                                  [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    assert viz.colourbar(9, 2).shape == (2, 9, 3)
    np.testing.assert_array_equal(viz.colourbar(9, 1)[0, [0, 4, 8]], [[0, 0, 255], [255, 255, 255], [255, 0, 0]])


def test_figures_render_to_png() -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    curves = {"a": {"morf": rng.standard_normal((3, 9)), "lerf": rng.standard_normal((3, 9))},
              "b": {"morf": rng.standard_normal((3, 9)), "lerf": rng.standard_normal((3, 9))}}
    fig = viz.aopc_figure(curves, region=2)
    assert len(fig.axes) == 2 and [len(ax.lines) for ax in fig.axes] == [2, 2]
    png = viz.figure_png(fig)
    assert _png_chunks(png)[0][0] == b"IHDR"
    res = {"a": [("/net/fc2/Gemm", np.array([0.5, 0.7])), ("/net/conv1/Conv", np.array([0.1, np.nan]))],
           "b": [("/net/fc2/Gemm", np.array([np.nan, np.nan])), ("/net/conv1/Conv", np.array([0.0, 0.2]))]}
    fig = viz.randomisation_figure(res)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["fc2/Gemm", "conv1/Conv"]
    assert b"Matplotlib" not in viz.figure_png(fig)  # no software stamp: nothing names a web address


def test_require_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ImportError, match=r"pip install onnxplain\[report\]"):
        viz.require_matplotlib("the report")
    with pytest.raises(ImportError, match=r"pip install onnxplain\[report\]"):
        viz.heatmap(np.ones((2, 2)), cmap="seismic")
    viz.heatmap(np.ones((2, 2)))  # the default map needs no matplotlib


_WITHOUT = """
import sys
for name in ("matplotlib", "tqdm", "PIL"):
    sys.modules[name] = None  # as if not installed
from onnxplain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_explain_png_works_without_matplotlib(tmp_path: Path) -> None:
    x, _ = demo.load_samples()
    np.save(tmp_path / "x.npy", x[:3])
    r = subprocess.run([sys.executable, "-c", _WITHOUT, "explain", str(demo.MODEL_PATH), str(tmp_path / "x.npy"),
                        "--method", "gradient", "--out", str(tmp_path / "R.npy"), "--png", str(tmp_path / "R.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    chunks = _png_chunks((tmp_path / "R.png").read_bytes())
    w, h = struct.unpack(">II", chunks[0][1][:8])
    assert (h, w) == (8 * 8, 3 * 8 * 8 + 2 * 2)  # one row of 3 tiles, zoom 8, gaps of 2


# ---- tabular data ------------------------------------------------------------------------------


def test_value_averages_group_by_value_and_quartile_and_target() -> None:
    x = np.array([[0, 1.0], [0, 2.0], [1, 3.0], [1, 4.0], [0, 5.0], [1, 6.0], [0, 7.0], [1, 8.0]])
    r = np.arange(16, dtype=np.float64).reshape(8, 2)
    avg = viz.value_averages(r, x, bins=4, max_distinct=2)
    # Feature 0 has two values: the mean over the rows with the same value.
    same0 = x[:, 0][:, None] == x[:, 0][None, :]
    np.testing.assert_allclose(avg[:, 0], (same0 * r[:, 0][None, :]).sum(1) / same0.sum(1))
    # Feature 1 is continuous: quartile intervals (e_k-1, e_k] of its 8 values hold 2 rows each.
    np.testing.assert_allclose(avg[:, 1], np.repeat([2.0, 6.0, 10.0, 14.0], 2))
    # With targets, only rows explained for the same output are averaged.
    t = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    avg_t = viz.value_averages(r, x, bins=1, max_distinct=0, targets=t)
    np.testing.assert_allclose(avg_t[:, 0], np.where(t == 0, r[t == 0, 0].mean(), r[t == 1, 0].mean()))
    with pytest.raises(ValueError, match="same shape"):
        viz.value_averages(r, x[:, :1])
    with pytest.raises(ValueError, match="targets"):
        viz.value_averages(r, x, targets=t[:3])


def test_feature_bars_sort_by_magnitude_colour_by_sign_and_name_the_features() -> None:
    pytest.importorskip("matplotlib")
    rel = np.array([0.1, -0.5, 0.3, 0.0])
    fig = viz.feature_bars(rel, ["a", "b", "c", "d"], average=np.array([0.2, -0.1, 0.05, 0.4]),
                           values=np.array([1.0, 2.5, 3.0, 0.125]), title="#0")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "c", "a", "d"]  # largest |R| on top
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["2.5", "3", "1", "0.125"]  # values, right
    bars = ax.patches
    average, instance = bars[:4], bars[4:]
    assert [round(b.get_width(), 6) for b in instance] == [-0.5, 0.3, 0.1, 0.0]
    assert [round(b.get_width(), 6) for b in average] == [-0.1, 0.05, 0.2, 0.4]
    import matplotlib.colors as mc

    assert mc.to_hex(instance[0].get_facecolor()) == viz.BAR_NEGATIVE
    assert mc.to_hex(instance[1].get_facecolor()) == viz.BAR_POSITIVE
    assert mc.to_hex(average[0].get_facecolor()) == viz.BAR_NEGATIVE_AVERAGE
    assert all(b.get_height() > i.get_height() for b, i in zip(average, instance))  # the average is the wide bar
    assert ax.get_title() == "#0"
    png = viz.feature_bars(rel, top=2, png=True)
    assert _png_chunks(png)[0][0] == b"IHDR"
    fig = viz.feature_bars(rel, top=2)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["x1", "x2"]  # default names
    with pytest.raises(ValueError, match="3 names for 4 features"):
        viz.feature_bars(rel, ["a", "b", "c"])
    with pytest.raises(ValueError, match="not one string"):
        viz.feature_bars(rel, "a,b,c,d")
    with pytest.raises(ValueError, match="average must be"):
        viz.feature_bars(rel, average=np.zeros(3))
    with pytest.raises(ValueError, match="one instance"):
        viz.feature_bars(np.zeros((2, 4)))


def test_feature_summary_shows_mean_magnitude_and_mean() -> None:
    pytest.importorskip("matplotlib")
    rel = np.array([[1.0, -2.0, 0.1], [-1.0, -2.0, 0.3]])
    fig = viz.feature_summary(rel, ["p", "q", "r"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["q", "p", "r"]
    widths = [round(b.get_width(), 6) for b in ax.patches]
    assert widths == [2.0, 1.0, 0.2, -2.0, 0.0, 0.2]  # mean |R|, then mean R
    assert _png_chunks(viz.feature_summary(rel, png=True))[0][0] == b"IHDR"
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        viz.feature_summary(rel[0])
