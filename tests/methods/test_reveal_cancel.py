"""DeepLIFT RevealCancel (Shrikumar, Greenside, Kundaje, ICML 2017, section 3.5) against an independent
float64 numpy implementation of the paper's equations.

The reference below is a tiny graph interpreter (dense and im2col convolution, element-wise
nonlinearities, residual sums, Flatten, 2x2 max pooling) with its own reverse sweep of multipliers:

- an element-wise nonlinearity y = f(z) whose input z is the output of a linear op (Gemm, MatMul
  (+ bias Add), Conv (+ BatchNormalization), z = W x + b): with dx = x - x_ref at the linear op's input,
  dz+ = sum_i [w_ij dx_i > 0] w_ij dx_i, dz- = sum_i [w_ij dx_i < 0] w_ij dx_i (bias excluded),
  dy+ = 1/2 [(f(z0 + dz+) - f(z0)) + (f(z0 + dz- + dz+) - f(z0 + dz-))],
  dy- = 1/2 [(f(z0 + dz-) - f(z0)) + (f(z0 + dz+ + dz-) - f(z0 + dz+))], m+- = dy+-/dz+- (the
  gradient f'(z) at the input where |dz+-| < 1e-10); back through the linear op the multiplier of
  input i is sum_j w_ij ([w_ij dx_i > 0] M+_j + [w_ij dx_i < 0] M-_j), M+-_j = m_yj m+-_j, an input
  with dx_i = 0 taken as dx_i > 0 (other readers of z add their one multiplier to both M+ and M-);
- other nonlinearities: Rescale m = dy/dz (the gradient below 1e-10);
- max pooling: the cross-max rule of Captum and DeepSHAP; everything else linear (the gradient).

Contributions are m * (x - x_ref), averaged over K references, and sum to f_t(x) - f_t(x_ref).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxplain as ox
from tests.helpers.onnx_builders import make_model

NEAR_ZERO = 1e-10
Array = np.ndarray


# ---------------------------------------------------------------------------------------------
# The numpy reference
# ---------------------------------------------------------------------------------------------

def _sigmoid(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-z))


LEAKY_ALPHA = 0.1
ACTS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "Relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(np.float64)),
    "Sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "Tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
    "LeakyRelu": (lambda z: np.where(z > 0, z, LEAKY_ALPHA * z), lambda z: np.where(z > 0, 1.0, LEAKY_ALPHA)),
    "Elu": (lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))), lambda z: np.where(z > 0, 1.0, np.exp(z))),
    "Softplus": (lambda z: np.logaddexp(0.0, z), _sigmoid),
}


@dataclass
class Node:
    """op: dense (W [D, O], b), conv (W [O, C / groups, kh, kw], b, stride, pad, groups), an
    activation of ACTS, add, sub, flatten, maxpool (2x2, stride 2). `style` picks the ONNX form of a
    dense layer; a conv with `bn` is exported as Conv + BatchNormalization whose fold is (W, b)."""

    op: str
    inputs: tuple[str, ...]
    output: str
    W: Array | None = None
    b: Array | None = None
    stride: int = 1
    pad: int = 0
    style: str = "gemm"  # gemm | gemm_t | matmul_add | matmul
    groups: int = 1
    bn: bool = False


@dataclass
class Net:
    nodes: list[Node]
    sample_shape: tuple[int, ...]

    @property
    def output(self) -> str:
        return self.nodes[-1].output


def im2col(x: Array, kh: int, kw: int, stride: int, pad: int) -> tuple[Array, tuple[int, int]]:
    """[N, C, H, W] -> columns [N, P, C*kh*kw] (C slowest, as W.reshape(O, -1)), and (Ho, Wo)."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    cols = np.empty((n, ho * wo, c, kh, kw))
    for i in range(ho):
        for j in range(wo):
            cols[:, i * wo + j] = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
    return cols.reshape(n, ho * wo, c * kh * kw), (ho, wo)


def col2im(cols: Array, shape: tuple[int, ...], kh: int, kw: int, stride: int, pad: int) -> Array:
    """The adjoint of im2col: columns summed back onto the [N, C, H, W] input."""
    n, c, h, w = shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    cc = cols.reshape(n, ho * wo, c, kh, kw)
    for i in range(ho):
        for j in range(wo):
            xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += cc[:, i * wo + j]
    return xp[:, :, pad:pad + h, pad:pad + w]


