"""Independent float64 numpy reference for PatternNet / PatternAttribution (no onnxplain in here).

* ``linear_ops``: the linear ops onnxplain sees in an ONNX graph (Conv, Gemm, MatMul with a constant
  weight), with MatMul + Add(bias) fused and a following BatchNormalization folded into the weight.
* ``op_values``: each linear op's input and output (with bias) from onnxruntime, the intermediate values
  added as graph outputs.
* ``im2col`` / ``col2im``: N-d convolution patches (stride, padding, dilation, groups), per group,
  D entries ordered as ``W[m].reshape(-1)`` orders them: (c, k1, k2, ...).
* ``statistics``: the sums of the spec (y = W x without bias, mask = output with bias > 0).
* ``patterns``: iNNvestigate's formulas for the estimators linear, relu (a_+ and a_-) and filter.
* ``RefNet``: a float64 interpreter of the (small) ONNX graphs the tests use, with a reverse sweep
  that maps relevance through every linear op with the patterns (PatternNet) or patterns * weights
  (PatternAttribution), and through every other op with its gradient.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

Array = np.ndarray
Patterns = Mapping[str, tuple[Array, "Array | None"]]  # name -> (a_pos [M, D], a_neg [M, D] or None)
Weights = dict[str, tuple[Array, "Array | None"]]  # name -> [M, D] weights of the reverse sweep (pos, neg)

STAT_KEYS = ("count_pos", "sum_y", "sum_y_pos", "sum_yy", "sum_yy_pos", "sum_x", "sum_x_pos", "sum_xy",
             "sum_xy_pos")


# ---------------------------------------------------------------------------------------------- graph


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def constants(model: onnx.ModelProto) -> dict[str, Array]:
    """Initializers, Constant node outputs and Identity of a constant (torch keeps BatchNorm's that way)."""
    out: dict[str, Array] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            out[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])  # type: ignore[arg-type]
        elif node.op_type == "Identity" and node.input[0] in out:
            out[node.output[0]] = out[node.input[0]]
    return out


def _consumers(model: onnx.ModelProto, value: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if value in n.input]


