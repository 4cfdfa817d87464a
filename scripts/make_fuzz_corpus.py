#!/usr/bin/env python
"""Writes the seed corpus for the loader fuzzer (cpp/fuzz/fuzz_load.cpp, run by scripts/fuzz.sh).

Small valid ONNX models, built with onnx.helper, that between them reach every part of the
importer and the load passes: most op types of cpp/src/ops/op_list.inc (with their attribute
variants across opsets 7..21), initializers in raw_data and in the typed fields (float, int32,
int64, double, float16, bfloat16, bool), external data (resolved in the fuzzer's data folder, see
--data-dir), Constant nodes, the Shape/Gather/Unsqueeze/Concat/Reshape chains exporters emit,
BatchNormalization after Conv/Gemm (folded), a trailing Softmax (stripped), MatMul + Add (fused),
dynamic batch dims, several outputs, ZipMap and label outputs (pruned), IR 3 graphs that list
their initializers as inputs, and a few models that are refused on purpose (an unsupported op,
a string initializer read by a node). Every model stays under a few KiB so that the fuzzer's
-max_len keeps it whole. Deterministic: the same files byte for byte on every run.

    python scripts/make_fuzz_corpus.py OUT_DIR [--data-dir DIR] [--check]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT
I64 = TensorProto.INT64

# The external data file: float32 0, 0.01, 0.02, ... The models below read slices of it.
EXTERNAL_FILE = "weights.bin"
EXTERNAL_FLOATS = 1024

Dims = Sequence[Any]


def _rng(seed: int) -> np.random.RandomState:
    return np.random.RandomState(seed)


def arr(seed: int, *shape: int, scale: float = 0.5) -> np.ndarray:
    return (_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def init(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(a), name=name)


def ints(name: str, values: Sequence[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name=name)


def model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[tuple[str, int, Dims | None]],
    outputs: Sequence[tuple[str, int, Dims | None]],
    inits: Sequence[onnx.TensorProto] = (),
    opset: int = 17,
    ir: int | None = None,
    extra_opsets: Sequence[tuple[str, int]] = (),
    value_info: Sequence[onnx.ValueInfoProto] = (),
    output_infos: Sequence[onnx.ValueInfoProto] | None = None,
    initializers_as_inputs: bool = False,
) -> onnx.ModelProto:
    graph_inputs = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    if (ir if ir is not None else 4 if opset >= 9 else 3) < 4:
        initializers_as_inputs = True  # IR 3 requires every initializer to be a graph input too
    if initializers_as_inputs:
        graph_inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(
        list(nodes),
        "fuzz_seed",
        graph_inputs,
        list(output_infos) if output_infos is not None
        else [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=list(inits),
        value_info=list(value_info),
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    m = helper.make_model(graph, opset_imports=opsets, producer_name="make_fuzz_corpus")
    # The IR version of the ONNX release that introduced the opset, as exporters write it.
    # The IR version of the ONNX release that introduced the opset, as exporters write it.
    m.ir_version = ir if ir is not None else {7: 3, 8: 3, 9: 4, 10: 5, 11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8,
                                              18: 8, 19: 9, 20: 9, 21: 10}.get(opset, 8)
    _declare_output_shapes(m)
    return m


def _declare_output_shapes(m: onnx.ModelProto) -> None:
    """Outputs declared without a shape get the one ONNX's shape inference finds, as exporters write them."""
    try:
        inferred = onnx.shape_inference.infer_shapes(m)
    except Exception:  # noqa: BLE001 - models refused on purpose (unknown ops) keep what they declare
        return
    for out, inf in zip(m.graph.output, inferred.graph.output):
        if out.type.HasField("tensor_type") and not out.type.tensor_type.HasField("shape"):
            if inf.type.tensor_type.HasField("shape"):
                out.type.tensor_type.shape.CopyFrom(inf.type.tensor_type.shape)


def node(op: str, ins: Sequence[str], outs: Sequence[str], **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op, list(ins), list(outs), name=f"{op.lower()}_{outs[0]}", **attrs)


X4 = ("x", F, ["N", 2, 4, 4])  # NCHW with a dynamic batch
X4S = ("x", F, [1, 2, 4, 4])
X2 = ("x", F, ["N", 6])


def unary(op: str, opset: int = 17, **attrs: Any) -> onnx.ModelProto:
    return model([node(op, ["x"], ["y"], **attrs)], [X4], [("y", F, None)], opset=opset)


def binary(op: str, b: np.ndarray, opset: int = 17, swap: bool = False) -> onnx.ModelProto:
    ins = ["b", "x"] if swap else ["x", "b"]
    return model([node(op, ins, ["y"])], [X4], [("y", F, None)], [init("b", b)], opset=opset)


