"""Resize (opsets 10, 11, 13, 18, 19) and Upsample (7, 9), modes nearest (every nearest_mode) and
linear (every coordinate transformation, scales or sizes) on NCHW: forward against onnxruntime,
the VJP against torch autograd (F.interpolate in float64) and central differences of onnxruntime;
kinds (nearest: routing, linear: avgpool) and LRP conservation; refusals naming the node (cubic,
antialias, tf_crop_and_resize, bad scales, scales and sizes both given)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run

torch.set_num_threads(1)
CTMS = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def _load(model: bytes) -> ox.Model:
    return ox.load(model, strip_softmax=False)


def _resize(x, opset=13, scales=None, sizes=None, axes=None, **attrs) -> bytes:
    inits: dict[str, np.ndarray] = {}
    if opset < 11:
        names = ["x", "s"]
        inits["s"] = np.array(scales, np.float32)
    else:
        names = ["x", "roi" if opset < 13 else "", "s" if scales is not None else ""]
        if opset < 13:
            inits["roi"] = np.zeros(0, np.float32)
            if scales is None:
                names[2] = "s"
                inits["s"] = np.zeros(0, np.float32)
        if scales is not None:
            inits["s"] = np.array(scales, np.float32)
        if sizes is not None:
            names.append("z")
            inits["z"] = np.array(sizes, np.int64)
    if axes is not None:
        attrs["axes"] = axes
    node = helper.make_node("Resize", names, ["y"], name="rs", **attrs)
    return make_model([node], [("x", x.shape)], ["y"], inits, opset=opset)


def _check(model, x, rtol=1e-5, threads=1):
    got = _load(model).predict(x, threads=threads)
    want = ort_run(model, {"x": x})[0]
    assert_close(got, want, rtol=rtol, atol=1e-5)
    return got


SCALES = [[1, 1, 2, 2], [1, 1, 0.5, 0.5], [1, 1, 1.7, 0.6], [1, 1, 3, 1]]
SIZES = [[2, 3, 9, 5], [2, 3, 3, 7], [2, 3, 1, 1], [2, 3, 6, 10]]


@pytest.mark.parametrize("opset", [11, 13, 18, 19])
@pytest.mark.parametrize("ctm", CTMS)
@pytest.mark.parametrize("nearest_mode", NEAREST)
def test_nearest_vs_ort(opset, ctm, nearest_mode, rng) -> None:
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    for s in SCALES:
        _check(_resize(x, opset, scales=s, mode="nearest", coordinate_transformation_mode=ctm,
                       nearest_mode=nearest_mode), x)
    for z in SIZES:
        _check(_resize(x, opset, sizes=z, mode="nearest", coordinate_transformation_mode=ctm,
                       nearest_mode=nearest_mode), x)


@pytest.mark.parametrize("opset", [11, 13, 18, 19])
@pytest.mark.parametrize("ctm", CTMS)
def test_linear_vs_ort(opset, ctm, rng) -> None:
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    for s in SCALES:
        _check(_resize(x, opset, scales=s, mode="linear", coordinate_transformation_mode=ctm), x)
    for z in SIZES:
        _check(_resize(x, opset, sizes=z, mode="linear", coordinate_transformation_mode=ctm), x)


def test_half_pixel_symmetric_opset19(rng) -> None:
    x = rng.standard_normal((1, 2, 5, 7)).astype(np.float32)
    for mode in ("nearest", "linear"):
        for s in ([1, 1, 1.5, 0.7], [1, 1, 2, 2]):
            _check(_resize(x, 19, scales=s, mode=mode, coordinate_transformation_mode="half_pixel_symmetric"), x)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_opset10(mode, rng) -> None:
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for s in ([1, 1, 2, 2], [1, 1, 2.5, 1.5], [1, 1, 0.5, 0.6]):
        _check(_resize(x, 10, scales=s, mode=mode), x)


def test_axes_and_aspect_policy_opset18(rng) -> None:
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    _check(_resize(x, 18, scales=[2.0, 0.5], axes=[2, 3], mode="linear"), x)
    _check(_resize(x, 18, sizes=[7, 4], axes=[-2, -1], mode="nearest"), x)
    for policy in ("not_larger", "not_smaller"):
        _check(_resize(x, 18, sizes=[10, 9], axes=[2, 3], mode="linear", keep_aspect_ratio_policy=policy), x)


def test_large_multithreaded(rng) -> None:
    x = rng.standard_normal((2, 32, 40, 40)).astype(np.float32)
    for mode in ("nearest", "linear"):
        _check(_resize(x, 13, scales=[1, 1, 2, 2], mode=mode), x, threads=3)


def _upsample(x, scales, opset, mode="nearest") -> bytes:
    if opset < 9:
        node = helper.make_node("Upsample", ["x"], ["y"], name="up", mode=mode, scales=scales)
        return make_model([node], [("x", x.shape)], ["y"], opset=opset)
    node = helper.make_node("Upsample", ["x", "s"], ["y"], name="up", mode=mode)
    return make_model([node], [("x", x.shape)], ["y"], {"s": np.array(scales, np.float32)}, opset=opset)


@pytest.mark.parametrize("opset", [7, 9])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_vs_ort(opset, mode, rng) -> None:
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for s in ([1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 3.0, 1.5], [1.0, 1.0, 1.0, 2.0]):
        m = _load(_upsample(x, s, opset, mode))
        assert m.nodes[0][2] == ("avgpool" if mode == "linear" else "routing")
        _check(_upsample(x, s, opset, mode), x)


# ---- VJP -------------------------------------------------------------------------------------


def _torch_resize(t: torch.Tensor, ctm: str, mode: str, size) -> torch.Tensor:
    """torch's interpolate: bilinear (half_pixel / align_corners), nearest (asymmetric, floor)."""
    if mode == "linear" and ctm in ("half_pixel", "align_corners"):
        return F.interpolate(t, size=size, mode="bilinear", align_corners=ctm == "align_corners")
    if mode == "nearest" and ctm == "asymmetric":
        return F.interpolate(t, size=size, mode="nearest")  # floor(i * in / out)
    raise AssertionError