@dataclass
class LinearOp:
    """A linear op as onnxplain sees it after its load-time rewrites, in float64."""

    name: str  # node name of the Conv / Gemm / MatMul
    kind: str  # "conv" | "dense"
    weight: Array  # layout of the ONNX weight (Conv [M, C/G, k...], Gemm [M, D] or [D, M], MatMul [D, M])
    bias: Array | None  # [M]
    weight_axis: int
    input: str  # value name of x
    output: str  # value name of the op's own output with bias (after a fused Add / folded BatchNorm)
    nodes: tuple[str, ...]  # the ONNX nodes it covers
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()  # begin..., end...
    dilations: tuple[int, ...] = ()
    group: int = 1

    @property
    def m(self) -> int:
        return int(self.weight.shape[self.weight_axis])

    @property
    def d(self) -> int:
        return int(self.weight.size // self.m)

    @property
    def w2(self) -> Array:
        """[M, D]: row j is neuron j's weight vector."""
        return np.moveaxis(self.weight, self.weight_axis, 0).reshape(self.m, self.d)

    def to_weight_shape(self, a2: Array) -> Array:
        """Inverse of ``w2``: [M, D] -> the weight's own shape."""
        moved = np.moveaxis(self.weight, self.weight_axis, 0).shape
        return np.moveaxis(a2.reshape(moved), 0, self.weight_axis)

    def group_of(self) -> Array:
        """Group index of each neuron."""
        return np.arange(self.m) // (self.m // self.group)


def linear_ops(model_bytes: bytes) -> list[LinearOp]:
    """Linear ops in graph order, with MatMul + Add(constant [M]) fused and Conv/Gemm + BatchNormalization
    folded (as onnxplain's fuse_matmul_add and fold_batch_norm passes do)."""
    model = onnx.load_from_string(model_bytes)
    consts = constants(model)
    ops: list[LinearOp] = []
    for node in model.graph.node:
        at = _attrs(node)
        if node.op_type == "Conv" and node.input[1] in consts:
            w = consts[node.input[1]].astype(np.float64)
            nd = w.ndim - 2
            bias = consts[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else None
            assert at.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"), "auto_pad not handled by the reference"
            op = LinearOp(node.name, "conv", w, bias, 0, node.input[0], node.output[0], (node.name,),
                          tuple(at.get("strides", [1] * nd)), tuple(at.get("pads", [0] * (2 * nd))),  # type: ignore
                          tuple(at.get("dilations", [1] * nd)), int(at.get("group", 1)))  # type: ignore
        elif node.op_type == "Gemm" and node.input[1] in consts:
            assert at.get("transA", 0) == 0 and at.get("alpha", 1.0) == 1.0 and at.get("beta", 1.0) == 1.0
            w = consts[node.input[1]].astype(np.float64)
            bias = consts[node.input[2]].astype(np.float64).reshape(-1) if len(node.input) > 2 else None
            axis = 0 if at.get("transB", 0) else 1
            op = LinearOp(node.name, "dense", w, bias, axis, node.input[0], node.output[0], (node.name,))
        elif node.op_type == "MatMul" and node.input[1] in consts and consts[node.input[1]].ndim == 2:
            w = consts[node.input[1]].astype(np.float64)
            op = LinearOp(node.name, "dense", w, None, 1, node.input[0], node.output[0], (node.name,))
            users = _consumers(model, op.output)
            if len(users) == 1 and users[0].op_type == "Add":
                add = users[0]
                other = add.input[1] if add.input[0] == op.output else add.input[0]
                if other in consts and consts[other].size == op.m and consts[other].shape[-1] == op.m:
                    op.bias = consts[other].astype(np.float64).reshape(-1)
                    op.output = add.output[0]
                    op.nodes = (*op.nodes, add.name)
        else:
            continue
        users = _consumers(model, op.output)
        if node.op_type in ("Conv", "Gemm") and len(users) == 1 and users[0].op_type == "BatchNormalization":
            bn = users[0]
            gamma, beta, mean, var = (consts[v].astype(np.float64) for v in bn.input[1:5])
            eps = float(_attrs(bn).get("epsilon", 1e-5))  # type: ignore[arg-type]
            scale = gamma / np.sqrt(var + eps)
            shape = [1] * op.weight.ndim
            shape[op.weight_axis] = op.m
            op.weight = op.weight * scale.reshape(shape)
            op.bias = ((op.bias if op.bias is not None else 0.0) - mean) * scale + beta
            op.output = bn.output[0]
            op.nodes = (*op.nodes, bn.name)
        ops.append(op)
    return ops


def ort_values(model_bytes: bytes, feeds: Mapping[str, Array], names: Iterable[str]) -> dict[str, Array]:
    """onnxruntime (graph optimisations off) with the named intermediate values added as outputs."""
    model = onnx.load_from_string(model_bytes)
    present = {o.name for o in model.graph.output}
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        if name not in present:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = sess.run(wanted, dict(feeds))
    return dict(zip(wanted, outs))


def op_values(model_bytes: bytes, feeds: Mapping[str, Array], ops: Sequence[LinearOp]) -> dict[str, Array]:
    """Every linear op's input and output-with-bias, from onnxruntime."""
    return ort_values(model_bytes, feeds, [v for op in ops for v in (op.input, op.output)])


# ---------------------------------------------------------------------------------------------- im2col


def conv_out_shape(op: LinearOp, spatial: Sequence[int]) -> tuple[int, ...]:
    nd = len(spatial)
    ks = op.weight.shape[2:]
    return tuple(
        (spatial[i] + op.pads[i] + op.pads[nd + i] - op.dilations[i] * (ks[i] - 1) - 1) // op.strides[i] + 1
        for i in range(nd)
    )


def _window_slices(op: LinearOp, offset: Sequence[int], out_sp: Sequence[int]) -> tuple[slice, ...]:
    return tuple(
        slice(k * d, k * d + s * (o - 1) + 1, s) for k, d, s, o in zip(offset, op.dilations, op.strides, out_sp)
    )


def im2col(op: LinearOp, x: Array) -> Array:
    """x [N, C, *spatial] -> patches [G, N*P, D] (zero padding included), rows ordered (n, p), D ordered
    (c within the group, k1, k2, ...)."""
    n, c = x.shape[:2]
    nd = x.ndim - 2
    ks = op.weight.shape[2:]
    out_sp = conv_out_shape(op, x.shape[2:])
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(op.pads[i], op.pads[nd + i]) for i in range(nd)])
    cols = np.empty((n, *out_sp, c, *ks), dtype=np.float64)
    for offset in itertools.product(*(range(k) for k in ks)):
        win = xp[(slice(None), slice(None), *_window_slices(op, offset, out_sp))]  # [N, C, *out]
        cols[(Ellipsis, *offset)] = np.moveaxis(win, 1, -1)
    cols = cols.reshape(n * int(np.prod(out_sp)), op.group, c // op.group * int(np.prod(ks)))
    return np.ascontiguousarray(cols.transpose(1, 0, 2))


def col2im(op: LinearOp, cols: Array, x_shape: Sequence[int]) -> Array:
    """Adjoint of ``im2col``: patches [G, N*P, D] -> [N, C, *spatial] (overlaps summed, padding cropped)."""
    n, c = x_shape[:2]
    nd = len(x_shape) - 2
    ks = op.weight.shape[2:]
    out_sp = conv_out_shape(op, x_shape[2:])
    full = cols.transpose(1, 0, 2).reshape(n, *out_sp, c, *ks)
    padded = [x_shape[2 + i] + op.pads[i] + op.pads[nd + i] for i in range(nd)]
    xp = np.zeros((n, c, *padded), dtype=np.float64)
    for offset in itertools.product(*(range(k) for k in ks)):
        xp[(slice(None), slice(None), *_window_slices(op, offset, out_sp))] += np.moveaxis(
            full[(Ellipsis, *offset)], -1, 1)
    crop = tuple(slice(op.pads[i], op.pads[i] + x_shape[2 + i]) for i in range(nd))
    return xp[(slice(None), slice(None), *crop)]


def rows_x(op: LinearOp, x: Array) -> Array:
    """The op's rows: [G, R, D]."""
    if op.kind == "conv":
        return im2col(op, x)
    return x.astype(np.float64).reshape(1, -1, op.d)


def rows_out(op: LinearOp, out: Array) -> Array:
    """The op's output [R, M], rows ordered as ``rows_x`` orders them."""
    if op.kind == "conv":
        return np.moveaxis(out, 1, -1).reshape(-1, op.m)
    return out.reshape(-1, op.m)


def linear_forward(op: LinearOp, x: Array, weight2: Array | None = None, bias: bool = True) -> Array:
    """The op (optionally with another [M, D] weight) in float64."""
    w2 = op.w2 if weight2 is None else weight2
    cols = rows_x(op, x)
    mg = op.m // op.group
    y = np.concatenate([cols[g] @ w2[g * mg:(g + 1) * mg].T for g in range(op.group)], axis=1)  # [R, M]
    if bias and op.bias is not None:
        y = y + op.bias
    if op.kind == "conv":
        out_sp = conv_out_shape(op, x.shape[2:])
        return np.moveaxis(y.reshape(x.shape[0], *out_sp, op.m), -1, 1)
    return y.reshape(*x.shape[:-1], op.m)


def linear_vjp(op: LinearOp, weight2: Array, r_out: Array, x_shape: Sequence[int]) -> Array:
    """VJP w.r.t. x of the op with the [M, D] weight ``weight2``."""
    r = rows_out(op, r_out)
    mg = op.m // op.group
    cols = np.stack([r[:, g * mg:(g + 1) * mg] @ weight2[g * mg:(g + 1) * mg] for g in range(op.group)])
    if op.kind == "conv":
        return col2im(op, cols, x_shape)
    return cols[0].reshape(x_shape)


# ---------------------------------------------------------------------------------------------- statistics


@dataclass
class Stats:
    """Reference sums of one linear op, and ``slack``: how far each masked sum may move if the outputs
    within ``tau`` of zero (whose sign float32 rounding may flip) land on the other side."""

    rows: float
    sums: dict[str, Array]
    slack: dict[str, Array] = field(default_factory=dict)
    ambiguous: Array | None = None  # [R, M] bool

    def __add__(self, other: Stats) -> Stats:
        return Stats(self.rows + other.rows, {k: self.sums[k] + other.sums[k] for k in self.sums},
                     {k: self.slack[k] + other.slack[k] for k in self.slack})


def statistics(op: LinearOp, x: Array, out: Array, tau: float = 2e-6) -> Stats:
    """The spec's sums for one batch: x the op's input, out its output with bias (both from onnxruntime)."""
    cols = rows_x(op, x)  # [G, R, D]
    o = rows_out(op, out).astype(np.float64)  # [R, M]
    w2 = op.w2
    mg = op.m // op.group
    r = cols.shape[1]
    scale = float(np.max(np.abs(o))) if o.size else 0.0
    amb = ambiguous(op, cols, o, tau * scale)
    s: dict[str, Array] = {k: np.zeros((op.m,)) for k in ("count_pos", "sum_y", "sum_y_pos", "sum_yy", "sum_yy_pos")}
    s["sum_x"] = cols.sum(axis=1)
    for k in ("sum_x_pos", "sum_xy", "sum_xy_pos"):
        s[k] = np.zeros((op.m, op.d))
    slack = {k: np.zeros_like(v) for k, v in s.items()}
    for g in range(op.group):
        js = slice(g * mg, (g + 1) * mg)
        xg = cols[g]
        y = xg @ w2[js].T  # [R, Mg], without bias
        mask = (o[:, js] > 0).astype(np.float64)
        a = amb[:, js].astype(np.float64)
        s["count_pos"][js] = mask.sum(0)
        s["sum_y"][js] = y.sum(0)
        s["sum_y_pos"][js] = (y * mask).sum(0)
        s["sum_yy"][js] = (y * y).sum(0)
        s["sum_yy_pos"][js] = (y * y * mask).sum(0)
        s["sum_x_pos"][js] = mask.T @ xg
        s["sum_xy"][js] = y.T @ xg
        s["sum_xy_pos"][js] = (y * mask).T @ xg
        slack["count_pos"][js] = a.sum(0)
        slack["sum_y_pos"][js] = (np.abs(y) * a).sum(0)
        slack["sum_yy_pos"][js] = (y * y * a).sum(0)
        slack["sum_x_pos"][js] = a.T @ np.abs(xg)
        slack["sum_xy_pos"][js] = (np.abs(y) * a).T @ np.abs(xg)
    return Stats(float(r), s, slack, amb)


def ambiguous(op: LinearOp, cols: Array, o: Array, threshold: float) -> Array:
    """[R, M]: outputs within ``threshold`` of zero, except exact zeros from an all-zero patch and a zero
    bias (those are 0 in any precision)."""
    mg = op.m // op.group
    bias = op.bias if op.bias is not None else np.zeros(op.m)
    exact = np.concatenate([(~np.any(cols[g] != 0, axis=1))[:, None] & (bias[g * mg:(g + 1) * mg] == 0)[None, :]
                            for g in range(op.group)], axis=1)
    return (np.abs(o) <= threshold) & ~exact


def flipped(op: LinearOp, x: Array, out: Array, tau: float = 2e-6) -> Stats:
    """The statistics with every ambiguous output's sign flipped (the other side of the rounding)."""
    o = rows_out(op, out).astype(np.float64)
    scale = float(np.max(np.abs(o))) if o.size else 0.0
    amb = ambiguous(op, rows_x(op, x), o, tau * scale)
    o2 = np.where(amb, np.where(o > 0, -1.0, 1.0) * max(scale, 1.0), o)
    if op.kind == "conv":
        out2 = np.moveaxis(o2.reshape(out.shape[0], *out.shape[2:], op.m), -1, 1)
    else:
        out2 = o2.reshape(out.shape)
    return statistics(op, x, out2, tau=0.0)


# ---------------------------------------------------------------------------------------------- patterns


def _pattern(w2: Array, cov: Array) -> Array:
    den = np.sum(w2 * cov, axis=1)
    den = np.where(den == 0, 1.0, den)
    return cov / den[:, None]


def patterns(op: LinearOp, st: Stats, estimator: str) -> tuple[Array, Array | None]:
    """(a_pos, a_neg) as [M, D] (a_neg None for linear / filter), from the reference sums."""
    w2 = op.w2
    if estimator == "filter":
        return w2 / np.sum(w2 * w2, axis=1, keepdims=True), None
    s = st.sums
    rows = st.rows
    ey = s["sum_y"] / rows
    sum_x = s["sum_x"][op.group_of()]  # [M, D]
    if estimator == "linear":
        cov = s["sum_xy"] / rows - (sum_x / rows) * ey[:, None]
        return _pattern(w2, cov), None
    if estimator != "relu":
        raise ValueError(estimator)
    out = []
    for cnt, sxy, sx in (
        (s["count_pos"], s["sum_xy_pos"], s["sum_x_pos"]),
        (rows - s["count_pos"], s["sum_xy"] - s["sum_xy_pos"], sum_x - s["sum_x_pos"]),
    ):
        c = np.where(cnt == 0, 1.0, cnt)[:, None]
        a = _pattern(w2, sxy / c - (sx / c) * ey[:, None])
        # no rows: a = 0 (the sums over no rows are 0; computed as differences they are rounding residues)
        out.append(np.where((cnt == 0)[:, None], 0.0, a))
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------- interpreter


def _unbroadcast(g: Array, shape: Sequence[int]) -> Array:
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, s in enumerate(shape):
        if s == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def _pool_geometry(node: onnx.NodeProto, x: Array) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    at = _attrs(node)
    nd = x.ndim - 2
    ks = list(at["kernel_shape"])  # type: ignore[call-overload]
    st = list(at.get("strides", [1] * nd))  # type: ignore[call-overload]
    pads = list(at.get("pads", [0] * (2 * nd)))  # type: ignore[call-overload]
    dil = list(at.get("dilations", [1] * nd))  # type: ignore[call-overload]
    assert not at.get("ceil_mode", 0), "ceil_mode not handled by the reference"
    out = [(x.shape[2 + i] + pads[i] + pads[nd + i] - dil[i] * (ks[i] - 1) - 1) // st[i] + 1 for i in range(nd)]
    return ks, st, pads, dil, out


def _pool_slices(offset: Sequence[int], st: Sequence[int], dil: Sequence[int], out: Sequence[int]) -> tuple:
    return (slice(None), slice(None),
            *(slice(k * d, k * d + s * (o - 1) + 1, s) for k, d, s, o in zip(offset, dil, st, out)))


class RefNet:
    """Float64 forward and pattern reverse sweep of a small ONNX graph (the ops the tests' models use).

    A final Softmax is skipped (onnxplain strips it); linear ops run as ``LinearOp`` (fused / folded)."""

    def __init__(self, model_bytes: bytes) -> None:
        self.model = onnx.load_from_string(model_bytes)
        self.consts = {k: np.asarray(v) for k, v in constants(self.model).items()}
        self.ops = linear_ops(model_bytes)
        self.by_first = {op.nodes[0]: op for op in self.ops}
        self.covered = {n for op in self.ops for n in op.nodes[1:]}
        self.input = next(i.name for i in self.model.graph.input if i.name not in self.consts)
        out = self.model.graph.output[0].name
        last = next((n for n in self.model.graph.node if out in n.output), None)
        self.output = last.input[0] if last is not None and last.op_type == "Softmax" else out
        self.nodes = [n for n in self.model.graph.node
                      if n.name not in self.covered and n.output[0] not in self.consts
                      and not (n.op_type == "Softmax" and n.input[0] == self.output)]

    # -- forward
    def forward(self, x: Array) -> dict[str, Array]:
        v: dict[str, Array] = {self.input: x.astype(np.float64)}
        for node in self.nodes:
            if node.name in self.by_first:
                op = self.by_first[node.name]
                v[op.output] = linear_forward(op, v[op.input])
            else:
                v[node.output[0]] = self._fwd(node, v)
        return v

    def _arg(self, name: str, v: Mapping[str, Array]) -> Array:
        return v[name] if name in v else self.consts[name].astype(np.float64)

    def _fwd(self, node: onnx.NodeProto, v: Mapping[str, Array]) -> Array:
        t = node.op_type
        at = _attrs(node)
        x = self._arg(node.input[0], v)
        if t == "Relu":
            return np.maximum(x, 0.0)
        if t == "LeakyRelu":
            return np.where(x > 0, x, float(at.get("alpha", 0.01)) * x)  # type: ignore[arg-type]
        if t == "Tanh":
            return np.tanh(x)
        if t == "Elu":
            return np.where(x > 0, x, float(at.get("alpha", 1.0)) * np.expm1(np.minimum(x, 0)))  # type: ignore
        if t == "Clip":
            lo, hi = self._clip_bounds(node, at)
            return np.clip(x, lo, hi)
        if t in ("Add", "Sub", "Mul"):
            y = self._arg(node.input[1], v)
            return x + y if t == "Add" else (x - y if t == "Sub" else x * y)
        if t in ("Identity", "Dropout"):
            return x
        if t == "Flatten":
            axis = int(at.get("axis", 1))  # type: ignore[call-overload]
            return x.reshape(int(np.prod(x.shape[:axis])), -1)
        if t == "Reshape":
            shape = [int(s) for s in self.consts[node.input[1]]]
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
            return x.reshape(shape)
        if t == "Transpose":
            return np.transpose(x, at.get("perm"))  # type: ignore[arg-type]
        if t == "Squeeze":
            axes = at.get("axes") if len(node.input) < 2 else [int(a) for a in self.consts[node.input[1]]]
            return np.squeeze(x, axis=tuple(a % x.ndim for a in axes))  # type: ignore[union-attr]
        if t == "GlobalAveragePool":
            return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)
        if t == "MaxPool":
            ks, st, pads, dil, out = _pool_geometry(node, x)
            xp = self._pad(x, pads, -np.inf)
            wins = [xp[_pool_slices(o, st, dil, out)] for o in itertools.product(*(range(k) for k in ks))]
            return np.max(np.stack(wins), axis=0)
        if t == "AveragePool":
            ks, st, pads, dil, out = _pool_geometry(node, x)
            offs = list(itertools.product(*(range(k) for k in ks)))
            total = sum(self._pad(x, pads, 0.0)[_pool_slices(o, st, dil, out)] for o in offs)
            return total / self._pool_count(node, x, ks, st, pads, dil, out)
        raise NotImplementedError(f"reference interpreter: op {t}")

    @staticmethod
    def _pad(x: Array, pads: Sequence[int], value: float) -> Array:
        nd = x.ndim - 2
        return np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[nd + i]) for i in range(nd)], constant_values=value)

    def _pool_count(self, node: onnx.NodeProto, x: Array, ks: Sequence[int], st: Sequence[int],
                    pads: Sequence[int], dil: Sequence[int], out: Sequence[int]) -> Array | float:
        if _attrs(node).get("count_include_pad", 0):
            return float(np.prod(ks))
        ones = self._pad(np.ones((1, 1, *x.shape[2:])), pads, 0.0)
        return sum(ones[_pool_slices(o, st, dil, out)] for o in itertools.product(*(range(k) for k in ks)))

    def _clip_bounds(self, node: onnx.NodeProto, at: Mapping[str, object]) -> tuple[float, float]:
        lo = float(at.get("min", -np.inf))  # type: ignore[arg-type]
        hi = float(at.get("max", np.inf))  # type: ignore[arg-type]
        if len(node.input) > 1 and node.input[1]:
            lo = float(self.consts[node.input[1]])
        if len(node.input) > 2 and node.input[2]:
            hi = float(self.consts[node.input[2]])
        return lo, hi

    def logits(self, x: Array) -> Array:
        return self.forward(x)[self.output]

    # -- reverse
    def _vjp(self, node: onnx.NodeProto, v: Mapping[str, Array], r: Array) -> list[tuple[str, Array]]:
        t = node.op_type
        at = _attrs(node)
        name = node.input[0]
        x = self._arg(name, v)
        y = v[node.output[0]]
        if t == "Relu":
            return [(name, r * (x > 0))]
        if t == "LeakyRelu":
            return [(name, np.where(x > 0, r, float(at.get("alpha", 0.01)) * r))]  # type: ignore[arg-type]
        if t == "Tanh":
            return [(name, r * (1 - y * y))]
        if t == "Elu":
            return [(name, np.where(x > 0, r, r * float(at.get("alpha", 1.0)) * np.exp(np.minimum(x, 0))))]  # type: ignore
        if t == "Clip":
            lo, hi = self._clip_bounds(node, at)
            return [(name, r * ((x > lo) & (x < hi)))]
        if t in ("Add", "Sub", "Mul"):
            other = node.input[1]
            res = []
            if name in v:
                gx = r * self._arg(other, v) if t == "Mul" else r
                res.append((name, _unbroadcast(gx, x.shape)))
            if other in v:
                yv = self._arg(other, v)
                gy = r * x if t == "Mul" else (-r if t == "Sub" else r)
                res.append((other, _unbroadcast(gy, yv.shape)))
            return res
        if t in ("Identity", "Dropout", "Flatten", "Reshape", "Squeeze"):
            return [(name, r.reshape(x.shape))]
        if t == "Transpose":
            return [(name, np.transpose(r, np.argsort(at["perm"])))]  # type: ignore[arg-type]
        if t == "GlobalAveragePool":
            return [(name, np.broadcast_to(r, x.shape) / float(np.prod(x.shape[2:])))]
        if t == "MaxPool":
            ks, st, pads, dil, out = _pool_geometry(node, x)
            xp = self._pad(x, pads, -np.inf)
            offs = list(itertools.product(*(range(k) for k in ks)))
            win = np.argmax(np.stack([xp[_pool_slices(o, st, dil, out)] for o in offs]), axis=0)  # first max
            g = np.zeros_like(xp)
            for i, o in enumerate(offs):
                g[_pool_slices(o, st, dil, out)] += r * (win == i)
            return [(name, self._crop(g, pads, x.shape))]
        if t == "AveragePool":
            ks, st, pads, dil, out = _pool_geometry(node, x)
            rr = r / self._pool_count(node, x, ks, st, pads, dil, out)
            g = np.zeros_like(self._pad(x, pads, 0.0))
            for o in itertools.product(*(range(k) for k in ks)):
                g[_pool_slices(o, st, dil, out)] += rr
            return [(name, self._crop(g, pads, x.shape))]
        raise NotImplementedError(f"reference reverse: op {t}")

    @staticmethod
    def _crop(g: Array, pads: Sequence[int], shape: Sequence[int]) -> Array:
        nd = len(shape) - 2
        return g[(slice(None), slice(None), *(slice(pads[i], pads[i] + shape[2 + i]) for i in range(nd)))]

    def backward(self, x: Array, start: Array, linear_weights: Weights,
                 values: Mapping[str, Array] | None = None) -> Array:
        """Reverse sweep from ``start`` (shaped like the logits). Each linear op maps r at its output
        with the [M, D] weights (w_pos, w_neg): VJP_{w_pos}(r * m) + VJP_{w_neg}(r * (1 - m)), m = [out > 0];
        with w_neg None: VJP_{w_pos}(r). Every other op: its gradient."""
        v = dict(values) if values is not None else self.forward(x)
        cot: dict[str, Array] = {self.output: start.astype(np.float64)}
        for node in reversed(self.nodes):
            if node.name in self.by_first:
                op = self.by_first[node.name]
                r = cot.pop(op.output, None)
                if r is None:
                    continue
                w_pos, w_neg = linear_weights[op.name]
                xs = v[op.input].shape
                if w_neg is None:
                    g = linear_vjp(op, w_pos, r, xs)
                else:
                    m = (v[op.output] > 0).astype(np.float64)
                    g = linear_vjp(op, w_pos, r * m, xs) + linear_vjp(op, w_neg, r * (1 - m), xs)
                pairs = [(op.input, g)]
            else:
                r = cot.pop(node.output[0], None)
                if r is None:
                    continue
                pairs = self._vjp(node, v, r)
            for name, g in pairs:
                cot[name] = cot[name] + g if name in cot else np.array(g, dtype=np.float64)
        return cot.get(self.input, np.zeros_like(v[self.input]))

    def gradient_weights(self) -> Weights:
        return {op.name: (op.w2, None) for op in self.ops}