def seeds() -> list[tuple[str, Callable[[], onnx.ModelProto]]]:
    s: list[tuple[str, Callable[[], onnx.ModelProto]]] = []

    def add(name: str):
        def deco(f: Callable[[], onnx.ModelProto]) -> Callable[[], onnx.ModelProto]:
            s.append((name, f))
            return f

        return deco

    # ---- unary math and activations -------------------------------------------------------
    for op in ["Relu", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal", "Erf", "Sigmoid", "Tanh", "Softplus"]:
        s.append((f"unary_{op.lower()}", lambda op=op: unary(op)))
    s.append(("leakyrelu_op7", lambda: unary("LeakyRelu", opset=7, alpha=0.2)))
    s.append(("elu_op9", lambda: unary("Elu", opset=9, alpha=0.7)))
    s.append(("selu_op11", lambda: unary("Selu", opset=11, alpha=1.5, gamma=1.1)))
    s.append(("hardsigmoid_op13", lambda: unary("HardSigmoid", opset=13, alpha=0.3, beta=0.4)))
    s.append(("hardswish_op14", lambda: unary("HardSwish", opset=14)))
    s.append(("gelu_op20_tanh", lambda: unary("Gelu", opset=20, approximate="tanh")))
    s.append(("gelu_op20", lambda: unary("Gelu", opset=20)))
    s.append(("clip_op7_attrs", lambda: unary("Clip", opset=7, min=-0.5, max=0.5)))
    s.append(("softmax_op11_axis1", lambda: unary("Softmax", opset=11, axis=1)))
    s.append(("logsoftmax_op13_axis_last", lambda: unary("LogSoftmax", opset=13, axis=-1)))
    s.append(("flatten_axis2", lambda: unary("Flatten", opset=13, axis=2)))
    s.append(("transpose_perm", lambda: unary("Transpose", perm=[0, 2, 3, 1])))
    s.append(("transpose_default", lambda: unary("Transpose")))
    s.append(("identity", lambda: unary("Identity")))
    s.append(("lrn", lambda: unary("LRN", size=3, alpha=1e-4, beta=0.75, bias=1.0)))
    s.append(("global_avg_pool", lambda: unary("GlobalAveragePool")))
    s.append(("global_max_pool", lambda: unary("GlobalMaxPool")))
    s.append(("shape_op15_start_end", lambda: model(
        [node("Shape", ["x"], ["s"], start=1, end=-1), node("Cast", ["s"], ["y"], to=F)], [X4], [("y", F, None)],
        opset=15)))

    @add("clip_op13_inputs")
    def _():
        return model([node("Clip", ["x", "lo", "hi"], ["y"])], [X4], [("y", F, None)],
                     [init("lo", np.array(-0.25, np.float32)), init("hi", np.array(0.75, np.float32))], opset=13)

    @add("clip_op12_min_only")
    def _():
        return model([node("Clip", ["x", "lo"], ["y"])], [X4], [("y", F, None)],
                     [init("lo", np.array(0.0, np.float32))], opset=12)

    @add("prelu_channel_slope")
    def _():
        return model([node("PRelu", ["x", "slope"], ["y"])], [X4], [("y", F, None)],
                     [init("slope", arr(3, 2, 1, 1))], opset=9)

    # ---- binary and variadic arithmetic ----------------------------------------------------
    for i, op in enumerate(["Add", "Sub", "Mul", "Div"]):
        s.append((f"binary_{op.lower()}_bcast", lambda op=op, i=i: binary(op, arr(10 + i, 1, 4) + 2.0)))
    s.append(("binary_add_op7_scalar_first", lambda: binary("Add", np.array([0.5], np.float32), opset=7, swap=True)))
    s.append(("pow_scalar", lambda: binary("Pow", np.array(2.0, np.float32), opset=15)))

    @add("pow_int_exponent")
    def _():
        return model([node("Abs", ["x"], ["a"]), node("Pow", ["a", "e"], ["y"])], [X4], [("y", F, None)],
                     [ints("e", [3])], opset=13)

    for op in ["Sum", "Mean", "Max", "Min"]:
        @add(f"variadic_{op.lower()}_three")
        def _(op=op):
            return model([node(op, ["x", "b", "c"], ["y"])], [X4], [("y", F, None)],
                         [init("b", arr(20, 4)), init("c", arr(21, 2, 1, 1))], opset=13)

    s.append(("variadic_max_op7_one", lambda: model([node("Max", ["x"], ["y"])], [X4], [("y", F, None)], opset=7)))

    @add("where_const_cond")
    def _():
        cond = numpy_helper.from_array(np.array([True, False, True, False]), name="c")
        return model([node("Where", ["c", "x", "z"], ["y"])], [X4], [("y", F, None)],
                     [cond, init("z", np.zeros((1,), np.float32))], opset=16)

    # ---- linear ops ----------------------------------------------------------------------
    @add("conv_pads_strides_bias")
    def _():
        return model([node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])],
                     [X4], [("y", F, None)], [init("w", arr(30, 3, 2, 3, 3)), init("b", arr(31, 3))], opset=11)

    @add("conv_group_dilation")
    def _():
        return model([node("Conv", ["x", "w"], ["y"], group=2, dilations=[2, 2], kernel_shape=[2, 2])],
                     [X4], [("y", F, None)], [init("w", arr(32, 4, 1, 2, 2))], opset=11)

    @add("conv_auto_pad_same_upper")
    def _():
        return model([node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
                     [X4], [("y", F, None)], [init("w", arr(33, 2, 2, 3, 3))], opset=9)

    @add("conv_1d")
    def _():
        return model([node("Conv", ["x", "w", "b"], ["y"], pads=[1, 0])], [("x", F, ["N", 2, 7])], [("y", F, None)],
                     [init("w", arr(34, 3, 2, 2)), init("b", arr(35, 3))], opset=13)

    @add("conv_3x3_winograd_shape")
    def _():
        return model([node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]), node("Relu", ["y"], ["z"])],
                     [("x", F, [1, 2, 8, 8])], [("z", F, None)], [init("w", arr(36, 4, 2, 3, 3))], opset=17)

    @add("conv_transpose_output_padding")
    def _():
        return model([node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], output_padding=[1, 1],
                           pads=[0, 0, 1, 1])],
                     [X4], [("y", F, None)], [init("w", arr(37, 2, 3, 3, 3)), init("b", arr(38, 3))], opset=11)

    @add("conv_transpose_output_shape_group")
    def _():
        return model([node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=[9, 9], group=2)],
                     [X4S], [("y", F, None)], [init("w", arr(39, 2, 1, 3, 3))], opset=11)

    @add("gemm_transb_bias")
    def _():
        return model([node("Gemm", ["x", "w", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)], [X2], [("y", F, None)],
                     [init("w", arr(40, 5, 6)), init("b", arr(41, 5))], opset=13)

    @add("gemm_op7_transa")
    def _():
        return model([node("Gemm", ["x", "w", "b"], ["y"], transA=1)], [("x", F, [6, 3])], [("y", F, None)],
                     [init("w", arr(42, 6, 4)), init("b", arr(43, 1, 4))], opset=7)

    @add("matmul_add_fusion")
    def _():
        return model([node("MatMul", ["x", "w"], ["h"]), node("Add", ["h", "b"], ["y"])], [X2], [("y", F, None)],
                     [init("w", arr(44, 6, 5)), init("b", arr(45, 5))], opset=13)

    @add("matmul_batched_activations")
    def _():
        return model([node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]), node("MatMul", ["x", "t"], ["y"])],
                     [X4], [("y", F, None)], opset=13)

    @add("matmul_1d_weight")
    def _():
        return model([node("MatMul", ["x", "w"], ["y"])], [X2], [("y", F, None)], [init("w", arr(46, 6))], opset=9)

    # ---- BatchNorm folding, softmax stripping, several outputs -----------------------------
    def bn_inits(seed: int, c: int, prefix: str = "bn") -> list[onnx.TensorProto]:
        return [init(f"{prefix}_s", arr(seed, c) + 1), init(f"{prefix}_b", arr(seed + 1, c)),
                init(f"{prefix}_m", arr(seed + 2, c)), init(f"{prefix}_v", np.abs(arr(seed + 3, c)) + 0.5)]

    @add("conv_bn_relu_fold")
    def _():
        return model([node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
                      node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["n"], epsilon=1e-3),
                      node("Relu", ["n"], ["y"])],
                     [X4], [("y", F, None)], [init("w", arr(50, 3, 2, 3, 3)), *bn_inits(51, 3)], opset=15)

    @add("gemm_bn_fold_op9")
    def _():
        return model([node("Gemm", ["x", "w", "b"], ["g"], transB=1),
                      node("BatchNormalization", ["g", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"])],
                     [X2], [("y", F, None)], [init("w", arr(55, 4, 6)), init("b", arr(56, 4)), *bn_inits(57, 4)],
                     opset=9)

    @add("batchnorm_standalone_op14")
    def _():
        return model([node("BatchNormalization", ["x", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"], momentum=0.9)],
                     [X4], [("y", F, None)], bn_inits(60, 2), opset=14)

    @add("batchnorm_op7_spatial")
    def _():
        return model([node("BatchNormalization", ["x", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"], spatial=1)],
                     [X4], [("y", F, None)], bn_inits(64, 2), opset=7)

    @add("gemm_softmax_strip")
    def _():
        return model([node("Gemm", ["x", "w"], ["l"], transB=1), node("Softmax", ["l"], ["y"], axis=1)],
                     [X2], [("y", F, None)], [init("w", arr(70, 3, 6))], opset=13)

    @add("logsoftmax_strip_op11")
    def _():
        return model([node("MatMul", ["x", "w"], ["l"]), node("LogSoftmax", ["l"], ["y"])],
                     [X2], [("y", F, None)], [init("w", arr(71, 6, 3))], opset=11)

    @add("two_outputs_softmax_and_logits")
    def _():
        return model([node("Gemm", ["x", "w"], ["l"], transB=1), node("Softmax", ["l"], ["p"], axis=-1)],
                     [X2], [("p", F, None), ("l", F, None)], [init("w", arr(72, 3, 6))], opset=13)

    @add("two_inputs_two_outputs")
    def _():
        return model([node("Add", ["x", "z"], ["a"]), node("Relu", ["a"], ["y"]), node("Sigmoid", ["z"], ["q"])],
                     [X2, ("z", F, [1, 6])], [("y", F, None), ("q", F, [1, 6])], opset=13)

    @add("dropout_op12_ratio")
    def _():
        return model([node("Dropout", ["x", "r"], ["y", "mask"])], [X2], [("y", F, None)],
                     [init("r", np.array(0.3, np.float32))], opset=12)

    @add("dropout_op7")
    def _():
        return model([node("Dropout", ["x"], ["y"], ratio=0.4)], [X2], [("y", F, None)], opset=7)

    # ---- pooling and reductions ------------------------------------------------------------
    @add("maxpool_indices_op12_refused")
    def _():
        return model([node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])],
                     [X4], [("y", F, None)], opset=12)

    @add("maxpool_ceil_dilation")
    def _():
        return model([node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], ceil_mode=1, dilations=[2, 1],
                           pads=[1, 0, 0, 1])], [X4], [("y", F, None)], opset=11)

    @add("maxpool_op8_same_lower")
    def _():
        return model([node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], auto_pad="SAME_LOWER", strides=[2, 2])],
                     [X4], [("y", F, None)], opset=8)

    @add("avgpool_count_include_pad")
    def _():
        return model([node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                           count_include_pad=1)], [X4], [("y", F, None)], opset=11)

    @add("avgpool_op19_dilations_ceil")
    def _():
        return model([node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[3, 3], ceil_mode=1,
                           dilations=[1, 2])], [X4], [("y", F, None)], opset=19)

    @add("avgpool_1d")
    def _():
        return model([node("AveragePool", ["x"], ["y"], kernel_shape=[2])], [("x", F, [1, 3, 6])], [("y", F, None)],
                     opset=10)

    for op in ["ReduceMean", "ReduceSum", "ReduceMax"]:
        @add(f"{op.lower()}_op13_attr_axes")
        def _(op=op):
            if op == "ReduceSum":  # axes became an input in opset 13 for ReduceSum only
                return model([node(op, ["x", "ax"], ["y"], keepdims=0)], [X4], [("y", F, None)],
                             [ints("ax", [2, -1])], opset=13)
            return model([node(op, ["x"], ["y"], axes=[2, -1], keepdims=0)], [X4], [("y", F, None)], opset=13)

        @add(f"{op.lower()}_op18_axes_input")
        def _(op=op):
            return model([node(op, ["x", "ax"], ["y"], keepdims=1)], [X4], [("y", F, None)], [ints("ax", [1])],
                         opset=18)

    @add("reducemean_op18_noop_empty")
    def _():
        return model([node("ReduceMean", ["x"], ["y"], noop_with_empty_axes=1)], [X4], [("y", F, None)], opset=18)

    @add("reducesum_op11_all")
    def _():
        return model([node("ReduceSum", ["x"], ["y"])], [X4], [("y", F, None)], opset=11)

    # ---- normalization ---------------------------------------------------------------------
    @add("instance_norm")
    def _():
        return model([node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-4)], [X4], [("y", F, None)],
                     [init("s", arr(80, 2) + 1), init("b", arr(81, 2))], opset=6)

    @add("layer_norm_op17")
    def _():
        return model([node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1, epsilon=1e-5)], [X2],
                     [("y", F, None)], [init("s", arr(82, 6) + 1), init("b", arr(83, 6))], opset=17)

    @add("layer_norm_op17_three_outputs")
    def _():
        return model([node("LayerNormalization", ["x", "s"], ["y", "mean", "istd"], axis=2)], [X4],
                     [("y", F, None)], [init("s", arr(84, 4, 4))], opset=17)

    # ---- routing and shape arithmetic ------------------------------------------------------
    @add("shape_gather_concat_reshape_chain")
    def _():
        return model([
            node("Shape", ["x"], ["s"]),
            node("Gather", ["s", "i0"], ["n"], axis=0),
            node("Unsqueeze", ["n", "ax0"], ["n1"]),
            node("Concat", ["n1", "rest"], ["target"], axis=0),
            node("Reshape", ["x", "target"], ["y"]),
        ], [X4], [("y", F, None)], [ints("i0", 0), ints("ax0", [0]), ints("rest", [-1])], opset=13)

    @add("shape_chain_op11_unsqueeze_attr")
    def _():
        return model([
            node("Shape", ["x"], ["s"]),
            node("Slice", ["s", "st", "en"], ["hw"]),
            node("ReduceSum", ["hw"], ["p"], keepdims=1),
            node("Concat", ["one", "p"], ["t0"], axis=0),
            node("Unsqueeze", ["t0"], ["t1"], axes=[0]),
            node("Squeeze", ["t1"], ["t"], axes=[0]),
            node("Reshape", ["x", "t"], ["y"]),
        ], [X4S], [("y", F, None)], [ints("st", [2]), ints("en", [4]), ints("one", [4])], opset=11)

    @add("reshape_zero_minus_one")
    def _():
        return model([node("Reshape", ["x", "t"], ["y"])], [X4], [("y", F, None)], [ints("t", [0, -1, 2])], opset=13)

    @add("reshape_op5_allowzero_op14")
    def _():
        return model([node("Reshape", ["x", "t"], ["y"], allowzero=0)], [X4S], [("y", F, None)],
                     [ints("t", [0, 8, 0])], opset=14)

    @add("concat_three_axis1")
    def _():
        return model([node("Concat", ["x", "b", "x"], ["y"], axis=1)], [X4S], [("y", F, None)],
                     [init("b", arr(90, 1, 1, 4, 4))], opset=13)

    @add("squeeze_unsqueeze_op13_inputs")
    def _():
        return model([node("Unsqueeze", ["x", "a"], ["u"]), node("Squeeze", ["u", "a"], ["y"])], [X4],
                     [("y", F, None)], [ints("a", [0, 3])], opset=13)

    @add("squeeze_op11_all")
    def _():
        return model([node("Squeeze", ["x"], ["y"])], [("x", F, [1, 3, 1])], [("y", F, None)], opset=11)

    @add("pad_op2_attr")
    def _():
        return model([node("Pad", ["x"], ["y"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.5)], [X4], [("y", F, None)],
                     opset=2, ir=3)

    @add("pad_op11_reflect")
    def _():
        return model([node("Pad", ["x", "p"], ["y"], mode="reflect")], [X4], [("y", F, None)],
                     [ints("p", [0, 0, 2, 1, 0, 0, 1, 2])], opset=11)

    @add("pad_op13_edge_value")
    def _():
        return model([node("Pad", ["x", "p", "v"], ["y"], mode="edge")], [X4], [("y", F, None)],
                     [ints("p", [0, 1, 1, 0, 0, 0, 0, 1]), init("v", np.array(1.5, np.float32))], opset=13)

    @add("pad_op19_wrap")
    def _():
        return model([node("Pad", ["x", "p"], ["y"], mode="wrap")], [X4], [("y", F, None)],
                     [ints("p", [0, 0, 1, 1, 0, 0, 1, 1])], opset=19)

    @add("pad_op18_axes_negative")
    def _():
        return model([node("Pad", ["x", "p", "", "ax"], ["y"])], [X4], [("y", F, None)],
                     [ints("p", [1, -1, 0, 1]), ints("ax", [-2, -1])], opset=18)

    @add("gather_axis1_negative_index")
    def _():
        return model([node("Gather", ["x", "i"], ["y"], axis=1)], [X4], [("y", F, None)], [ints("i", [[1, -1]])],
                     opset=13)

    @add("gather_runtime_indices")
    def _():
        return model([node("Gather", ["x", "i"], ["y"], axis=0)], [("x", F, [3, 4]), ("i", I64, [2])],
                     [("y", F, None)], opset=13)

    @add("slice_op1_attrs")
    def _():
        return model([node("Slice", ["x"], ["y"], starts=[1, 0], ends=[3, 100], axes=[2, 3])], [X4],
                     [("y", F, None)], opset=1, ir=3)

    @add("slice_op10_steps_negative")
    def _():
        return model([node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], [X4], [("y", F, None)],
                     [ints("st", [-1, 0]), ints("en", [-100, 4]), ints("ax", [3, 2]), ints("sp", [-2, 3])], opset=10)

    @add("slice_op13_defaults")
    def _():
        return model([node("Slice", ["x", "st", "en"], ["y"])], [X4], [("y", F, None)],
                     [ints("st", [0, 1]), ints("en", [1, 3])], opset=13)

    @add("split_op11_attr")
    def _():
        return model([node("Split", ["x"], ["a", "b"], axis=2, split=[1, 3]), node("Add", ["a", "a"], ["y"])],
                     [X4], [("y", F, None), ("b", F, None)], opset=11)

    @add("split_op13_input")
    def _():
        return model([node("Split", ["x", "sp"], ["a", "b", "c"], axis=-1)], [X4],
                     [("a", F, None), ("c", F, None)], [ints("sp", [2, 1, 1])], opset=13)

    @add("split_op18_num_outputs")
    def _():
        return model([node("Split", ["x"], ["a", "b", "c"], axis=3, num_outputs=3)], [X4],
                     [("a", F, None), ("b", F, None), ("c", F, None)], opset=18)

    @add("expand_bcast")
    def _():
        return model([node("Expand", ["x", "s"], ["y"])], [("x", F, [1, 1, 4])], [("y", F, None)],
                     [ints("s", [2, 3, 1])], opset=13)

    @add("tile_repeats")
    def _():
        return model([node("Tile", ["x", "r"], ["y"])], [X4], [("y", F, None)], [ints("r", [1, 2, 1, 2])], opset=13)

    @add("constant_of_shape_from_shape")
    def _():
        value = helper.make_tensor("value", F, [1], [0.25])
        return model([node("Shape", ["x"], ["s"]), node("ConstantOfShape", ["s"], ["c"], value=value),
                      node("Add", ["x", "c"], ["y"])], [X4], [("y", F, None)], opset=9)

    @add("constant_of_shape_int_cast")
    def _():
        value = helper.make_tensor("value", I64, [1], [3])
        return model([node("ConstantOfShape", ["s"], ["c"], value=value), node("Cast", ["c"], ["cf"], to=F),
                      node("Mul", ["x", "cf"], ["y"])], [X4], [("y", F, None)], [ints("s", [4])], opset=20)

    @add("cast_round_trip_castlike")
    def _():
        return model([node("Cast", ["x"], ["i"], to=I64), node("CastLike", ["i", "x"], ["y"])], [X4],
                     [("y", F, None)], opset=15)

    @add("cast_op6_to_double")
    def _():
        return model([node("Cast", ["x"], ["d"], to=TensorProto.DOUBLE), node("Cast", ["d"], ["y"], to=F)], [X4],
                     [("y", F, None)], opset=6, ir=3)

    # ---- Constant nodes ------------------------------------------------------------------
    @add("constant_value_tensor")
    def _():
        c = helper.make_tensor("c", F, [4], [1.0, -1.0, 0.5, 2.0])
        return model([node("Constant", [], ["c"], value=c), node("Mul", ["x", "c"], ["y"])], [X4],
                     [("y", F, None)], opset=11)

    @add("constant_value_float_ints")
    def _():
        return model([node("Constant", [], ["c"], value_float=0.5), node("Constant", [], ["t"], value_ints=[0, -1]),
                      node("Mul", ["x", "c"], ["m"]), node("Reshape", ["m", "t"], ["y"])], [X4], [("y", F, None)],
                     opset=13)

    @add("constant_value_floats_int")
    def _():
        return model([node("Constant", [], ["c"], value_floats=[1.0, 2.0, 3.0, 4.0]),
                      node("Constant", [], ["k"], value_int=2), node("Add", ["x", "c"], ["a"]),
                      node("Cast", ["k"], ["kf"], to=F), node("Div", ["a", "kf"], ["y"])], [X4], [("y", F, None)],
                     opset=12)

    # ---- resizing ------------------------------------------------------------------------
    @add("upsample_op7_attr")
    def _():
        return model([node("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 2.0, 2.0], mode="nearest")], [X4],
                     [("y", F, None)], opset=7)

    @add("upsample_op9_input_linear")
    def _():
        return model([node("Upsample", ["x", "sc"], ["y"], mode="linear")], [X4], [("y", F, None)],
                     [init("sc", np.array([1, 1, 2, 1.5], np.float32))], opset=9)

    @add("resize_op10_scales")
    def _():
        return model([node("Resize", ["x", "sc"], ["y"], mode="nearest")], [X4], [("y", F, None)],
                     [init("sc", np.array([1, 1, 2, 2], np.float32))], opset=10)

    @add("resize_op11_sizes_linear_align")
    def _():
        return model([node("Resize", ["x", "roi", "sc", "sz"], ["y"], mode="linear",
                           coordinate_transformation_mode="align_corners")], [X4S], [("y", F, None)],
                     [init("roi", np.zeros(0, np.float32)), init("sc", np.zeros(0, np.float32)),
                      ints("sz", [1, 2, 7, 5])], opset=11)

    @add("resize_op13_cubic_refused")
    def _():
        return model([node("Resize", ["x", "", "sc"], ["y"], mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1)],
                     [X4], [("y", F, None)], [init("sc", np.array([1, 1, 1.5, 0.5], np.float32))], opset=13)

    @add("resize_op18_axes_nearest_floor")
    def _():
        return model([node("Resize", ["x", "", "", "sz"], ["y"], mode="nearest", nearest_mode="floor",
                           axes=[2, 3], keep_aspect_ratio_policy="not_larger")], [X4], [("y", F, None)],
                     [ints("sz", [6, 9])], opset=18)

    @add("resize_op19_half_pixel_symmetric")
    def _():
        return model([node("Resize", ["x", "", "sc"], ["y"], mode="linear",
                           coordinate_transformation_mode="half_pixel_symmetric")], [X4], [("y", F, None)],
                     [init("sc", np.array([1, 1, 0.75, 1.25], np.float32))], opset=19)

    # ---- initializer encodings -------------------------------------------------------------
    def relu_plus(t: onnx.TensorProto, opset: int = 13) -> onnx.ModelProto:
        cast = [] if t.data_type == F else [node("Cast", [t.name], [t.name + "_f"], to=F)]
        w = t.name if t.data_type == F else t.name + "_f"
        return model([*cast, node("Add", ["x", w], ["a"]), node("Relu", ["a"], ["y"])], [X4], [("y", F, None)], [t],
                     opset=opset)

    @add("init_float_data_field")
    def _():
        return relu_plus(helper.make_tensor("w", F, [4], [0.5, -0.5, 1.0, 2.0], raw=False))

    @add("init_double_data_field")
    def _():
        return relu_plus(helper.make_tensor("w", TensorProto.DOUBLE, [4], [0.5, -0.5, 1.0, 2.0], raw=False))

    @add("init_double_raw")
    def _():
        return relu_plus(init("w", np.array([0.25, 1, 2, 3], np.float64)))

    @add("init_float16_raw")
    def _():
        return relu_plus(init("w", np.array([0.25, -1, 65504, 6e-8], np.float16)))

    @add("init_float16_int32_field")
    def _():
        return relu_plus(helper.make_tensor("w", TensorProto.FLOAT16, [4], np.array([1, 2, -3, 0.5], np.float16),
                                            raw=False))

    @add("init_bfloat16_field")
    def _():
        return relu_plus(helper.make_tensor("w", TensorProto.BFLOAT16, [1, 4], [1.5, -2.0, 0.25, 3.0], raw=False))

    @add("init_int32_field_and_raw")
    def _():
        t = helper.make_tensor("t", TensorProto.INT32, [2], [0, -1], raw=False)
        r = init("r", np.array([1, 2], np.int32))
        return model([node("Cast", ["t"], ["t64"], to=I64), node("Cast", ["r"], ["r64"], to=I64),
                      node("Reshape", ["x", "t64"], ["a"]), node("Tile", ["a", "r64"], ["b"]),
                      node("ReduceMax", ["b"], ["y"], axes=[1])], [X4S], [("y", F, None)], [t, r], opset=13)

    @add("init_int64_field")
    def _():
        return model([node("Reshape", ["x", "t"], ["y"])], [X4], [("y", F, None)],
                     [helper.make_tensor("t", I64, [3], [-1, 4, 4], raw=False)], opset=13)

    @add("init_uint8_int8_uint16_int16")
    def _():
        ts = [init("a", np.array([1, 2, 3, 4], np.uint8)), init("b", np.array([-1, 2, -3, 4], np.int8)),
              init("c", np.array([7, 8, 9, 10], np.uint16)), init("d", np.array([-7, 8, -9, 10], np.int16))]
        nodes = [node("Cast", [n], [n + "f"], to=F) for n in "abcd"]
        nodes += [node("Sum", ["x", "af", "bf", "cf", "df"], ["y"])]
        return model(nodes, [X4], [("y", F, None)], ts, opset=13)

    @add("init_uint32_uint64_bool")
    def _():
        ts = [init("a", np.array([1, 2, 3, 4], np.uint32)),
              helper.make_tensor("b", TensorProto.UINT64, [4], [5, 6, 7, 8], raw=False),
              init("m", np.array([True, False, False, True]))]
        nodes = [node("Cast", ["a"], ["af"], to=F), node("Cast", ["b"], ["bf"], to=F),
                 node("Where", ["m", "af", "bf"], ["w"]), node("Mul", ["x", "w"], ["y"])]
        return model(nodes, [X4], [("y", F, None)], ts, opset=13)

    @add("init_scalar_and_empty")
    def _():
        return model([node("Mul", ["x", "s"], ["m"]), node("Concat", ["m", "e"], ["y"], axis=3)], [X4],
                     [("y", F, None)],
                     [init("s", np.array(3.0, np.float32)), init("e", np.zeros((1, 2, 4, 0), np.float32))], opset=13)

    @add("ir3_initializers_as_inputs")
    def _():
        return model([node("Conv", ["x", "w", "b"], ["y"])], [X4], [("y", F, None)],
                     [init("w", arr(100, 2, 2, 1, 1)), init("b", arr(101, 2))], opset=8, initializers_as_inputs=True)

    @add("unused_string_initializer")
    def _():
        labels = helper.make_tensor("labels", TensorProto.STRING, [2], [b"cat", b"dog"])
        return model([node("Relu", ["x"], ["y"])], [X4], [("y", F, None)], [labels], opset=13)

    # ---- external data ---------------------------------------------------------------------
    def external(name: str, dims: Sequence[int], offset: int | None, length: int | None,
                 location: str = EXTERNAL_FILE) -> onnx.TensorProto:
        t = onnx.TensorProto()
        t.name = name
        t.data_type = F
        t.dims.extend(dims)
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in [("location", location), ("offset", offset), ("length", length)]:
            if v is not None:
                e = t.external_data.add()
                e.key = k
                e.value = str(v)
        return t

    @add("external_conv_weight_offset")
    def _():
        return model([node("Conv", ["x", "w", "b"], ["y"])], [X4], [("y", F, None)],
                     [external("w", [3, 2, 2, 2], 64, 3 * 2 * 2 * 2 * 4), external("b", [3], 4000, None)], opset=13)

    @add("external_gemm_no_offset")
    def _():
        return model([node("Gemm", ["x", "w"], ["y"], transB=1)], [X2], [("y", F, None)],
                     [external("w", [4, 6], None, None)], opset=13)

    @add("external_missing_file")
    def _():
        return relu_plus(external("w", [4], 0, 16, location="missing.bin"))

    # ---- other domains, pruned outputs, refusals -------------------------------------------
    @add("zipmap_probabilities_and_label")
    def _():
        nodes = [node("Gemm", ["x", "w"], ["p"], transB=1), node("ArgMax", ["p"], ["label"], axis=1, keepdims=0),
                 helper.make_node("ZipMap", ["p"], ["zm"], domain="ai.onnx.ml", name="zipmap",
                                  classlabels_int64s=[0, 1, 2])]
        outs = [helper.make_tensor_value_info("label", I64, ["N"]),
                helper.make_value_info("zm", helper.make_sequence_type_proto(
                    helper.make_map_type_proto(I64, helper.make_tensor_type_proto(F, [])))),
                helper.make_tensor_value_info("p", F, ["N", 3])]
        return model(nodes, [X2], [], [init("w", arr(110, 3, 6))], opset=13, extra_opsets=[("ai.onnx.ml", 1)],
                     output_infos=outs)

    @add("unsupported_op_lstm")
    def _():
        return model([node("Relu", ["x"], ["r"]), node("LSTM", ["r", "w", "rr"], ["y"], hidden_size=2)],
                     [("x", F, [1, 1, 2])], [("y", F, None)],
                     [init("w", arr(111, 1, 8, 2)), init("rr", arr(112, 1, 8, 2))], opset=13)

    @add("value_info_and_dim_params")
    def _():
        vi = [helper.make_tensor_value_info("h", F, ["N", "C", 4, 4])]
        return model([node("Relu", ["x"], ["h"]), node("GlobalAveragePool", ["h"], ["y"])],
                     [("x", F, ["N", "C", 4, 4])], [("y", F, ["N", "C", 1, 1])], opset=13, value_info=vi)

    @add("int64_input_gather_embedding")
    def _():
        return model([node("Gather", ["emb", "ids"], ["e"], axis=0), node("ReduceMean", ["e"], ["y"], axes=[1])],
                     [("ids", I64, ["N", 3])], [("y", F, None)], [init("emb", arr(113, 5, 4))], opset=13)

    @add("no_shape_input")
    def _():
        return model([node("Relu", ["x"], ["y"])], [("x", F, None)], [("y", F, None)], opset=13)

    # ---- small networks ------------------------------------------------------------------
    @add("cnn_conv_pool_flatten_gemm")
    def _():
        return model([
            node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            node("Relu", ["c1"], ["r1"]),
            node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
            node("Flatten", ["p1"], ["f"]),
            node("Gemm", ["f", "w2", "b2"], ["l"], transB=1),
            node("Softmax", ["l"], ["y"]),
        ], [X4], [("y", F, None)],
            [init("w1", arr(120, 3, 2, 3, 3)), init("b1", arr(121, 3)), init("w2", arr(122, 5, 12)),
             init("b2", arr(123, 5))], opset=13)

    @add("residual_block_bn")
    def _():
        return model([
            node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"]),
            node("Relu", ["n1"], ["r1"]),
            node("Add", ["r1", "x"], ["s"]),
            node("Relu", ["s"], ["y"]),
        ], [X4], [("y", F, None)], [init("w1", arr(130, 2, 2, 3, 3)), *bn_inits(131, 2)], opset=15)

    @add("mlp_tf_style_matmul_add")
    def _():
        return model([
            node("MatMul", ["x", "w1"], ["h1"]), node("Add", ["h1", "b1"], ["a1"]), node("Tanh", ["a1"], ["t1"]),
            node("MatMul", ["t1", "w2"], ["h2"]), node("Add", ["b2", "h2"], ["y"]),
        ], [X2], [("y", F, None)],
            [init("w1", arr(140, 6, 8)), init("b1", arr(141, 8)), init("w2", arr(142, 8, 3)), init("b2", arr(143, 3))],
            opset=13)

    @add("attention_like_matmul_softmax")
    def _():
        return model([
            node("MatMul", ["x", "wq"], ["q"]), node("MatMul", ["x", "wk"], ["k"]),
            node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), node("MatMul", ["q", "kt"], ["s"]),
            node("Div", ["s", "scale"], ["ss"]), node("Softmax", ["ss"], ["a"], axis=-1),
            node("MatMul", ["a", "x"], ["o"]), node("LayerNormalization", ["o", "g"], ["y"], axis=-1),
        ], [("x", F, ["N", 3, 4])], [("y", F, None)],
            [init("wq", arr(150, 4, 4)), init("wk", arr(151, 4, 4)), init("scale", np.array(2.0, np.float32)),
             init("g", arr(152, 4) + 1)], opset=17)

    @add("opset21_conv_relu")
    def _():
        return model([node("Conv", ["x", "w"], ["c"]), node("Relu", ["c"], ["y"])], [X4], [("y", F, None)],
                     [init("w", arr(160, 2, 2, 1, 1))], opset=21)

    @add("opset7_gemm_relu_ir3")
    def _():
        return model([node("Gemm", ["x", "w", "b"], ["g"], transB=1, broadcast=1), node("Relu", ["g"], ["y"])],
                     [X2], [("y", F, None)], [init("w", arr(161, 3, 6)), init("b", arr(162, 3))], opset=6, ir=3)

    return s


def write_external_file(data_dir: str) -> None:
    os.makedirs(data_dir, exist_ok=True)
    (np.arange(EXTERNAL_FLOATS, dtype=np.float32) * 0.01).astype("<f4").tofile(os.path.join(data_dir, EXTERNAL_FILE))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", help="where the seed models go (seed_NNN_<what>.onnx)")
    ap.add_argument("--data-dir", help=f"also write the external data file {EXTERNAL_FILE} here")
    ap.add_argument("--check", action="store_true", help="run onnx.checker on every model (needs no onnxplain)")
    args = ap.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    if args.data_dir:
        write_external_file(args.data_dir)
    all_seeds = seeds()
    written = set()
    for i, (name, make) in enumerate(all_seeds):
        m = make()
        if args.check:
            try:
                onnx.checker.check_model(m)
            except onnx.checker.ValidationError as e:
                print(f"check: {name}: {str(e).splitlines()[0]}")
        data = m.SerializeToString()
        path = os.path.join(args.out_dir, f"seed_{i:03d}_{name}.onnx")
        written.add(os.path.basename(path))
        old = None
        if os.path.exists(path):
            with open(path, "rb") as f:
                old = f.read()
        if old != data:  # leave identical files alone (their mtimes too)
            with open(path, "wb") as f:
                f.write(data)
    for stale in os.listdir(args.out_dir):  # seeds of an older version of this script
        if stale.startswith("seed_") and stale.endswith(".onnx") and stale not in written:
            os.remove(os.path.join(args.out_dir, stale))
    print(f"make_fuzz_corpus: {len(all_seeds)} seed models in {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