class Linear:
    """A dense or conv node as patches: z[n, p, o] = sum_d cols[n, p, d] W2[d, o] + b[o]."""

    def __init__(self, node: Node) -> None:
        assert node.W is not None
        self.node = node
        if node.op == "dense":
            self.W2 = node.W.astype(np.float64)
        else:  # a grouped conv as the dense conv with a block-diagonal weight
            o, cg = node.W.shape[:2]
            full = np.zeros((o, cg * node.groups, *node.W.shape[2:]))
            og = o // node.groups
            for g in range(node.groups):
                full[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = node.W[g * og:(g + 1) * og]
            self.W2 = full.reshape(o, -1).T
        self.bias = np.zeros(self.W2.shape[1]) if node.b is None else node.b.astype(np.float64)

    def cols(self, x: Array) -> Array:
        if self.node.op == "dense":
            return x[:, None, :]
        kh, kw = self.node.W.shape[2:]  # type: ignore[union-attr]
        return im2col(x, kh, kw, self.node.stride, self.node.pad)[0]

    def uncols(self, g: Array, shape: tuple[int, ...]) -> Array:
        if self.node.op == "dense":
            return g[:, 0, :]
        kh, kw = self.node.W.shape[2:]  # type: ignore[union-attr]
        return col2im(g, shape, kh, kw, self.node.stride, self.node.pad)

    def out_shape(self, x: Array) -> tuple[int, ...]:
        if self.node.op == "dense":
            return (x.shape[0], self.W2.shape[1])
        kh, kw = self.node.W.shape[2:]  # type: ignore[union-attr]
        _, (ho, wo) = im2col(x[:1], kh, kw, self.node.stride, self.node.pad)
        return (x.shape[0], self.W2.shape[1], ho, wo)

    def to_cols_layout(self, z: Array) -> Array:
        """An output-shaped array -> [N, P, O]."""
        if self.node.op == "dense":
            return z[:, None, :]
        return z.reshape(z.shape[0], z.shape[1], -1).transpose(0, 2, 1)

    def from_cols_layout(self, z: Array, shape: tuple[int, ...]) -> Array:
        if self.node.op == "dense":
            return z[:, 0, :]
        return z.transpose(0, 2, 1).reshape(shape)

    def forward(self, x: Array) -> Array:
        z = self.cols(x) @ self.W2 + self.bias
        return self.from_cols_layout(z, self.out_shape(x))

    def gradient(self, m_out: Array, x_shape: tuple[int, ...]) -> Array:
        return self.uncols(self.to_cols_layout(m_out) @ self.W2.T, x_shape)


def maxpool_fwd(x: Array) -> Array:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def maxpool_route(x: Array, g: Array) -> Array:
    """The VJP of 2x2 max pooling: g to the (first) maximum of each window."""
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    onehot = np.eye(4)[win.argmax(axis=-1)] * g[..., None]
    return onehot.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def forward(net: Net, x: Array) -> dict[str, Array]:
    vals: dict[str, Array] = {"x": x.astype(np.float64)}
    for nd in net.nodes:
        a = vals[nd.inputs[0]]
        if nd.op in ("dense", "conv"):
            vals[nd.output] = Linear(nd).forward(a)
        elif nd.op in ACTS:
            vals[nd.output] = ACTS[nd.op][0](a)
        elif nd.op == "add":
            vals[nd.output] = a + vals[nd.inputs[1]]
        elif nd.op == "sub":
            vals[nd.output] = a - vals[nd.inputs[1]]
        elif nd.op == "flatten":
            vals[nd.output] = a.reshape(a.shape[0], -1)
        elif nd.op == "maxpool":
            vals[nd.output] = maxpool_fwd(a)
        else:
            raise AssertionError(nd.op)
    return vals


Pair = tuple[Array, Array]


def _acc(mult: dict[str, Pair], name: str, mp: Array, mn: Array | None = None) -> None:
    """Adds multipliers for the positive and the negative part of a value's difference (one
    multiplier for both unless a RevealCancel nonlinearity reads the value)."""
    mn = mp if mn is None else mn
    if name in mult:
        p, q = mult[name]
        sp = p + mp
        mult[name] = (sp, sp if (p is q and mp is mn) else q + mn)  # one array while the parts agree
    else:
        mult[name] = (mp, mn)


def reveal_cancel_parts(lin: Linear, f: Callable[[Array], Array], fprime: Callable[[Array], Array],
                        x: Array, xr: Array, z: Array, zr: Array, m_y: Array) -> Pair:
    """The paper's RevealCancel at y = f(z), z = W x + b: the multipliers M+ = m_y m+ and M- = m_y m-
    of the positive and negative parts of dz, shaped like z."""
    dcols = lin.cols(x - xr)                                     # [N, P, D]
    terms = dcols[:, :, :, None] * lin.W2[None, None, :, :]      # [N, P, D, O]: w_ij dx_i
    dzp = np.where(terms > 0, terms, 0.0).sum(axis=2)            # [N, P, O]
    dzn = np.where(terms < 0, terms, 0.0).sum(axis=2)
    z0 = lin.to_cols_layout(zr)
    dyp = 0.5 * ((f(z0 + dzp) - f(z0)) + (f(z0 + dzn + dzp) - f(z0 + dzn)))
    dyn = 0.5 * ((f(z0 + dzn) - f(z0)) + (f(z0 + dzp + dzn) - f(z0 + dzp)))
    grad = fprime(lin.to_cols_layout(z))
    with np.errstate(divide="ignore", invalid="ignore"):
        mp = np.where(np.abs(dzp) >= NEAR_ZERO, dyp / dzp, grad)
        mn = np.where(np.abs(dzn) >= NEAR_ZERO, dyn / dzn, grad)
    my = lin.to_cols_layout(m_y)
    return lin.from_cols_layout(my * mp, z.shape), lin.from_cols_layout(my * mn, z.shape)


def linear_backward(lin: Linear, x: Array, xr: Array, big_p: Array, big_n: Array, zero_branch: str) -> Array:
    """Back through z = W x + b: m_i = sum_j w_ij ([w_ij dx_i > 0] M+_j + [w_ij dx_i < 0] M-_j).

    An input with dx_i = 0 is taken as dx_i > 0 (M+ through w_ij > 0, M- through w_ij < 0), or with
    zero_branch="average" gets 1/2 (M+ + M-) as kundajelab/deeplift's Dense layer does. Its own
    contribution is 0 either way, but its multiplier is not harmless: below a ReLU that is off for
    both x and ref, m+- can be non-zero though dy = 0 (z0 < 0 < z0 + dz+), so the lower inputs'
    contributions through it (which cancel in their sum) depend on the choice."""
    if big_p is big_n:
        return lin.gradient(big_p, x.shape)
    dcols = lin.cols(x - xr)[:, :, :, None]                      # [N, P, D, 1]
    w = lin.W2[None, None, :, :]                                 # [1, 1, D, O]
    pp, nn = lin.to_cols_layout(big_p)[:, :, None, :], lin.to_cols_layout(big_n)[:, :, None, :]
    per_term = np.where(np.where(dcols >= 0, w < 0, w > 0), nn, pp)
    if zero_branch == "average":
        per_term = np.where(dcols == 0, 0.5 * (pp + nn), per_term)
    return lin.uncols((w * per_term).sum(axis=3), x.shape)


def deeplift_reference(net: Net, x: Array, ref: Array, target: Sequence[int], rule: str,
                       zero_branch: str = "as_positive") -> tuple[Array, Array]:
    """Contributions (float64, shaped like x) for one reference per sample, and f_t(x) - f_t(ref).
    rule: 'rescale' or 'reveal_cancel'."""
    v, vr = forward(net, x), forward(net, ref)
    producer = {nd.output: nd for nd in net.nodes}
    n = x.shape[0]
    out = v[net.output]
    onehot = np.zeros_like(out)
    onehot[np.arange(n), list(target)] = 1.0
    mult: dict[str, Pair] = {net.output: (onehot, onehot)}
    for nd in reversed(net.nodes):
        if nd.output not in mult:
            continue
        big_p, big_n = mult[nd.output]
        a, ar = v[nd.inputs[0]], vr[nd.inputs[0]]
        if nd.op in ("dense", "conv"):
            _acc(mult, nd.inputs[0], linear_backward(Linear(nd), a, ar, big_p, big_n, zero_branch))
            continue
        assert big_p is big_n, f"{nd.output}: two parts reach a {nd.op}"  # only linear outputs get two
        m = big_p
        if nd.op in ACTS:
            f, fp = ACTS[nd.op]
            prod = producer.get(nd.inputs[0])
            if rule == "reveal_cancel" and prod is not None and prod.op in ("dense", "conv"):
                xi, xir = v[prod.inputs[0]], vr[prod.inputs[0]]
                _acc(mult, nd.inputs[0], *reveal_cancel_parts(Linear(prod), f, fp, xi, xir, a, ar, m))
            else:
                dz = a - ar
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = np.where(np.abs(dz) >= NEAR_ZERO, (f(a) - f(ar)) / dz, fp(a))
                _acc(mult, nd.inputs[0], m * r)
        elif nd.op == "add":
            _acc(mult, nd.inputs[0], m)
            _acc(mult, nd.inputs[1], m)
        elif nd.op == "sub":
            _acc(mult, nd.inputs[0], m)
            _acc(mult, nd.inputs[1], -m)
        elif nd.op == "flatten":
            _acc(mult, nd.inputs[0], m.reshape(a.shape))
        elif nd.op == "maxpool":
            y, yr = maxpool_fwd(a), maxpool_fwd(ar)
            c = np.maximum(y, yr)
            u = maxpool_route(a, m * (c - yr)) + maxpool_route(ar, m * (y - c))
            dx = a - ar
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(np.abs(dx) >= NEAR_ZERO, u / dx, maxpool_route(a, m))
            _acc(mult, nd.inputs[0], g)
        else:
            raise AssertionError(nd.op)
    m_x = mult["x"][0] if "x" in mult else np.zeros_like(v["x"])
    contrib = m_x * (v["x"] - vr["x"])
    idx = np.arange(n), list(target)
    return contrib, out[idx] - vr[net.output][idx]


def reference_contributions(net: Net, x: Array, reference: Array | None, target: Sequence[int],
                            rule: str, zero_branch: str = "as_positive") -> tuple[Array, Array]:
    """The `reference` forms of onnxplain: None (zeros), one sample, like x, or K references (averaged)."""
    n = x.shape[0]
    if reference is None:
        refs = [np.zeros_like(x, dtype=np.float64)]
    elif reference.shape == x.shape[1:]:
        refs = [np.broadcast_to(reference, x.shape)]
    elif reference.shape == x.shape:
        refs = [reference]
    else:
        refs = [np.broadcast_to(r, x.shape) for r in reference]
    outs = [deeplift_reference(net, x, np.asarray(r, np.float64), target, rule, zero_branch) for r in refs]
    c = np.mean([o[0] for o in outs], axis=0)
    df = np.mean([o[1] for o in outs], axis=0)
    assert c.shape == x.shape and df.shape == (n,)
    return c, df


# ---------------------------------------------------------------------------------------------
# ONNX export of the same nets
# ---------------------------------------------------------------------------------------------

def to_onnx(net: Net) -> bytes:
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, Array] = {}
    for k, nd in enumerate(net.nodes):
        name = f"n{k}"
        if nd.op == "dense":
            assert nd.W is not None and nd.b is not None
            w = nd.W.astype(np.float32)
            inits[f"{name}_b"] = nd.b.astype(np.float32)
            if nd.style == "gemm":
                inits[f"{name}_W"] = w
                nodes.append(helper.make_node("Gemm", [nd.inputs[0], f"{name}_W", f"{name}_b"], [nd.output], name=name))
            elif nd.style == "gemm_t":
                inits[f"{name}_W"] = np.ascontiguousarray(w.T)
                nodes.append(helper.make_node("Gemm", [nd.inputs[0], f"{name}_W", f"{name}_b"], [nd.output],
                                              name=name, transB=1))
            elif nd.style == "matmul_add":
                inits[f"{name}_W"] = w
                nodes.append(helper.make_node("MatMul", [nd.inputs[0], f"{name}_W"], [f"{name}_mm"], name=name))
                nodes.append(helper.make_node("Add", [f"{name}_mm", f"{name}_b"], [nd.output], name=f"{name}_add"))
            else:  # matmul: no bias
                assert not np.any(nd.b)
                del inits[f"{name}_b"]
                inits[f"{name}_W"] = w
                nodes.append(helper.make_node("MatMul", [nd.inputs[0], f"{name}_W"], [nd.output], name=name))
        elif nd.op == "conv":
            assert nd.W is not None and nd.b is not None
            kh, kw = nd.W.shape[2:]
            w, b, conv_out = nd.W, nd.b, nd.output
            if nd.bn:  # Conv(w0, b0) then BN(gamma, beta, mean, var) folds back to (W, b)
                rs = np.random.default_rng(k)
                o = nd.W.shape[0]
                gamma, beta = rs.uniform(0.5, 2.0, o), rs.standard_normal(o)
                mean, var = rs.standard_normal(o), rs.uniform(0.5, 2.0, o)
                s = gamma / np.sqrt(var + 1e-5)
                w, b, conv_out = nd.W / s[:, None, None, None], (nd.b - beta) / s + mean, f"{name}_pre_bn"
                for key, val in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)):
                    inits[f"{name}_{key}"] = val.astype(np.float32)
                bn_inputs = [conv_out, *(f"{name}_{key}" for key in ("gamma", "beta", "mean", "var"))]
            inits[f"{name}_W"] = w.astype(np.float32)
            inits[f"{name}_b"] = b.astype(np.float32)
            nodes.append(helper.make_node("Conv", [nd.inputs[0], f"{name}_W", f"{name}_b"], [conv_out], name=name,
                                          kernel_shape=[kh, kw], strides=[nd.stride, nd.stride],
                                          pads=[nd.pad] * 4, group=nd.groups))
            if nd.bn:
                nodes.append(helper.make_node("BatchNormalization", bn_inputs, [nd.output], name=f"{name}_bn",
                                              epsilon=1e-5))
        elif nd.op in ACTS:
            extra = {"alpha": LEAKY_ALPHA} if nd.op == "LeakyRelu" else {}
            nodes.append(helper.make_node(nd.op, [nd.inputs[0]], [nd.output], name=name, **extra))
        elif nd.op in ("add", "sub"):
            nodes.append(helper.make_node(nd.op.capitalize(), list(nd.inputs), [nd.output], name=name))
        elif nd.op == "flatten":
            nodes.append(helper.make_node("Flatten", [nd.inputs[0]], [nd.output], name=name, axis=1))
        elif nd.op == "maxpool":
            nodes.append(helper.make_node("MaxPool", [nd.inputs[0]], [nd.output], name=name, kernel_shape=[2, 2],
                                          strides=[2, 2]))
        else:
            raise AssertionError(nd.op)
    return make_model(nodes, [("x", ["N", *net.sample_shape])], [net.output], inits)


