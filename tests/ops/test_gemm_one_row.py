"""Gemm with one row (a dense layer at batch 1) runs through kernels/gemm.cpp's streaming one-row
kernel at every size: small and odd sizes, both transposes, alpha and beta, a bias broadcast or
full, 1 and 2 threads, against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import ort_run


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k,n", [(1, 1), (3, 5), (17, 33), (64, 10), (256, 128), (300, 257)])
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("alpha,beta,bias", [(1.0, 1.0, "row"), (0.5, 2.0, "full"), (1.0, 0.0, None)])
def test_one_row(threads, k, n, trans_a, trans_b, alpha, beta, bias):
    rng = np.random.default_rng(k * 1000 + n)
    a_shape = [k, 1] if trans_a else [1, k]
    w = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["a", "w"]
    if bias is not None:
        c = rng.standard_normal((n,) if bias == "row" else (1, n)).astype(np.float32)
        inits.append(numpy_helper.from_array(c, "c"))
        inputs.append("c")
    node = helper.make_node("Gemm", inputs, ["y"], alpha=alpha, beta=beta, transA=trans_a, transB=trans_b)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    a = rng.standard_normal(a_shape).astype(np.float32)
    expected = ort_run(data, {"a": a})[0]
    got = ox.load(data, strip_softmax=False).run({"a": a}, threads=threads)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
