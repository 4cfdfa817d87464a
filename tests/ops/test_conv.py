"""Conv against onnxruntime: 1-D/2-D/3-D, kernel sizes, strides, asymmetric pads, dilations,
groups (1, 2, depthwise with multiplier), auto_pad modes, bias present/absent, odd sizes, batch
0/1/many (the packed multi-image GEMM and the row-tiled im2col paths), runtime weights, threads,
and the shape errors that name the node."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, make_model, ort_run, single_node


def _conv_model(x, w, b=None, const_w=True, opset=11, dynamic_batch=False, **attrs):
    inits = {}
    inputs = {"x": x}
    (inits if const_w else inputs)["w"] = w
    if b is not None:
        inits["b"] = b
    node_inputs = ["x", "w"] + (["b"] if b is not None else [])
    return single_node(
        "Conv", inputs, inits, opset=opset, dynamic_batch=dynamic_batch, node_inputs=node_inputs, **attrs
    )


def _check(x, w, b=None, const_w=True, threads=1, opset=11, **attrs):
    model = _conv_model(x, w, b, const_w=const_w, opset=opset, **attrs)
    feeds = {"x": x} if const_w else {"x": x, "w": w}
    expected = ort_run(model, feeds)[0]
    m = ox.load(model, strip_softmax=False)
    got = m.run(feeds, threads=threads)[0]
    assert_close(got, expected)
    return m, got


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# (kernel, strides, pads, dilations): a grid trimmed to stay fast.
GEOM_2D = [
    (k, s, p, d)
    for k, s, p, d in itertools.product(
        [(1, 1), (3, 3), (2, 3)],
        [(1, 1), (2, 1), (2, 2)],
        [(0, 0, 0, 0), (1, 1, 1, 1), (1, 0, 2, 1)],
        [(1, 1), (2, 1)],
    )
]


@pytest.mark.parametrize("groups", ["1", "2", "dw", "dw2"])
@pytest.mark.parametrize("kernel,strides,pads,dilations", GEOM_2D)
def test_conv2d_grid(kernel, strides, pads, dilations, groups):
    rng = np.random.default_rng(zlib.crc32(repr((kernel, strides, pads, dilations, groups)).encode()))
    c = 4
    g, m = {"1": (1, 3), "2": (2, 6), "dw": (4, 4), "dw2": (4, 8)}[groups]
    x = _rand(rng, 2, c, 7, 9)
    w = _rand(rng, m, c // g, *kernel)
    b = _rand(rng, m) if sum(pads) % 2 == 0 else None  # bias on about half the cases
    _check(
        x, w, b, group=g, kernel_shape=list(kernel), strides=list(strides), pads=list(pads), dilations=list(dilations)
    )


@pytest.mark.parametrize("kernel", [1, 2, 5])
@pytest.mark.parametrize("stride", [1, 3])
@pytest.mark.parametrize("pads", [(0, 0), (2, 1)])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("groups", [1, 3])
def test_conv1d(kernel, stride, pads, dilation, groups):
    rng = np.random.default_rng(kernel * 100 + stride * 10 + dilation)
    x = _rand(rng, 2, 6, 13)
    w = _rand(rng, 6, 6 // groups, kernel)
    _check(x, w, _rand(rng, 6), strides=[stride], pads=list(pads), dilations=[dilation], group=groups)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv3d(groups):
    rng = np.random.default_rng(3)
    x = _rand(rng, 2, 4, 5, 6, 7)
    w = _rand(rng, 6, 4 // groups, 3, 2, 3)
    _check(x, w, _rand(rng, 6), strides=[1, 2, 2], pads=[1, 0, 1, 0, 1, 1], dilations=[2, 1, 1], group=groups)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("kernel", [(1, 1), (2, 2), (3, 2), (4, 5)])
@pytest.mark.parametrize("strides", [(1, 1), (2, 2), (3, 1)])
def test_conv_auto_pad(auto_pad, kernel, strides):
    rng = np.random.default_rng(7)
    x = _rand(rng, 1, 3, 8, 11)
    w = _rand(rng, 4, 3, *kernel)
    _, y = _check(x, w, _rand(rng, 4), auto_pad=auto_pad, strides=list(strides))
    if auto_pad != "VALID":
        assert y.shape[2:] == (-(-8 // strides[0]), -(-11 // strides[1]))


def test_conv_kernel_shape_from_weight_and_opset1():
    rng = np.random.default_rng(0)
    x = _rand(rng, 1, 2, 6, 6)
    w = _rand(rng, 3, 2, 3, 3)
    _check(x, w, opset=1, pads=[1, 1, 1, 1])
    _check(x, w, opset=11)


@pytest.mark.parametrize("batch", [1, 3, 9])
@pytest.mark.parametrize("case", ["pointwise", "pointwise_s2", "3x3", "depthwise"])
@pytest.mark.parametrize("threads", [1, 2])
def test_conv_batch_paths(batch, case, threads):
    """Small planes pack several images into one GEMM; these check the packing and scatter."""
    rng = np.random.default_rng(batch)
    c, m, g, k, s, p = {
        "pointwise": (16, 24, 1, 1, 1, 0),
        "pointwise_s2": (16, 24, 1, 1, 2, 0),
        "3x3": (8, 12, 1, 3, 1, 1),
        "depthwise": (8, 8, 8, 3, 2, 1),
    }[case]
    x = _rand(rng, batch, c, 7, 5)
    w = _rand(rng, m, c // g, k, k)
    _check(x, w, _rand(rng, m), threads=threads, group=g, strides=[s, s], pads=[p] * 4)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_large_row_tiles(threads, groups):
    """Column matrices larger than one tile run im2col + GEMM per tile of output rows."""
    rng = np.random.default_rng(11)
    x = _rand(rng, 2, 16, 70, 67)
    w = _rand(rng, 8, 16 // groups, 3, 3)
    _check(x, w, _rand(rng, 8), threads=threads, group=groups, pads=[1, 2, 0, 1], strides=[1, 2])
    _check(x[:1], w, None, threads=threads, group=groups, pads=[1, 1, 1, 1])


def test_conv_pointwise_large_threads():
    rng = np.random.default_rng(12)
    x = _rand(rng, 2, 32, 40, 40)
    w = _rand(rng, 48, 32, 1, 1)
    _check(x, w, _rand(rng, 48), threads=2)


def test_conv_runtime_weight():
    rng = np.random.default_rng(5)
    x = _rand(rng, 2, 4, 7, 9)
    w = _rand(rng, 6, 2, 3, 3)
    m, _ = _check(x, w, _rand(rng, 6), const_w=False, group=2, pads=[1, 1, 1, 1])
    assert m.nodes[0][2] == "linear"


def test_conv_kind_and_dynamic_batch():
    rng = np.random.default_rng(6)
    w = _rand(rng, 5, 3, 3, 3)
    b = _rand(rng, 5)
    x1 = _rand(rng, 1, 3, 9, 7)
    model = _conv_model(x1, w, b, dynamic_batch=True, strides=[2, 2], pads=[1, 1, 1, 1])
    m = ox.load(model, strip_softmax=False)
    assert m.nodes[0][1:] == ("Conv", "linear")
    for n in (1, 4):
        x = _rand(rng, n, 3, 9, 7)
        assert_close(m.predict(x), ort_run(model, {"x": x})[0])


def test_conv_empty_batch():
    rng = np.random.default_rng(8)
    w = _rand(rng, 5, 3, 3, 3)
    model = _conv_model(_rand(rng, 1, 3, 9, 7), w, _rand(rng, 5), dynamic_batch=True, pads=[1, 1, 1, 1])
    m = ox.load(model, strip_softmax=False)
    y = m.predict(np.zeros((0, 3, 9, 7), np.float32))
    assert y.shape == (0, 5, 9, 7)


def test_conv_zero_weights_padding_only_window():
    """Pads larger than the kernel: windows wholly in the padding give the bias."""
    rng = np.random.default_rng(9)
    x = _rand(rng, 1, 2, 4, 4)
    w = _rand(rng, 3, 2, 2, 2)
    _check(x, w, _rand(rng, 3), pads=[3, 3, 3, 3])


# ---- errors -------------------------------------------------------------------------------------


def _load(model):
    return ox.load(model, strip_softmax=False)


def test_error_groups_do_not_divide_channels():
    x = np.zeros((1, 6, 5, 5), np.float32)
    w = np.zeros((4, 1, 3, 3), np.float32)
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*group 4 does not divide the 6 input channels"):
        _load(_conv_model(x, w, group=4))
    with pytest.raises(ValueError):
        _load(_conv_model(x, w, group=4))


def test_error_groups_do_not_divide_output_channels():
    x = np.zeros((1, 4, 5, 5), np.float32)
    w = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*group 2 does not divide the 3 output channels"):
        _load(_conv_model(x, w, group=2))


def test_error_weight_channels():
    x = np.zeros((1, 4, 5, 5), np.float32)
    w = np.zeros((3, 3, 3, 3), np.float32)
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*expected W.shape\[1\] = 4, got 3"):
        _load(_conv_model(x, w))


def test_error_weight_channels_runtime_weight():
    """A runtime weight whose shape is unknown at load fails at run time, naming the node."""
    x = np.zeros((1, 4, 5, 5), np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_node", group=2)
    model = make_model([node], [("x", [1, 4, 5, 5]), ("w", ["m", "c", 3, 3])], ["y"], opset=11)
    m = _load(model)
    assert_close(m.run({"x": x + 1, "w": np.ones((4, 2, 3, 3), np.float32)})[0], np.full((1, 4, 3, 3), 18, np.float32))
    with pytest.raises(ox.ShapeError, match=r"conv_node.*expected W.shape\[1\] = 2, got 4"):
        m.run({"x": x, "w": np.zeros((4, 4, 3, 3), np.float32)})
    with pytest.raises(ox.ShapeError, match=r"conv_node.*group 2 does not divide the 3 output channels"):
        m.run({"x": x, "w": np.zeros((3, 2, 3, 3), np.float32)})


def test_error_bias_shape_rank_and_kernel():
    x = np.zeros((1, 4, 5, 5), np.float32)
    w = np.zeros((3, 4, 3, 3), np.float32)
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*B must have shape \(3\)"):
        _load(_conv_model(x, w, np.zeros(4, np.float32)))
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*rank"):
        _load(_conv_model(x, np.zeros((3, 4, 3), np.float32)))
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*kernel_shape does not match W"):
        _load(_conv_model(x, w, kernel_shape=[2, 2]))
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*larger than the padded input"):
        _load(_conv_model(x, np.zeros((3, 4, 7, 3), np.float32)))


def test_error_bad_attributes():
    x = np.zeros((1, 4, 5, 5), np.float32)
    w = np.zeros((3, 4, 3, 3), np.float32)
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*pads"):
        _load(_conv_model(x, w, pads=[1, 1]))
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*strides"):
        _load(_conv_model(x, w, strides=[0, 1]))
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*auto_pad 'SAME'"):
        _load(_conv_model(x, w, auto_pad="SAME"))
    with pytest.raises(ox.ModelFormatError, match=r"conv_node.*group must be >= 1"):
        _load(_conv_model(x, w, group=0))


@settings(max_examples=40, deadline=None)
@given(
    nd=st.integers(1, 3),
    data=st.data(),
    groups=st.sampled_from([1, 2, "dw"]),
    batch=st.integers(0, 3),
    bias=st.booleans(),
)
def test_conv_random_geometry(nd, data, groups, batch, bias):
    ks = [data.draw(st.integers(1, 3)) for _ in range(nd)]
    ds = [data.draw(st.integers(1, 2)) for _ in range(nd)]
    ss = [data.draw(st.integers(1, 3)) for _ in range(nd)]
    ps = [data.draw(st.integers(0, 2)) for _ in range(2 * nd)]
    sizes = [data.draw(st.integers((k - 1) * d + 1, 9)) for k, d in zip(ks, ds)]
    c = 4
    g = c if groups == "dw" else groups
    m = 4 if groups == "dw" else 6
    rng = np.random.default_rng(0)
    x = _rand(rng, batch, c, *sizes)
    w = _rand(rng, m, c // g, *ks)
    b = _rand(rng, m) if bias else None
    model = _conv_model(x, w, b, group=g, strides=ss, pads=ps, dilations=ds)
    got = ox.load(model, strip_softmax=False).predict(x)
    if batch == 0:
        assert got.shape[:2] == (0, m)
        return
    assert_close(got, ort_run(model, {"x": x})[0])