@pytest.mark.parametrize(("mode", "ctm", "nmode"), [("linear", "half_pixel", None), ("linear", "align_corners", None),
                                                    ("nearest", "asymmetric", "floor")])
@pytest.mark.parametrize("size", [[9, 5], [3, 13], [5, 6]])
def test_vjp_vs_torch(mode, ctm, nmode, size, rng) -> None:
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    attrs = {"nearest_mode": nmode} if nmode else {}
    m = _load(_resize(x, 13, sizes=[2, 3, *size], mode=mode, coordinate_transformation_mode=ctm, **attrs))
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    y = _torch_resize(t, ctm, mode, size)
    assert_close(m.predict(x), y.detach().numpy().astype(np.float32), rtol=1e-5)
    cot = rng.standard_normal(y.shape).astype(np.float32)
    (want,) = torch.autograd.grad(y, [t], grad_outputs=torch.tensor(cot.astype(np.float64)))
    (got,) = m.vjp(x, cot, threads=2)
    assert_close(got, want.numpy().astype(np.float32), rtol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("ctm", CTMS)
def test_vjp_finite_differences(mode, ctm, rng) -> None:
    """Resize is linear in X, so <cot, f(x + e_i)> - <cot, f(x - e_i)> over 2 recovers each entry of
    the VJP exactly (up to rounding): central differences of onnxruntime's forward."""
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    model = _resize(x, 13, scales=[1, 1, 1.8, 0.7], mode=mode, coordinate_transformation_mode=ctm)
    m = _load(model)
    y = m.predict(x)
    cot = rng.standard_normal(y.shape).astype(np.float32)
    (got,) = m.vjp(x, cot)
    fd = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        p, q = x.copy(), x.copy()
        p[i] += 0.5
        q[i] -= 0.5
        fd[i] = float(((ort_run(model, {"x": p})[0].astype(np.float64) - ort_run(model, {"x": q})[0]) * cot).sum())
    assert_close(got, fd.astype(np.float32), rtol=1e-4)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_lrp_conserves(mode, rng) -> None:
    x = np.abs(rng.standard_normal((2, 3, 4, 4))).astype(np.float32) + 0.1
    m = _load(_resize(x, 13, scales=[1, 1, 1.5, 2], mode=mode))
    assert m.nodes == [("rs", "Resize", "avgpool" if mode == "linear" else "routing")]
    R = ox.explainer(m, "lrp.epsilon").explain(x, target=11)
    y = m.predict(x).reshape(2, -1)[:, 11]
    np.testing.assert_allclose(R.reshape(2, -1).sum(1), y, rtol=1e-5)
    assert (R >= 0).all()


# ---- errors ----------------------------------------------------------------------------------


def test_cubic_refused_naming_the_node() -> None:
    x = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(ox.ModelFormatError, match=r"node 'rs' \(Resize\).*mode 'cubic' is not supported"):
        _load(_resize(x, 13, scales=[1, 1, 2, 2], mode="cubic"))


def test_antialias_and_crop_refused() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ox.ModelFormatError, match=r"node 'rs' \(Resize\).*antialias"):
        _load(_resize(x, 18, scales=[1, 1, 0.5, 0.5], mode="linear", antialias=1))
    with pytest.raises(ox.ModelFormatError, match=r"node 'rs' \(Resize\).*tf_crop_and_resize"):
        _load(_resize(x, 13, scales=[1, 1, 2, 2], coordinate_transformation_mode="tf_crop_and_resize"))


def test_bad_scales_name_the_node() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"node 'rs' \(Resize\).*should hold 4 values"):
        _load(_resize(x, 13, scales=[2, 2], mode="nearest"))
    with pytest.raises(ValueError, match=r"node 'up' \(Upsample\).*must be positive"):
        _load(_upsample(x, [1.0, 1.0, 0.0, 2.0], 9))


def test_dynamic_batch_and_runtime_scales(rng) -> None:
    x = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="rs", mode="linear")
    model = make_model([node], [("x", ["N", 2, 4, 5])], ["y"], {"s": np.array([1, 1, 2, 1.5], np.float32)}, opset=13)
    m = _load(model)
    for n in (1, 3):
        assert_close(m.predict(x[:n]), ort_run(model, {"x": x[:n]})[0], rtol=1e-5)
    # scales fed at run time
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="rs", mode="nearest")
    model = make_model([node], [("x", x.shape), ("s", [4])], ["y"], opset=13)
    m = _load(model)
    for s in ([1, 1, 2, 2], [1, 1, 0.5, 1.4]):
        feeds = {"x": x, "s": np.array(s, np.float32)}
        assert_close(m.run(feeds)[0], ort_run(model, feeds)[0], rtol=1e-6)


def test_scales_and_sizes_both_refused() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    node = helper.make_node("Resize", ["x", "", "s", "z"], ["y"], name="rs")
    model = make_model([node], [("x", x.shape)], ["y"],
                       {"s": np.array([1, 1, 2, 2], np.float32), "z": np.array([1, 1, 8, 8], np.int64)}, opset=13)
    with pytest.raises(ox.ModelFormatError, match=r"node 'rs' \(Resize\).*scales or sizes, not both"):
        _load(model)