def start_value(logits: Array, target: Sequence[int]) -> Array:
    """One-hot at the target times f_t(x)."""
    s = np.zeros_like(logits)
    idx = np.arange(len(target))
    s[idx, list(target)] = logits[idx, list(target)]
    return s


def pattern_weights(ops: Sequence[LinearOp], pats: Patterns, attribution: bool) -> Weights:
    """[M, D] weights of the reverse sweep: A (PatternNet) or A * W (PatternAttribution)."""
    out: Weights = {}
    for op in ops:
        a_pos, a_neg = pats[op.name]
        if attribution:
            out[op.name] = (a_pos * op.w2, None if a_neg is None else a_neg * op.w2)
        else:
            out[op.name] = (a_pos, a_neg)
    return out


def fit_reference(model_bytes: bytes, input_name: str, data: Array,
                  batch: int = 64) -> tuple[dict[str, Stats], dict[str, Stats]]:
    """Reference statistics of every linear op over ``data`` summed over batches, and the same with the
    ambiguous (near-zero) outputs' signs flipped."""
    ops = linear_ops(model_bytes)
    total: dict[str, Stats] = {}
    other: dict[str, Stats] = {}
    for i in range(0, len(data), batch):
        vals = op_values(model_bytes, {input_name: data[i:i + batch]}, ops)
        for op in ops:
            st = statistics(op, vals[op.input], vals[op.output])
            fl = flipped(op, vals[op.input], vals[op.output])
            total[op.name] = total[op.name] + st if op.name in total else st
            other[op.name] = other[op.name] + fl if op.name in other else fl
    return total, other


