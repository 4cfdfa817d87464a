"""Progress of the multi-pass drivers: callbacks, the stderr bar, and stopping (Ctrl-C)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import onnxplain as ox
from tests.helpers.onnx_builders import single_node


@pytest.fixture(scope="module")
def model() -> ox.Model:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 6)).astype(np.float32)
    w = rng.standard_normal((6, 4)).astype(np.float32)
    return ox.load(single_node("MatMul", {"x": x}, {"w": w}, dynamic_batch=True, node_inputs=["x", "w"]),
                   strip_softmax=False)


def _x(n: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 6)).astype(np.float32)


@pytest.mark.parametrize(("method", "params", "total"), [
    ("integrated_gradients", {"steps": 20}, 20), ("smoothgrad", {"samples": 10}, 10)])
def test_callback_sees_every_batch(model: ox.Model, method: str, params: dict, total: int) -> None:
    calls: list[tuple[int, int]] = []
    ex = ox.explainer(model, method, **params)
    got = ex.explain(_x(2), progress=lambda d, t: calls.append((d, t)))
    # Batches of 8 samples: 4 path points (or noise draws) of the 2 inputs per pass.
    assert calls == [(d, total) for d in list(range(4, total, 4)) + [total]]
    np.testing.assert_array_equal(got, ex.explain(_x(2), progress=False))  # reporting changes nothing


def test_bar_on_request_and_silence(model: ox.Model, capsys: pytest.CaptureFixture[str]) -> None:
    ex = ox.explainer(model, "integrated_gradients", steps=16)
    ex.explain(_x(1), progress=True)
    err = capsys.readouterr().err
    assert "integrated_gradients" in err and "16/16" in err and err.endswith("\n")
    ex.explain(_x(1), progress=False)
    ex.explain(_x(1))  # stderr is not a terminal under pytest: no bar by default
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress must be"):
        ex.explain(_x(1), progress="yes")


def test_single_pass_methods_report_nothing(model: ox.Model) -> None:
    calls: list[tuple[int, int]] = []
    ox.explainer(model, "gradient").explain(_x(3), progress=lambda d, t: calls.append((d, t)))
    assert calls == []


def test_an_exception_in_the_callback_stops_the_driver(model: ox.Model) -> None:
    calls: list[int] = []

    def stop(done: int, total: int) -> None:
        calls.append(done)
        raise RuntimeError("stop here")

    ex = ox.explainer(model, "integrated_gradients", steps=32)
    with pytest.raises(RuntimeError, match="stop here"):
        ex.explain(_x(1), progress=stop)
    assert calls == [8]  # stopped after the first batch of passes
    assert ex.explain(_x(1), progress=False).shape == (1, 6)  # and the explainer still works


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_ctrl_c_stops_the_driver(model: ox.Model) -> None:
    calls: list[int] = []

    def interrupt(done: int, total: int) -> None:
        calls.append(done)
        if done == 8:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends; noticed before the next batch

    with pytest.raises(KeyboardInterrupt):
        ox.explainer(model, "smoothgrad", samples=40).explain(_x(1), progress=interrupt)
    assert calls == [8]


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_ctrl_c_during_the_core_run_stops_it(model: ox.Model) -> None:
    """The signal arrives while the core runs without the GIL (no Python callback at all): the
    driver checks for it between batches and raises KeyboardInterrupt within one batch."""
    import threading
    import time

    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
    ex = ox.explainer(model, "integrated_gradients", steps=5_000_000)  # ~5 s uninterrupted
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ex.explain(_x(1), progress=False)
    finally:
        timer.cancel()
    assert time.perf_counter() - t0 < 2.0
