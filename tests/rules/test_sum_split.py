"""The proportional rules on sums (rules/lrp.cpp, `proportional`): terms of the output's own shape
take x_i ⊙ sign_i ⊙ R / stab(y) in one pass (Op::sum_sign), other terms (broadcast ones) go through
the op's VJP. Checked against a numpy re-implementation of ε-LRP (Bach et al. 2015; Zennit's
Epsilon on linear layers, its Norm rule on sums) on a graph with Add, Sub, a three-term Sum, a
broadcast Add of a graph input and a term used twice, at 1 and 2 threads and with sizes that leave
a remainder after the one-pass loop's blocks of 1024."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox

EPS = 1e-6


def _graph(d: int, h: int, k: int, rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    p = {f"W{i}": rng.standard_normal((h, d)).astype(np.float32) / np.sqrt(d) for i in range(3)}
    p.update({f"b{i}": rng.standard_normal(h).astype(np.float32) * 0.1 for i in range(3)})
    p["Wo"] = rng.standard_normal((k, h)).astype(np.float32) / np.sqrt(h)
    p["bo"] = rng.standard_normal(k).astype(np.float32) * 0.1
    nodes = [helper.make_node("Gemm", ["x", f"W{i}", f"b{i}"], [f"h{i}"], transB=1) for i in range(3)]
    nodes += [
        helper.make_node("Sub", ["h0", "h1"], ["s1"]),
        helper.make_node("Sum", ["s1", "h2", "h1"], ["s2"]),
        helper.make_node("Add", ["s2", "h0"], ["s3"]),           # h0 read a second time
        helper.make_node("Add", ["s3", "c"], ["s4"]),            # c [1, h]: broadcast, through the VJP
        helper.make_node("Gemm", ["s4", "Wo", "bo"], ["y"], transB=1),
    ]
    inits = [numpy_helper.from_array(v, n) for n, v in p.items()]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", d]),
                                       helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, h])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", k])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString(), p


def _stab(z: np.ndarray) -> np.ndarray:
    return z + np.where(z >= 0, EPS, -EPS)


def _reference(x: np.ndarray, c: np.ndarray, p: dict[str, np.ndarray], target: np.ndarray):
    x, c = x.astype(np.float64), c.astype(np.float64)
    q = {n: v.astype(np.float64) for n, v in p.items()}
    h = [x @ q[f"W{i}"].T + q[f"b{i}"] for i in range(3)]
    s1 = h[0] - h[1]
    s2 = s1 + h[2] + h[1]
    s3 = s2 + h[0]
    s4 = s3 + c
    y = s4 @ q["Wo"].T + q["bo"]
    r_y = np.zeros_like(y)
    rows = np.arange(len(y))
    r_y[rows, target] = y[rows, target]  # the relevance that starts the sweep: the target's output
    r_s4 = s4 * ((r_y / _stab(y)) @ q["Wo"])
    t = r_s4 / _stab(s4)
    r_s3, r_c = s3 * t, c * t.sum(axis=0, keepdims=True)
    t = r_s3 / _stab(s3)
    r_s2, r_h0 = s2 * t, h[0] * t
    t = r_s2 / _stab(s2)
    r_s1, r_h2, r_h1 = s1 * t, h[2] * t, h[1] * t
    t = r_s1 / _stab(s1)
    r_h0, r_h1 = r_h0 + h[0] * t, r_h1 - h[1] * t
    r_x = sum(x * ((r / _stab(hh)) @ q[f"W{i}"]) for i, (r, hh) in enumerate(zip([r_h0, r_h1, r_h2], h)))
    return r_x, r_c


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("n", "h"), [(3, 7), (5, 700), (2, 2100)])
def test_epsilon_on_sums_matches_numpy(n: int, h: int, threads: int) -> None:
    rng = np.random.default_rng(n * 1000 + h)
    model, params = _graph(6, h, 4, rng)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    c = rng.standard_normal((1, h)).astype(np.float32)
    target = rng.integers(0, 4, n)
    m = ox.load(model, strip_softmax=False, threads=threads)
    ex = ox.explainer(m, "lrp.epsilon", epsilon=EPS)
    got = ex.explain({"x": x, "c": c}, target=target)
    want_x, want_c = _reference(x, c, params, target)
    got_x, got_c = (got["x"], got["c"]) if isinstance(got, dict) else got
    np.testing.assert_allclose(got_x, want_x, rtol=2e-4, atol=2e-5 * np.abs(want_x).max())
    np.testing.assert_allclose(got_c, want_c, rtol=2e-4, atol=2e-5 * np.abs(want_c).max())