# ---------------------------------------------------------------------------------------------
# Test nets
# ---------------------------------------------------------------------------------------------

def _dense(rng: np.random.Generator, d: int, o: int, src: str, dst: str, style: str = "gemm",
           bias: float = 0.3) -> Node:
    return Node("dense", (src,), dst, W=rng.standard_normal((d, o)) / np.sqrt(d), b=bias * rng.standard_normal(o),
                style=style)


def _conv(rng: np.random.Generator, c: int, o: int, k: int, src: str, dst: str, stride: int = 1, pad: int = 1,
          groups: int = 1, bn: bool = False) -> Node:
    cg = c // groups
    return Node("conv", (src,), dst, W=rng.standard_normal((o, cg, k, k)) / np.sqrt(cg * k * k),
                b=0.2 * rng.standard_normal(o), stride=stride, pad=pad, groups=groups, bn=bn)


def build_net(name: str) -> Net:
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "mlp_relu2":        # 2 layers, Gemm
        return Net([_dense(rng, 6, 8, "x", "z1"), Node("Relu", ("z1",), "h1"), _dense(rng, 8, 3, "h1", "y")], (6,))
    if name == "mlp_relu3":        # 3 layers, MatMul + Add (fused by the importer) and Gemm transB=1
        return Net([_dense(rng, 7, 10, "x", "z1", "matmul_add"), Node("Relu", ("z1",), "h1"),
                    _dense(rng, 10, 9, "h1", "z2", "gemm_t"), Node("Relu", ("z2",), "h2"),
                    _dense(rng, 9, 4, "h2", "y", "matmul_add")], (7,))
    if name == "mlp_tanh_sigmoid":
        return Net([_dense(rng, 5, 8, "x", "z1", "gemm_t"), Node("Tanh", ("z1",), "h1"),
                    _dense(rng, 8, 6, "h1", "z2", "matmul_add"), Node("Sigmoid", ("z2",), "h2"),
                    _dense(rng, 6, 3, "h2", "y")], (5,))
    if name == "conv_relu":        # Conv + ReLU, Flatten + Gemm + ReLU, Gemm
        return Net([_conv(rng, 2, 3, 3, "x", "c1"), Node("Relu", ("c1",), "a1"), Node("flatten", ("a1",), "f"),
                    _dense(rng, 3 * 6 * 6, 8, "f", "z2"), Node("Relu", ("z2",), "h2"), _dense(rng, 8, 4, "h2", "y")],
                   (2, 6, 6))
    if name == "conv_tanh_stride":  # two convs (stride 2, no padding), Tanh and Sigmoid
        return Net([_conv(rng, 2, 4, 3, "x", "c1", stride=1, pad=1), Node("Tanh", ("c1",), "a1"),
                    _conv(rng, 4, 3, 3, "a1", "c2", stride=2, pad=0), Node("Relu", ("c2",), "a2"),
                    Node("flatten", ("a2",), "f"), _dense(rng, 3 * 3 * 3, 6, "f", "z3"), Node("Sigmoid", ("z3",), "h3"),
                    _dense(rng, 6, 3, "h3", "y")], (2, 7, 7))
    if name == "conv_maxpool":     # Conv -> MaxPool -> ReLU: that ReLU reads a max pooling, so Rescale there
        return Net([_conv(rng, 2, 3, 3, "x", "c1"), Node("maxpool", ("c1",), "p1"), Node("Relu", ("p1",), "a1"),
                    Node("flatten", ("a1",), "f"), _dense(rng, 3 * 3 * 3, 8, "f", "z2"), Node("Relu", ("z2",), "h2"),
                    _dense(rng, 8, 3, "h2", "y")], (2, 6, 6))
    if name == "conv_relu_maxpool":  # Conv -> ReLU (RevealCancel) -> MaxPool (cross-max) -> Gemm -> ReLU
        return Net([_conv(rng, 2, 3, 3, "x", "c1"), Node("Relu", ("c1",), "a1"), Node("maxpool", ("a1",), "p1"),
                    Node("flatten", ("p1",), "f"), _dense(rng, 3 * 3 * 3, 8, "f", "z2"), Node("Relu", ("z2",), "h2"),
                    _dense(rng, 8, 3, "h2", "y")], (2, 6, 6))
    if name == "residual_dense":   # h2 = ReLU(Gemm(h1) + h1): that ReLU reads an Add, so Rescale there
        return Net([_dense(rng, 6, 8, "x", "z1"), Node("Relu", ("z1",), "h1"), _dense(rng, 8, 8, "h1", "z2"),
                    Node("add", ("z2", "h1"), "s2"), Node("Relu", ("s2",), "h2"), _dense(rng, 8, 3, "h2", "y")], (6,))
    if name == "shared_preact":    # z1 read by a ReLU (RevealCancel) and by an Add (linear): both parts meet
        return Net([_dense(rng, 6, 8, "x", "z1"), Node("Relu", ("z1",), "h1"), _dense(rng, 8, 8, "h1", "z2"),
                    Node("add", ("z2", "z1"), "s2"), Node("Tanh", ("s2",), "h2"), _dense(rng, 8, 3, "h2", "y")], (6,))
    if name == "two_acts_one_preact":  # one Gemm read by a ReLU and a Sigmoid, both RevealCancel
        return Net([_dense(rng, 5, 8, "x", "z1"), Node("Relu", ("z1",), "h1"), Node("Sigmoid", ("z1",), "g1"),
                    Node("add", ("h1", "g1"), "s1"), _dense(rng, 8, 6, "s1", "z2"), Node("Relu", ("z2",), "h2"),
                    _dense(rng, 6, 3, "h2", "y")], (5,))
    if name == "other_acts":       # LeakyRelu, Elu, Softplus
        return Net([_dense(rng, 6, 9, "x", "z1"), Node("LeakyRelu", ("z1",), "h1"), _dense(rng, 9, 8, "h1", "z2"),
                    Node("Elu", ("z2",), "h2"), _dense(rng, 8, 7, "h2", "z3", "gemm_t"),
                    Node("Softplus", ("z3",), "h3"), _dense(rng, 7, 3, "h3", "y")], (6,))
    if name == "conv_groups_bn":   # grouped conv + ReLU; conv + BatchNormalization (folded) + ReLU
        return Net([_conv(rng, 4, 6, 3, "x", "c1", groups=2), Node("Relu", ("c1",), "a1"),
                    _conv(rng, 6, 4, 3, "a1", "c2", stride=2, bn=True), Node("Relu", ("c2",), "a2"),
                    Node("flatten", ("a2",), "f"), _dense(rng, 4 * 3 * 3, 6, "f", "z3"), Node("Relu", ("z3",), "h3"),
                    _dense(rng, 6, 3, "h3", "y")], (4, 6, 6))
    if name == "act_on_input_sigmoid_out":  # Tanh of the graph input (Rescale), ..., Sigmoid as the output
        return Net([Node("Tanh", ("x",), "t0"), _dense(rng, 6, 8, "t0", "z1"), Node("Relu", ("z1",), "h1"),
                    _dense(rng, 8, 3, "h1", "z2", bias=1.0), Node("Sigmoid", ("z2",), "y")], (6,))
    raise KeyError(name)