# ---------------------------------------------------------------------------------------------- test models


@dataclass(frozen=True)
class Case:
    """An ONNX model for the tests: its bytes, input name and one sample's shape."""

    name: str
    data: bytes
    input: str
    shape: tuple[int, ...]


def _torch_case(name: str, module: object, shape: tuple[int, ...], keep_batchnorm: bool = False) -> Case:
    import torch

    from tests.helpers.torch_models import export

    return Case(name, export(module, torch.zeros(2, *shape), dynamo=False,  # type: ignore[arg-type]
                             keep_batchnorm=keep_batchnorm), "x", shape)


def _init_bn(module: object) -> None:
    import torch

    for m in module.modules():  # type: ignore[attr-defined]
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)


def mlp_case() -> Case:
    """Gemm (transB=1) layers with ReLU, Tanh (so a_- matters) and the logits."""
    import torch
    from torch import nn

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 5)).eval()
    return _torch_case("mlp", net, (12,))


def convs_case() -> Case:
    """Conv2d with stride + padding, dilation + groups, depthwise, max pooling, anisotropic dilation and
    padding, then a dense layer."""
    import torch
    from torch import nn

    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2), nn.Tanh(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 6, 2, padding=(1, 0), dilation=(1, 2)), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 4 * 1, 5),
    ).eval()
    return _torch_case("convs", net, (3, 12, 12))


