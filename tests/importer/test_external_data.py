"""External tensor data: loaded from the model's folder, and only from there. Locations that are
absolute, contain "..", or resolve (through symlinks) outside the folder are refused before any
file outside is opened; sizes and offsets are checked against the file and the tensor's shape."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxplain as ox
from tests.helpers.onnx_builders import assert_close

W = np.arange(-6, 6, dtype=np.float32).reshape(4, 3) / 4
B = np.array([0.5, -1.0, 2.0], np.float32)


def _build(folder: Path) -> Path:
    """m.onnx + weights.bin in `folder`: y = Relu(x @ W + B), both initializers external."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "B"], ["a"], name="add"),
            helper.make_node("Relu", ["a"], ["y"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "m.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return path


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return _build(tmp_path / "model")


def _patch(path: Path, tensor: str, remove: tuple[str, ...] = (), **entries: str) -> None:
    """Rewrites the external_data entries of one initializer (the data file is left alone)."""
    m = onnx.load(str(path), load_external_data=False)
    t = next(t for t in m.graph.initializer if t.name == tensor)
    kv = {e.key: e.value for e in t.external_data}
    kv.update(entries)
    for k in remove:
        kv.pop(k, None)
    del t.external_data[:]
    for k, v in kv.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    path.write_bytes(m.SerializeToString())


def _refused(path, *fragments: str) -> str:
    with pytest.raises(ox.ModelFormatError) as e:
        ox.load(path)
    msg = str(e.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in error message: {msg}"
    return msg


def _x() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)


def test_external_data_file_is_inside_tmp_path(model_path):
    m = onnx.load(str(model_path), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in m.graph.initializer)
    assert (model_path.parent / "weights.bin").is_file()


@pytest.mark.parametrize("as_str", [False, True], ids=["pathlib", "str"])
def test_load_by_path_matches_onnxruntime(model_path, as_str):
    m = ox.load(str(model_path) if as_str else model_path)
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    x = _x()
    assert_close(m.predict(x), sess.run(None, {"x": x})[0])
    np.testing.assert_allclose(m.predict(x), np.maximum(x @ W + B, 0), rtol=1e-5, atol=1e-6)


def test_relative_model_path(model_path, monkeypatch):
    monkeypatch.chdir(model_path.parent)
    m = ox.load("m.onnx")
    np.testing.assert_allclose(m.predict(_x()), np.maximum(_x() @ W + B, 0), rtol=1e-5, atol=1e-6)
    monkeypatch.chdir(model_path.parent.parent)
    m = ox.load(os.path.join("model", "m.onnx"))
    np.testing.assert_allclose(m.predict(_x()), np.maximum(_x() @ W + B, 0), rtol=1e-5, atol=1e-6)


def test_model_folder_reached_through_a_symlink(model_path, tmp_path):
    link = tmp_path / "link_to_model"
    os.symlink(model_path.parent, link)
    m = ox.load(link / "m.onnx")
    np.testing.assert_allclose(m.predict(_x()), np.maximum(_x() @ W + B, 0), rtol=1e-5, atol=1e-6)


def test_symlink_inside_the_folder_to_a_file_inside_is_allowed(model_path):
    os.symlink("weights.bin", model_path.parent / "alias.bin")
    _patch(model_path, "W", location="alias.bin")
    _patch(model_path, "B", location="./alias.bin")
    np.testing.assert_allclose(ox.load(model_path).predict(_x()), np.maximum(_x() @ W + B, 0), rtol=1e-5)


def test_data_in_a_subfolder_is_allowed(model_path):
    sub = model_path.parent / "sub"
    sub.mkdir()
    shutil.copy(model_path.parent / "weights.bin", sub / "w.bin")
    _patch(model_path, "W", location="sub/w.bin")
    np.testing.assert_allclose(ox.load(model_path).predict(_x()), np.maximum(_x() @ W + B, 0), rtol=1e-5)


def test_loading_from_bytes_says_to_load_from_the_path(model_path):
    with pytest.raises(ox.ModelFormatError) as e:
        ox.load(model_path.read_bytes())
    msg = str(e.value)
    assert "tensor 'W'" in msg and "weights.bin" in msg
    assert "load the model from its file path" in msg


# ---- locations that escape the folder ----------------------------------------------------------------


def _outside_copy(model_path: Path) -> Path:
    """A file outside the model's folder holding exactly the right bytes: refusing it must not
    depend on its content being wrong."""
    outside = model_path.parent.parent / "outside.bin"
    shutil.copy(model_path.parent / "weights.bin", outside)
    return outside


def test_absolute_location_refused(model_path):
    outside = _outside_copy(model_path)
    _patch(model_path, "W", location=str(outside))
    _refused(model_path, "tensor 'W'", "is absolute", str(outside))


def test_absolute_location_inside_the_folder_also_refused(model_path):
    _patch(model_path, "W", location=str(model_path.parent / "weights.bin"))
    _refused(model_path, "tensor 'W'", "is absolute")


@pytest.mark.parametrize(
    "loc", ["../outside.bin", "sub/../../outside.bin", "sub/../weights.bin", "..\\outside.bin", "./../outside.bin"]
)
def test_dotdot_location_refused(model_path, loc):
    _outside_copy(model_path)
    (model_path.parent / "sub").mkdir()
    _patch(model_path, "W", location=loc)
    _refused(model_path, "tensor 'W'", "contains '..'", loc)


def test_symlink_to_a_file_outside_refused(model_path):
    outside = _outside_copy(model_path)
    os.symlink(outside, model_path.parent / "innocent.bin")
    _patch(model_path, "W", location="innocent.bin")
    _refused(model_path, "tensor 'W'", "innocent.bin", "outside the model's folder")


def test_relative_symlink_to_a_file_outside_refused(model_path):
    _outside_copy(model_path)
    os.symlink("../outside.bin", model_path.parent / "innocent.bin")
    _patch(model_path, "B", location="innocent.bin")
    _refused(model_path, "tensor 'B'", "outside the model's folder")


def test_symlinked_directory_pointing_outside_refused(model_path):
    outdir = model_path.parent.parent / "elsewhere"
    outdir.mkdir()
    shutil.copy(model_path.parent / "weights.bin", outdir / "weights.bin")
    os.symlink(outdir, model_path.parent / "data")
    _patch(model_path, "W", location="data/weights.bin")
    _refused(model_path, "tensor 'W'", "outside the model's folder")


def test_symlink_to_a_system_file_refused(model_path):
    os.symlink("/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd", model_path.parent / "x.bin")
    _patch(model_path, "B", location="x.bin")
    _refused(model_path, "tensor 'B'", "outside the model's folder")


def _assert_fifo_never_opened(fifo: Path, model_path: Path, *fragments: str) -> None:
    """Loads in a thread: opening a FIFO for reading blocks until a writer appears, so an importer
    that opened it would hang. Refusal must come first; then no reader may hold the FIFO."""
    result: dict[str, BaseException] = {}

    def load() -> None:
        try:
            ox.load(model_path)
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            result["error"] = e

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # it opened the FIFO: unblock it, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)
        pytest.fail("the importer opened a FIFO it should have refused")
    with pytest.raises(OSError):  # ENXIO: nobody has the FIFO open for reading
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    err = result.get("error")
    assert isinstance(err, ox.ModelFormatError), repr(err)
    for f in fragments:
        assert f in str(err), str(err)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_symlink_to_an_outside_fifo_is_never_opened(model_path):
    fifo = model_path.parent.parent / "outside.fifo"
    os.mkfifo(fifo)
    os.symlink(fifo, model_path.parent / "pipe.bin")
    _patch(model_path, "W", location="pipe.bin")
    _assert_fifo_never_opened(fifo, model_path, "tensor 'W'", "outside the model's folder")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_inside_the_folder_is_refused_without_blocking(model_path):
    fifo = model_path.parent / "pipe.bin"
    os.mkfifo(fifo)
    _patch(model_path, "W", location="pipe.bin")
    _assert_fifo_never_opened(fifo, model_path, "tensor 'W'", "not a regular file")


def test_directory_as_location_refused(model_path):
    (model_path.parent / "adir").mkdir()
    _patch(model_path, "W", location="adir")
    _refused(model_path, "tensor 'W'", "'adir'", "not a regular file")


# ---- missing files, bad offsets and lengths ------------------------------------------------------------


def test_missing_file(model_path):
    _patch(model_path, "W", location="gone.bin")
    _refused(model_path, "tensor 'W'", "'gone.bin'", "not found")


def test_data_file_deleted(model_path):
    (model_path.parent / "weights.bin").unlink()
    _refused(model_path, "'weights.bin'", "not found")


def test_no_location(model_path):
    _patch(model_path, "W", remove=("location",))
    _refused(model_path, "tensor 'W'", "has no location")


def test_offset_beyond_file_size(model_path):
    size = (model_path.parent / "weights.bin").stat().st_size
    _patch(model_path, "W", offset=str(size + 100))
    _refused(model_path, "tensor 'W'", f"has only {size} bytes")


def test_offset_plus_length_beyond_file_size(model_path):
    size = (model_path.parent / "weights.bin").stat().st_size
    _patch(model_path, "W", offset=str(size - 8))
    _refused(model_path, "tensor 'W'", f"has only {size} bytes")


def test_huge_offset_does_not_overflow(model_path):
    _patch(model_path, "W", offset=str(2**64 - 8))
    _refused(model_path, "tensor 'W'", "offset")


@pytest.mark.parametrize("length", ["0", "44", "52", "4096"])
def test_length_not_matching_the_shape(model_path, length):
    _patch(model_path, "W", length=length)
    _refused(model_path, "tensor 'W'", f"length {length} does not match the 48 bytes its shape needs")


@pytest.mark.parametrize(
    "key,value",
    [("offset", "-4"), ("offset", "12abc"), ("length", "0x30"), ("length", ""), ("offset", "99999999999999999999999")],
)
def test_non_numeric_offset_or_length(model_path, key, value):
    _patch(model_path, "W", **{key: value})
    _refused(model_path, "tensor 'W'", f"external data {key}", "is not a number")


def test_file_truncated_after_saving(model_path):
    data = model_path.parent / "weights.bin"
    data.write_bytes(data.read_bytes()[:20])
    _refused(model_path, "has only 20 bytes")


def test_without_length_key_the_shape_decides(model_path):
    _patch(model_path, "W", remove=("length",))
    _patch(model_path, "B", remove=("length",))
    np.testing.assert_allclose(ox.load(model_path).predict(_x()), np.maximum(_x() @ W + B, 0), rtol=1e-5)


def test_unused_keys_are_ignored(model_path):
    _patch(model_path, "W", checksum="deadbeef")
    ox.load(model_path)