NETS = ["mlp_relu2", "mlp_relu3", "mlp_tanh_sigmoid", "conv_relu", "conv_tanh_stride", "conv_maxpool",
        "conv_relu_maxpool", "residual_dense", "shared_preact", "two_acts_one_preact", "other_acts",
        "conv_groups_bn", "act_on_input_sigmoid_out"]
REFS = ["zeros", "random_sample", "random_per_sample", "k_references"]


def make_inputs(net: Net, ref_kind: str, n: int = 4, seed: int = 7, k: int = 3) -> tuple[Array, Array | None]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *net.sample_shape)).astype(np.float32)
    if ref_kind == "zeros":
        return x, None
    if ref_kind == "random_sample":
        return x, (0.5 * rng.standard_normal(net.sample_shape)).astype(np.float32)
    if ref_kind == "random_per_sample":
        return x, (0.5 * rng.standard_normal(x.shape)).astype(np.float32)
    return x, (0.5 * rng.standard_normal((k, *net.sample_shape))).astype(np.float32)


def rel_err(got: Array, expected: Array) -> float:
    assert got.shape == expected.shape, f"shape {got.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(np.asarray(got, np.float64) - expected))) / scale


def explain(net: Net, method: str, x: Array, reference: Array | None, target: Sequence[int]) -> tuple[Array, Array]:
    model = ox.load(to_onnx(net))
    params = {} if reference is None else {"reference": reference}
    R, delta = ox.explainer(model, method, **params).explain(x, target=np.asarray(target), return_delta=True)
    return np.asarray(R), np.asarray(delta)


