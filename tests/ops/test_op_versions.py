"""Opset awareness: each op states the ONNX versions it implements (cpp/src/ops/op_versions.inc),
checked against onnx's own schema registry; a node whose version in effect onnxplain does not
implement is refused with what to do; an op used at an opset before it existed is a format error;
`onnxplain inspect` shows the version each op runs under. Plus PRelu's pre-opset-7 per-channel slope."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx.defs
import pytest
from onnx import helper

import onnxplain as ox
from onnxplain.cli import main
from onnxplain.model import version_in_effect
from tests.helpers.onnx_builders import make_model, ort_run, single_node


def _onnx_since_versions(op: str) -> list[int]:
    return sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history()
                   if s.name == op and s.domain == "" and s.since_version <= ox.NEWEST_OPSET})


def test_every_supported_op_lists_exactly_onnx_since_versions() -> None:
    versions = ox.op_versions()
    assert set(versions) == set(ox.supported_ops())
    for op, (impl, miss, advice) in versions.items():
        assert not set(impl) & set(miss), op
        assert sorted(impl + miss) == _onnx_since_versions(op), op
        assert impl, op
        if miss:
            assert advice, op


def test_every_version_from_opset_7_on_is_implemented() -> None:
    # What the zoo ships spans opsets 3-12; older since-versions we refuse are listed, with advice.
    missing = {op: miss for op, (_, miss, _) in ox.op_versions().items() if miss}
    assert all(v < 7 for miss in missing.values() for v in miss), missing
    assert set(missing) == {"Split", "Tile", "Upsample"}


@pytest.mark.parametrize(("op", "opset", "expected"), [
    ("Conv", 13, 11), ("Conv", 22, 22), ("Conv", 1, 1), ("Clip", 10, 6), ("Clip", 12, 12),
    ("Softmax", 12, 11), ("Erf", 8, 0), ("Reshape", 4, 1), ("Reshape", 5, 5), ("Upsample", 8, 7),
])
def test_version_in_effect_matches_onnx(op: str, opset: int, expected: int) -> None:
    assert version_in_effect(op, opset) == expected
    if expected:
        assert onnx.defs.get_schema(op, opset, "").since_version == expected


def test_unimplemented_version_is_refused_with_advice() -> None:
    # Split-1 took the sizes as a second input; Split-2 made them an attribute.
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    data = make_model([helper.make_node("Split", ["x"], ["a", "b"], name="split_1", axis=1)],
                      [("x", [2, 6])], ["a", "b"], opset=1)
    with pytest.raises(ox.UnsupportedModelError, match=r"Split version 1 \(in effect at opset 1\).*opset 2"):
        ox.load(data, backend="onnxplain")
    ok = make_model([helper.make_node("Split", ["x"], ["a", "b"], name="split_2", axis=1)],
                    [("x", [2, 6])], ["a", "b"], opset=2)
    out = ox.load(ok, strip_softmax=False).run({"x": x})
    np.testing.assert_array_equal(np.concatenate(out, axis=1), x)


def test_op_before_it_existed_is_a_format_error() -> None:
    data = single_node("Erf", {"x": np.zeros((1, 3), np.float32)}, opset=8)
    with pytest.raises(ox.ModelFormatError, match=r"'erf_node'.*Erf does not exist at ai.onnx opset 8.*opset 9"):
        ox.load(data, backend="onnxplain")


def test_inspect_shows_each_ops_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "clip.onnx"
    good.write_bytes(single_node("Clip", {"x": np.zeros((1, 3), np.float32)}, opset=10, min=0.0, max=6.0))
    assert main(["inspect", str(good)]) == 0
    out = capsys.readouterr().out
    assert "Clip" in out and "supported (version 6)" in out
    old = tmp_path / "split1.onnx"
    old.write_bytes(make_model([helper.make_node("Split", ["x"], ["a", "b"], name="s", axis=1)],
                               [("x", [2, 6])], ["a", "b"], opset=1))
    assert main(["inspect", str(old)]) in (1, 2)  # 1 where onnxruntime runs opset 1, 2 where not
    out = capsys.readouterr().out
    assert "UNSUPPORTED version 1: Split-1 took the sizes" in out


def _prelu_model(opset: int, slope: np.ndarray, shape: tuple[int, ...]) -> bytes:
    return make_model([helper.make_node("PRelu", ["x", "s"], ["y"], name="prelu")], [("x", list(shape))], ["y"],
                      initializers={"s": slope}, opset=opset)


def test_prelu_before_opset_7_has_a_slope_per_channel() -> None:
    # PRelu-6's per-channel slope [C] (caffe2's exports); onnxruntime implements PRelu from opset 7
    # only, so the oracle is the definition: y = x for x > 0, slope[c] * x otherwise.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    s = np.array([0.1, -0.5, 2.0], np.float32)
    expected = np.where(x > 0, x, s[None, :, None, None] * x)
    m = ox.load(_prelu_model(6, s, x.shape), strip_softmax=False)
    np.testing.assert_allclose(m.predict(x), expected, rtol=1e-6)
    # The VJP: with the output flattened, the gradient of output t is 1 at t where x > 0 and
    # slope[c] there otherwise, 0 elsewhere.
    flat = make_model([helper.make_node("PRelu", ["x", "s"], ["p"], name="prelu"),
                       helper.make_node("Flatten", ["p"], ["y"], name="flat")],
                      [("x", list(x.shape))], ["y"], initializers={"s": s}, opset=6)
    targets = np.array([7, 41])
    grad = ox.explainer(ox.load(flat, strip_softmax=False), "gradient").explain(x, target=targets)
    want = np.zeros_like(x).reshape(2, -1)
    slope_of = np.broadcast_to(s[None, :, None, None], x.shape).reshape(2, -1)
    for i, t in enumerate(targets):
        want[i, t] = 1.0 if x.reshape(2, -1)[i, t] > 0 else slope_of[i, t]
    np.testing.assert_allclose(grad.reshape(2, -1), want, rtol=1e-6)


def test_prelu_from_opset_7_broadcasts_numpy_style() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    s = np.array([0.1, -0.5, 2.0], np.float32)  # [C] against the last axis (W = 3), as onnxruntime reads it
    data = _prelu_model(7, s, x.shape)
    np.testing.assert_allclose(ox.load(data, strip_softmax=False).predict(x), ort_run(data, {"x": x})[0], rtol=1e-6)
