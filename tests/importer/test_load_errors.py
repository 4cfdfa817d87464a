"""What a model that cannot be loaded raises: an inconsistent model is a ModelFormatError naming the
node (also a ValueError), a path that cannot be read is the OSError subclass naming it, and a model
from an opset or IR version newer than onnxplain knows is refused as onnxruntime refuses it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from onnxplain._native import core
from onnxplain.cli import main
from tests.helpers.onnx_builders import make_model, single_node


def _relu(opset: int | None = 13, ir_version: int = 8, domain: str = "") -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu_1", domain=domain)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[] if opset is None else [helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model.SerializeToString()


def _ort_refuses(data: bytes) -> bool:
    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - any refusal
        return True
    return False


# ---- inconsistent models ----------------------------------------------------------------------


def test_model_format_error_is_also_a_value_error() -> None:
    assert issubclass(ox.ModelFormatError, ox.OnnxplainError)
    assert issubclass(ox.ModelFormatError, ValueError)
    assert issubclass(ox.ShapeError, ValueError) and not issubclass(ox.ShapeError, ox.ModelFormatError)


def test_weight_that_contradicts_the_graph_is_model_format_error_naming_the_node() -> None:
    x = np.zeros((1, 4, 5, 5), np.float32)
    model = single_node("Conv", inputs={"x": x}, initializers={"w": np.zeros((3, 2, 3, 3), np.float32)})
    with pytest.raises(ox.ModelFormatError, match=r"node 'conv_node' \(Conv\).*W.shape\[1\] = 4, got 2") as e:
        ox.load(model)
    assert not isinstance(e.value, ox.ShapeError)
    with pytest.raises(ValueError, match="conv_node"):  # what code written for the old ShapeError caught
        ox.load(model)


def test_inconsistency_found_after_folding_is_model_format_error() -> None:
    # The Reshape's target is computed by constant folding (Shape of a weight); the Gemm that
    # follows does not fit it: found while loading, so the model is inconsistent.
    w = np.zeros((3, 5), np.float32)
    nodes = [
        helper.make_node("Shape", ["w"], ["s"], name="shape_w"),
        helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape_x"),
        helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc"),
    ]
    model = make_model(nodes, [("x", [3, 5])], ["y"], {"w": w, "w2": np.zeros((4, 2), np.float32)})
    with pytest.raises(ox.ModelFormatError, match=r"node 'fc' \(Gemm\)"):
        ox.load(model)


def test_wrong_input_at_run_time_stays_shape_error() -> None:
    # Shapes known only when running: the model is fine, the batch is not.
    node = helper.make_node("Gemm", ["a", "b"], ["y"], name="fc_dyn")
    model = make_model([node], [("a", ["m", "k"]), ("b", ["k2", "n"])], ["y"])
    m = ox.load(model)
    with pytest.raises(ox.ShapeError, match=r"fc_dyn") as e:
        m.predict({"a": np.ones((2, 3), np.float32), "b": np.ones((4, 4), np.float32)})
    assert not isinstance(e.value, ox.ModelFormatError)


def test_core_from_bytes_and_from_file_convert_too(tmp_path: Path) -> None:
    x = np.zeros((1, 3), np.float32)
    model = single_node("Gemm", inputs={"a": x}, initializers={"b": np.zeros((4, 2), np.float32)})
    with pytest.raises(core.ModelFormatError, match="gemm_node"):
        core.Model.from_bytes(model)
    path = tmp_path / "bad.onnx"
    path.write_bytes(model)
    with pytest.raises(core.ModelFormatError, match="gemm_node"):
        core.Model.from_file(str(path))


# ---- paths that cannot be read -----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.onnx"
    for backend in ("auto", "onnxruntime"):
        with pytest.raises(FileNotFoundError, match="nope.onnx") as e:
            ox.load(path, backend=backend)
        assert e.value.filename == str(path)
    with pytest.raises(FileNotFoundError) as e:
        core.Model.from_file(str(path))
    assert e.value.filename == str(path)


def test_directory(tmp_path: Path) -> None:
    for backend in ("auto", "onnxplain", "onnxruntime"):
        with pytest.raises(IsADirectoryError, match="Is a directory") as e:
            ox.load(tmp_path, backend=backend)
        assert e.value.filename == str(tmp_path)
    with pytest.raises(IsADirectoryError) as e:
        core.Model.from_file(str(tmp_path))
    assert e.value.filename == str(tmp_path) and not isinstance(e.value, ox.OnnxplainError)
    with pytest.raises(IsADirectoryError):
        ox.load_explainer(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.onnx"
    path.write_bytes(_relu())
    path.chmod(0)
    try:
        with pytest.raises(PermissionError, match="secret.onnx"):
            ox.load(path)
        with pytest.raises(PermissionError):
            core.Model.from_file(str(path))
    finally:
        path.chmod(0o600)


def test_cli_inspect_of_a_directory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path)]) == 2
    assert "Is a directory" in capsys.readouterr().err


# ---- opsets and IR versions ---------------------------------------------------------------------


def test_newest_opset_is_the_newest_onnx_and_onnxruntime_know() -> None:
    # The bound is what the ops were checked against (ONNX 1.23); the installed onnx and
    # onnxruntime must not be older than it, or the tests below compare against a different bound.
    assert ox.NEWEST_OPSET == 28 and ox.NEWEST_IR_VERSION == 14
    assert onnx.defs.onnx_opset_version() >= ox.NEWEST_OPSET
    assert not _ort_refuses(_relu(opset=ox.NEWEST_OPSET, ir_version=ox.NEWEST_IR_VERSION))


def test_every_supported_op_has_no_schema_change_after_the_checked_ones() -> None:
    # An op whose definition changed after opset 22 only adds element types; a newer ONNX that
    # changes one of ours must raise NEWEST_OPSET deliberately, not by accident.
    types_only_after_22 = {
        "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Pad", "Identity", "Constant", "Shape",
        "Cast", "CastLike", "ConstantOfShape",
    }
    for op in ox.supported_ops():
        try:
            newest = onnx.defs.get_schema(op, ox.NEWEST_OPSET, "")
        except onnx.defs.SchemaError:
            continue
        if newest.since_version <= 22:
            continue
        assert op in types_only_after_22, f"{op} changed in opset {newest.since_version}: check it"
        base = onnx.defs.get_schema(op, 22, "")
        # Cast-24 and CastLike-24: round_mode applies to casts to float8e8m0 only, a type onnxplain refuses.
        allowed = {"round_mode"} if op in ("Cast", "CastLike") else set()
        added = set(newest.attributes) - set(base.attributes) - allowed
        assert not added and set(base.attributes) <= set(newest.attributes), op
        assert [i.name for i in newest.inputs] == [i.name for i in base.inputs], op


@pytest.mark.parametrize("opset", [7, 13, 17, 21, 28])
def test_known_opsets_load(opset: int) -> None:
    m = ox.load(_relu(opset=opset, ir_version=7 if opset < 13 else 8))
    x = np.array([[-1, 0, 2], [3, -4, 5]], np.float32)
    np.testing.assert_array_equal(m.predict(x), np.maximum(x, 0))


@pytest.mark.parametrize("opset", [29, 40])
def test_opset_newer_than_known_is_refused(opset: int) -> None:
    data = _relu(opset=opset)
    assert _ort_refuses(data)  # onnxruntime 1.32 refuses it as well, less clearly
    with pytest.raises(ox.ModelFormatError,
                       match=rf"ai.onnx opset {opset}, newer than the newest onnxplain knows \(opset 28\); "
                             r"re-export it with opset 28 or lower"):
        ox.load(data)


def test_opset_newer_than_known_through_the_ai_onnx_alias() -> None:
    m = onnx.load_from_string(_relu())
    m.opset_import[0].domain = "ai.onnx"
    m.opset_import[0].version = 30
    with pytest.raises(ox.ModelFormatError, match="opset 30"):
        ox.load(m.SerializeToString())


def test_no_default_opset_import_is_refused() -> None:
    data = _relu(opset=None)
    assert _ort_refuses(data)
    with pytest.raises(ox.ModelFormatError, match=r"node 'relu_1' \(Relu\).*imports no ai.onnx opset"):
        ox.load(data)


def test_only_other_domains_need_no_default_opset_import() -> None:
    # A graph of ai.onnx.ml ops only: no ai.onnx import needed; the engine lacks the op (so the
    # error lists it) instead of refusing the file.
    graph = helper.make_graph(
        [helper.make_node("Normalizer", ["x"], ["y"], name="norm", domain="ai.onnx.ml", norm="L2")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    with pytest.raises(ox.UnsupportedModelError, match="Normalizer"):
        ox.load(model.SerializeToString(), backend="onnxplain")


def test_invalid_opset_version() -> None:
    with pytest.raises(ox.ModelFormatError, match="opset 0, which is not an opset version"):
        ox.load(_relu(opset=0))


@pytest.mark.parametrize("ir_version", [15, 100])
def test_ir_version_newer_than_known_is_refused(ir_version: int) -> None:
    data = _relu(ir_version=ir_version)
    assert _ort_refuses(data)
    with pytest.raises(ox.ModelFormatError,
                       match=rf"ir_version is {ir_version}, newer than onnxplain reads \(up to 14"):
        ox.load(data)
    assert ox.load(_relu(ir_version=14)).predict(np.ones((2, 3), np.float32)).shape == (2, 3)


def test_weights_from_an_ir3_model_still_load() -> None:
    # IR 3 (opset 7 era): initializers are also listed as graph inputs.
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)])
    model.ir_version = 3
    m = ox.load(model.SerializeToString())
    np.testing.assert_allclose(m.predict(np.ones((1, 3), np.float32)), np.ones((1, 3)) @ w)


def test_cli_inspect_prints_the_opsets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = tmp_path / "relu.onnx"
    ok.write_bytes(_relu(opset=13))
    assert main(["inspect", str(ok)]) == 0
    out = capsys.readouterr().out
    assert "opsets: ai.onnx 13   ir_version: 8" in out and "up to 28" in out
    # The onnxruntime-backed path (an op the engine lacks) prints them too.
    shrink = tmp_path / "shrink.onnx"
    shrink.write_bytes(make_model([helper.make_node("Shrink", ["x"], ["y"], name="s")], [("x", [1, 3])], ["y"],
                                  opset=11))
    assert main(["inspect", str(shrink)]) == 1
    out = capsys.readouterr().out
    assert "opsets: ai.onnx 11" in out and "Shrink" in out
    new = tmp_path / "new.onnx"
    new.write_bytes(_relu(opset=29))
    assert main(["inspect", str(new)]) == 2
    err = capsys.readouterr().err
    assert "newer than the newest onnxplain knows" in err and "opsets: ai.onnx 29" in err