def _has_reveal_cancel() -> bool:
    return "deeplift.reveal_cancel" in ox.methods()


needs_rc = pytest.mark.skipif(not _has_reveal_cancel(), reason="deeplift.reveal_cancel not in this build")


# ---------------------------------------------------------------------------------------------
# The reference against itself (so that a wrong reference cannot pass quietly)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
def test_reference_sums_to_delta_and_matches_the_forward(name: str, rule: str) -> None:
    net = build_net(name)
    x, ref = make_inputs(net, "random_per_sample")
    assert ref is not None
    target = [0, 1, 2, 1]
    c, df = reference_contributions(net, x.astype(np.float64), ref.astype(np.float64), target, rule)
    sums = c.reshape(len(x), -1).sum(axis=1)
    assert np.max(np.abs(sums - df)) <= 1e-10 * max(1.0, float(np.max(np.abs(df))))
    # the forward of the interpreter is the ONNX model's (onnxplain matches onnxruntime elsewhere)
    fx = forward(net, x.astype(np.float64))[net.output]
    np.testing.assert_allclose(ox.load(to_onnx(net)).predict(x), fx, rtol=1e-5, atol=1e-5)


def test_reference_rescale_is_the_chain_rule_on_a_linear_piece() -> None:
    """On a ReLU net where x and ref share every ReLU's on/off state, Rescale and RevealCancel both
    equal the gradient times (x - ref): a check of the reference's multipliers independent of the sums."""
    net = build_net("mlp_relu2")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 6))
    ref = x + 1e-3 * rng.standard_normal((1, 6))
    z, zr = forward(net, x)["z1"], forward(net, ref)["z1"]
    assert np.all(np.sign(z) == np.sign(zr))
    w1, w2 = net.nodes[0].W, net.nodes[2].W
    assert w1 is not None and w2 is not None
    grad = (w1 * (z > 0)) @ w2[:, 1]
    for rule in ("rescale", "reveal_cancel"):
        c, _ = deeplift_reference(net, x, ref, [1], rule)
        np.testing.assert_allclose(c[0], grad * (x - ref)[0], rtol=1e-9, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# onnxplain against the reference
# ---------------------------------------------------------------------------------------------

def rescale_float32_error(net: Net, x: Array, reference: Array | None) -> float:
    """The relative float32 error of Rescale's m = dy/dz at a smooth nonlinearity (worst neuron):
    dy and dz are differences of float32 values, off by ~eps (|y| + |y_ref|) and ~eps (|z| + |z_ref|),
    so m is ill-conditioned where |dz| is small, unlike RevealCancel's m+- (every term that M+
    multiplies has the sign of dz+ and they sum to dz+, so m+ dz+ stays accurate). For ReLU the
    ratio is exactly 0 or 1 on either side of the kink: no such error."""
    refs = [np.zeros(net.sample_shape)] if reference is None else (
        [reference] if reference.shape == net.sample_shape else list(reference))
    worst = 0.0
    for r in refs:
        v = forward(net, x.astype(np.float64))
        vr = forward(net, np.broadcast_to(np.asarray(r, np.float64), x.shape))
        for nd in net.nodes:
            if nd.op not in ("Sigmoid", "Tanh", "Elu", "Softplus"):
                continue
            z, zr, y, yr = v[nd.inputs[0]], vr[nd.inputs[0]], v[nd.output], vr[nd.output]
            slope = np.maximum(ACTS[nd.op][1](z), 1e-3)
            dz = np.maximum(np.abs(z - zr), NEAR_ZERO)
            worst = max(worst, float(np.max(6e-8 * (np.abs(z) + np.abs(zr) + (np.abs(y) + np.abs(yr)) / slope) / dz)))
    return worst


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("ref_kind", REFS)
def test_rescale_equals_reference(name: str, ref_kind: str) -> None:
    net = build_net(name)
    x, ref = make_inputs(net, ref_kind)
    target = [0, 2, 1, 0]
    c, df = reference_contributions(net, x.astype(np.float64), None if ref is None else ref.astype(np.float64),
                                    target, "rescale")
    R, delta = explain(net, "deeplift.rescale", x, ref, target)
    err = rel_err(R, c)
    tol = 1e-5 + 2 * rescale_float32_error(net, x, ref)
    assert err <= tol, f"{name}/{ref_kind}: rescale differs from the reference by {err:.2e} of max|C| (tol {tol:.1e})"
    scale = float(np.max(np.abs(df)))
    assert float(np.max(np.abs(R.reshape(len(x), -1).sum(axis=1, dtype=np.float64) - df))) <= 1e-4 * scale
    assert float(np.max(np.abs(delta))) <= 1e-4 * scale


@needs_rc
@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("ref_kind", REFS)
def test_reveal_cancel_equals_reference(name: str, ref_kind: str) -> None:
    net = build_net(name)
    x, ref = make_inputs(net, ref_kind)
    target = [0, 2, 1, 0]
    c, _ = reference_contributions(net, x.astype(np.float64), None if ref is None else ref.astype(np.float64),
                                   target, "reveal_cancel")
    R, _ = explain(net, "deeplift.reveal_cancel", x, ref, target)
    err = rel_err(R, c)
    assert err <= 1e-5, f"{name}/{ref_kind}: reveal_cancel differs from the reference by {err:.2e} of max|C|"


@needs_rc
@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("ref_kind", REFS)
def test_reveal_cancel_summation_to_delta(name: str, ref_kind: str) -> None:
    net = build_net(name)
    x, ref = make_inputs(net, ref_kind)
    target = [1, 0, 2, 1]
    _, df = reference_contributions(net, x.astype(np.float64), None if ref is None else ref.astype(np.float64),
                                    target, "reveal_cancel")
    R, delta = explain(net, "deeplift.reveal_cancel", x, ref, target)
    scale = float(np.max(np.abs(df)))
    sums = R.reshape(len(x), -1).sum(axis=1, dtype=np.float64)
    err_sum = float(np.max(np.abs(sums - df))) / scale
    err_delta = float(np.max(np.abs(delta))) / scale
    assert err_sum <= 1e-4, f"sum of contributions misses f_t(x) - f_t(ref) by {err_sum:.2e} of max|df|"
    assert err_delta <= 1e-4, f"return_delta reports {err_delta:.2e} of max|df|"
    # and the reported delta is the one of these contributions
    np.testing.assert_allclose(delta, sums - df, rtol=0, atol=1e-4 * scale)


@needs_rc
@pytest.mark.parametrize("name", ["mlp_relu3", "mlp_tanh_sigmoid", "conv_relu"])
def test_reveal_cancel_is_not_rescale_when_signs_cancel(name: str) -> None:
    """The comparison above could not tell the two rules apart if they agreed on these nets."""
    net = build_net(name)
    x, ref = make_inputs(net, "random_sample")
    target = [0, 1, 2, 0]
    rc, _ = explain(net, "deeplift.reveal_cancel", x, ref, target)
    rs, _ = explain(net, "deeplift.rescale", x, ref, target)
    assert rel_err(rc, rs.astype(np.float64)) > 1e-2


@needs_rc
@pytest.mark.parametrize("name", ["mlp_relu3", "conv_relu"])
def test_zero_difference_inputs_take_the_positive_branch(name: str) -> None:
    """An input of a linear op with dx_i = 0 (a ReLU off for both x and ref) contributes nothing
    itself, but its multiplier reaches the inputs below it: under RevealCancel the ReLU under it can
    have m+- != 0 though dy = 0 (z0 < 0 < z0 + dz+), the lower contributions through it cancelling
    only in their sum. The contract treats dx_i = 0 as dx_i > 0; kundajelab/deeplift's Dense layer
    gives it 1/2 (M+ + M-). Both sum to the same delta, but the contributions differ by percents."""
    net = build_net(name)
    x, ref = make_inputs(net, "random_sample")
    target = [0, 2, 1, 0]
    x64, r64 = x.astype(np.float64), None if ref is None else ref.astype(np.float64)
    ours, df = reference_contributions(net, x64, r64, target, "reveal_cancel")
    avg, df2 = reference_contributions(net, x64, r64, target, "reveal_cancel", zero_branch="average")
    np.testing.assert_allclose(df2, df)
    np.testing.assert_allclose(avg.reshape(len(x), -1).sum(axis=1), df, rtol=1e-9, atol=1e-12)
    assert rel_err(avg, ours) > 1e-2  # the choice is visible in the contributions
    R, _ = explain(net, "deeplift.reveal_cancel", x, ref, target)
    assert rel_err(R, ours) <= 1e-5
    assert rel_err(R, avg) > 1e-2


@needs_rc
@pytest.mark.parametrize(("n", "k", "ref_kind"), [(1, 1, "k_references"), (1, 1, "random_per_sample"),
                                                  (11, 2, "k_references"), (11, 11, "random_per_sample"),
                                                  (9, 5, "k_references")])
def test_reveal_cancel_batch_and_references_split_over_passes(n: int, k: int, ref_kind: str) -> None:
    """Batches of (sample, reference) pairs larger than one stacked pass, one sample, one reference."""
    net = build_net("conv_relu")
    x, ref = make_inputs(net, ref_kind, n=n, k=k, seed=n + k)
    target = [int(t) for t in np.arange(n) % 4]
    assert ref is not None
    c, df = reference_contributions(net, x.astype(np.float64), ref.astype(np.float64), target, "reveal_cancel")
    R, delta = explain(net, "deeplift.reveal_cancel", x, ref, target)
    assert rel_err(R, c) <= 1e-5
    assert float(np.max(np.abs(delta))) <= 1e-4 * float(np.max(np.abs(df)))


@needs_rc
def test_reveal_cancel_threads_agree() -> None:
    net = build_net("conv_groups_bn")
    x, ref = make_inputs(net, "k_references", n=6)
    model = ox.load(to_onnx(net))
    ex = ox.explainer(model, "deeplift.reveal_cancel", reference=ref)
    r1 = np.asarray(ex.explain(x, target=1, threads=1), np.float64)
    r4 = np.asarray(ex.explain(x, target=1, threads=4), np.float64)
    assert rel_err(r4, r1) <= 1e-6


# ---------------------------------------------------------------------------------------------
# The paper's motivating example: min(i1, i2)
# ---------------------------------------------------------------------------------------------

def min_net_sequential() -> Net:
    """h = ReLU([i1, i1 - i2]); o = h1 - h2 = min(i1, i2) for i1 >= 0 (Gemm, Relu, Gemm)."""
    return Net([Node("dense", ("x",), "z", W=np.array([[1.0, 1.0], [0.0, -1.0]]), b=np.zeros(2)),
                Node("Relu", ("z",), "h"),
                Node("dense", ("h",), "o", W=np.array([[1.0], [-1.0]]), b=np.zeros(1))], (2,))


def min_net_skip() -> Net:
    """o = i1 - ReLU(i1 - i2) = min(i1, i2): MatMul picks i1, Gemm + Relu the hinge, Sub."""
    return Net([Node("dense", ("x",), "a", W=np.array([[1.0], [0.0]]), b=np.zeros(1), style="matmul"),
                Node("dense", ("x",), "z", W=np.array([[1.0], [-1.0]]), b=np.zeros(1)),
                Node("Relu", ("z",), "h"),
                Node("sub", ("a", "h"), "o")], (2,))


MIN_X = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 5.0], [4.0, 4.0], [0.5, 2.5]], np.float32)


