"""The ONNX Model Zoo's Caffe/Caffe2-era image classifiers, rebuilt with onnx.helper and random weights.

The zoo ships these files (``bvlcalexnet-N``, ``caffenet-N``, ``googlenet-N``, ``resnet50-caffe2-v1-N``,
``squeezenet1.0-N``, ``shufflenet-N`` (v1), ``densenet-N``, ``vgg19-caffe2-N``) at opsets 3, 6, 7, 8 and 9,
all written by Caffe2's ONNX frontend (Caffe models went through Caffe2's caffe_translator first). The
builders below reproduce what those files contain, per opset, so that the importer sees the same
legacy constructs:

* IR version 3 and every initializer also listed as a graph input (an IR < 4 requirement); input
  ``data_0`` (``gpu_0/data_0`` for the ResNet-50 trained with Caffe2's resnet50_trainer) with batch 1;
  values named as the frontend's SSA renaming does: blob ``conv1`` written three times (Conv, then
  in-place Relu) gives ``conv1_1``, ``conv1_2``; initializers ``conv1_w_0``, ``conv1_b_0``.
* Conv with explicit ``kernel_shape``, ``pads`` and ``strides`` (and ``group`` for AlexNet/CaffeNet
  conv2/4/5 and ShuffleNet's grouped and depthwise convolutions).
* Caffe's ceil-mode pooling (Caffe2's CAFFE_LEGACY_POOLING) frozen into asymmetric pads: the tail pad
  is ``pad + stride * (ceil_out - floor_out)``, e.g. GoogLeNet's pool1 3x3/2 on 112x112 has pads
  [0, 0, 2, 2] (as in the zoo file).
* BatchNormalization: opset < 6 (BatchNormalization-1) with the then required ``consumed_inputs``,
  ``is_test=1`` and ``spatial=1``; opset 6 ``is_test=1, spatial=1``; opsets 7, 8 ``spatial=1``; 9 plain.
* Dropout: ``is_test=1`` before opset 7; from 7 plain, with the frontend's mask output for fc6/fc7.
* Gemm ``transB=1`` (and ``broadcast=1`` before opset 7) on a Reshape to [1, K]: before opset 5 the
  Reshape carries a ``shape`` attribute, from opset 5 the shape is an int64 initializer ``OC2_DUMMY_1``.
* DenseNet-121 (caffe2/models densenet121): Caffe's BatchNorm + Scale as SpatialBN followed by
  Mul(bn_w) and Add(bn_b); before opset 7 with ``broadcast=1, axis=1``, from opset 7 the channel
  vectors go through Unsqueeze(axes=[1, 2]) (what Caffe2's C++ ONNX exporter writes). Its output is
  the classifier convolution ``fc6_1`` [1, 1000, 1, 1]: no Softmax.
* ResNet-50: convolutions without bias, each followed by BatchNormalization, residual sums as
  ``Sum`` of two inputs, AveragePool 7x7 stride 1 before the classifier.
* ShuffleNet v1 (g = 3): Caffe2's ChannelShuffle written as Reshape [1, g, C/g, H, W] ->
  Transpose [0, 2, 1, 3, 4] -> Reshape [1, C, H, W].

Weights are random (a seeded numpy Generator, float32), He-scaled so that activations stay O(1)
through the depth. ``zero_bias=True`` makes every additive parameter zero (convolution and Gemm
biases, BatchNormalization's shift B - mean * a, DenseNet's Add) without changing the graph, for the
conservation checks of LRP (which absorbs relevance in biases). Every builder returns
``(model bytes, input shape without the batch dim)``; ``weights`` shares one model's parameters between
the builds at several opsets.

Verified against public descriptions where they exist (caffe2/models densenet121 predict_net, the
zoo's READMEs for input/output names, onnxruntime/ONNC/onnx-mlir reports of the files' ops, pads and
the 4-D Gemm of the first opset-3 files); ShuffleNet v1's exact Caffe2 layout is not public: it
follows the paper (g = 3, 240/480/960 channels, 4/8/4 units) with Caffe2's operators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSETS = (3, 6, 7, 8, 9)


class Weights:
    """A model's random parameters, drawn on first use and shared by the builds at every opset (the
    parameter names do not depend on the opset, so each opset's file gets the very same weights)."""

    def __init__(self, seed: int = 0, zero_bias: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.zero_bias = zero_bias
        self.values: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.values:
            self.values[key] = make()
        return self.values[key]


class Caffe2Graph:
    """Emits nodes the way Caffe2's ONNX frontend did at a given opset."""

    def __init__(self, opset: int, weights: Weights, prefix: str = "") -> None:
        self.opset = opset
        self.weights = weights
        self.zero_bias = weights.zero_bias
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        self.versions: dict[str, int] = {}
        self.dummy = 0

    # --- naming -------------------------------------------------------------------------------
    def blob(self, name: str) -> str:
        """The next SSA version of Caffe2 blob `name` (written in place: conv1 -> conv1_1, conv1_2)."""
        v = self.versions.get(name, 0) + 1
        self.versions[name] = v
        return f"{self.prefix}{name}_{v}"

    def dummy_name(self) -> str:
        n = f"OC2_DUMMY_{self.dummy}"
        self.dummy += 1
        return n

    def param(self, name: str, make: Callable[[], np.ndarray]) -> str:
        full = f"{self.prefix}{name}_0"
        self.inits[full] = self.weights.get(full, make)
        return full

    # --- random parameters --------------------------------------------------------------------
    @property
    def rng(self) -> np.random.Generator:
        return self.weights.rng

    def normal(self, shape: Sequence[int], std: float) -> np.ndarray:
        a = self.rng.standard_normal(tuple(shape), dtype=np.float32)
        a *= np.float32(std)
        return a

    def bias(self, n: int, std: float = 0.05) -> np.ndarray:
        return np.zeros(n, np.float32) if self.zero_bias else self.normal((n,), std)

    # --- ops ----------------------------------------------------------------------------------
    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]

    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1, pad: int | Sequence[int] = 0,
             group: int = 1, bias: bool = True, gain: float = 2.0, out: str | None = None) -> str:
        fan_in = cin // group * k * k
        ins = [x, self.param(f"{name}_w", lambda: self.normal((cout, cin // group, k, k), np.sqrt(gain / fan_in)))]
        if bias:
            ins.append(self.param(f"{name}_b", lambda: self.bias(cout)))
        pads = [pad] * 4 if isinstance(pad, int) else list(pad)
        attrs: dict[str, Any] = {"kernel_shape": [k, k], "pads": pads, "strides": [stride, stride]}
        if group != 1:
            attrs["group"] = group
        return self.node("Conv", ins, [self.blob(out or name)], **attrs)

    def relu(self, x: str, blob: str) -> str:
        return self.node("Relu", [x], [self.blob(blob)])

    def lrn(self, x: str, name: str) -> str:
        return self.node("LRN", [x], [self.blob(name)], size=5, alpha=1e-4, beta=0.75, bias=1.0)

    def pool(self, op: str, x: str, name: str, k: int, stride: int, pads: Sequence[int] = (0, 0, 0, 0)) -> str:
        return self.node(op, [x], [self.blob(name)], kernel_shape=[k, k], strides=[stride, stride], pads=list(pads))

    def global_avg(self, x: str, name: str) -> str:
        return self.node("GlobalAveragePool", [x], [self.blob(name)])

    def concat(self, xs: list[str], name: str) -> str:
        return self.node("Concat", xs, [self.blob(name)], axis=1)

    def sum(self, xs: list[str], name: str) -> str:
        return self.node("Sum", xs, [self.blob(name)])

    def dropout(self, x: str, name: str, mask: bool = False) -> str:
        if self.opset < 7:
            return self.node("Dropout", [x], [self.blob(name)], ratio=0.5, is_test=1)
        outs = [self.blob(name)] + ([f"_{name}_mask_1"] if mask else [])
        return self.node("Dropout", [x], outs, ratio=0.5)

    def batch_norm(self, x: str, name: str, c: int, eps: float, scale: float = 1.0, out: str | None = None,
                   params: Sequence[str] = ("_s", "_b", "_rm", "_riv")) -> str:
        """SpatialBN with running statistics near what the layer sees (mean ~ 0, var ~ 1): y ~ scale * x.
        With zero_bias, B = mean * a so that y = a * x exactly (the folded convolution has no bias)."""

        def make() -> tuple[np.ndarray, ...]:
            gamma = (scale * (0.8 + 0.4 * self.rng.random(c))).astype(np.float32)
            mean = self.normal((c,), 0.1)
            var = (0.8 + 0.4 * self.rng.random(c)).astype(np.float32)
            if self.zero_bias:
                beta = (mean * gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)
            else:
                beta = self.normal((c,), 0.05)
            return gamma, beta, mean, var

        values = self.weights.get(f"{self.prefix}{name}/bn", make)
        ins = [x] + [self.param(f"{name}{p}", lambda v=v: v) for p, v in zip(params, values)]
        attrs: dict[str, Any] = {"epsilon": eps}
        if self.opset < 6:
            attrs.update(consumed_inputs=[0, 0, 0, 1, 1], is_test=1, spatial=1)
        elif self.opset < 7:
            attrs.update(is_test=1, spatial=1)
        elif self.opset < 9:
            attrs.update(spatial=1)
        return self.node("BatchNormalization", ins, [self.blob(out or name)], **attrs)

    def channel_op(self, op: str, x: str, make: Callable[[], np.ndarray], param: str, out: str) -> str:
        """Mul/Add of a per-channel vector [C] (Caffe's Scale layer): legacy broadcast before opset 7,
        Unsqueeze(axes=[1, 2]) of the vector from opset 7 (Caffe2's C++ exporter)."""
        p = self.param(param, make)
        if self.opset < 7:
            return self.node(op, [x, p], [self.blob(out)], broadcast=1, axis=1)
        u = self.node("Unsqueeze", [p], [self.dummy_name()], axes=[1, 2])
        return self.node(op, [x, u], [self.blob(out)])

    def reshape(self, x: str, shape: Sequence[int], out: str | None = None) -> str:
        y = out or self.dummy_name()
        if self.opset < 5:
            return self.node("Reshape", [x], [y], shape=list(shape))
        s = self.dummy_name()
        self.inits[s] = np.asarray(shape, np.int64)
        return self.node("Reshape", [x, s], [y])

    def fc(self, x: str, name: str, cin: int, cout: int, gain: float = 2.0) -> str:
        w = self.param(f"{name}_w", lambda: self.normal((cout, cin), np.sqrt(gain / cin)))
        b = self.param(f"{name}_b", lambda: self.bias(cout))
        attrs: dict[str, Any] = {"transB": 1}
        if self.opset < 7:
            attrs["broadcast"] = 1
        return self.node("Gemm", [x, w, b], [self.blob(name)], **attrs)

    def softmax(self, x: str, name: str) -> str:
        return self.node("Softmax", [x], [self.blob(name)])

    # --- the model ----------------------------------------------------------------------------
    def model(self, name: str, data: str, shape: Sequence[int], output: str, out_shape: Sequence[int]) -> bytes:
        inputs = [helper.make_tensor_value_info(data, TensorProto.FLOAT, list(shape))]
        for k, v in self.inits.items():  # IR 3: every initializer is also a graph input
            elem = TensorProto.INT64 if v.dtype == np.int64 else TensorProto.FLOAT
            inputs.append(helper.make_tensor_value_info(k, elem, list(v.shape)))
        graph = helper.make_graph(self.nodes, name, inputs,
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(out_shape))])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="onnx-caffe2")
        model.ir_version = 3
        return serialize_with_initializers(model, self.inits)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def serialize_with_initializers(model: onnx.ModelProto, inits: dict[str, np.ndarray]) -> bytes:
    """``model`` with ``inits`` appended to its graph's initializers, serialized. The same bytes as
    adding them with numpy_helper.from_array and SerializeToString (a protobuf message is the
    concatenation of its fields, repeated ones included), but the tensor data is copied once instead
    of three times: VGG-19's 548 MB would otherwise take seconds."""
    pieces: list[Any] = []
    graph_len = 0
    for k, v in inits.items():
        v = np.ascontiguousarray(v)
        assert v.dtype in (np.float32, np.int64) and v.dtype.byteorder in ("=", "<")
        t = onnx.TensorProto(name=k, dims=v.shape, data_type=helper.np_dtype_to_tensor_dtype(v.dtype))
        head = t.SerializeToString() + b"\x4a" + _varint(v.nbytes)  # TensorProto.raw_data = field 9
        field = b"\x2a" + _varint(len(head) + v.nbytes) + head    # GraphProto.initializer = field 5
        pieces += [field, memoryview(v).cast("B")]
        graph_len += len(field) + v.nbytes
    graph = model.graph.SerializeToString()
    rest = onnx.ModelProto()
    rest.CopyFrom(model)
    rest.ClearField("graph")
    head = rest.SerializeToString() + b"\x3a" + _varint(len(graph) + graph_len)  # ModelProto.graph = field 7
    return b"".join([head, graph, *pieces])


def caffe_pool_pads(size: int, k: int, stride: int, pad: int = 0) -> list[int]:
    """Pads that reproduce Caffe's ceil-mode output size with floor-mode pooling (CAFFE_LEGACY_POOLING)."""
    ceil_out = -(-(size + 2 * pad - k) // stride) + 1
    if pad > 0 and (ceil_out - 1) * stride >= size + pad:
        ceil_out -= 1
    floor_out = (size + 2 * pad - k) // stride + 1
    tail = pad + stride * (ceil_out - floor_out)
    return [pad, pad, tail, tail]


# ------------------------------------------------------------------------------------------------
# bvlc_alexnet and bvlc_reference_caffenet: 224x224 input, fc6 on 256 x 6 x 6.
# ------------------------------------------------------------------------------------------------
def _alexnet_like(opset: int, seed: int, zero_bias: bool, weights: Weights | None, norm_first: bool,
                  output: str) -> bytes:
    g = Caffe2Graph(opset, weights or Weights(seed, zero_bias))
    x = "data_0"
    x = g.conv(x, "conv1", 3, 96, 11, stride=4)                     # 54 x 54
    x = g.relu(x, "conv1")
    if norm_first:   # AlexNet: conv -> relu -> norm -> pool
        x = g.lrn(x, "norm1")
        x = g.pool("MaxPool", x, "pool1", 3, 2, caffe_pool_pads(54, 3, 2))    # [0, 0, 2, 2] -> 27
    else:            # CaffeNet: conv -> relu -> pool -> norm
        x = g.pool("MaxPool", x, "pool1", 3, 2, caffe_pool_pads(54, 3, 2))
        x = g.lrn(x, "norm1")
    x = g.conv(x, "conv2", 96, 256, 5, pad=2, group=2)
    x = g.relu(x, "conv2")
    if norm_first:
        x = g.lrn(x, "norm2")
        x = g.pool("MaxPool", x, "pool2", 3, 2)                     # 13
    else:
        x = g.pool("MaxPool", x, "pool2", 3, 2)
        x = g.lrn(x, "norm2")
    x = g.relu(g.conv(x, "conv3", 256, 384, 3, pad=1), "conv3")
    x = g.relu(g.conv(x, "conv4", 384, 384, 3, pad=1, group=2), "conv4")
    x = g.relu(g.conv(x, "conv5", 384, 256, 3, pad=1, group=2), "conv5")
    x = g.pool("MaxPool", x, "pool5", 3, 2)                         # 6
    x = g.reshape(x, [1, 9216])
    x = g.dropout(g.relu(g.fc(x, "fc6", 9216, 4096), "fc6"), "fc6", mask=True)
    x = g.dropout(g.relu(g.fc(x, "fc7", 4096, 4096), "fc7"), "fc7", mask=True)
    x = g.fc(x, "fc8", 4096, 1000, gain=1.0)
    y = g.softmax(x, output)
    return g.model("alexnet" if norm_first else "caffenet", "data_0", [1, 3, 224, 224], y, [1, 1000])


def bvlc_alexnet(
    opset: int = 9, seed: int = 0, zero_bias: bool = False, weights: Weights | None = None
) -> tuple[bytes, tuple[int, ...]]:
    """Output ``softmaxout_1``."""
    return _alexnet_like(opset, seed, zero_bias, weights, True, "softmaxout"), (3, 224, 224)


def bvlc_caffenet(
    opset: int = 9, seed: int = 0, zero_bias: bool = False, weights: Weights | None = None
) -> tuple[bytes, tuple[int, ...]]:
    """bvlc_reference_caffenet: pooling before LRN; output ``prob_1``."""
    return _alexnet_like(opset, seed, zero_bias, weights, False, "prob"), (3, 224, 224)


# ------------------------------------------------------------------------------------------------
# bvlc_googlenet: 57 convolutions, 9 inception modules, 2 LRN, ceil-mode pools as pads [0, 0, 2, 2].
# ------------------------------------------------------------------------------------------------
_INCEPTIONS = [  # name, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj
    ("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64),
    ("4a", 192, 96, 208, 16, 48, 64), ("4b", 160, 112, 224, 24, 64, 64), ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64), ("4e", 256, 160, 320, 32, 128, 128),
    ("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128),
]


def bvlc_googlenet(
    opset: int = 9, seed: int = 0, zero_bias: bool = False, weights: Weights | None = None
) -> tuple[bytes, tuple[int, ...]]:
    g = Caffe2Graph(opset, weights or Weights(seed, zero_bias))

    def conv_relu(x: str, name: str, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> str:
        return g.relu(g.conv(x, name, cin, cout, k, stride, pad), name)

    x = conv_relu("data_0", "conv1/7x7_s2", 3, 64, 7, 2, 3)                          # 112
    x = g.pool("MaxPool", x, "pool1/3x3_s2", 3, 2, caffe_pool_pads(112, 3, 2))        # 56
    x = g.lrn(x, "pool1/norm1")
    x = conv_relu(x, "conv2/3x3_reduce", 64, 64, 1)
    x = conv_relu(x, "conv2/3x3", 64, 192, 3, pad=1)
    x = g.lrn(x, "conv2/norm2")
    x = g.pool("MaxPool", x, "pool2/3x3_s2", 3, 2, caffe_pool_pads(56, 3, 2))         # 28
    cin, size = 192, 28
    for name, c1, c3r, c3, c5r, c5, cp in _INCEPTIONS:
        if name == "4a":
            x = g.pool("MaxPool", x, "pool3/3x3_s2", 3, 2, caffe_pool_pads(size, 3, 2))
            size = 14
        elif name == "5a":
            x = g.pool("MaxPool", x, "pool4/3x3_s2", 3, 2, caffe_pool_pads(size, 3, 2))
            size = 7
        p = f"inception_{name}"
        b1 = conv_relu(x, f"{p}/1x1", cin, c1, 1)
        b3 = conv_relu(conv_relu(x, f"{p}/3x3_reduce", cin, c3r, 1), f"{p}/3x3", c3r, c3, 3, pad=1)
        b5 = conv_relu(conv_relu(x, f"{p}/5x5_reduce", cin, c5r, 1), f"{p}/5x5", c5r, c5, 5, pad=2)
        bp = g.pool("MaxPool", x, f"{p}/pool", 3, 1, caffe_pool_pads(size, 3, 1, 1))
        bp = conv_relu(bp, f"{p}/pool_proj", cin, cp, 1)
        x = g.concat([b1, b3, b5, bp], f"{p}/output")
        cin = c1 + c3 + c5 + cp
    x = g.pool("AveragePool", x, "pool5/7x7_s1", 7, 1)
    x = g.dropout(x, "pool5/drop_7x7_s1")
    x = g.reshape(x, [1, 1024])
    x = g.fc(x, "loss3/classifier", 1024, 1000, gain=1.0)
    y = g.softmax(x, "prob")
    return g.model("googlenet", "data_0", [1, 3, 224, 224], y, [1, 1000]), (3, 224, 224)


# ------------------------------------------------------------------------------------------------
# resnet50 (Caffe2's resnet50_trainer): bias-free convolutions + SpatialBN, Sum shortcuts.
# ------------------------------------------------------------------------------------------------
def resnet50_caffe2(
    opset: int = 9, seed: int = 0, zero_bias: bool = False, weights: Weights | None = None
) -> tuple[bytes, tuple[int, ...]]:
    g = Caffe2Graph(opset, weights or Weights(seed, zero_bias), prefix="gpu_0/")
    eps = 1e-3  # resnet.py's add_spatial_bn
    x = g.conv("gpu_0/data_0", "conv1", 3, 64, 7, stride=2, pad=3, bias=False)      # 112
    x = g.relu(g.batch_norm(x, "res_conv1_bn", 64, eps), "res_conv1_bn")
    x = g.pool("MaxPool", x, "pool1", 3, 2, (1, 1, 1, 1))                             # 56
    cin, comp = 64, 0
    for base, cout, blocks, stride in ((64, 256, 3, 1), (128, 512, 4, 2), (256, 1024, 6, 2), (512, 2048, 3, 2)):
        for b in range(blocks):
            s = stride if b == 0 else 1
            c = f"comp_{comp}"
            h = g.conv(x, f"{c}_conv_1", cin, base, 1, bias=False)
            h = g.relu(g.batch_norm(h, f"{c}_spatbn_1", base, eps), f"{c}_spatbn_1")
            h = g.conv(h, f"{c}_conv_2", base, base, 3, stride=s, pad=1, bias=False)
            h = g.relu(g.batch_norm(h, f"{c}_spatbn_2", base, eps), f"{c}_spatbn_2")
            h = g.conv(h, f"{c}_conv_3", base, cout, 1, bias=False)
            # A small last-BN scale keeps the residual stream's variance from doubling per block.
            h = g.batch_norm(h, f"{c}_spatbn_3", cout, eps, scale=0.3)
            short = x
            if cin != cout:
                short = g.conv(x, f"shortcut_projection_{comp}", cin, cout, 1, stride=s, bias=False)
                short = g.batch_norm(short, f"shortcut_projection_{comp}_spatbn", cout, eps)
            x = g.relu(g.sum([short, h], f"{c}_sum_3"), f"{c}_sum_3")
            cin, comp = cout, comp + 1
    x = g.pool("AveragePool", x, "final_avg", 7, 1)
    x = g.reshape(x, [1, 2048])
    x = g.fc(x, "last_out_L1000", 2048, 1000, gain=1.0)
    y = g.softmax(x, "softmax")
    return g.model("resnet50", "gpu_0/data_0", [1, 3, 224, 224], y, [1, 1000]), (3, 224, 224)


# ------------------------------------------------------------------------------------------------
# squeezenet1.0: 8 fire modules, conv10 + global average pooling, Softmax on [1, 1000, 1, 1].
# ------------------------------------------------------------------------------------------------
def squeezenet10(
    opset: int = 9, seed: int = 0, zero_bias: bool = False, weights: Weights | None = None
) -> tuple[bytes, tuple[int, ...]]:
    g = Caffe2Graph(opset, weights or Weights(seed, zero_bias))
    x = g.relu(g.conv("data_0", "conv1", 3, 96, 7, stride=2), "conv1")                # 109
    x = g.pool("MaxPool", x, "pool1", 3, 2, caffe_pool_pads(109, 3, 2))               # 54
    cin, size = 96, 54
    fires = [(2, 16, 64), (3, 16, 64), (4, 32, 128), (5, 32, 128), (6, 48, 192), (7, 48, 192), (8, 64, 256),
             (9, 64, 256)]
    for i, sq, ex in fires:
        if i in (5, 9):
            x = g.pool("MaxPool", x, f"pool{i - 1}", 3, 2, caffe_pool_pads(size, 3, 2))
            size = (size + sum(caffe_pool_pads(size, 3, 2)[::2]) - 3) // 2 + 1
        f = f"fire{i}"
        s = g.relu(g.conv(x, f"{f}/squeeze1x1", cin, sq, 1), f"{f}/squeeze1x1")
        e1 = g.relu(g.conv(s, f"{f}/expand1x1", sq, ex, 1), f"{f}/expand1x1")
        e3 = g.relu(g.conv(s, f"{f}/expand3x3", sq, ex, 3, pad=1), f"{f}/expand3x3")
        x = g.concat([e1, e3], f"{f}/concat")
        cin = 2 * ex
    x = g.dropout(x, "fire9/concat")
    x = g.relu(g.conv(x, "conv10", 512, 1000, 1, gain=1.0), "conv10")
    x = g.global_avg(x, "pool10")
    y = g.softmax(x, "softmaxout")
    return g.model("squeezenet", "data_0", [1, 3, 224, 224], y, [1, 1000, 1, 1]), (3, 224, 224)


# ------------------------------------------------------------------------------------------------
# shufflenet (v1, g = 3): grouped 1x1 convolutions, channel shuffle, depthwise 3x3, Sum / Concat.
# ------------------------------------------------------------------------------------------------
def shufflenet_v1(
    opset: int = 9, seed: int = 0, zero_bias: bool = False, weights: Weights | None = None
) -> tuple[bytes, tuple[int, ...]]:
    g = Caffe2Graph(opset, weights or Weights(seed, zero_bias))
    groups, eps = 3, 1e-5
    x = g.conv("data_0", "conv1", 3, 24, 3, stride=2, pad=1, bias=False)        # 112
    x = g.relu(g.batch_norm(x, "conv1_spatbn", 24, eps), "conv1_spatbn")
    x = g.pool("MaxPool", x, "pool1", 3, 2, (1, 1, 1, 1))                              # 56
    cin, size, unit = 24, 56, 0
    for cout, repeats in ((240, 4), (480, 8), (960, 4)):
        for r in range(repeats):
            stride = 2 if r == 0 else 1
            u = f"gconv{unit}"
            branch_out = cout - cin if stride == 2 else cout
            mid = cout // 4
            g1 = 1 if unit == 0 else groups  # the first unit's 1x1 sees only 24 channels: not grouped
            h = g.conv(x, f"{u}_1", cin, mid, 1, group=g1, bias=False)
            h = g.relu(g.batch_norm(h, f"{u}_1_spatbn", mid, eps), f"{u}_1_spatbn")
            # ChannelShuffle(group=3): Reshape -> Transpose -> Reshape
            h = g.reshape(h, [1, groups, mid // groups, size, size])
            h = g.node("Transpose", [h], [g.dummy_name()], perm=[0, 2, 1, 3, 4])
            size_out = size // stride
            h = g.reshape(h, [1, mid, size, size], out=g.blob(f"{u}_shuffle"))
            h = g.conv(h, f"{u}_dw", mid, mid, 3, stride=stride, pad=1, group=mid, bias=False)
            h = g.batch_norm(h, f"{u}_dw_spatbn", mid, eps)
            h = g.conv(h, f"{u}_2", mid, branch_out, 1, group=groups, bias=False, gain=1.0)  # no ReLU before
            h = g.batch_norm(h, f"{u}_2_spatbn", branch_out, eps, scale=0.25)
            if stride == 2:
                short = g.pool("AveragePool", x, f"{u}_avgpool", 3, 2, (1, 1, 1, 1))
                x = g.relu(g.concat([short, h], f"{u}_concat"), f"{u}_concat")
            else:
                x = g.relu(g.sum([x, h], f"{u}_sum"), f"{u}_sum")
            cin, size, unit = cout, size_out, unit + 1
    x = g.global_avg(x, "final_avg")
    x = g.reshape(x, [1, 960])
    x = g.fc(x, "last_out_L1000", 960, 1000, gain=1.0)
    y = g.softmax(x, "softmax")
    return g.model("shufflenet", "data_0", [1, 3, 224, 224], y, [1, 1000]), (3, 224, 224)


# ------------------------------------------------------------------------------------------------
# densenet121 (caffe2/models, from DenseNet-Caffe): 6/12/24/16 layers, growth 32; BN + Scale
# (Mul/Add) + Relu before each convolution, so the BN after a Concat cannot be folded.
# ------------------------------------------------------------------------------------------------
def densenet121(
    opset: int = 9, seed: int = 0, zero_bias: bool = False, weights: Weights | None = None
) -> tuple[bytes, tuple[int, ...]]:
    g = Caffe2Graph(opset, weights or Weights(seed, zero_bias))
    eps = 1e-5

    def bn_scale_relu(x: str, name: str, c: int) -> str:
        y = g.batch_norm(x, name, c, eps, out=f"{name}/bn",
                         params=("/bn_scale", "/bn_bias", "/bn_mean", "/bn_var"))
        # Caffe's Scale layer, split out of the BN: y * w + b (w ~ 1, b ~ 0).
        y = g.channel_op("Mul", y, lambda: (0.9 + 0.2 * g.rng.random(c)).astype(np.float32), f"{name}/bn_w",
                         f"{name}/bn_internal")
        y = g.channel_op("Add", y, lambda: g.bias(c), f"{name}/bn_b", f"{name}/bn")
        return g.relu(y, f"{name}/bn")

    x = g.conv("data_0", "conv1", 3, 64, 7, stride=2, pad=3, bias=False)              # 112
    x = bn_scale_relu(x, "conv1", 64)
    x = g.pool("MaxPool", x, "pool1", 3, 2, (1, 1, 1, 1))                              # 56
    c = 64
    for stage, layers in ((2, 6), (3, 12), (4, 24), (5, 16)):
        for i in range(1, layers + 1):
            p = f"conv{stage}_{i}"
            h = bn_scale_relu(x, f"{p}/x1", c)
            h = g.conv(h, f"{p}/x1", c, 128, 1, bias=False)
            h = bn_scale_relu(h, f"{p}/x2", 128)
            h = g.conv(h, f"{p}/x2", 128, 32, 3, pad=1, bias=False)
            x = g.concat([x, h], f"concat_{stage}_{i}")
            c += 32
        x = bn_scale_relu(x, f"conv{stage}_blk", c)
        if stage < 5:
            x = g.conv(x, f"conv{stage}_blk", c, c // 2, 1, bias=False)
            c //= 2
            x = g.pool("AveragePool", x, f"pool{stage}", 2, 2)
    x = g.global_avg(x, "pool5")
    y = g.conv(x, "fc6", c, 1000, 1, gain=1.0)
    return g.model("densenet121", "data_0", [1, 3, 224, 224], y, [1, 1000, 1, 1]), (3, 224, 224)


# ------------------------------------------------------------------------------------------------
# vgg19 (Caffe2 flavour, from Caffe's VGG_ILSVRC_19_layers): 16 convolutions, 3 FC, 548 MB.
# ------------------------------------------------------------------------------------------------
def vgg19_caffe2(
    opset: int = 9, seed: int = 0, zero_bias: bool = False, weights: Weights | None = None
) -> tuple[bytes, tuple[int, ...]]:
    g = Caffe2Graph(opset, weights or Weights(seed, zero_bias))
    x, cin = "data_0", 3
    for stage, (cout, n) in enumerate(((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)), start=1):
        for i in range(1, n + 1):
            x = g.relu(g.conv(x, f"conv{stage}_{i}", cin, cout, 3, pad=1), f"conv{stage}_{i}")
            cin = cout
        x = g.pool("MaxPool", x, f"pool{stage}", 2, 2)
    x = g.reshape(x, [1, 25088])
    x = g.dropout(g.relu(g.fc(x, "fc6", 25088, 4096), "fc6"), "fc6", mask=True)
    x = g.dropout(g.relu(g.fc(x, "fc7", 4096, 4096), "fc7"), "fc7", mask=True)
    x = g.fc(x, "fc8", 4096, 1000, gain=1.0)
    y = g.softmax(x, "prob")
    return g.model("vgg19", "data_0", [1, 3, 224, 224], y, [1, 1000]), (3, 224, 224)


BUILDERS: dict[str, Callable[..., tuple[bytes, tuple[int, ...]]]] = {
    "bvlc_alexnet": bvlc_alexnet,
    "bvlc_caffenet": bvlc_caffenet,
    "bvlc_googlenet": bvlc_googlenet,
    "resnet50_caffe2": resnet50_caffe2,
    "squeezenet1.0": squeezenet10,
    "shufflenet_v1": shufflenet_v1,
    "densenet121": densenet121,
    "vgg19_caffe2": vgg19_caffe2,
}
