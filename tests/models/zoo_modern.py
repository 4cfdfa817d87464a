"""Graphs of the ONNX Model Zoo's newer image classifiers, built with onnx.helper at the opsets the
zoo's files were exported with, with random weights (no downloads):

- ``mobilenet_v2(7)``: ``mobilenetv2-7`` (MXNet Gluon ``mobilenetv2_1.0``, opset 7): Conv without
  bias -> BatchNormalization (``spatial`` attribute) -> Clip(min=0, max=6 as attributes) for ReLU6,
  17 inverted residual blocks (1x1 expand, 3x3 depthwise with group = C, 1x1 linear projection,
  Add where stride 1 and the width is kept), GlobalAveragePool, 1x1 Conv classifier, Flatten.
- ``mobilenet_v2(12)``: ``mobilenetv2-12``, the same graph at opset 12: Clip's bounds are inputs.
- ``efficientnet_lite4()``: ``efficientnet-lite4-11`` (tf2onnx, opset 11): NHWC input
  [1, 224, 224, 3] and a Transpose to NCHW, Conv with bias (TF folds the BN) and TF's SAME padding
  written as explicit, asymmetric pads, Clip(0, 6) with the bounds as inputs, MBConv blocks without
  squeeze-excitation (Lite), Add residuals, ReduceMean, Squeeze, MatMul + Add, Softmax.
- ``resnet50_v2()``: ``resnet50-v2-7`` (MXNet Gluon ``resnet50_v2``, opset 7): a BN (no scale, no
  shift) on the input, pre-activation bottlenecks BN -> Relu -> Conv (3/4/6/3, 256..2048 channels;
  the BN a block starts with follows an Add, so no conv can take it in), the shortcut's 1x1 conv on
  the pre-activated input, final BN -> Relu -> GlobalAveragePool -> Flatten -> Gemm.
- ``shufflenet_v2()``: ``shufflenet-v2-10`` (torchvision ``shufflenet_v2_x1_0`` through torch.onnx's
  TorchScript exporter, opset 10, dynamic batch): Conv with bias (the exporter folds eval-mode BN),
  Split with the ``split`` attribute for the channel halves, Concat, the channel shuffle as
  Reshape-Transpose-Reshape whose shapes are computed at run time as the exporter writes them
  (Shape -> Gather -> Div -> Cast -> Unsqueeze -> Concat), depthwise convs, stages 4/8/4 with
  116/232/464 channels, ReduceMean(keepdims=0), Gemm.

Each builder returns ``(model bytes, input shape)``. Weights are He-scaled (variance 2 / fan-in
for a conv that reads rectified values, 1 / fan-in for one that reads signed ones) and each
residual branch's last conv is damped, so activations stay O(1) through the whole depth; BN
statistics are random with var in [0.5, 2].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 7  # onnxruntime and onnxplain read these old opsets with any IR version from 3 on


class _Graph:
    """Collects nodes and initializers; every helper returns the name of the value it makes."""

    def __init__(self, opset: int, seed: int) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def init(self, prefix: str, value: np.ndarray) -> str:
        name = self.fresh(prefix)
        self.inits.append(numpy_helper.from_array(value, name=name))
        return name

    def node(self, op: str, inputs: Sequence[str], prefix: str | None = None, n_out: int = 1,
             **attrs: Any) -> Any:
        base = self.fresh(prefix or op.lower())
        outs = [base] if n_out == 1 else [f"{base}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=f"{base}_fwd", **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1, pads: Sequence[int] | None = None,
             group: int = 1, bias: bool = False, gain: float = 2.0) -> str:
        """Conv with weights N(0, gain / fan-in); ``pads`` defaults to k // 2 on every side."""
        fan_in = c_in // group * k * k
        w = (self.rng.standard_normal((c_out, c_in // group, k, k), dtype=np.float32)
             * np.float32(math.sqrt(gain / fan_in)))
        inputs = [x, self.init("conv_weight", w)]
        if bias:
            inputs.append(self.init("conv_bias", self.rng.uniform(-0.2, 0.2, c_out).astype(np.float32)))
        p = list(pads) if pads is not None else [k // 2] * 4
        return self.node("Conv", inputs, "conv", kernel_shape=[k, k], strides=[stride, stride], pads=p,
                         group=group, dilations=[1, 1])

    def bn(self, x: str, c: int, affine: bool = True) -> str:
        """Inference BatchNormalization with random statistics (``affine=False``: MXNet's
        BatchNorm(scale=False, center=False), gamma 1 and beta 0). Opset 7 writes ``spatial=1``
        as MXNet's exporter does since its fix (spatial=0 with per-channel statistics is what
        onnxruntime refuses)."""
        r = self.rng
        gamma = r.uniform(0.5, 1.5, c) if affine else np.ones(c)
        beta = r.uniform(-0.2, 0.2, c) if affine else np.zeros(c)
        mean, var = r.uniform(-0.2, 0.2, c), r.uniform(0.5, 2.0, c)
        ins = [x] + [self.init(f"bn_{n}", v.astype(np.float32))
                     for n, v in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var))]
        attrs: dict[str, Any] = {"epsilon": 1e-5, "momentum": 0.9}
        if self.opset < 9:
            attrs["spatial"] = 1
        return self.node("BatchNormalization", ins, "batchnorm", **attrs)

    def relu6(self, x: str, bounds: tuple[str, str] | None = None) -> str:
        """ReLU6 as Clip: attributes before opset 11, scalar inputs from it on."""
        if self.opset < 11:
            return self.node("Clip", [x], "relu6", min=0.0, max=6.0)
        assert bounds is not None
        return self.node("Clip", [x, *bounds], "relu6")

    def linear(self, c_in: int, c_out: int) -> tuple[np.ndarray, np.ndarray]:
        w = self.rng.standard_normal((c_out, c_in), dtype=np.float32) * np.float32(math.sqrt(2.0 / c_in))
        return w, self.rng.uniform(-0.1, 0.1, c_out).astype(np.float32)

    def serialize(self, x_name: str, x_shape: Sequence[Any], y_name: str) -> bytes:
        graph = helper.make_graph(
            self.nodes, "zoo", [helper.make_tensor_value_info(x_name, TensorProto.FLOAT, list(x_shape))],
            [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, None)], initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = IR_VERSION
        return model.SerializeToString()


# --- MobileNet v2 1.0 (Sandler et al. 2018; MXNet Gluon's layout) -------------------------------------------------

MOBILENET_V2_BLOCKS = [  # (expansion t, output channels c, repeats n, first stride s): the paper's Table 2
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


def mobilenet_v2(opset: int = 7, seed: int = 0, classes: int = 1000) -> tuple[bytes, tuple[int, ...]]:
    g = _Graph(opset, seed)
    bounds = None
    if opset >= 11:
        bounds = (g.init("clip_min", np.array(0.0, np.float32)), g.init("clip_max", np.array(6.0, np.float32)))

    def conv_bn(x: str, c_in: int, c_out: int, k: int, stride: int = 1, group: int = 1, relu6: bool = True,
                gain: float = 2.0) -> str:
        y = g.bn(g.conv(x, c_in, c_out, k, stride, group=group, gain=gain), c_out)
        return g.relu6(y, bounds) if relu6 else y

    x = conv_bn("data", 3, 32, 3, 2, gain=1.0)
    c = 32
    signed = False  # the block input: a linear projection (signed) or a ReLU6 output
    for t, c_out, n, s in MOBILENET_V2_BLOCKS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c * t
            # Gluon's LinearBottleneck has the 1x1 expansion even where t = 1
            h = conv_bn(x, c, hidden, 1, gain=1.0 if signed else 2.0)
            h = conv_bn(h, hidden, hidden, 3, stride, group=hidden)
            shortcut = stride == 1 and c == c_out
            # the projection has no activation; damped where it is added to the stream
            h = conv_bn(h, hidden, c_out, 1, relu6=False, gain=0.5 if shortcut else 1.0)
            x = g.node("Add", [x, h], "add") if shortcut else h
            c, signed = c_out, True
    x = conv_bn(x, c, 1280, 1, gain=1.0)
    x = g.node("GlobalAveragePool", [x], "pool")
    x = g.conv(x, 1280, classes, 1, pads=[0, 0, 0, 0], gain=1.0)  # Gluon's output: Conv2D(classes, 1, no bias)
    g.node("Flatten", [x], "output", axis=1)
    return g.serialize("data", [1, 3, 224, 224], g.nodes[-1].output[0]), (1, 3, 224, 224)


# --- EfficientNet-Lite4 (Tan & Le 2019; Lite: ReLU6, no squeeze-excitation, stem and head fixed) -----------------

EFFICIENTNET_B0_BLOCKS = [  # (expansion, kernel, first stride, output channels, repeats) of EfficientNet-B0
    (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
LITE4_WIDTH, LITE4_DEPTH = 1.4, 1.8  # efficientnet_lite_builder: 'efficientnet-lite4': (1.4, 1.8, 300, 0.3)


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    scaled = c * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


def efficientnet_lite4_blocks() -> list[tuple[int, int, int, int, int]]:
    """(expansion, kernel, stride, output channels, repeats) per stage; the Lite builder scales the
    repeats of every stage but the first and the last (fix_first_last)."""
    last = len(EFFICIENTNET_B0_BLOCKS) - 1
    return [(e, k, s, _round_filters(c, LITE4_WIDTH), n if i in (0, last) else math.ceil(n * LITE4_DEPTH))
            for i, (e, k, s, c, n) in enumerate(EFFICIENTNET_B0_BLOCKS)]


def _same_pads(size: int, k: int, stride: int) -> tuple[list[int], int]:
    """TF's SAME padding as explicit ONNX pads [top, left, bottom, right] (the extra pixel at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return [total // 2, total // 2, total - total // 2, total - total // 2], out


def efficientnet_lite4(seed: int = 0, classes: int = 1000, size: int = 224) -> tuple[bytes, tuple[int, ...]]:
    g = _Graph(11, seed)
    bounds = (g.init("Const_min", np.array(0.0, np.float32)), g.init("Const_max", np.array(6.0, np.float32)))

    def conv(x: str, c_in: int, c_out: int, k: int, stride: int, hw: int, group: int = 1, relu6: bool = True,
             gain: float = 2.0) -> tuple[str, int]:
        pads, out = _same_pads(hw, k, stride)
        y = g.conv(x, c_in, c_out, k, stride, pads=pads, group=group, bias=True, gain=gain)
        return (g.relu6(y, bounds) if relu6 else y), out

    x = g.node("Transpose", ["images:0"], "transpose_nchw", perm=[0, 3, 1, 2])
    x, hw = conv(x, 3, 32, 3, 2, size, gain=1.0)  # stem: 32 filters, not scaled in Lite
    c, signed = 32, False
    for e, k, s, c_out, n in efficientnet_lite4_blocks():
        for i in range(n):
            stride = s if i == 0 else 1
            h, hidden = x, c * e
            if e != 1:
                h, _ = conv(h, c, hidden, 1, 1, hw, gain=1.0 if signed else 2.0)
            h, hw_out = conv(h, hidden, hidden, k, stride, hw, group=hidden)
            shortcut = stride == 1 and c == c_out
            h, _ = conv(h, hidden, c_out, 1, 1, hw_out, relu6=False, gain=0.5 if shortcut else 1.0)
            x = g.node("Add", [x, h], "add") if shortcut else h
            c, hw, signed = c_out, hw_out, True
    x, _ = conv(x, c, 1280, 1, 1, hw, gain=1.0)  # head: 1280 features, not scaled in Lite
    x = g.node("ReduceMean", [x], "reduce_mean", axes=[2, 3], keepdims=1)
    x = g.node("Squeeze", [x], "squeeze", axes=[2, 3])
    w, b = g.linear(1280, classes)
    x = g.node("MatMul", [x, g.init("dense_kernel", np.ascontiguousarray(w.T))], "matmul")
    x = g.node("Add", [x, g.init("dense_bias", b)], "biasadd")
    g.node("Softmax", [x], "Softmax", axis=1)
    return g.serialize("images:0", [1, size, size, 3], g.nodes[-1].output[0]), (1, size, size, 3)


# --- ResNet-50 v2 (He et al. 2016, identity mappings; MXNet Gluon's BottleneckV2) ---------------------------------

RESNET50_STAGES = [(256, 3, 1), (512, 4, 2), (1024, 6, 2), (2048, 3, 2)]  # (channels, blocks, first stride)


def resnet50_v2(seed: int = 0, classes: int = 1000) -> tuple[bytes, tuple[int, ...]]:
    g = _Graph(7, seed)
    x = g.bn("data", 3, affine=False)  # Gluon: BatchNorm(scale=False, center=False) on the input
    x = g.node("Relu", [g.bn(g.conv(x, 3, 64, 7, 2, pads=[3, 3, 3, 3], gain=1.0), 64)], "relu")
    x = g.node("MaxPool", [x], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = 64
    for c_out, blocks, first_stride in RESNET50_STAGES:
        for i in range(blocks):
            stride = first_stride if i == 0 else 1
            a = g.node("Relu", [g.bn(x, c)], "relu")
            # the shortcut: the block input, or a 1x1 conv of the pre-activated input (Gluon's downsample)
            shortcut = x if i else g.conv(a, c, c_out, 1, stride, pads=[0, 0, 0, 0])
            h = g.conv(a, c, c_out // 4, 1, pads=[0, 0, 0, 0])
            h = g.conv(g.node("Relu", [g.bn(h, c_out // 4)], "relu"), c_out // 4, c_out // 4, 3, stride)
            h = g.conv(g.node("Relu", [g.bn(h, c_out // 4)], "relu"), c_out // 4, c_out, 1, pads=[0, 0, 0, 0],
                       gain=0.2)
            x = g.node("Add", [shortcut, h], "add")
            c = c_out
    x = g.node("Relu", [g.bn(x, c)], "relu")
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "pool")], "flatten", axis=1)
    w, b = g.linear(c, classes)
    g.node("Gemm", [x, g.init("dense_weight", w), g.init("dense_bias", b)], "dense", alpha=1.0, beta=1.0,
           transA=0, transB=1)
    return g.serialize("data", [1, 3, 224, 224], g.nodes[-1].output[0]), (1, 3, 224, 224)


# --- ShuffleNet v2 1.0x (Ma et al. 2018; torchvision's layout as torch.onnx exports it) ---------------------------

SHUFFLENET_V2_STAGES = [(116, 4), (232, 8), (464, 4)]  # (output channels, blocks); conv5: 1024


def shufflenet_v2(seed: int = 0, classes: int = 1000) -> tuple[bytes, tuple[int, ...]]:
    g = _Graph(10, seed)

    def int_const(v: int | list[int]) -> str:
        return g.node("Constant", [], "constant", value=numpy_helper.from_array(np.array(v, np.int64)))

    def conv(x: str, c_in: int, c_out: int, k: int, stride: int = 1, group: int = 1, relu: bool = True,
             gain: float = 2.0) -> str:
        y = g.conv(x, c_in, c_out, k, stride, group=group, bias=True, gain=gain)
        return g.node("Relu", [y], "relu") if relu else y

    def dim(shape: str, i: int) -> str:
        return g.node("Gather", [shape, int_const(i)], "gather", axis=0)

    def channel_shuffle(x: str) -> str:
        # batchsize, num_channels, height, width = x.size(); x.view(b, 2, c // 2, h, w).transpose(1, 2)
        # .contiguous().view(b, -1, h, w), as the TorchScript exporter writes it for a dynamic batch
        n, c, h, w = (dim(g.node("Shape", [x], "shape"), i) for i in range(4))
        half = g.node("Cast", [g.node("Div", [c, int_const(2)], "div")], "cast", to=TensorProto.INT64)
        unsq = [g.node("Unsqueeze", [v], "unsqueeze", axes=[0]) for v in (n, int_const(2), half, h, w)]
        x = g.node("Reshape", [x, g.node("Concat", unsq, "concat", axis=0)], "reshape")
        x = g.node("Transpose", [x], "transpose", perm=[0, 2, 1, 3, 4])
        unsq = [g.node("Unsqueeze", [v], "unsqueeze", axes=[0]) for v in (n, int_const(-1), h, w)]
        return g.node("Reshape", [x, g.node("Concat", unsq, "concat", axis=0)], "reshape")

    x = conv("input", 3, 24, 3, 2, gain=1.0)
    x = g.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = 24
    for c_out, blocks in SHUFFLENET_V2_STAGES:
        bf = c_out // 2
        for i in range(blocks):
            if i == 0:  # stride 2: both branches see the whole input
                b1 = conv(conv(x, c, c, 3, 2, group=c, relu=False), c, bf, 1, gain=1.0)
                b2 = conv(conv(conv(x, c, bf, 1), bf, bf, 3, 2, group=bf, relu=False), bf, bf, 1, gain=1.0)
            else:  # x.chunk(2, dim=1): Split with the `split` attribute before opset 13
                b1, x2 = g.node("Split", [x], "split", n_out=2, axis=1, split=[bf, bf])
                b2 = conv(conv(conv(x2, bf, bf, 1), bf, bf, 3, 1, group=bf, relu=False), bf, bf, 1, gain=1.0)
            x = channel_shuffle(g.node("Concat", [b1, b2], "concat", axis=1))
            c = c_out
    x = conv(x, c, 1024, 1)
    x = g.node("ReduceMean", [x], "reducemean", axes=[2, 3], keepdims=0)  # x.mean([2, 3])
    w, b = g.linear(1024, classes)
    g.node("Gemm", [x, g.init("fc_weight", w), g.init("fc_bias", b)], "fc", alpha=1.0, beta=1.0, transB=1)
    return g.serialize("input", ["batch_size", 3, 224, 224], g.nodes[-1].output[0]), (1, 3, 224, 224)


BUILDERS = {
    "mobilenetv2-7": lambda: mobilenet_v2(7),
    "mobilenetv2-12": lambda: mobilenet_v2(12),
    "efficientnet-lite4-11": efficientnet_lite4,
    "resnet50-v2-7": resnet50_v2,
    "shufflenet-v2-10": shufflenet_v2,
}


def with_symbolic_batch(data: bytes) -> bytes:
    """The same model with its input's batch dimension symbolic ("N"), for the methods that run
    several copies of a sample in one batch."""
    model = onnx.load_from_string(data)
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_param = "N"
    return model.SerializeToString()
