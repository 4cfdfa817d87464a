"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool against onnxruntime: kernel sizes,
strides, asymmetric pads, dilations, auto_pad modes, ceil_mode (including the dropped window that
would start in the end padding), count_include_pad divisors, 1-D/2-D/3-D, odd sizes, batch 0/many,
threads, kinds, and the errors that name the node."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close, ort_run, single_node


def _rand(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _check(op, x, threads=1, opset=19, **attrs):
    model = single_node(op, {"x": x}, opset=opset, **attrs)
    expected = ort_run(model, {"x": x})[0]
    m = ox.load(model, strip_softmax=False)
    got = m.predict(x, threads=threads)
    assert_close(got, expected)
    return m, got


GEOM_2D = list(
    itertools.product(
        [(2, 2), (3, 3), (3, 2)],  # kernel
        [(1, 1), (2, 2), (3, 1)],  # strides
        [(0, 0, 0, 0), (1, 1, 1, 1), (1, 0, 0, 1)],  # pads (begin h, w, end h, w)
        [(1, 1), (2, 1)],  # dilations
        [0, 1],  # ceil_mode
    )
)


# pads must stay smaller than the kernel
GEOM_1D = [
    (k, s, p, c)
    for k, s, p, c in itertools.product([1, 2, 3], [1, 2, 3], [(0, 0), (1, 0), (0, 1), (1, 1)], [0, 1])
    if max(p) < k
]


def _seed(*parts):
    return zlib.crc32(repr(parts).encode())


@pytest.mark.parametrize("kernel,strides,pads,dilations,ceil_mode", GEOM_2D)
def test_maxpool_2d_grid(kernel, strides, pads, dilations, ceil_mode):
    x = _rand(_seed(kernel, strides, pads, dilations, ceil_mode), 2, 3, 7, 9)
    _check(
        "MaxPool",
        x,
        kernel_shape=list(kernel),
        strides=list(strides),
        pads=list(pads),
        dilations=list(dilations),
        ceil_mode=ceil_mode,
    )


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("kernel,strides,pads,dilations,ceil_mode", GEOM_2D)
def test_avgpool_2d_grid(kernel, strides, pads, dilations, ceil_mode, count_include_pad):
    x = _rand(_seed(kernel, strides, pads, dilations, ceil_mode, 1), 2, 3, 7, 9)
    _check(
        "AveragePool",
        x,
        kernel_shape=list(kernel),
        strides=list(strides),
        pads=list(pads),
        dilations=list(dilations),
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("kernel,stride,pads,ceil_mode", GEOM_1D)
def test_pool_1d(op, kernel, stride, pads, ceil_mode):
    x = _rand(_seed(kernel, stride, pads), 2, 3, 11)
    attrs = {"count_include_pad": int(kernel == 3)} if op == "AveragePool" else {}
    _check(op, x, kernel_shape=[kernel], strides=[stride], pads=list(pads), ceil_mode=ceil_mode, **attrs)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_3d(op):
    x = _rand(4, 2, 2, 5, 6, 7)
    attrs = {"count_include_pad": 1} if op == "AveragePool" else {}
    _check(op, x, kernel_shape=[2, 3, 2], strides=[1, 2, 2], pads=[1, 1, 0, 0, 1, 1], ceil_mode=1, **attrs)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("kernel,strides", [((2, 2), (2, 2)), ((3, 3), (1, 1)), ((3, 2), (2, 3)), ((3, 3), (2, 2))])
@pytest.mark.parametrize("ceil_mode", [0, 1])
def test_pool_auto_pad(op, auto_pad, kernel, strides, ceil_mode):
    x = _rand(_seed(op, auto_pad, kernel, strides), 1, 2, 7, 8)
    attrs = {"count_include_pad": 1} if op == "AveragePool" else {}
    _, y = _check(
        op, x, kernel_shape=list(kernel), strides=list(strides), auto_pad=auto_pad, ceil_mode=ceil_mode, **attrs
    )
    if auto_pad != "VALID":
        assert y.shape[2:] == (-(-7 // strides[0]), -(-8 // strides[1]))


def test_pool_same_with_dilation_follows_the_spec():
    """onnxruntime sizes SAME padding without the dilation here; the ONNX spec (followed) keeps
    output = ceil(in / stride) with the padding of the dilated window."""
    x = np.arange(1, 8, dtype=np.float32).reshape(1, 1, 7)
    m = ox.load(single_node("MaxPool", {"x": x}, opset=12, kernel_shape=[2], dilations=[2], auto_pad="SAME_UPPER"))
    # dilated extent 3: 2 pads, one each side: windows (i-1, i+1)
    np.testing.assert_array_equal(m.predict(x)[0, 0], [2, 3, 4, 5, 6, 7, 6])


def test_avgpool_ceil_mode_divisors():
    """The window ceil_mode adds past the padded end: the divisor counts only taps inside the
    padded input (count_include_pad=1) or the input (0); a window starting in the end padding is
    dropped."""
    x = np.arange(1, 8, dtype=np.float32).reshape(1, 1, 7)
    for cip in (0, 1):
        _check("AveragePool", x, kernel_shape=[3], strides=[3], pads=[1, 0], ceil_mode=1, count_include_pad=cip)
        _check("AveragePool", x, kernel_shape=[3], strides=[2], pads=[1, 1], ceil_mode=1, count_include_pad=cip)
        _, y = _check(
            "AveragePool", x[..., :6], kernel_shape=[2], strides=[2], pads=[0, 1], ceil_mode=1, count_include_pad=cip
        )
        assert y.shape == (1, 1, 3)


@pytest.mark.parametrize("opset", [7, 10, 11])
def test_pool_older_opsets(opset):
    x = _rand(9, 1, 3, 9, 9)
    _check("MaxPool", x, opset=max(opset, 8), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    _check("AveragePool", x, opset=opset, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    _check("MaxPool", x, opset=1, kernel_shape=[2, 2], strides=[2, 2])
    _check("AveragePool", x, opset=7, kernel_shape=[2, 2])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_large_threads(op, threads):
    x = _rand(10, 3, 16, 57, 55)
    _check(op, x, threads=threads, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"])
def test_pool_empty_batch_and_dynamic_batch(op):
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2]} if "Global" not in op else {}
    model = single_node(op, {"x": _rand(0, 1, 3, 6, 5)}, dynamic_batch=True, **attrs)
    m = ox.load(model, strip_softmax=False)
    y = m.predict(np.zeros((0, 3, 6, 5), np.float32))
    assert y.shape == ((0, 3, 3, 2) if "Global" not in op else (0, 3, 1, 1))
    x = _rand(1, 4, 3, 6, 5)
    assert_close(m.predict(x), ort_run(model, {"x": x})[0])


@pytest.mark.parametrize("op", ["GlobalMaxPool", "GlobalAveragePool"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 7, 9), (1, 2, 3, 4, 5), (2, 64, 7, 7), (2, 40, 33, 31)])
@pytest.mark.parametrize("threads", [1, 2])
def test_global_pool(op, shape, threads):
    _check(op, _rand(len(shape), *shape), threads=threads, opset=17)


def test_kinds():
    x = _rand(0, 1, 2, 4, 4)
    kinds = {
        "MaxPool": "maxpool",
        "AveragePool": "avgpool",
        "GlobalMaxPool": "maxpool",
        "GlobalAveragePool": "avgpool",
    }
    for op, kind in kinds.items():
        attrs = {"kernel_shape": [2, 2]} if "Global" not in op else {}
        m = ox.load(single_node(op, {"x": x}, **attrs), strip_softmax=False)
        assert m.nodes[0][1:] == (op, kind)


# ---- errors -------------------------------------------------------------------------------------


def _load(op, x, n_outputs=1, **attrs):
    return ox.load(single_node(op, {"x": x}, n_outputs=n_outputs, **attrs), strip_softmax=False)


def test_error_maxpool_indices_output():
    with pytest.raises(ox.ModelFormatError, match=r"maxpool_node.*Indices output"):
        _load("MaxPool", np.zeros((1, 1, 4, 4), np.float32), n_outputs=2, kernel_shape=[2, 2])


def test_error_pool_rank_and_attributes():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ox.ModelFormatError, match=r"maxpool_node.*rank 3"):
        _load("MaxPool", x, kernel_shape=[2])
    with pytest.raises(ox.ModelFormatError, match=r"averagepool_node.*kernel_shape"):
        _load("AveragePool", x)
    with pytest.raises(ox.ModelFormatError, match=r"averagepool_node.*pads"):
        _load("AveragePool", x, kernel_shape=[2, 2], pads=[1, 1])
    with pytest.raises(ox.ModelFormatError, match=r"maxpool_node.*smaller than the"):
        _load("MaxPool", x, kernel_shape=[2, 2], pads=[2, 0, 0, 0])
    with pytest.raises(ox.ModelFormatError, match=r"maxpool_node.*strides"):
        _load("MaxPool", x, kernel_shape=[2, 2], strides=[1])
    with pytest.raises(ox.ModelFormatError, match=r"maxpool_node.*larger than the padded input"):
        _load("MaxPool", x, kernel_shape=[5, 2])
    with pytest.raises(ox.ModelFormatError, match=r"globalaveragepool_node.*rank >= 3"):
        _load("GlobalAveragePool", np.zeros((2, 3), np.float32))


@settings(max_examples=60, deadline=None)
@given(
    nd=st.integers(1, 3),
    data=st.data(),
    op=st.sampled_from(["MaxPool", "AveragePool"]),
    ceil_mode=st.integers(0, 1),
    cip=st.integers(0, 1),
)
def test_pool_random_geometry(nd, data, op, ceil_mode, cip):
    ks = [data.draw(st.integers(1, 3)) for _ in range(nd)]
    ds = [data.draw(st.integers(1, 2)) for _ in range(nd)]
    ss = [data.draw(st.integers(1, 3)) for _ in range(nd)]
    ps = [data.draw(st.integers(0, k - 1)) for k in ks * 2]
    sizes = [data.draw(st.integers((k - 1) * d + 1, 9)) for k, d in zip(ks, ds)]
    x = _rand(nd, 2, 3, *sizes)
    attrs = {"count_include_pad": cip} if op == "AveragePool" else {}
    _check(op, x, kernel_shape=ks, strides=ss, pads=ps, dilations=ds, ceil_mode=ceil_mode, **attrs)