@pytest.mark.parametrize("make", [min_net_sequential, min_net_skip])
def test_min_example_reference(make: Callable[[], Net]) -> None:
    """Shrikumar et al. 2017, Fig. 3: a ReLU network computing o = min(i1, i2), reference (0, 0).

    Where i1 > i2 the output is i2 and do/di1 = 0 (and do/di2 = 0 where i2 > i1), so the gradient,
    gradient x input and Rescale (here equal to gradient x input: every ReLU's input differs from its
    reference on one side of zero only) give all the credit to the smaller input and none to the
    other, though o depends on both ("importance assigned either exclusively to i1 or i2").
    RevealCancel splits the hinge's input i1 - i2 into dz+ and dz-, and gives each input
    0.5 min(i1, i2) (for positive inputs: the Shapley values of min against the zero reference).
    By hand, for the hinge h = ReLU(i1 - i2) with i1 > i2 > 0: dz+ = i1, dz- = -i2,
    dy+ = 1/2 [(i1 - 0) + ((i1 - i2) - 0)] = i1 - i2/2, dy- = 1/2 [0 + ((i1 - i2) - i1)] = -i2/2, so
    m+ = dy+/i1, m- = 1/2; o = i1 - h gives C(i1) = i1 - m+ i1 = i2/2 and C(i2) = -m- (-1) i2 = i2/2
    (and symmetrically i1/2 each where i2 > i1). Checked here on the numpy reference.
    """
    net = make()
    x = MIN_X.astype(np.float64)
    target = [0] * len(x)
    mn = np.minimum(x[:, 0], x[:, 1])
    one_side = np.where(x[:, :1] > x[:, 1:], [[0.0, 1.0]], [[1.0, 0.0]]) * mn[:, None]
    one_side[x[:, 0] == x[:, 1]] = np.nan  # a tie sits on the ReLU's kink: no claim about the gradient
    rs, df = reference_contributions(net, x, None, target, "rescale")
    np.testing.assert_allclose(df, mn, rtol=1e-12)
    ok = ~np.isnan(one_side[:, 0])
    np.testing.assert_allclose(rs[ok], one_side[ok], atol=1e-12)
    rc, _ = reference_contributions(net, x, None, target, "reveal_cancel")
    np.testing.assert_allclose(rc, 0.5 * np.stack([mn, mn], axis=1), rtol=1e-12, atol=1e-12)


