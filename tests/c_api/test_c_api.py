"""The C API (include/onnxplain/onnxplain.h) through ctypes: results equal Python's bit for bit,
every error path returns its status and a message, explainers saved from C load in Python and back,
and one model handle explains from 8 threads at once."""

from __future__ import annotations

import ctypes as C
import threading
from pathlib import Path

import numpy as np
import pytest

import onnxplain as ox
from onnxplain._native import core
from onnxplain.demo import MODEL_PATH, load_samples

OK, INVALID, FORMAT, UNSUPPORTED, SHAPE, IO = 0, 1, 2, 3, 4, 5
F32P = C.POINTER(C.c_float)
I64P = C.POINTER(C.c_int64)


class LoadOptions(C.Structure):
    _fields_ = [("strip_softmax", C.c_int), ("fold_batch_norm", C.c_int), ("winograd", C.c_int),
                ("threads", C.c_int)]


def _lib() -> C.CDLL:
    lib = C.CDLL(str(Path(core.__file__).parent / "libonnxplain_core.so"))
    vp = C.c_void_p
    sigs = {
        "onnxplain_version": (C.c_char_p, []),
        "onnxplain_last_error": (C.c_char_p, []),
        "onnxplain_last_status": (C.c_int, []),
        "onnxplain_status_name": (C.c_char_p, [C.c_int]),
        "onnxplain_tensor_rank": (C.c_size_t, [vp]),
        "onnxplain_tensor_shape": (I64P, [vp]),
        "onnxplain_tensor_size": (C.c_size_t, [vp]),
        "onnxplain_tensor_data": (F32P, [vp]),
        "onnxplain_tensor_free": (None, [vp]),
        "onnxplain_load_options_init": (None, [C.POINTER(LoadOptions)]),
        "onnxplain_model_load": (C.c_int, [C.c_char_p, C.POINTER(LoadOptions), C.POINTER(vp)]),
        "onnxplain_model_load_bytes": (C.c_int, [C.c_char_p, C.c_size_t, C.POINTER(LoadOptions), C.POINTER(vp)]),
        "onnxplain_model_free": (None, [vp]),
        "onnxplain_model_num_inputs": (C.c_size_t, [vp]),
        "onnxplain_model_input_shape": (C.c_int, [vp, C.c_size_t, I64P, C.c_size_t, C.POINTER(C.c_size_t)]),
        "onnxplain_model_run": (C.c_int, [vp, F32P, I64P, C.c_size_t, C.c_int, C.POINTER(vp)]),
        "onnxplain_params_create": (C.c_int, [C.POINTER(vp)]),
        "onnxplain_params_set_number": (C.c_int, [vp, C.c_char_p, C.c_double]),
        "onnxplain_params_set_string": (C.c_int, [vp, C.c_char_p, C.c_char_p]),
        "onnxplain_params_set_array": (C.c_int, [vp, C.c_char_p, F32P, I64P, C.c_size_t]),
        "onnxplain_params_free": (None, [vp]),
        "onnxplain_explainer_create": (C.c_int, [vp, C.c_char_p, vp, C.POINTER(vp)]),
        "onnxplain_explainer_free": (None, [vp]),
        "onnxplain_explain": (C.c_int, [vp, F32P, I64P, C.c_size_t, I64P, C.c_size_t, C.c_int, C.POINTER(vp), F32P]),
        "onnxplain_explainer_fit": (C.c_int, [vp, F32P, I64P, C.c_size_t, C.c_int]),
        "onnxplain_explainer_save": (C.c_int, [vp, C.c_char_p]),
        "onnxplain_explainer_load": (C.c_int, [C.c_char_p, C.c_int, C.POINTER(vp)]),
        "onnxplain_method_count": (C.c_size_t, []),
        "onnxplain_method_name": (C.c_char_p, [C.c_size_t]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


LIB = _lib()


def _shape(a: np.ndarray) -> C.Array:
    return (C.c_int64 * a.ndim)(*a.shape)


def _f32(a: np.ndarray) -> C._Pointer:
    return a.ctypes.data_as(F32P)


def _take(t: C.c_void_p) -> np.ndarray:
    rank = LIB.onnxplain_tensor_rank(t)
    shape = tuple(LIB.onnxplain_tensor_shape(t)[i] for i in range(rank))
    n = LIB.onnxplain_tensor_size(t)
    out = np.ctypeslib.as_array(LIB.onnxplain_tensor_data(t), shape=(n,)).copy().reshape(shape) if n else \
        np.zeros(shape, np.float32)
    LIB.onnxplain_tensor_free(t)
    return out


def _error() -> str:
    return LIB.onnxplain_last_error().decode()


def _model(path: Path = MODEL_PATH, threads: int = 2) -> C.c_void_p:
    opts = LoadOptions()
    LIB.onnxplain_load_options_init(C.byref(opts))
    opts.threads = threads
    h = C.c_void_p()
    assert LIB.onnxplain_model_load(str(path).encode(), C.byref(opts), C.byref(h)) == OK, _error()
    return h


def _explainer(model: C.c_void_p, method: str, /, **params: float | str) -> C.c_void_p:
    p = C.c_void_p()
    assert LIB.onnxplain_params_create(C.byref(p)) == OK
    for k, v in params.items():
        if isinstance(v, str):
            assert LIB.onnxplain_params_set_string(p, k.encode(), v.encode()) == OK
        else:
            assert LIB.onnxplain_params_set_number(p, k.encode(), float(v)) == OK
    ex = C.c_void_p()
    status = LIB.onnxplain_explainer_create(model, method.encode(), p, C.byref(ex))
    LIB.onnxplain_params_free(p)
    assert status == OK, _error()
    return ex


def _explain(ex: C.c_void_p, x: np.ndarray, targets: list[int] | None = None, deltas: bool = False,
             threads: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.ascontiguousarray(x, np.float32)
    tg = (C.c_int64 * len(targets))(*targets) if targets is not None else None
    d = np.zeros(len(x), np.float32) if deltas else None
    out = C.c_void_p()
    status = LIB.onnxplain_explain(ex, _f32(x), _shape(x), x.ndim, tg, len(targets) if targets else 0, threads,
                                   C.byref(out), _f32(d) if d is not None else None)
    assert status == OK, _error()
    return _take(out), d


def test_version_and_the_method_catalogue() -> None:
    assert LIB.onnxplain_version().decode() == ox.__version__
    names = [LIB.onnxplain_method_name(i).decode() for i in range(LIB.onnxplain_method_count())]
    from onnxplain.perturbation import PYTHON_METHODS

    assert set(names) == set(ox.methods()) - set(PYTHON_METHODS)
    assert LIB.onnxplain_method_name(len(names)) is None
    assert LIB.onnxplain_status_name(SHAPE).decode() == "ONNXPLAIN_SHAPE"


def test_run_and_explain_equal_python_bit_for_bit() -> None:
    x, _ = load_samples()
    x = x[:5]
    h = _model()
    try:
        assert LIB.onnxplain_model_num_inputs(h) == 1
        dims, rank = (C.c_int64 * 4)(), C.c_size_t()
        assert LIB.onnxplain_model_input_shape(h, 0, dims, 4, C.byref(rank)) == OK
        assert rank.value == 4 and list(dims)[1:] == [1, 8, 8] and dims[0] == -1
        out = C.c_void_p()
        assert LIB.onnxplain_model_run(h, _f32(x), _shape(x), 4, 0, C.byref(out)) == OK, _error()
        m = ox.load(MODEL_PATH, threads=2)
        np.testing.assert_array_equal(_take(out), m.predict(x))
        for method, params, deltas in [("gradient", {}, False), ("lrp.epsilon_plus_flat", {}, True),
                                       ("integrated_gradients", {"steps": 16, "method": "gausslegendre"}, True),
                                       ("occlusion", {"window": 4, "stride": 2}, False)]:
            ex = _explainer(h, method, **params)
            try:
                got, d = _explain(ex, x, targets=[1, 2, 3, 4, 5], deltas=deltas)
                py = ox.explainer(m, method, **params)
                if deltas:
                    want, want_d = py.explain(x, target=[1, 2, 3, 4, 5], return_delta=True)
                    np.testing.assert_allclose(d, want_d, rtol=1e-5, atol=1e-5)
                else:
                    want = py.explain(x, target=[1, 2, 3, 4, 5])
                np.testing.assert_array_equal(got, want)
                argmax, _ = _explain(ex, x)
                np.testing.assert_array_equal(argmax, py.explain(x))
            finally:
                LIB.onnxplain_explainer_free(ex)
    finally:
        LIB.onnxplain_model_free(h)


def test_error_paths_return_their_status_and_a_message(tmp_path: Path) -> None:
    h = C.c_void_p()
    bad = b"not an onnx model at all"
    assert LIB.onnxplain_model_load_bytes(bad, len(bad), None, C.byref(h)) == FORMAT
    assert "ModelFormatError" in _error() and h.value is None
    assert LIB.onnxplain_last_status() == FORMAT
    assert LIB.onnxplain_model_load(str(tmp_path / "missing.onnx").encode(), None, C.byref(h)) == IO
    assert "missing.onnx" in _error()
    assert LIB.onnxplain_model_load(None, None, C.byref(h)) == INVALID and "path is NULL" in _error()
    assert LIB.onnxplain_model_load(str(MODEL_PATH).encode(), None, None) == INVALID
    from onnx import helper

    from tests.helpers.onnx_builders import make_model

    erf = make_model([helper.make_node("Shrink", ["x"], ["y"], name="shrink_1")], [("x", [1, 3])], ["y"])
    assert LIB.onnxplain_model_load_bytes(erf, len(erf), None, C.byref(h)) == UNSUPPORTED and "'shrink_1'" in _error()

    m = _model()
    try:
        ex = C.c_void_p()
        assert LIB.onnxplain_explainer_create(m, b"lrp.nonsense", None, C.byref(ex)) == INVALID
        assert "unknown method 'lrp.nonsense'" in _error()
        p = C.c_void_p()
        LIB.onnxplain_params_create(C.byref(p))
        LIB.onnxplain_params_set_number(p, b"epsilonn", 0.1)
        assert LIB.onnxplain_explainer_create(m, b"lrp.epsilon", p, C.byref(ex)) == INVALID
        assert "no parameter 'epsilonn'" in _error()
        LIB.onnxplain_params_free(p)
        assert LIB.onnxplain_explainer_create(None, b"gradient", None, C.byref(ex)) == INVALID
        grad = _explainer(m, "gradient")
        try:
            x = np.zeros((2, 1, 7, 8), np.float32)  # wrong size
            out = C.c_void_p()
            assert LIB.onnxplain_explain(grad, _f32(x), _shape(x), 4, None, 0, 0, C.byref(out), None) == SHAPE
            assert "expects shape" in _error() and out.value is None
            x = np.zeros((2, 1, 8, 8), np.float32)
            assert LIB.onnxplain_explain(grad, None, _shape(x), 4, None, 0, 0, C.byref(out), None) == INVALID
            tg = (C.c_int64 * 3)(0, 1, 2)
            assert LIB.onnxplain_explain(grad, _f32(x), _shape(x), 4, tg, 3, 0, C.byref(out), None) == INVALID
            tg = (C.c_int64 * 1)(10)
            assert LIB.onnxplain_explain(grad, _f32(x), _shape(x), 4, tg, 1, 0, C.byref(out), None) == INVALID
            assert "out of range" in _error()
            d = np.zeros(2, np.float32)
            assert LIB.onnxplain_explain(grad, _f32(x), _shape(x), 4, None, 0, 0, C.byref(out), _f32(d)) == INVALID
            assert "promises no sum" in _error()
            assert LIB.onnxplain_explain(None, _f32(x), _shape(x), 4, None, 0, 0, C.byref(out), None) == INVALID
            neg = (C.c_int64 * 4)(2, 1, -8, 8)
            assert LIB.onnxplain_explain(grad, _f32(x), neg, 4, None, 0, 0, C.byref(out), None) == INVALID
            assert LIB.onnxplain_explain(grad, _f32(x), _shape(x), 4, None, 0, 0, C.byref(out), None) == OK
            assert LIB.onnxplain_last_error() == b"" and LIB.onnxplain_last_status() == OK
            LIB.onnxplain_tensor_free(out)
        finally:
            LIB.onnxplain_explainer_free(grad)
    finally:
        LIB.onnxplain_model_free(m)
    # Freeing NULL is allowed.
    LIB.onnxplain_model_free(None)
    LIB.onnxplain_explainer_free(None)
    LIB.onnxplain_tensor_free(None)


def test_pattern_explainers_travel_between_c_and_python(tmp_path: Path) -> None:
    x, _ = load_samples()
    train, test = x[:200], x[200:206]
    m = _model()
    try:
        ex = _explainer(m, "pattern.attribution", estimator="relu")
        try:
            for i in range(0, len(train), 64):
                b = np.ascontiguousarray(train[i:i + 64])
                assert LIB.onnxplain_explainer_fit(ex, _f32(b), _shape(b), 4, 0) == OK, _error()
            got, _ = _explain(ex, test, targets=[3])
            path = tmp_path / "from_c.oxp"
            assert LIB.onnxplain_explainer_save(ex, str(path).encode()) == OK, _error()
        finally:
            LIB.onnxplain_explainer_free(ex)
    finally:
        LIB.onnxplain_model_free(m)
    py = ox.explainer(ox.load(MODEL_PATH, threads=2), "pattern.attribution", estimator="relu")
    py.fit(train, batch_size=64)
    np.testing.assert_array_equal(got, py.explain(test, target=3))
    np.testing.assert_array_equal(ox.load_explainer(path).explain(test, target=3), got)
    # and back: a Python-saved explainer explains the same from C
    py.save(tmp_path / "from_py.oxp")
    ex2 = C.c_void_p()
    assert LIB.onnxplain_explainer_load(str(tmp_path / "from_py.oxp").encode(), 2, C.byref(ex2)) == OK, _error()
    try:
        again, _ = _explain(ex2, test, targets=[3])
        np.testing.assert_array_equal(again, got)
    finally:
        LIB.onnxplain_explainer_free(ex2)
    (tmp_path / "broken.oxp").write_bytes(b"OXP?" * 10)
    assert LIB.onnxplain_explainer_load(str(tmp_path / "broken.oxp").encode(), 0, C.byref(ex2)) == FORMAT


def test_one_model_explains_from_eight_threads_as_from_one() -> None:
    x, _ = load_samples()
    x = np.ascontiguousarray(x[:16])
    m = _model(threads=1)
    ex = _explainer(m, "lrp.epsilon_gamma_box", low=0.0, high=1.0)
    try:
        want, _ = _explain(ex, x, threads=1)
        results: list[np.ndarray | None] = [None] * 8
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for _ in range(5):
                    results[i], _d = _explain(ex, x, threads=1)
            except BaseException as e:  # noqa: BLE001 - collected and re-raised below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for r in results:
            np.testing.assert_array_equal(r, want)
    finally:
        LIB.onnxplain_explainer_free(ex)
        LIB.onnxplain_model_free(m)


def test_a_freed_model_leaves_its_explainers_working() -> None:
    x, _ = load_samples()
    m = _model()
    ex = _explainer(m, "gradient")
    LIB.onnxplain_model_free(m)
    try:
        got, _ = _explain(ex, x[:3], targets=[0])
        np.testing.assert_array_equal(got, ox.explainer(ox.load(MODEL_PATH, threads=2), "gradient")
                                      .explain(x[:3], target=0))
    finally:
        LIB.onnxplain_explainer_free(ex)


@pytest.mark.parametrize("key", [b"low", b"baseline"])
def test_array_parameters(key: bytes) -> None:
    x, _ = load_samples()
    x = np.ascontiguousarray(x[:2])
    m = _model()
    try:
        method = b"lrp.epsilon_gamma_box" if key == b"low" else b"integrated_gradients"
        p = C.c_void_p()
        LIB.onnxplain_params_create(C.byref(p))
        arr = np.full((1, 8, 8), -0.5, np.float32)
        assert LIB.onnxplain_params_set_array(p, key, _f32(arr), _shape(arr), 3) == OK
        ex = C.c_void_p()
        assert LIB.onnxplain_explainer_create(m, method, p, C.byref(ex)) == OK, _error()
        LIB.onnxplain_params_free(p)
        got, _ = _explain(ex, x, targets=[1])
        LIB.onnxplain_explainer_free(ex)
        want = ox.explainer(ox.load(MODEL_PATH, threads=2), method.decode(), **{key.decode(): arr}).explain(x, target=1)
        np.testing.assert_array_equal(got, want)
    finally:
        LIB.onnxplain_model_free(m)
