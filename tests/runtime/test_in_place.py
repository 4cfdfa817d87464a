"""Unary element-wise ops run over their input's buffer in a plain forward pass
(Op::forward_in_place, Model::in_place) only where nothing else can see that buffer: never over
the caller's input array, a constant, a value another node still reads, or a graph output. Each
graph is checked against onnxruntime, and the caller's array must be unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import ort_run


def _graph(nodes, outputs, inits=()):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 5, 5])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


W = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
C = numpy_helper.from_array(np.linspace(-1, 1, 100, dtype=np.float32).reshape(4, 5, 5), "c")

CASES = {
    # Relu straight on the caller's input.
    "input": (_graph([helper.make_node("Relu", ["x"], ["y"])], ["y"]), ["y"]),
    # The conv output is read by Relu and by Add after it: Relu must not overwrite it.
    "two_readers": (_graph([helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
                            helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Add", ["a", "r"], ["y"])],
                           ["y"], [W]), ["y"]),
    # The conv output is itself a graph output.
    "graph_output": (_graph([helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
                             helper.make_node("Relu", ["a"], ["y"])], ["y", "a"], [W]), ["y", "a"]),
    # Relu on a constant (folded at load or run): the constant must stay as it was.
    "constant": (_graph([helper.make_node("Relu", ["c"], ["rc"]), helper.make_node("Add", ["x", "rc"], ["s"]),
                         helper.make_node("Add", ["s", "c"], ["y"])], ["y"], [C]), ["y"]),
    # A chain where in place applies: conv -> relu -> relu.
    "chain": (_graph([helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
                      helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Relu", ["r"], ["y"])], ["y"], [W]),
              ["y"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("threads", [1, 2])
def test_in_place_matches_onnxruntime(case: str, threads: int) -> None:
    data, outs = CASES[case]
    x = np.random.default_rng(1).standard_normal((3, 4, 5, 5)).astype(np.float32)
    x_copy = x.copy()
    expected = ort_run(data, {"x": x})
    model = ox.load(data, strip_softmax=False)
    for _ in range(2):
        got = model.run({"x": x}, threads=threads)
        assert len(got) == len(outs)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
        np.testing.assert_array_equal(x, x_copy)