def conv1d_case() -> Case:
    import torch
    from torch import nn

    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv1d(4, 6, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv1d(6, 6, 3, padding=2, dilation=2, groups=3), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 8, 4),
    ).eval()
    return _torch_case("conv1d", net, (4, 16))


def cnn_bn_case() -> Case:
    """BatchNormalization kept in the graph: onnxplain folds it into the conv / gemm before it."""
    import torch
    from torch import nn

    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Linear(10, 4),
    )
    _init_bn(net)
    return _torch_case("cnn_bn", net.eval(), (3, 8, 8), keep_batchnorm=True)


def resnet_case() -> Case:
    """A residual net: identity and projection shortcuts (residual Add), global average pooling."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
            self.down = nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            idt = x if self.down is None else self.down(x)
            return torch.relu(self.conv2(torch.relu(self.conv1(x))) + idt)

    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), Block(8, 8, 1), Block(8, 12, 2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 5)).eval()
    return _torch_case("resnet", net, (3, 8, 8))


def dense_onnx_case(seed: int = 6) -> Case:
    """onnx.helper: a 3-d input through MatMul + Add (one row per leading index), Gemm with transB=0,
    Gemm + BatchNormalization, LeakyRelu and Elu."""
    from tests.helpers.onnx_builders import make_model

    g = np.random.default_rng(seed)

    def f(*s: int) -> Array:
        return (g.standard_normal(s) / np.sqrt(s[0] if len(s) > 1 else 4)).astype(np.float32)

    inits = {
        "w1": f(6, 8), "b1": f(8) * 0.5, "shape": np.array([0, -1], dtype=np.int64),
        "w2": f(32, 7), "b2": f(7) * 0.5,
        "bn_g": (g.uniform(0.5, 1.5, 7)).astype(np.float32), "bn_b": f(7) * 0.3,
        "bn_m": f(7) * 0.3, "bn_v": g.uniform(0.5, 2.0, 7).astype(np.float32),
        "w3": f(5, 7), "b3": f(5) * 0.3,
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["mm"], name="dense3d"),
        helper.make_node("Add", ["mm", "b1"], ["mm_b"], name="dense3d_bias"),
        helper.make_node("LeakyRelu", ["mm_b"], ["h1"], name="act1", alpha=0.2),
        helper.make_node("Reshape", ["h1", "shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w2", "b2"], ["g2"], name="gemm_nt"),
        helper.make_node("BatchNormalization", ["g2", "bn_g", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn",
                         epsilon=1e-3),
        helper.make_node("Elu", ["bn"], ["h2"], name="act2"),
        helper.make_node("Gemm", ["h2", "w3", "b3"], ["y"], name="gemm_t", transB=1),
    ]
    return Case("dense_onnx", make_model(nodes, [("x", ["N", 4, 6])], ["y"], inits), "x", (4, 6))


def conv_onnx_case(seed: int = 7) -> Case:
    """onnx.helper: asymmetric padding, anisotropic stride and dilation, Conv + BatchNormalization,
    a grouped conv without bias, average pooling with padding."""
    from tests.helpers.onnx_builders import make_model

    g = np.random.default_rng(seed)

    def f(*s: int) -> Array:
        return (g.standard_normal(s) / np.sqrt(max(1, int(np.prod(s[1:]))))).astype(np.float32)

    inits = {
        "w1": f(6, 2, 3, 3), "b1": f(6) * 0.3,
        "bn_g": g.uniform(0.5, 1.5, 6).astype(np.float32), "bn_b": f(6) * 0.3,
        "bn_m": f(6) * 0.3, "bn_v": g.uniform(0.5, 2.0, 6).astype(np.float32),
        "w2": f(6, 2, 1, 3),
        "w3": f(4, 6), "b3": f(4) * 0.3,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv_asym", strides=[2, 1],
                         pads=[0, 1, 1, 0], dilations=[1, 2]),
        helper.make_node("BatchNormalization", ["c1", "bn_g", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["h1"], name="relu1"),
        helper.make_node("Conv", ["h1", "w2"], ["c2"], name="conv_grouped", group=3, pads=[0, 1, 0, 1]),
        helper.make_node("AveragePool", ["c2"], ["p"], name="avg", kernel_shape=[2, 2], strides=[2, 2],
                         pads=[0, 0, 1, 1]),
        helper.make_node("Relu", ["p"], ["h2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["h2"], ["gp"], name="gap"),
        helper.make_node("Flatten", ["gp"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["y"], name="fc", transB=1),
    ]
    return Case("conv_onnx", make_model(nodes, [("x", ["N", 2, 7, 9])], ["y"], inits), "x", (2, 7, 9))


KERAS = ("mlp", "cnn", "resnet")


def keras_case(name: str) -> Case:
    from pathlib import Path

    data = (Path(__file__).resolve().parents[1] / "data" / "keras" / f"{name}.onnx").read_bytes()
    inp = onnx.load_from_string(data).graph.input[0]
    dims = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)[1:]
    return Case(f"keras_{name}", data, inp.name, dims)


_BUILDERS = {
    "mlp": mlp_case, "convs": convs_case, "conv1d": conv1d_case, "cnn_bn": cnn_bn_case, "resnet": resnet_case,
    "dense_onnx": dense_onnx_case, "conv_onnx": conv_onnx_case,
    **{f"keras_{k}": (lambda k=k: keras_case(k)) for k in KERAS},
}
CASES = tuple(_BUILDERS)
_CASE_CACHE: dict[str, Case] = {}


def case(name: str) -> Case:
    """The named test model (built and exported once per process)."""
    if name not in _CASE_CACHE:
        _CASE_CACHE[name] = _BUILDERS[name]()
    return _CASE_CACHE[name]


def data_for(c: Case, n: int, seed: int) -> Array:
    """Random float32 inputs with a per-feature offset (so E[x] != 0 and the covariance terms matter)."""
    g = np.random.default_rng(seed)
    offset = np.random.default_rng(99).uniform(-0.5, 0.5, c.shape)
    return (g.standard_normal((n, *c.shape)) + offset).astype(np.float32)


_FIT_CACHE: dict[tuple[str, int, int], tuple[Array, dict[str, Stats], dict[str, Stats]]] = {}


def reference_fit(name: str, n: int = 200, seed: int = 0) -> tuple[Array, dict[str, Stats], dict[str, Stats]]:
    """(data, reference statistics, statistics with the ambiguous signs flipped) of a test case, cached."""
    key = (name, n, seed)
    if key not in _FIT_CACHE:
        c = case(name)
        x = data_for(c, n, seed)
        st, fl = fit_reference(c.data, c.input, x)
        _FIT_CACHE[key] = (x, st, fl)
    return _FIT_CACHE[key]


def kappa(op: LinearOp, a2: Array) -> Array:
    """Per neuron: sum |w * a| / |w . a|, how much the denominator w . cov cancels (1 = not at all)."""
    num = np.abs(op.w2 * a2).sum(axis=1)
    den = np.abs((op.w2 * a2).sum(axis=1))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
