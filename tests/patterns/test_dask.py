"""onnxplain.dask: pattern fitting and explaining on Dask arrays, on a two-process LocalCluster and
on Dask's local schedulers, against the same fits and explanations done in one process."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from onnx import helper  # noqa: E402

import onnxplain as ox  # noqa: E402
import onnxplain.dask as oxd  # noqa: E402
from tests.helpers.onnx_builders import assert_close, make_model  # noqa: E402

N, CHUNK = 48, 12  # four blocks of 12 samples
METHODS = [("pattern.net", "relu"), ("pattern.attribution", "relu"), ("pattern.attribution", "linear")]


def _cnn_bytes() -> bytes:
    """Conv(2->4, 3x3, pad 1) - Relu - MaxPool 2 - Flatten - Gemm(transB) - Relu - Gemm (3 classes):
    a convolution, a dense layer with its neuron axis first and one with it last."""
    rng = np.random.default_rng(7)
    init = {
        "w1": (rng.standard_normal((4, 2, 3, 3)) * 0.4).astype(np.float32),
        "b1": (rng.standard_normal(4) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((8, 36)) * 0.3).astype(np.float32),
        "b2": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "w3": (rng.standard_normal((8, 3)) * 0.5).astype(np.float32),
        "b3": (rng.standard_normal(3) * 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flatten"),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["g2"], name="dense2", transB=1),
        helper.make_node("Relu", ["g2"], ["r2"], name="relu2"),
        helper.make_node("Gemm", ["r2", "w3", "b3"], ["y"], name="dense3"),
    ]
    return make_model(nodes, [("x", ["N", 2, 6, 6])], ["y"], init)


def _two_input_bytes() -> bytes:
    """Concat(x1 [N,3], x2 [N,5]) - Gemm - Relu - Gemm: a model with two inputs."""
    rng = np.random.default_rng(8)
    init = {
        "w1": (rng.standard_normal((8, 6)) * 0.5).astype(np.float32),
        "b1": (rng.standard_normal(6) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((6, 2)) * 0.5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Concat", ["x1", "x2"], ["c"], name="concat", axis=1),
        helper.make_node("Gemm", ["c", "w1", "b1"], ["h"], name="dense1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="dense2"),
    ]
    return make_model(nodes, [("x1", ["N", 3]), ("x2", ["N", 5])], ["y"], init)


@pytest.fixture(scope="module")
def model() -> ox.Model:
    m = ox.load(_cnn_bytes())
    if "pattern.net" not in ox.methods():
        pytest.skip("this build of onnxplain has no pattern methods")
    return m


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((N, 2, 6, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two worker processes with one thread each. They are spawned with this process's environment;
    ONNXPLAIN_CORE_DIR and the folder onnxplain is imported from are made absolute for them, so that
    they load the same onnxplain and core as the tests whatever their working directory."""
    env: dict[str, str] = {}
    if os.environ.get("ONNXPLAIN_CORE_DIR"):
        env["ONNXPLAIN_CORE_DIR"] = str(Path(os.environ["ONNXPLAIN_CORE_DIR"]).resolve())
    package_root = str(Path(ox.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=40)
    with cluster, distributed.Client(cluster, set_as_default=False) as c:
        seen = c.run(os.getenv, "ONNXPLAIN_CORE_DIR")
        assert list(seen.values()) == [env.get("ONNXPLAIN_CORE_DIR")] * 2  # None when installed
        yield c


def _reference(model: ox.Model, method: str, estimator: str, x: np.ndarray, chunks: Sequence[int],
               batch_size: int, threads: int | None = None) -> ox.Explainer:
    """One process, with the batch boundaries dask.fit makes: each chunk split into batches from its
    own start. Same float32 per-batch sums (with the same threads: a batch's rows are split over
    them), so only the float64 summation order may differ."""
    ex = ox.explainer(model, method, estimator=estimator)
    start = 0
    for size in chunks:
        for b in range(start, start + size, batch_size):
            ex.partial_fit(x[b:min(b + batch_size, start + size)], threads=threads)
        start += size
    return ex


def _assert_same_statistics(got: Any, expected: Any, factor: float = 1.0) -> None:
    """``got`` equals ``factor`` times ``expected``: float64 sums to ~1e-9 of each array's scale."""
    assert got is not None and expected is not None
    assert got.nodes == expected.nodes and len(got.nodes) == 3
    for name in got.nodes:
        g, e = got.layer(name), expected.layer(name)
        assert sorted(g) == sorted(e), name
        for key, ev in e.items():
            gv = g[key]
            if key in ("weight_axis", "weight_shape", "groups"):
                assert gv == ev, (name, key)
                continue
            ev = np.asarray(ev, np.float64) * factor
            gv = np.asarray(gv, np.float64)
            assert gv.shape == ev.shape, (name, key)
            scale = float(np.max(np.abs(ev))) if ev.size else 0.0
            np.testing.assert_allclose(gv, ev, rtol=1e-9, atol=1e-9 * scale, err_msg=f"{name}: {key}")


# ---------------------------------------------------------------------------------------------
# On the LocalCluster


@pytest.mark.parametrize(("method", "estimator"), METHODS)
def test_fit_on_cluster_equals_one_process(client: Any, model: ox.Model, data: np.ndarray, method: str,
                                           estimator: str) -> None:
    x = da.from_array(data, chunks=(CHUNK, 2, 6, 6))
    ex = ox.explainer(model, method, estimator=estimator)
    assert oxd.fit(ex, x, batch_size=CHUNK, client=client) is ex
    ref = _reference(model, method, estimator, data, [CHUNK] * 4, CHUNK)
    assert ex.statistics.layer("conv1")["rows"] == N * 36  # one row per (sample, output position)
    assert ex.statistics.layer("dense2")["rows"] == N
    _assert_same_statistics(ex.statistics, ref.statistics)
    # The same single-process fit with ex.fit on the whole array: batches of CHUNK from 0.
    _assert_same_statistics(ex.statistics, ox.explainer(model, method, estimator=estimator)
                            .fit(data, batch_size=CHUNK, progress=False).statistics)
    for target in (None, 1):
        assert_close(ex.explain(data[:8], target=target), ref.explain(data[:8], target=target), rtol=1e-5)


def test_explain_on_cluster_equals_one_process(client: Any, model: ox.Model, data: np.ndarray) -> None:
    ex = _reference(model, "pattern.attribution", "relu", data, [N], CHUNK)
    x = da.from_array(data, chunks=(CHUNK, 2, 6, 6))
    per_sample = np.random.default_rng(4).integers(0, 3, N)
    for target in (None, 2, per_sample):
        r = oxd.explain(ex, x, target=target)
        assert isinstance(r, da.Array) and r.dtype == np.float32 and r.chunks == x.chunks
        got = client.compute(r).result()
        assert_close(got, ex.explain(data, target=target), rtol=1e-5)


def test_explainer_fit_takes_a_dask_array_on_the_default_client(client: Any, model: ox.Model,
                                                                data: np.ndarray) -> None:
    """ex.fit(dask array) goes through onnxplain.dask.fit, on whatever scheduler Dask uses now."""
    x = da.from_array(data, chunks=(CHUNK, 2, 6, 6))
    with dask.config.set(scheduler=client):
        ex = ox.explainer(model, "pattern.net").fit(x, batch_size=CHUNK)
    _assert_same_statistics(ex.statistics, _reference(model, "pattern.net", "relu", data, [CHUNK] * 4,
                                                      CHUNK).statistics)


# ---------------------------------------------------------------------------------------------
# Dask's local schedulers, no cluster


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_local_scheduler_fit_and_explain(model: ox.Model, data: np.ndarray, scheduler: str) -> None:
    # Uneven chunks, batches that do not divide them, and a sample axis split that must be undone.
    chunks = (10, 14, 12, 12)
    x = da.from_array(data, chunks=(chunks, 1, 3, 6))
    ex = ox.explainer(model, "pattern.attribution")
    with dask.config.set(scheduler=scheduler):
        oxd.fit(ex, x, batch_size=5, split_every=2, threads=1)
        ref = _reference(model, "pattern.attribution", "relu", data, chunks, 5, threads=1)
        _assert_same_statistics(ex.statistics, ref.statistics)
        r = oxd.explain(ex, x, target=0)
        assert r.chunks == (chunks, (2,), (6,), (6,))
        assert_close(r.compute(), ex.explain(data, target=0), rtol=1e-5)


def test_fit_adds_to_the_statistics_the_explainer_has(model: ox.Model, data: np.ndarray) -> None:
    x = da.from_array(data, chunks=CHUNK)
    ref = _reference(model, "pattern.net", "relu", data, [CHUNK] * 4, CHUNK)
    ex = ox.explainer(model, "pattern.net")
    with dask.config.set(scheduler="threads"):
        oxd.fit(ex, x, batch_size=CHUNK)
        oxd.fit(ex, x, batch_size=CHUNK)
    _assert_same_statistics(ex.statistics, ref.statistics, factor=2.0)


def test_fit_on_two_inputs(data: np.ndarray) -> None:
    model = ox.load(_two_input_bytes())
    if "pattern.net" not in ox.methods():
        pytest.skip("this build of onnxplain has no pattern methods")
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((30, 3)).astype(np.float32), rng.standard_normal((30, 5)).astype(np.float32)
    ex = ox.explainer(model, "pattern.net")
    with dask.config.set(scheduler="threads"):
        # The second input's chunks are aligned to the first's: blocks (10, 20), batches of 8 in each.
        oxd.fit(ex, {"x1": da.from_array(x1, chunks=((10, 20), 3)), "x2": da.from_array(x2, chunks=15)}, batch_size=8)
    ref = ox.explainer(model, "pattern.net")
    for lo, hi in [(0, 8), (8, 10), (10, 18), (18, 26), (26, 30)]:
        ref.partial_fit({"x1": x1[lo:hi], "x2": x2[lo:hi]})
    assert ex.statistics.nodes == ref.statistics.nodes
    for name in ref.statistics.nodes:
        for key in ("sum_xy", "sum_xy_pos", "sum_x", "count_pos"):
            e = np.asarray(ref.statistics.layer(name)[key])
            np.testing.assert_allclose(ex.statistics.layer(name)[key], e, rtol=1e-9, atol=1e-9 * np.abs(e).max())


def test_arguments_are_checked(model: ox.Model, data: np.ndarray) -> None:
    ex = ox.explainer(model, "pattern.net")
    x = da.from_array(data, chunks=CHUNK)
    with pytest.raises(TypeError, match="dask array"):
        oxd.fit(ex, data)
    with pytest.raises(TypeError, match="Explainer"):
        oxd.fit("pattern.net", x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        oxd.fit(ex, x, batch_size=0)
    with pytest.raises(ValueError, match="threads"):
        oxd.fit(ex, x, threads=0)
    with pytest.raises(ValueError, match="channel count"):
        oxd.fit(ex, da.zeros((4, 3, 6, 6), chunks=2))
    with pytest.raises(ValueError, match="no samples"):
        oxd.fit(ex, da.zeros((0, 2, 6, 6), chunks=2))
    assert ex.statistics is None  # nothing was fitted
    with pytest.raises(ValueError, match="out of range"):
        oxd.explain(ex, x, target=3)
    with pytest.raises(ValueError, match="entries"):
        oxd.explain(ex, x, target=np.zeros(N - 1, np.int64))
    with pytest.raises(ValueError, match="return_delta"):
        oxd.explain(ex, x, return_delta=True)
    with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError):
        oxd.explain(ex, x).compute()  # explain before fit


def test_methods_that_learn_nothing(model: ox.Model, data: np.ndarray) -> None:
    """fit returns at once for them, as Explainer.fit; explain works for every method."""
    x = da.from_array(data, chunks=CHUNK)
    ex = ox.explainer(model, "pattern.net", estimator="filter")
    assert oxd.fit(ex, x) is ex and not ex.learns
    grad = ox.explainer(model, "gradient")
    with dask.config.set(scheduler="threads"):
        assert oxd.fit(grad, x) is grad
        for target in (None, 1):
            got = oxd.explain(ex, x, target=target, threads=1).compute()
            assert_close(got, ex.explain(data, target=target), rtol=1e-5)
            assert_close(oxd.explain(grad, x, target=target).compute(), grad.explain(data, target=target), rtol=1e-5)