@needs_rc
@pytest.mark.parametrize("make", [min_net_sequential, min_net_skip])
def test_min_example_onnxplain(make: Callable[[], Net]) -> None:
    """The same on onnxplain: gradient x input and Rescale give all of min(i1, i2) to the smaller
    input; RevealCancel gives each input half of it, as the paper says and as the reference does."""
    net = make()
    model = ox.load(to_onnx(net))
    x = MIN_X
    mn = np.minimum(x[:, 0], x[:, 1]).astype(np.float64)
    strict = x[:, 0] != x[:, 1]
    one_side = np.where(x[:, :1] > x[:, 1:], [[0.0, 1.0]], [[1.0, 0.0]]) * mn[:, None]
    grad = np.asarray(ox.explainer(model, "gradient").explain(x, target=0), np.float64)
    np.testing.assert_allclose((grad * x)[strict], one_side[strict], atol=1e-6)
    assert np.all(np.sum(grad[strict] == 0, axis=1) == 1)  # one input's gradient is exactly zero
    rs = np.asarray(ox.explainer(model, "deeplift.rescale").explain(x, target=0), np.float64)
    np.testing.assert_allclose(rs[strict], one_side[strict], atol=1e-6)
    rc, delta = ox.explainer(model, "deeplift.reveal_cancel").explain(x, target=0, return_delta=True)
    expected, _ = reference_contributions(net, x.astype(np.float64), None, [0] * len(x), "reveal_cancel")
    np.testing.assert_allclose(rc, 0.5 * np.stack([mn, mn], axis=1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rc, expected, rtol=1e-6, atol=1e-6)
    assert float(np.max(np.abs(delta))) <= 1e-5


# ---------------------------------------------------------------------------------------------
# No sign cancellation: RevealCancel is Rescale
# ---------------------------------------------------------------------------------------------

def positive_net(name: str) -> Net:
    """Every weight >= 0 (biases of either sign): with every input on one side of its reference,
    each neuron's input differences share one sign, dz- = 0 (or dz+ = 0) and dy+ = dy."""
    net = build_net(name)
    for nd in net.nodes:
        if nd.W is not None:
            nd.W = np.abs(nd.W)
    return net


@needs_rc
@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_reveal_cancel_equals_rescale_without_cancellation(name: str, sign: float) -> None:
    net = positive_net(name)
    rng = np.random.default_rng(11)
    ref = rng.standard_normal(net.sample_shape).astype(np.float32)
    x = (ref + sign * rng.uniform(0.1, 1.5, (3, *net.sample_shape))).astype(np.float32)
    target = [0, 1, 2]
    c_rs, _ = reference_contributions(net, x.astype(np.float64), ref.astype(np.float64), target, "rescale")
    c_rc, _ = reference_contributions(net, x.astype(np.float64), ref.astype(np.float64), target, "reveal_cancel")
    assert rel_err(c_rc, c_rs) <= 1e-9  # the reference agrees with itself
    rc, _ = explain(net, "deeplift.reveal_cancel", x, ref, target)
    rs, _ = explain(net, "deeplift.rescale", x, ref, target)
    err = rel_err(rc, rs.astype(np.float64))
    assert err <= 1e-5, f"reveal_cancel differs from rescale by {err:.2e} of max|C| without any cancellation"
    assert rel_err(rc, c_rc) <= 1e-5
